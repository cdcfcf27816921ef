"""Reductions accumulated in float64 (per chunk, summed serially)."""

from __future__ import annotations

import numpy as np

from .._jit import kernel


@kernel(chunks="sums")
def inner_f64(A, B, bounds):
    """``⟨A, B⟩ = Σ A∘B`` for two C-contiguous matrices of one shape, in float64.

    BLAS ``sdot`` would accumulate float32 in float32; the loss formula
    subtracts such inner products from ``‖X‖²`` and needs every digit.
    """
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros(n_chunks, dtype=np.float64)
    r = A.shape[1]
    for c in range(n_chunks):
        s = 0.0
        for i in range(bounds[c], bounds[c + 1]):
            for k in range(r):
                s += np.float64(A[i, k]) * np.float64(B[i, k])
        partial[c] = s
    return partial.sum()
