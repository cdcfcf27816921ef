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
# four independent rows side by side keeps four chains in flight: ~7.5 ms and
# ~12 ms.  Each row's arithmetic is unchanged (same order, same division).


@kernel(parallel=False)
def _sweep_row(f, a, B, l1, l2):
    """HALS sweep of one row ``f`` in place; returns its violation (float64)."""
    violation = 0.0
    for k in range(f.shape[0]):
        b = B[k]  # B is symmetric: row k == column k, and contiguous
        grad = f[k] * l2 + l1 - a[k]
        for j in range(f.shape[0]):
            grad += f[j] * b[j]
        if f[k] > 0:
            violation += abs(grad)
        elif grad < 0:
            violation -= grad
        hess = B[k, k] + l2
        if hess <= 0:
            continue
        v = f[k] - grad / hess
        f[k] = v if v > 0 else 0
    return violation


@kernel(parallel=False)
def _sweep_rows4(f0, f1, f2, f3, a0, a1, a2, a3, B, l1, l2):
    """:func:`_sweep_row` on four rows at once (independent chains)."""
    violation = 0.0
    r = f0.shape[0]
    for k in range(r):
        b = B[k]
        g0 = f0[k] * l2 + l1 - a0[k]
        g1 = f1[k] * l2 + l1 - a1[k]
        g2 = f2[k] * l2 + l1 - a2[k]
        g3 = f3[k] * l2 + l1 - a3[k]
        for j in range(r):
            bj = b[j]
            g0 += f0[j] * bj
            g1 += f1[j] * bj
            g2 += f2[j] * bj
            g3 += f3[j] * bj
        violation += _pg(f0[k], g0) + _pg(f1[k], g1) + _pg(f2[k], g2) + _pg(f3[k], g3)
        hess = B[k, k] + l2
        if hess <= 0:
            continue
        v = f0[k] - g0 / hess
        f0[k] = v if v > 0 else 0
        v = f1[k] - g1 / hess
        f1[k] = v if v > 0 else 0
        v = f2[k] - g2 / hess
        f2[k] = v if v > 0 else 0
        v = f3[k] - g3 / hess
        f3[k] = v if v > 0 else 0
    return violation


@kernel(parallel=False)
def _pg(f, grad):
    """|projected gradient| of one entry (scikit-learn's ``cd`` violation term)."""
    if f > 0:
        return abs(np.float64(grad))
    return -np.float64(grad) if grad < 0 else 0.0


@kernel(parallel=False)
def _gram_add4(G, f0, f1, f2, f3):
    """``G += Σ fₜ fₜᵀ`` for four rows (one read-modify-write of G per four rows)."""
    r = f0.shape[0]
    for k in range(r):
        g = G[k]
        c0, c1, c2, c3 = f0[k], f1[k], f2[k], f3[k]
        for j in range(r):
            g[j] += c0 * f0[j] + c1 * f1[j] + c2 * f2[j] + c3 * f3[j]


@kernel(parallel=False)
def _gram_add(G, f):
    r = f.shape[0]
    for k in range(r):
        g = G[k]
        c = f[k]
        for j in range(r):
            g[j] += c * f[j]


@kernel(parallel=False)
def _inner_row(a, f):
    s = 0.0
    for k in range(f.shape[0]):
        s += np.float64(a[k]) * np.float64(f[k])
    return s


