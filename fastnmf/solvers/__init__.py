"""Solvers: the outer loops.  One module per objective; a solver name maps to a loop.

To add a Frobenius solver, add its factor update to ``frobenius.UPDATES``.
"""

from ._monitor import IterationInfo, Monitor
from .frobenius import STOP_RULES, fit_frobenius
from .frobenius import UPDATES as FROBENIUS_SOLVERS

SOLVERS = tuple(FROBENIUS_SOLVERS)

__all__ = [
    "FROBENIUS_SOLVERS",
    "SOLVERS",
    "STOP_RULES",
    "IterationInfo",
    "Monitor",
    "fit_frobenius",
]
