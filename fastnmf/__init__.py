"""fastnmf: fast nonnegative matrix factorization with Numba-parallel kernels."""

from . import _jit  # noqa: F401  (first: sets the OpenMP wait policy)
from ._fit import NMFResult, nmf
from ._threads import thread_limits
from .estimator import NMF, non_negative_factorization
from .init import initialize
from .solvers import IterationInfo

__version__ = "0.1.0"

__all__ = [
    "NMF",
    "IterationInfo",
    "NMFResult",
    "initialize",
    "nmf",
    "non_negative_factorization",
    "thread_limits",
]