@kernel
def _hals(F, A, B, l1, l2, bounds, G, with_gram):
    r = F.shape[1]
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros((n_chunks, 2), dtype=np.float64)
    grams = np.zeros((n_chunks if with_gram else 0, r, r), dtype=F.dtype)
    for c in prange(n_chunks):
        # slices make the row index provably >= 0 (no wraparound code)
        Fc = F[bounds[c] : bounds[c + 1]]
        Ac = A[bounds[c] : bounds[c + 1]]
        violation = 0.0
        inner = 0.0
        i = 0
        while i + 3 < Fc.shape[0]:
            f0, f1, f2, f3 = Fc[i], Fc[i + 1], Fc[i + 2], Fc[i + 3]
            a0, a1, a2, a3 = Ac[i], Ac[i + 1], Ac[i + 2], Ac[i + 3]
            violation += _sweep_rows4(f0, f1, f2, f3, a0, a1, a2, a3, B, l1, l2)
            if with_gram:
                _gram_add4(grams[c], f0, f1, f2, f3)
                inner += (_inner_row(a0, f0) + _inner_row(a1, f1)
                          + _inner_row(a2, f2) + _inner_row(a3, f3))
            i += 4
        while i < Fc.shape[0]:
            violation += _sweep_row(Fc[i], Ac[i], B, l1, l2)
            if with_gram:
                _gram_add(grams[c], Fc[i])
                inner += _inner_row(Ac[i], Fc[i])
            i += 1
        partial[c, 0] = violation
        partial[c, 1] = inner
    if with_gram:
        G[:, :] = 0
        for c in range(n_chunks):
            G += grams[c]
    return partial[:, 0].sum(), partial[:, 1].sum()


@kernel(parallel=False)
def hals_update(F, A, B, l1, l2, bounds):
    """One HALS (coordinate descent) sweep over the columns of ``F``.

    For each row ``i`` and component ``k`` in order::

        g = F[i] · B[:, k] + l2·F[i, k] + l1 − A[i, k]
        F[i, k] ← max(0, F[i, k] − g / (B[k, k] + l2))

    A component whose Gram diagonal is zero (an all-zero row of the other
    factor) is left unchanged rather than divided by zero.

    Returns the projected-gradient violation met during the sweep,
    ``Σ |g|`` over entries with ``F > 0`` or ``g < 0`` (scikit-learn's ``cd``
    stopping quantity), accumulated in float64 per chunk.
    """
    G = np.empty((0, 0), dtype=F.dtype)
    return _hals(F, A, B, l1, l2, bounds, G, False)[0]


@kernel(parallel=False)
def hals_update_gram(F, A, B, l1, l2, bounds, G):
    """:func:`hals_update`, and then the two things the next half-step needs.

    Writes ``G = Fᵀ F`` of the *updated* ``F`` (r×r, ``F``'s dtype; must not
    be ``B``) and returns ``(violation, ⟨A, F⟩)``, the inner product of the
    updated ``F`` with ``A`` accumulated in float64.  Each row's outer product
    and inner product are taken while the row is still in L1, which spares a
    BLAS ``Fᵀ F`` (9 ms for 100000×32 float64 on 2 threads) and a pass of
    :func:`inner_f64`, and two parallel regions per half-step.
    """
    return _hals(F, A, B, l1, l2, bounds, G, True)


@kernel
def gram(F, bounds, G):
    """``G = Fᵀ F`` (r×r, ``F``'s dtype) from per-chunk partial sums; returns ``G``.

    BLAS took 9 ms for 100000×32 float64 on 2 threads; this takes a few.
    """
    r = F.shape[1]
    n_chunks = bounds.shape[0] - 1
    grams = np.zeros((n_chunks, r, r), dtype=F.dtype)
    for c in prange(n_chunks):
        Fc = F[bounds[c] : bounds[c + 1]]
        Gc = grams[c]
        i = 0
        while i + 3 < Fc.shape[0]:
            _gram_add4(Gc, Fc[i], Fc[i + 1], Fc[i + 2], Fc[i + 3])
            i += 4
        while i < Fc.shape[0]:
            _gram_add(Gc, Fc[i])
            i += 1
    G[:, :] = 0
    for c in range(n_chunks):
        G += grams[c]
    return G


@kernel
def mu_update(F, A, B, l1, l2, eps, bounds):
    """One multiplicative update ``F ← F ∘ A ⊘ (F B + l1 + l2·F)``.

    A zero denominator is replaced by ``eps`` (scikit-learn uses float32's
    machine epsilon).  The whole row's denominators are formed from the old
    row before any entry changes, so this is exactly Lee & Seung's update.
    """
    r = F.shape[1]
    for c in prange(bounds.shape[0] - 1):
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
