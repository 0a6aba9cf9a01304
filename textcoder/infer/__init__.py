"""Sampling designs for the human-coded sample, and estimates a paper can report from model
codes corrected by those human codes: prevalence and regressions by the model alone, the
human codes alone, PPI++ and DSL."""

from __future__ import annotations

from .design import Draw, simple_random, stratified, uncertainty
from .estimators import METHODS, Estimate
from .inference import estimate, infer
from .table import Prepared, Source, load

__all__ = [
    "METHODS",
    "Draw",
    "Estimate",
    "Prepared",
    "Source",
    "estimate",
    "infer",
    "load",
    "simple_random",
    "stratified",
    "uncertainty",
]
