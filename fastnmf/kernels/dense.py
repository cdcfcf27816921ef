"""Dense products at small rank: ``X @ F`` and ``Xᵀ W`` with F, W of a few columns.

At the ranks of a rank sweep (2–10 components) OpenBLAS's GEMM packs X for each
product, which costs about as much as the arithmetic; these loops read X once, in
its memory order, and keep the few outputs of a row (or the r×n output panel) in
cache.  One thread, float64, ms (scratch measurement, random X; OpenBLAS with
Haswell kernels): 1000×500, r = 2: ``X @ F`` 0.177 → 0.066, ``Xᵀ W`` 0.170 → 0.059;
r = 6: 0.243 → 0.159, 0.230 → 0.148; r = 10: 0.294 → 0.267, 0.285 → 0.236;
r = 20: 0.403 → 0.622 (slower), 0.395 → 0.458.  5000×2000, r = 6: 8.01 → 6.41,
7.76 → 4.35.  So :class:`fastnmf._data.DenseData` uses them up to
``SMALL_RANK_ROWS`` / ``SMALL_RANK_COLS`` components (measured split over threads as a
fit splits them too: ``fastnmf._data``; docs/performance.md).

Both are serial ``nogil`` loops over a range of the output's rows; the caller
splits the rows over its threads.  Every output entry is summed in one order
whatever the split.
"""

from __future__ import annotations

from .._jit import kernel


@kernel(parallel=False)
def rows_times(X, Ft, first, stop, out, zero):
    """``out[i] = X[i] @ Ftᵀ`` for rows ``first:stop`` (X C-contiguous m×n, ``Ft`` the
    C-contiguous r×n transpose of F): a dot product of the row with each of Ft's rows,
    summed in X's dtype (``zero``: a 0 of it)."""
    r = Ft.shape[0]
    n = X.shape[1]
    for i in range(first, stop):
        x = X[i]
        for k in range(r):
            f = Ft[k]
            s = zero
            for j in range(n):
                s += x[j] * f[j]
            out[i, k] = s
    return out


@kernel(parallel=False)
def cols_times(C, F, first, stop, out_t, zero):
    """``out_t[k, j − first] = Σ_i F[i, k] C[i, j]`` for columns ``first:stop`` of C (C
    C-contiguous m×n, F m×r, ``out_t`` r×(stop − first)): ``(C[:, first:stop])ᵀ F``
    transposed, by axpys of four rows of C at a time into the r×w panel, summed in C's
    dtype (``zero``: a 0 of it)."""
    m = C.shape[0]
    r = F.shape[1]
    w = stop - first
    for k in range(r):
        o = out_t[k]
        for j in range(w):
            o[j] = zero
    i = 0
    while i + 3 < m:
        c0 = C[i, first:stop]
        c1 = C[i + 1, first:stop]
        c2 = C[i + 2, first:stop]
        c3 = C[i + 3, first:stop]
        for k in range(r):
            a0 = F[i, k]
            a1 = F[i + 1, k]
            a2 = F[i + 2, k]
            a3 = F[i + 3, k]
            o = out_t[k]
            for j in range(w):
                o[j] += a0 * c0[j] + a1 * c1[j] + a2 * c2[j] + a3 * c3[j]
        i += 4
    while i < m:
        c0 = C[i, first:stop]
        for k in range(r):
            a0 = F[i, k]
            o = out_t[k]
            for j in range(w):
                o[j] += a0 * c0[j]
        i += 1
    return out_t
