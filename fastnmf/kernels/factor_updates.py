"""Factor updates for the Frobenius objective: they never see ``X``.

Both kernels update a factor ``F`` (``W``, or ``Hᵀ``) in place from
``A = X Hᵀ`` (or ``Xᵀ W``) and the Gram matrix ``B = H Hᵀ`` (or ``Wᵀ W``).
Row ``i`` of ``F`` depends only on row ``i`` of ``A`` and on ``B``, so rows
are updated in parallel with no approximation: the loop over components
inside a row stays sequential, which is exactly HALS.

Regularization enters as in scikit-learn: the objective is
``½‖X − WH‖² + l1·ΣF + ½·l2·‖F‖²`` for the factor being updated.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel

# A row's sweep is one long dependency chain (component k reads the F[i, k-1]
# just written, through a horizontal sum, a division and a store that the next
# wide load must wait for), so one row at a time left the cores mostly idle:
# 30 ms for 100000×32 (float64, 2 threads) and 80 ms in float32.  Sweeping
# several independent rows side by side keeps that many chains in flight:
# four rows gave ~8 ms in both dtypes, eight rows ~6.7 ms (float32 5000×20:
# 0.30 → 0.17 ms); twelve or sixteen rows were no faster (register spills).
# Each row's arithmetic is unchanged (same order, same division).
ROW_GROUP = 8


@kernel(parallel=False)
def _sweep_row(f, a, B, l1, l2, zero):
    """HALS sweep of one row ``f`` in place.

    Returns ``(violation, change)``: the row's projected-gradient violation
    met during the sweep and ``‖f_new − f_old‖²`` (both float64).
    """
    violation = 0.0
    change = 0.0
    for k in range(f.shape[0]):
        b = B[k]  # B is symmetric: row k == column k, and contiguous
        grad = f[k] * l2 + l1 - a[k]
        for j in range(f.shape[0]):
            grad += f[j] * b[j]
        violation += _pg(f[k], grad)
        hess = B[k, k] + l2
        if hess <= 0:
            continue
        v = f[k] - grad / hess
        v = v if v > 0 else zero
        change += _sq(v - f[k])
        f[k] = v
    return violation, change


@kernel(parallel=False)
def _sweep_rows8(F, A, i, B, l1, l2, zero):
    """:func:`_sweep_row` on rows ``i … i+7`` of ``F`` at once (eight independent chains)."""
    f0, f1, f2, f3, f4, f5, f6, f7 = F[i], F[i + 1], F[i + 2], F[i + 3], F[i + 4], \
        F[i + 5], F[i + 6], F[i + 7]
    a0, a1, a2, a3, a4, a5, a6, a7 = A[i], A[i + 1], A[i + 2], A[i + 3], A[i + 4], \
        A[i + 5], A[i + 6], A[i + 7]
    violation = 0.0
    change = 0.0
    for k in range(F.shape[1]):
        b = B[k]
        g0 = f0[k] * l2 + l1 - a0[k]
        g1 = f1[k] * l2 + l1 - a1[k]
        g2 = f2[k] * l2 + l1 - a2[k]
        g3 = f3[k] * l2 + l1 - a3[k]
        g4 = f4[k] * l2 + l1 - a4[k]
        g5 = f5[k] * l2 + l1 - a5[k]
        g6 = f6[k] * l2 + l1 - a6[k]
        g7 = f7[k] * l2 + l1 - a7[k]
        for j in range(F.shape[1]):
            bj = b[j]
            g0 += f0[j] * bj
            g1 += f1[j] * bj
            g2 += f2[j] * bj
            g3 += f3[j] * bj
            g4 += f4[j] * bj
            g5 += f5[j] * bj
            g6 += f6[j] * bj
            g7 += f7[j] * bj
        violation += (_pg(f0[k], g0) + _pg(f1[k], g1) + _pg(f2[k], g2) + _pg(f3[k], g3)
                      + _pg(f4[k], g4) + _pg(f5[k], g5) + _pg(f6[k], g6) + _pg(f7[k], g7))
        hess = B[k, k] + l2
        if hess <= 0:
            continue
        v0 = f0[k] - g0 / hess
        v0 = v0 if v0 > 0 else zero
        v1 = f1[k] - g1 / hess
        v1 = v1 if v1 > 0 else zero
        v2 = f2[k] - g2 / hess
        v2 = v2 if v2 > 0 else zero
        v3 = f3[k] - g3 / hess
        v3 = v3 if v3 > 0 else zero
        v4 = f4[k] - g4 / hess
        v4 = v4 if v4 > 0 else zero
        v5 = f5[k] - g5 / hess
        v5 = v5 if v5 > 0 else zero
        v6 = f6[k] - g6 / hess
        v6 = v6 if v6 > 0 else zero
        v7 = f7[k] - g7 / hess
        v7 = v7 if v7 > 0 else zero
        change += (_sq(v0 - f0[k]) + _sq(v1 - f1[k]) + _sq(v2 - f2[k]) + _sq(v3 - f3[k])
                   + _sq(v4 - f4[k]) + _sq(v5 - f5[k]) + _sq(v6 - f6[k]) + _sq(v7 - f7[k]))
        f0[k] = v0
        f1[k] = v1
        f2[k] = v2
        f3[k] = v3
        f4[k] = v4
        f5[k] = v5
        f6[k] = v6
        f7[k] = v7
    return violation, change


@kernel(parallel=False)
def _pg(f, grad):
    """|projected gradient| of one entry (scikit-learn's ``cd`` violation term)."""
    if f > 0:
        return abs(np.float64(grad))
    return -np.float64(grad) if grad < 0 else 0.0


@kernel(parallel=False)
def _sq(d):
    d = np.float64(d)
    return d * d


@kernel(parallel=False)
def _gram_cross(Fc, Ac, G):
    """Add ``Fcᵀ Fc`` into ``G`` (r×r, F's dtype) and return ``⟨Ac, Fc⟩`` in float64.

    Called on a chunk right after its update, while its rows are still in
    cache: the Gram the next half-step needs and the inner product the loss
    needs then cost no pass of their own over the factor (on D1, 5000×2000,
    r=20, they were three more calls, ~0.5 ms of a ~19 ms iteration).  The
    Gram is summed in F's dtype, as BLAS would.  (float64 Grams for float32
    factors were tried: the loss formula's error did not shrink, as it comes
    from the float32 product ``A``, and on tiny data a Gram that no longer
    underflows with ``A`` made the loss rise.)  Eight rows per pass over
    ``G``, as the sweeps (one row at a time would load and store all of ``G``
    per row).
    """
    r = Fc.shape[1]
    n = Fc.shape[0]
    i = 0 if G.shape[0] == r else n  # a 0×0 G: no Gram wanted
    while i + 8 <= n:
        f0, f1, f2, f3, f4, f5, f6, f7 = Fc[i], Fc[i + 1], Fc[i + 2], Fc[i + 3], \
            Fc[i + 4], Fc[i + 5], Fc[i + 6], Fc[i + 7]
        for k in range(r):
            g = G[k]
            x0, x1, x2, x3, x4, x5, x6, x7 = f0[k], f1[k], f2[k], f3[k], f4[k], f5[k], \
                f6[k], f7[k]
            for j in range(r):
                g[j] += ((x0 * f0[j] + x1 * f1[j]) + (x2 * f2[j] + x3 * f3[j])) \
                    + ((x4 * f4[j] + x5 * f5[j]) + (x6 * f6[j] + x7 * f7[j]))
        i += 8
    while i < n:
        f = Fc[i]
        for k in range(r):
            g = G[k]
            x = f[k]
            for j in range(r):
                g[j] += x * f[j]
        i += 1
    cross = 0.0
    for i in range(n):
        a = Ac[i]
        f = Fc[i]
        for k in range(r):
            cross += np.float64(a[k]) * np.float64(f[k])
    return cross


@kernel(parallel=False)
def _sum_grams(partial, G):
    """``G = Σ_c partial[c]`` in chunk order, then made exactly symmetric (upper → lower)."""
    r = G.shape[0]
    if r == 0:
        return
    G[:, :] = partial[0]
    for c in range(1, partial.shape[0]):
        G += partial[c]
    for k in range(r):
        for j in range(k):
            G[k, j] = G[j, k]


@kernel
def hals_update(F, A, B, l1, l2, bounds, G, n_inner=1, delta=0.0):
    """HALS (coordinate descent) sweeps over the columns of ``F``, in place.

    One sweep, for each row ``i`` and component ``k`` in order::

        g = F[i] · B[:, k] + l2·F[i, k] + l1 − A[i, k]
        F[i, k] ← max(0, F[i, k] − g / (B[k, k] + l2))

    A component whose Gram diagonal is zero (an all-zero row of the other
    factor) is left unchanged rather than divided by zero.

    Accelerated HALS (Gillis & Glineur 2012): a sweep costs ``r²`` per row
    against ``n·r`` for the row's share of the data product, so repeating it
    on the same ``A`` and ``B`` is nearly free progress.  Each group of rows
    is swept up to ``n_inner`` times while still in cache, stopping once a
    sweep changes it by ``‖ΔF‖² ≤ delta²·‖ΔF_first‖²``.  Every sweep is an
    exact coordinate step on the same convex subproblem, so the objective
    never increases.  ``n_inner=1`` is scikit-learn's ``cd`` exactly.
    Rows go in groups of :data:`ROW_GROUP` (8) from each chunk's start, and the
    stopping test is per group, so with ``n_inner > 1`` the result is
    independent of the chunking only when chunk bounds are multiples of 8 (as
    :func:`fastnmf._data.factor_bounds` makes them).

    Returns ``(violation, cross)``: the projected-gradient violation met during
    the *first* sweep, ``Σ |g|`` over entries with ``F > 0`` or ``g < 0``
    (scikit-learn's ``cd`` stopping quantity, at the factor as it was handed
    in), and ``⟨A, F⟩`` at the updated ``F`` (for the loss), both accumulated
    in float64 per chunk; writes the updated factor's Gram ``Fᵀ F`` into ``G``
    (r×r, F's dtype; pass a 0×0 array to skip it).
    """
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros(n_chunks, dtype=np.float64)
    cross = np.zeros(n_chunks, dtype=np.float64)
    grams = np.zeros((n_chunks, G.shape[0], G.shape[1]), dtype=F.dtype)
    d2 = delta * delta
    # 0 in F's dtype: a literal 0 in `v if v > 0 else 0` made every float32 step a
    # round trip through float64 on the dependency chain (l1 is finite, validated)
    zero = l1 - l1
    for c in prange(n_chunks):
        # slices make the row index provably >= 0 (no wraparound code)
        Fc = F[bounds[c] : bounds[c + 1]]
        Ac = A[bounds[c] : bounds[c + 1]]
        violation = 0.0
        i = 0
        while i + ROW_GROUP <= Fc.shape[0]:
            v, first = _sweep_rows8(Fc, Ac, i, B, l1, l2, zero)
            violation += v
            last, t = first, 1
            while t < n_inner and last > d2 * first:
                last = _sweep_rows8(Fc, Ac, i, B, l1, l2, zero)[1]
                t += 1
            i += ROW_GROUP
        while i < Fc.shape[0]:
            v, first = _sweep_row(Fc[i], Ac[i], B, l1, l2, zero)
            violation += v
            last, t = first, 1
            while t < n_inner and last > d2 * first:
                last = _sweep_row(Fc[i], Ac[i], B, l1, l2, zero)[1]
                t += 1
            i += 1
        partial[c] = violation
        cross[c] = _gram_cross(Fc, Ac, grams[c])
    _sum_grams(grams, G)
    return partial.sum(), cross.sum()


@kernel
def mu_update(F, A, B, l1, l2, eps, bounds, G):
    """One multiplicative update ``F ← F ∘ A ⊘ (F B + l1 + l2·F)``.

    A zero denominator is replaced by ``eps`` (scikit-learn uses float32's
    machine epsilon).  The whole row's denominators are formed from the old
    row before any entry changes, so this is exactly Lee & Seung's update.
    As :func:`hals_update`, writes the updated ``Fᵀ F`` into ``G`` (unless ``G`` is
    0×0) and returns ``⟨A, F⟩`` (float64).
    """
    n_chunks = bounds.shape[0] - 1
    r = F.shape[1]
    cross = np.zeros(n_chunks, dtype=np.float64)
    grams = np.zeros((n_chunks, G.shape[0], G.shape[1]), dtype=F.dtype)
    for c in prange(n_chunks):
        ratio = np.empty(r, dtype=F.dtype)
        for i in range(bounds[c], bounds[c + 1]):
            f = F[i]
            for k in range(r):
                b = B[k]
                den = f[k] * l2 + l1
                for j in range(r):
                    den += f[j] * b[j]
                if den == 0:
                    den = eps
                ratio[k] = A[i, k] / den
            for k in range(r):
                f[k] *= ratio[k]
        cross[c] = _gram_cross(F[bounds[c] : bounds[c + 1]], A[bounds[c] : bounds[c + 1]],
                               grams[c])
    _sum_grams(grams, G)
    return cross.sum()
