"""fastnmf: fast nonnegative matrix factorization with Numba-parallel kernels."""

from . import _jit  # noqa: F401  (first: sets the OpenMP wait policy)
from ._fit import NMFResult, nmf
from ._threads import thread_limits
from .init import initialize
from .solvers import IterationInfo

__version__ = "0.1.0"

__all__ = ["IterationInfo", "NMFResult", "initialize", "nmf", "thread_limits"]
