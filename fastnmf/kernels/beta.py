"""Elementwise kernels for multiplicative updates on the β-divergence.

``d_β(x‖y) = (x^β + (β−1)·y^β − β·x·y^(β−1)) / (β(β−1))`` for β ∉ {0, 1},
``x/y − log(x/y) − 1`` for β = 0 (Itakura–Saito).  One MU half-step for the
factor ``F`` (``Y ≈ F Gᵀ``, ``P = F Gᵀ``) is, as in scikit-learn's
``_multiplicative_update_w``/``_h`` (Févotte & Idier 2011)::

    F ← F ∘ ((Y ∘ P^(β−2)) G ⊘ (P^(β−1) G + l1 + l2·F))^γ(β)

The solver (:mod:`fastnmf.solvers.beta`) forms ``P`` by BLAS for a block of
rows of ``F``; the kernels here turn it, in one pass, into the two matrices
that BLAS multiplies by ``G`` (numerator and denominator), and add up the
loss at the same time.  scikit-learn's guards (``eps`` is float32's machine
epsilon) are kept so that the iterates agree to round-off:

* in the numerator ``P`` is raised to ``eps`` when β < 2 (negative power);
* in the denominator ``P`` is raised to ``eps`` when β < 1;
* the loss counts ``x`` only where ``x > eps`` (with ``P`` raised to ``eps``
  there), and ``Σ P^β`` over every entry, as ``_beta_divergence`` does —
  except that for β < 0 ``P`` is raised to ``eps`` there too, where
  scikit-learn's sum becomes infinite (the loss −inf) at a model value 0.

A float32 fit whose powers of model values do not fit float32 (β below
about −3.5) passes float64 ``P`` and numerator/denominator blocks here
(:func:`fastnmf.solvers.beta.work_dtype`).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel
from ._math import pow_pos, power
from .factor_updates import ROW_GROUP, _add_rows_gram, _symmetrize, _zero, group_dot


@kernel(parallel=False)
def _num(y, p, beta, eps):
    """Numerator factor ``y·p^(β−2)`` of one entry (``p`` raised to eps when β < 2)."""
    pn = p if (beta >= 2 or p >= eps) else eps
    if beta == 0:  # scikit-learn: (1/p)² · y
        inv = 1 / pn
        return inv * inv * y
    return power(pn, beta - 2) * y


@kernel(parallel=False)
def _cross_term(y, p, beta, eps):
    """This entry's term of ``_beta_divergence``'s sum over X's entries, in float64.

    Where ``x > eps`` (else 0), with ``p`` raised to eps: ``x/p − log(x/p)``
    for β = 0, ``x·p^(β−1)`` otherwise.  (The sum of ``p^β`` over every
    entry is the solver's.)
    """
    y64 = np.float64(y)
    if not y64 > eps:
        return 0.0
    p64 = np.float64(p)
    pl = p64 if p64 >= eps else np.float64(eps)
    if beta == 0:
        div = y64 / pl
        return div - np.log(div)
    return y64 * pow_pos(pl, np.float64(beta) - 1)


@kernel
def beta_terms_sparse(indptr, indices, data, row0, G, P, num, beta, eps, with_loss):
    """The nonzeros' part for rows ``row0 : row0 + len(P)`` of a CSR ``Y`` (``P`` dense).

    The numerator needs ``Y ∘ P^(β−2)`` only at the nonzeros, so it is
    multiplied by ``G`` here: ``num[row0 + i] = Σ_j y_ij p_ij^(β−2) G[j]``.
    Returns per-row float64 sums of the loss terms at the nonzeros
    (:func:`_cross_term`; zeros unless ``with_loss``).  The
    dense part (``P^(β−1)`` and ``Σ P^β``) is NumPy's, in the solver.
    """
    m = P.shape[0]
    r = G.shape[1]
    partial = np.zeros(m, dtype=np.float64)
    zero = eps - eps
    for i in prange(m):
        row = row0 + i
        out = num[row]
        for k in range(r):
            out[k] = zero
        s0 = 0.0
        for idx in range(indptr[row], indptr[row + 1]):
            j = indices[idx]
            y = data[idx]
            p = P[i, j]
            t = _num(y, p, beta, eps)
            g = G[j]
            for k in range(r):
                out[k] += t * g[k]
            if with_loss:
                s0 += _cross_term(y, p, beta, eps)
        partial[i] = s0
    return partial


@kernel(chunks="partials")
def beta_sum_power(values, beta, eps, bounds):
    """Per-chunk float64 sums of ``x^β`` over the entries ``x > eps`` of a flat array."""
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros(n_chunks, dtype=np.float64)
    b = np.float64(beta)
    for c in range(n_chunks):
        s = 0.0
        for j in range(bounds[c], bounds[c + 1]):
            y = np.float64(values[j])
            s += pow_pos(y, b) if y > eps else 0.0
        partial[c] = s
    return partial


@kernel(chunks="rows")
def beta_mu_apply(F, num, den, l1, l2, eps, gamma, clip, bounds):
    """``F ← F ∘ (num ⊘ (den + l1 + l2·F))^γ`` (zero denominators → eps), then ``F < clip → 0``."""
    r = F.shape[1]
    zero = eps - eps
    for c in range(bounds.shape[0] - 1):
        for i in range(bounds[c], bounds[c + 1]):
            f = F[i]
            nrow = num[i]
            drow = den[i]
            for k in range(r):
                d = drow[k] + l1 + l2 * f[k]
                if d == 0:
                    d = eps
                delta = nrow[k] / d
                if gamma != 1:
                    delta = delta ** gamma
                v = f[k] * delta
                f[k] = v if v >= clip else zero


@kernel(chunks="sums", private=("G",))
def online_mu_gram(F, num, WtW, A, B, l1, l2, eps, rho, bounds, G):
    """:func:`online_mu_apply` for the Frobenius loss (γ = 1, no clipping), with the
    denominator ``F·WtW`` formed here, one group of rows at a time (a GEMM of
    ``ROW_GROUP`` rows, as :func:`fastnmf.kernels.mu_update` forms its own), instead
    of read from an n×r array: per entry, ``d = (F WtW) + l1 + l2·f`` (zero → eps),
    ``A ← ρA + num·f``, ``B ← ρB + d``, ``f ← A ⊘ B``.  The row group's denominators
    come from its old rows before any entry changes.  Writes the updated ``Fᵀ F``
    into ``G`` (the Gram the next batch's W step and loss need) while each group is
    in cache; returns 0.0.
    """
    r = F.shape[1]
    _zero(G)
    scratch = np.empty_like(G)
    for c in range(bounds.shape[0] - 1):
        start, stop = bounds[c], bounds[c + 1]
        den = np.empty((min(ROW_GROUP, stop - start), r), dtype=F.dtype)
        Ft = np.empty((r, ROW_GROUP), dtype=F.dtype)
        for s in range(start, stop, ROW_GROUP):
            e = min(s + ROW_GROUP, stop)
            den = group_dot(F, WtW, s, e, den)
            for i in range(e - s):
                f = F[s + i]
                nrow, drow, arow, brow = num[s + i], den[i], A[s + i], B[s + i]
                for k in range(r):
                    fk = f[k]
                    d = drow[k] + l1 + l2 * fk
                    if d == 0:
                        d = eps
                    a = rho * arow[k] + nrow[k] * fk
                    b = rho * brow[k] + d
                    arow[k] = a
                    brow[k] = b
                    f[k] = a / b
            _add_rows_gram(F, s, e, Ft, G, scratch)
    _symmetrize(G)
    return 0.0


@kernel(chunks="rows")
def online_mu_apply(F, num, den, A, B, l1, l2, eps, gamma, rho, clip, bounds):
    """The online MU step of scikit-learn's ``MiniBatchNMF`` for ``H`` (held as ``F = Hᵀ``).

    Per entry, with ``d = den + l1 + l2·f`` (zero → eps): ``A ← ρA + num·f^(1/γ)``,
    ``B ← ρB + d``, ``f ← (A ⊘ B)^γ``, then ``f < clip → 0``.  ``A`` and ``B`` are the
    running numerator and denominator (Lefèvre, Bach & Févotte 2011); with ``ρ = 0``
    this is :func:`beta_mu_apply`'s step.
    """
    r = F.shape[1]
    zero = eps - eps
    for c in range(bounds.shape[0] - 1):
        for i in range(bounds[c], bounds[c + 1]):
            f = F[i]
            nrow, drow, arow, brow = num[i], den[i], A[i], B[i]
            for k in range(r):
                fk = f[k]
                d = drow[k] + l1 + l2 * fk
                if d == 0:
                    d = eps
                if gamma != 1:
                    fk = fk ** (1 / gamma)
                a = rho * arow[k] + nrow[k] * fk
                b = rho * brow[k] + d
                arow[k] = a
                brow[k] = b
                v = a / b
                if gamma != 1:
                    v = v ** gamma
                f[k] = v if v >= clip else zero
