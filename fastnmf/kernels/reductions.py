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


@kernel(chunks="sums")
def change_f64(F, prev, bounds):
    """``(‖F − prev‖², ‖F‖²)`` in float64, and ``prev ← F``: a factor's change over a
    step and its copy for the next step's, in one pass over the two matrices (no
    difference array, no separate norms and copy: on wide data each is an n×r pass
    per mini-batch)."""
    n_chunks = bounds.shape[0] - 1
    d_part = np.zeros(n_chunks, dtype=np.float64)
    f_part = np.zeros(n_chunks, dtype=np.float64)
    r = F.shape[1]
    for c in range(n_chunks):
        d = 0.0
        s = 0.0
        for i in range(bounds[c], bounds[c + 1]):
            f = F[i]
            p = prev[i]
            for k in range(r):
                fk = np.float64(f[k])
                e = fk - np.float64(p[k])
                d += e * e
                s += fk * fk
                p[k] = f[k]
        d_part[c] = d
        f_part[c] = s
    return d_part.sum(), f_part.sum()


@kernel(chunks="partials")
def dense_stats(X, bounds):
    """Per chunk of rows (``bounds``) of a C-contiguous matrix: ``(nonzeros, ‖X_c‖²,
    negatives)`` as a row of float64 (counts as floats), in one pass: the figures a
    dense data object needs and the input checks, where NumPy reads X once for each.
    NaN or ±inf makes a chunk's ``‖X_c‖²`` non-finite (so does overflow: the caller
    then checks X exactly)."""
    n_chunks = bounds.shape[0] - 1
    parts = np.zeros((n_chunks, 3), dtype=np.float64)
    n = X.shape[1]
    for c in range(n_chunks):
        nz = 0
        neg = 0
        s = 0.0
        for i in range(bounds[c], bounds[c + 1]):
            row = X[i]
            for j in range(n):
                v = np.float64(row[j])
                s += v * v
                nz += v != 0
                neg += v < 0
        parts[c, 0] = nz
        parts[c, 1] = s
        parts[c, 2] = neg
    return parts
