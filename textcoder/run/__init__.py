"""Executors and scheduling: how planned requests are sent and their answers kept."""
