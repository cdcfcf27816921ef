"""Sparse (CSR) data products.

``X`` arrives as its three CSR arrays.  The transposed product ``Xᵀ W`` is the
same kernel applied to the CSR arrays of ``Xᵀ`` (the CSC of ``X``), which the
caller builds once per fit: streaming rows of ``Xᵀ`` in parallel needs no
atomics, where scattering rows of ``X`` into ``Xᵀ W`` would.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel


@kernel
def csr_matmul(indptr, indices, data, B, bounds, out):
    """``out = X @ B`` for CSR ``X`` (m×n) and dense C-contiguous ``B`` (n×r).

    Row ``i`` of ``out`` is a sum of rows of ``B`` weighted by the nonzeros
    of row ``i`` of ``X``; the loop over the rank is innermost and contiguous
    so it vectorizes.
    """
    r = B.shape[1]
    for c in prange(bounds.shape[0] - 1):
        for i in range(bounds[c], bounds[c + 1]):
            row = out[i]
            for k in range(r):
                row[k] = 0
            for p in range(indptr[i], indptr[i + 1]):
                v = data[p]
                b = B[indices[p]]
                for k in range(r):
                    row[k] += v * b[k]
    return out


@kernel
def csr_residual(indptr, indices, data, W, Ht, bounds):
    """Sums over the nonzeros of ``X``: ``Σ (x − w·h)²`` and ``Σ (w·h)²``.

    With ``‖WH‖²`` from the Gram matrices, ``‖X − WH‖² = Σ_nz (x − w·h)² +
    ‖WH‖² − Σ_nz (w·h)²``; this is the direct loss used when the cheap formula
    loses its digits to cancellation.  Accumulates in float64 per chunk; the
    chunks are summed serially by the caller.
    """
    r = W.shape[1]
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros((n_chunks, 2), dtype=np.float64)
    for c in prange(n_chunks):
        s_res = 0.0
        s_fit = 0.0
        for i in range(bounds[c], bounds[c + 1]):
            w = W[i]
            for p in range(indptr[i], indptr[i + 1]):
                h = Ht[indices[p]]
                wh = 0.0
                for k in range(r):
                    wh += np.float64(w[k]) * np.float64(h[k])
                d = np.float64(data[p]) - wh
                s_res += d * d
                s_fit += wh * wh
        partial[c, 0] = s_res
        partial[c, 1] = s_fit
    return partial
