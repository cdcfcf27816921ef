"""Kernels for the generalized Kullback–Leibler (Poisson) objective.

``D(X‖WH) = Σ x log(x / (WH)) − x + WH`` (``0·log 0 = 0``).  Only the
nonzeros of ``X`` need ``(WH)_ij``: the zeros enter through
``Σ WH = (column sums of W)·(row sums of H)``, computed outside.  So every
kernel here streams the rows of a matrix ``Y`` (``X`` or ``Xᵀ``) together with
the factor ``F`` whose row ``i`` pairs with row ``i`` of ``Y`` and the other
factor ``G`` (``Y ≈ F Gᵀ``), and never forms ``WH``.

Guards, as scikit-learn's ``_nmf.py`` (``eps`` is float32's machine epsilon):

* a model value ``(WH)_ij < eps`` is raised to ``eps`` wherever it divides or
  sits in a log, so zeros in ``W`` or ``H`` never give ``inf``/``nan``;
* the loss skips entries ``x ≤ eps`` (scikit-learn's ``_beta_divergence``
  treats them as zeros), so it equals scikit-learn's to round-off.

Loss sums are accumulated in float64, per chunk, and summed by the caller.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel


@kernel(parallel=False)
def _kl_term(y, wh):
    """``y·log(y / wh) − y`` in float64: the KL at one nonzero, less its ``+wh``."""
    y64 = np.float64(y)
    return y64 * np.log(y64 / np.float64(wh)) - y64


@kernel
def kl_numerator_sparse(indptr, indices, data, F, G, eps, with_loss, bounds, out):
    """MU-KL numerator on CSR ``Y`` (p×q) ``≈ F Gᵀ``: SDDMM and SpMM in one pass.

    For each row ``i``: ``out[i] = Σ_{j ∈ nz(i)} y_ij / max(F[i]·G[j], eps) · G[j]``,
    never forming ``F Gᵀ``.  With ``with_loss``, also returns per-chunk sums
    of ``Σ_{y>eps} y log(y / max(F[i]·G[j], eps)) − y`` (the KL at the
    nonzeros, at the current factors) for free.
    """
    r = F.shape[1]
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros(n_chunks, dtype=np.float64)
    zero = eps - eps
    for c in prange(n_chunks):
        s = 0.0
        for i in range(bounds[c], bounds[c + 1]):
            f = F[i]
            num = out[i]
            for k in range(r):
                num[k] = zero
            cols = indices[indptr[i]:indptr[i + 1]]
            vals = data[indptr[i]:indptr[i + 1]]
            for q in range(cols.size):
                g = G[cols[q]]
                wh = zero
                for k in range(r):
                    wh += f[k] * g[k]
                if wh < eps:
                    wh = eps
                y = vals[q]
                t = y / wh
                for k in range(r):
                    num[k] += t * g[k]
                if with_loss and y > eps:
                    s += _kl_term(y, wh)
        partial[c] = s
    return partial


@kernel
def kl_loss_sparse(indptr, indices, data, F, G, eps, bounds):
    """Per-chunk float64 sums of ``Σ_{y>eps} y log(y / max(F[i]·G[j], eps)) − y``."""
    r = F.shape[1]
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros(n_chunks, dtype=np.float64)
    for c in prange(n_chunks):
        s = 0.0
        for i in range(bounds[c], bounds[c + 1]):
            f = F[i]
            cols = indices[indptr[i]:indptr[i + 1]]
            vals = data[indptr[i]:indptr[i + 1]]
            for q in range(cols.size):
                y = vals[q]
                if y > eps:
                    g = G[cols[q]]
                    wh = 0.0
                    for k in range(r):
                        wh += np.float64(f[k]) * np.float64(g[k])
                    if wh < eps:
                        wh = eps
                    s += _kl_term(y, wh)
        partial[c] = s
    return partial


@kernel
def kl_ratio_dense(Y, P, eps, with_loss):
    """``P ← Y ⊘ max(P, eps)`` in place (``P`` holds ``W Hᵀ`` for a block of rows).

    Returns per-row float64 sums ``Σ_{y>eps} y log(y / max(p, eps)) − y``
    (zeros when not ``with_loss``).
    """
    m, n = Y.shape
    partial = np.zeros(m, dtype=np.float64)
    for i in prange(m):
        y_row = Y[i]
        p_row = P[i]
        s = 0.0
        for j in range(n):
            p = p_row[j]
            if p < eps:
                p = eps
            y = y_row[j]
            p_row[j] = y / p
            if with_loss and y > eps:
                s += _kl_term(y, p)
        partial[i] = s
    return partial


@kernel
def kl_mu_apply(F, num, den0, l1, l2, eps, clip, bounds):
    """``F ← F ∘ num ⊘ (den0 + l1 + l2·F)`` (zero denominator → eps), then ``F < clip → 0``."""
    r = F.shape[1]
    zero = eps - eps
    for c in prange(bounds.shape[0] - 1):
        for i in range(bounds[c], bounds[c + 1]):
            f = F[i]
            nrow = num[i]
            for k in range(r):
                den = den0[k] + l1 + l2 * f[k]
                if den == 0:
                    den = eps
                v = f[k] * (nrow[k] / den)
                f[k] = v if v >= clip else zero


@kernel(parallel=False)
def _ccd_row(cols, vals, nz, f, G, Gl, wh, Gsum, l1, l2, n_newton, newton_tol, eps,
             with_loss):
    """Cyclic coordinate descent with Newton steps on one row ``f`` of a factor.

    Minimizes ``Σ_j (f·G[j]) − y_j log(f·G[j]) + l1·Σf + ½l2‖f‖²`` over
    ``f ≥ 0``, where ``y`` has nonzeros ``vals[:nz]`` at ``cols[:nz]``; the
    zeros of ``y`` only add the linear term ``Σ_j G[j, k] = Gsum[k]``.
    ``Gl`` (r×nz) gathers ``G[cols]`` transposed so every pass over the
    nonzeros of one component is contiguous; ``wh`` holds ``f·G[j]`` at the
    nonzeros and is kept current after each change of ``f[k]``.

    Per component, up to ``n_newton`` projected Newton steps
    ``f_k ← max(0, f_k − g/h)``, stopping early when the step is below
    ``newton_tol·f_k``.  Returns ``Σ_{y>eps} y log(y/max(wh, eps)) − y`` at the
    final ``f`` (with ``with_loss``).
    """
    r = f.shape[0]
    zero = eps - eps
    for q in range(nz):
        g = G[cols[q]]
        s = zero
        for k in range(r):
            gk = g[k]
            Gl[k, q] = gk
            s += f[k] * gk
        wh[q] = s
    for k in range(r):
        gk = Gl[k]
        lin = Gsum[k] + l1
        for _ in range(n_newton):
            fk = f[k]
            grad = lin + l2 * fk
            hess = l2
            for q in range(nz):
                v = wh[q]
                if v < eps:
                    v = eps
                inv = 1 / v
                t = vals[q] * gk[q] * inv
                grad -= t
                hess += t * gk[q] * inv
            if hess > 0:
                new = fk - grad / hess
                if new < 0:
                    new = zero
            elif grad > 0:
                new = zero
            else:
                new = fk
            d = new - fk
            if d == 0:
                break
            if d < 0:
                # A Newton step downwards can overshoot towards the pole of
                # −y·log(wh) and blow the loss up (measured: KL 2788 → 4062 in
                # one sweep from NNDSVDA).  Never let a model value at a
                # nonzero fall below half of what it was.
                for q in range(nz):
                    dg = d * gk[q]
                    if wh[q] + dg < 0.5 * wh[q]:
                        d = -0.5 * wh[q] / gk[q]
                new = fk + d
                if new < 0:
                    new = zero
                d = new - fk
            f[k] = new
            for q in range(nz):
                wh[q] += d * gk[q]
            if abs(d) <= newton_tol * new:
                break
    s64 = 0.0
    if with_loss:
        for q in range(nz):
            y = vals[q]
            if y > eps:
                v = wh[q]
                if v < eps:
                    v = eps
                s64 += _kl_term(y, v)
    return s64


@kernel
def kl_ccd_sparse(indptr, indices, data, F, G, Gsum, l1, l2, n_newton, newton_tol, eps,
                  with_loss, bounds):
    """One CCD sweep over the rows of ``F`` for CSR ``Y ≈ F Gᵀ`` (see ``_ccd_row``).

    Row ``i`` of ``F`` touches only row ``i`` of ``Y`` and the rows of ``G``
    at its nonzeros, so rows run in parallel with no approximation; ``f·G[j]``
    is recomputed per row (the cost of gathering ``G[cols]`` anyway), so no
    per-nonzero state lives between sweeps.  Returns per-chunk float64 sums
    of the loss at the nonzeros after the update.
    """
    r = F.shape[1]
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros(n_chunks, dtype=np.float64)
    for c in prange(n_chunks):
        longest = 0
        for i in range(bounds[c], bounds[c + 1]):
            longest = max(longest, indptr[i + 1] - indptr[i])
        Gl = np.empty((r, longest), dtype=F.dtype)
        wh = np.empty(longest, dtype=F.dtype)
        s = 0.0
        for i in range(bounds[c], bounds[c + 1]):
            cols = indices[indptr[i]:indptr[i + 1]]
            vals = data[indptr[i]:indptr[i + 1]]
            s += _ccd_row(cols, vals, cols.size, F[i], G, Gl, wh, Gsum, l1, l2, n_newton,
                          newton_tol, eps, with_loss)
        partial[c] = s
    return partial


@kernel
def kl_ccd_dense(Y, F, G, Gsum, l1, l2, n_newton, newton_tol, eps, with_loss, bounds):
    """One CCD sweep over the rows of ``F`` for dense ``Y ≈ F Gᵀ``.

    ``Y`` may be ``X`` (C order) or ``X.T`` (a strided view): each row is
    first compressed to its nonzeros, because zeros only enter through
    ``Gsum`` — then it is the sparse row update.
    """
    r = F.shape[1]
    q_max = Y.shape[1]
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros(n_chunks, dtype=np.float64)
    for c in prange(n_chunks):
        Gl = np.empty((r, q_max), dtype=F.dtype)
        wh = np.empty(q_max, dtype=F.dtype)
        cols = np.empty(q_max, dtype=np.int64)
        vals = np.empty(q_max, dtype=F.dtype)
        s = 0.0
        for i in range(bounds[c], bounds[c + 1]):
            nz = 0
            for j in range(q_max):
                y = Y[i, j]
                if y != 0:
                    cols[nz] = j
                    vals[nz] = y
                    nz += 1
            s += _ccd_row(cols, vals, nz, F[i], G, Gl, wh, Gsum, l1, l2, n_newton,
                          newton_tol, eps, with_loss)
        partial[c] = s
    return partial
