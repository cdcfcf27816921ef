"""fastnmf: fast nonnegative matrix factorization with Numba-parallel kernels."""

from . import _jit  # noqa: F401  (first: sets the OpenMP wait policy)
from ._fit import NMFResult, nmf
from ._threads import thread_limits
from .init import initialize
from .solvers import IterationInfo

__version__ = "0.1.0"

# scikit-learn takes ~0.5 s to import; only the estimator needs it, so it is
# imported on first use of these names (``import fastnmf`` stays fast).
_LAZY = {"NMF": "estimator", "non_negative_factorization": "estimator",
         "fit_many": "many", "ManyFits": "many", "select_rank": "rank",
         "RankSelection": "rank", "MiniBatchNMF": "minibatch"}


def __getattr__(name):
    if name == "anndata":  # optional helpers, imported on first use
        import importlib

        return importlib.import_module(".anndata", __name__)
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "NMF",
    "IterationInfo",
    "ManyFits",
    "MiniBatchNMF",
    "NMFResult",
    "RankSelection",
    "fit_many",
    "initialize",
    "nmf",
    "non_negative_factorization",
    "select_rank",
    "thread_limits",
]
