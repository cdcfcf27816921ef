"""How rows are split among threads: decided once per fit, outside the kernels."""

from __future__ import annotations

import numba
import numpy as np

# Chunks per thread: enough that an uneven chunk (or a busy core) does not
# leave the other threads idle, few enough that per-chunk overhead is nil.
CHUNKS_PER_THREAD = 8


def n_chunks_for(n_rows: int) -> int:
    return max(1, min(n_rows, CHUNKS_PER_THREAD * numba.get_num_threads()))


def row_bounds(n_rows: int, n_chunks: int | None = None) -> np.ndarray:
    """Boundaries of ``n_chunks`` nearly equal ranges of rows, as int64."""
    if n_chunks is None:
        n_chunks = n_chunks_for(n_rows)
    return np.linspace(0, n_rows, n_chunks + 1).round().astype(np.int64)


def nnz_bounds(indptr: np.ndarray, n_chunks: int | None = None) -> np.ndarray:
    """Row boundaries that give each chunk about the same number of nonzeros.

    Rows of real sparse data are very uneven (a few documents or cells hold
    most of the counts); balancing by nonzeros keeps every thread busy.
    """
    n_rows = indptr.shape[0] - 1
    if n_chunks is None:
        n_chunks = n_chunks_for(n_rows)
    targets = np.linspace(0, indptr[-1], n_chunks + 1)
    bounds = np.searchsorted(indptr, targets, side="left").astype(np.int64)
    bounds[0], bounds[-1] = 0, n_rows
    return np.unique(bounds)
