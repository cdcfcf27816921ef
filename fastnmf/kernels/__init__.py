"""Numba kernels: plain arrays in, arrays out (or updated in place).

Nothing here knows about sparse-matrix objects, estimators or options.  Every
parallel loop runs over *chunks* of rows given as an ``int64`` array of row
boundaries (``bounds[c]:bounds[c + 1]`` is chunk ``c``); chunks write disjoint
rows, so there are no races, and balancing the chunks (by nonzeros for sparse
X) is decided once, outside, by :func:`fastnmf._chunks.row_bounds`.  Most
kernels are serial loops over their chunks, run by the package's threads on
runs of chunks (``@kernel(chunks=...)``, :class:`fastnmf._jit.ChunkedKernel`):
it compiles several times faster than Numba's ``prange``.
"""

from .dense import cols_times, rows_times
from .factor_updates import ROW_GROUP, extrapolate, hals_update, mu_update
from .factor_updates import _inner_f64 as inner_f64_serial
from .masked import sampled_matmul_add, sampled_ratio_add
from .reductions import change_f64, dense_stats, inner_f64
from .sparse import csr_matmul, csr_matmul_add, csr_matmul_t, sampled_moments
from .sparseness import project_sparseness

__all__ = [
    "ROW_GROUP",
    "change_f64",
    "cols_times",
    "csr_matmul",
    "csr_matmul_add",
    "csr_matmul_t",
    "dense_stats",
    "extrapolate",
    "hals_update",
    "inner_f64",
    "inner_f64_serial",
    "mu_update",
    "project_sparseness",
    "rows_times",
    "sampled_matmul_add",
    "sampled_moments",
    "sampled_ratio_add",
]
