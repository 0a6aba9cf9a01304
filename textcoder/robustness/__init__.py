"""Robustness: re-coding a sample under prompt variants and measuring how the codes move."""

from __future__ import annotations

from .check import Check, run_check, sample_table
from .measure import column, measure
from .variants import BASE, KINDS, Variant, make_variants

__all__ = [
    "BASE",
    "KINDS",
    "Check",
    "Variant",
    "column",
    "make_variants",
    "measure",
    "run_check",
    "sample_table",
]
