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
from ._math import float_bits, from_bits, log_pos
from .beta import beta_mu_apply

# The CCD's safeguard keeps every model value at a nonzero of Y above half of what
# it was.  A model value is a sum of nonnegative terms, wh_j = Σ_k f_k·g_kj ≥ f_k·g_kj,
# so a step d ≥ −f_k/2 of component k changes it by d·g_kj ≥ −wh_j/2: only a step
# that more than halves f_k can cross the limit, and only those are checked against
# the model values.  The margin covers the round-off of model values kept up to date
# through a row's steps (they are summed afresh for each row).
_SAFEGUARD_MARGIN = 1e-3


@kernel(parallel=False)
def _ylogv_sum(y, v, n, eps):
    """``Σ_{j<n, y_j > eps} y_j · log(max(v_j, eps))`` in float64 (a vectorized loop)."""
    s = 0.0
    for j in range(n):
        yj = np.float64(y[j])
        vj = np.float64(v[j])
        vj = vj if vj > eps else np.float64(eps)
        s += (yj if yj > eps else 0.0) * log_pos(vj)
    return s


@kernel(chunks="partials")
def kl_ylogy(values, eps, bounds):
    """Per-chunk float64 sums of ``Σ_{y > eps} y log y − y`` over a flat array.

    The part of the KL at the nonzeros that does not depend on the factors:
    computed once per fit, so that the loss during the iterations needs only
    ``Σ y log(WH)``.  ``bounds`` splits ``values`` into chunks.
    """
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros(n_chunks, dtype=np.float64)
    for c in range(n_chunks):
        s = 0.0
        for j in range(bounds[c], bounds[c + 1]):
            y = np.float64(values[j])
            s += (y * log_pos(y) - y) if y > eps else 0.0
        partial[c] = s
    return partial


@kernel(parallel=False)
def _kl_term(y, wh):
    """``y·log(y / wh) − y`` in float64: the KL at one nonzero, less its ``+wh``."""
    y64 = np.float64(y)
    return y64 * np.log(y64 / np.float64(wh)) - y64


@kernel(chunks="partials")
def kl_numerator_sparse(indptr, indices, data, F, G, eps, with_loss, bounds, out):
    """MU-KL numerator on CSR ``Y`` (p×q) ``≈ F Gᵀ``: SDDMM and SpMM in one pass.

    For each row ``i``: ``out[i] = Σ_{j ∈ nz(i)} y_ij / max(F[i]·G[j], eps) · G[j]``,
    never forming ``F Gᵀ``.  With ``with_loss``, also returns per-chunk sums
    of ``Σ_{y>eps} y log(y / max(F[i]·G[j], eps)) − y`` (the KL at the
    nonzeros, at the current factors) for free.

    Four nonzeros per pass: their four model values are summed side by side, their
    four divisions are independent, and one pass over ``out[i]`` adds all four rows
    of ``G`` (NEWS, one thread, documents | words, ms: rank 8 9.6 → 7.0 | 8.5 → 6.5,
    rank 20 15.0 → 11.1 | 12.8 → 9.5, rank 50 32.3 → 23.5 | 22.0 → 15.8 in float64,
    1.25-1.54× in float32; the same bits).
    """
    r = F.shape[1]
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros(n_chunks, dtype=np.float64)
    zero = eps - eps
    for c in range(n_chunks):
        s = 0.0
        for i in range(bounds[c], bounds[c + 1]):
            f = F[i]
            num = out[i]
            for k in range(r):
                num[k] = zero
            cols = indices[indptr[i]:indptr[i + 1]]
            vals = data[indptr[i]:indptr[i + 1]]
            nz = cols.size
            q = 0
            while q + 4 <= nz:
                g0 = G[cols[q]]
                g1 = G[cols[q + 1]]
                g2 = G[cols[q + 2]]
                g3 = G[cols[q + 3]]
                w0 = zero
                w1 = zero
                w2 = zero
                w3 = zero
                for k in range(r):
                    fk = f[k]
                    w0 += fk * g0[k]
                    w1 += fk * g1[k]
                    w2 += fk * g2[k]
                    w3 += fk * g3[k]
                w0 = w0 if w0 > eps else eps
                w1 = w1 if w1 > eps else eps
                w2 = w2 if w2 > eps else eps
                w3 = w3 if w3 > eps else eps
                y0 = vals[q]
                y1 = vals[q + 1]
                y2 = vals[q + 2]
                y3 = vals[q + 3]
                t0 = y0 / w0
                t1 = y1 / w1
                t2 = y2 / w2
                t3 = y3 / w3
                for k in range(r):
                    num[k] += t0 * g0[k] + t1 * g1[k] + t2 * g2[k] + t3 * g3[k]
                if with_loss:
                    s += _kl_term(y0, w0) if y0 > eps else 0.0
                    s += _kl_term(y1, w1) if y1 > eps else 0.0
                    s += _kl_term(y2, w2) if y2 > eps else 0.0
                    s += _kl_term(y3, w3) if y3 > eps else 0.0
                q += 4
            for j in range(q, nz):
                g = G[cols[j]]
                wh = zero
                for k in range(r):
                    wh += f[k] * g[k]
                if wh < eps:
                    wh = eps
                y = vals[j]
                t = y / wh
                for k in range(r):
                    num[k] += t * g[k]
                if with_loss and y > eps:
                    s += _kl_term(y, wh)
        partial[c] = s
    return partial


@kernel(chunks="partials")
def kl_loss_sparse(indptr, indices, data, F, G, eps, bounds):
    """Per-chunk float64 sums of ``Σ_{y>eps} y log(y / max(F[i]·G[j], eps)) − y``."""
    r = F.shape[1]
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros(n_chunks, dtype=np.float64)
    for c in range(n_chunks):
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

    Returns per-row float64 sums ``Σ_{y>eps} y·log(max(p, eps))`` at the
    entering ``P`` (zeros when not ``with_loss``): the KL at the nonzeros is
    ``kl_ylogy(Y)`` minus their total.  Every loop is branch-free and
    vectorizes (``log_pos``).
    """
    m, n = Y.shape
    partial = np.zeros(m, dtype=np.float64)
    for i in prange(m):
        y_row = Y[i]
        p_row = P[i]
        if with_loss:
            partial[i] = _ylogv_sum(y_row, p_row, n, eps)
        for j in range(n):
            p = p_row[j]
            p = p if p > eps else eps
            p_row[j] = y_row[j] / p
    return partial


def kl_mu_apply(F, num, den0, l1, l2, eps, clip, bounds):
    """``F ← F ∘ num ⊘ (den0 + l1 + l2·F)`` (zero denominator → eps), then ``F < clip → 0``.

    The KL update is the β-divergence one with γ = 1 and one denominator row
    (``den0``, the other factor's column sums) shared by every row of ``F``:
    :func:`fastnmf.kernels.beta.beta_mu_apply` on a broadcast view.
    """
    beta_mu_apply(F, num, np.broadcast_to(den0, F.shape), l1, l2, eps, 1.0, clip, bounds)


@kernel(parallel=False)
def _may_overshoot(fk, d, half):
    """Whether the step ``d`` of a component now ``fk`` can take a model value at a
    nonzero below half of what it is (see :data:`_SAFEGUARD_MARGIN`)."""
    return d < 0 and -d > half * fk * (1.0 - _SAFEGUARD_MARGIN)


@kernel(parallel=False)
def _projected_newton(fk, grad, hess, zero):
    """The Newton step ``fk − grad/hess`` kept ≥ 0; without curvature, 0 if the
    gradient points down, else no move."""
    if hess > 0:
        new = fk - grad / hess
        return zero if new < 0 else new
    if grad > 0:
        return zero
    return fk


# The second row of a pair has at most this many nonzeros, so the pairs' second scratch
# (r × this, per thread) stays small where the longest row is huge (a word in 10⁶
# documents: 400 MB at rank 50 for the first scratch already); pairs pay on short rows.
_PAIR_MAX_NNZ = 4096


@kernel(parallel=False)
def _ccd_row(cols, vals, f, G, Gl, wh, Gsum, l1, l2, n_newton, newton_tol, eps, with_loss):
    """Cyclic coordinate descent with Newton steps on one row ``f`` of ``F`` against its
    row of CSR ``Y`` (nonzeros ``vals`` at ``cols``); returns its loss (with
    ``with_loss``, else 0).

    Minimizes ``Σ_j (f·G[j]) − y_j log(f·G[j]) + l1·Σf + ½l2‖f‖²`` over ``f ≥ 0``;
    the zeros of ``y`` only add the linear term ``Σ_j G[j, k] = Gsum[k]``.  ``Gl``
    (r×nz) gathers ``G[cols]`` transposed so every pass over the nonzeros of one
    component is contiguous (:func:`_gather_transposed`); ``wh`` holds ``f·G[j]`` at
    the nonzeros and is kept current after each change of ``f[k]``.  Per component,
    up to ``n_newton`` projected Newton steps ``f_k ← max(0, f_k − g/h)``, stopping
    early when the step is below ``newton_tol·f_k``.  The loss of a row is
    ``Σ_{y>eps} y log(y/max(wh, eps)) − y`` at its final ``f``.
    """
    r = f.shape[0]
    nz = cols.size
    zero = eps - eps
    one = eps / eps  # literals would make every float32 loop float64
    half = one / (one + one)
    _gather_transposed(cols, f, G, Gl, wh, zero)
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
                inv = one / v
                t = vals[q] * gk[q] * inv
                grad -= t
                hess += t * gk[q] * inv
            new = _projected_newton(fk, grad, hess, zero)
            d = new - fk
            if d == 0:
                break
            if _may_overshoot(fk, d, half):
                # A Newton step downwards can overshoot towards the pole of
                # −y·log(wh) and blow the loss up (measured: KL 2788 → 4062 in
                # one sweep from NNDSVDA).  Never let a model value at a
                # nonzero fall below half of what it was.
                new = _safeguarded(vals, gk[:nz], wh[:nz], fk, new, half)
                d = new - fk
            f[k] = new
            for q in range(nz):
                wh[q] += d * gk[q]
            if abs(d) <= newton_tol * new:
                break
    return _row_loss(vals, wh, eps) if with_loss else 0.0


@kernel(parallel=False)
def _ccd_row_pair(indptr, indices, data, F, ia, ib, G, Ga, wha, Gb, whb, Gsum, l1, l2, eps,
                  with_loss, spare):
    """Rows ``ia`` and ``ib`` as :func:`_ccd_row` sweeps them, one Newton step per component,
    the two rows' steps interleaved: a row's components form one chain (pass over its
    nonzeros → sums → Newton division → update of its model values → next pass), and
    two independent chains overlap.  The same steps as one row at a time, bit for bit.
    ``ib = -1``: row ``ia`` alone (with an empty partner whose factor row is ``spare``,
    a scratch of r entries).  Returns the two rows' losses (with ``with_loss``).

    NEWS (3824 documents × 27642 words), one sweep, one thread, float64, against the
    kernel before (one row at a time, one nonzero at a time in the gather) in the same
    process: with pairs rank 20 documents 1.33×, words 1.22×, rank 50 1.47×, 1.35×;
    without them (the gather alone) 1.37×, 0.99×, 1.39×, 0.99× (docs/performance.md).
    """
    r = F.shape[1]
    zero = eps - eps
    one = eps / eps
    half = one / (one + one)
    ca = indices[indptr[ia]:indptr[ia + 1]]
    va = data[indptr[ia]:indptr[ia + 1]]
    fa = F[ia]
    if ib < 0:  # a row alone: its partner is an empty row, its factor row ``spare``
        cb = ca[:0]
        vb = va[:0]
        fb = spare
    else:
        cb = indices[indptr[ib]:indptr[ib + 1]]
        vb = data[indptr[ib]:indptr[ib + 1]]
        fb = F[ib]
    na = ca.size
    nb = cb.size
    _gather_transposed(ca, fa, G, Ga, wha, zero)
    _gather_transposed(cb, fb, G, Gb, whb, zero)
    for k in range(r):
        ga = Ga[k]
        gb = Gb[k]
        lin = Gsum[k] + l1
        fka = fa[k]
        fkb = fb[k]
        grad_a = lin + l2 * fka
        grad_b = lin + l2 * fkb
        hess_a = l2
        hess_b = l2
        for q in range(na):
            v = wha[q]
            if v < eps:
                v = eps
            inv = one / v
            t = va[q] * ga[q] * inv
            grad_a -= t
            hess_a += t * ga[q] * inv
        for q in range(nb):
            v = whb[q]
            if v < eps:
                v = eps
            inv = one / v
            t = vb[q] * gb[q] * inv
            grad_b -= t
            hess_b += t * gb[q] * inv
        new_a = _projected_newton(fka, grad_a, hess_a, zero)
        new_b = _projected_newton(fkb, grad_b, hess_b, zero)
        if _may_overshoot(fka, new_a - fka, half):  # the safeguard, as in _ccd_row
            new_a = _safeguarded(va, ga[:na], wha[:na], fka, new_a, half)
        if _may_overshoot(fkb, new_b - fkb, half):
            new_b = _safeguarded(vb, gb[:nb], whb[:nb], fkb, new_b, half)
        d_a = new_a - fka
        d_b = new_b - fkb
        fa[k] = new_a
        fb[k] = new_b
        if d_a != 0:
            for q in range(na):
                wha[q] += d_a * ga[q]
        if d_b != 0:
            for q in range(nb):
                whb[q] += d_b * gb[q]
    if with_loss:
        return _row_loss(va, wha, eps), _row_loss(vb, whb, eps)
    return 0.0, 0.0


@kernel(parallel=False)
def _gather_transposed(cols, f, G, Gl, wh, zero):
    """``Gl[:, q] = G[cols[q]]`` and ``wh[q] = f·G[cols[q]]`` for the nonzeros of one
    row (sums in order over the components).

    Eight nonzeros at a time: the eight values of each component are stored side by
    side, which the compiler makes one vector store, where one nonzero at a time
    stored its r values one by one, r rows apart (NEWS, rank 20, one thread, the
    gather alone: 11.9 → 8.6 ms over the documents, 8.3 → 6.7 over the words; the
    same bits).
    """
    r = f.shape[0]
    nz = cols.shape[0]
    q = 0
    while q + 8 <= nz:
        g0 = G[cols[q]]
        g1 = G[cols[q + 1]]
        g2 = G[cols[q + 2]]
        g3 = G[cols[q + 3]]
        g4 = G[cols[q + 4]]
        g5 = G[cols[q + 5]]
        g6 = G[cols[q + 6]]
        g7 = G[cols[q + 7]]
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = zero
        for k in range(r):
            fk = f[k]
            gl = Gl[k]
            a0 = g0[k]
            a1 = g1[k]
            a2 = g2[k]
            a3 = g3[k]
            a4 = g4[k]
            a5 = g5[k]
            a6 = g6[k]
            a7 = g7[k]
            gl[q] = a0
            gl[q + 1] = a1
            gl[q + 2] = a2
            gl[q + 3] = a3
            gl[q + 4] = a4
            gl[q + 5] = a5
            gl[q + 6] = a6
            gl[q + 7] = a7
            s0 += fk * a0
            s1 += fk * a1
            s2 += fk * a2
            s3 += fk * a3
            s4 += fk * a4
            s5 += fk * a5
            s6 += fk * a6
            s7 += fk * a7
        wh[q] = s0
        wh[q + 1] = s1
        wh[q + 2] = s2
        wh[q + 3] = s3
        wh[q + 4] = s4
        wh[q + 5] = s5
        wh[q + 6] = s6
        wh[q + 7] = s7
        q += 8
    for j in range(q, nz):
        g = G[cols[j]]
        s = zero
        for k in range(r):
            gk = g[k]
            Gl[k, j] = gk
            s += f[k] * gk
        wh[j] = s


@kernel(parallel=False)
def _row_loss(vals, wh, eps):
    """``Σ_{y>eps} y log(y / max(wh, eps)) − y`` over one row's nonzeros, float64."""
    row = 0.0
    for q in range(vals.shape[0]):
        y = vals[q]
        if y > eps:
            v = wh[q]
            if v < eps:
                v = eps
            row += _kl_term(y, v)
    return row


@kernel(parallel=False)
def _scratch_stride(length, itemsize):
    """A row length of at least ``length`` items for an r-row scratch that is written a
    column at a time (``Gl[:, q]``): an odd number of 64-byte lines, so the r rows'
    entries of one column fall in r different L1 sets.  With rows of 4 KiB (512 float64
    nonzeros) every column's r entries shared one set of the 12-way L1 and a CCD sweep
    ran 2.4× slower (20000 rows of 512 nonzeros, rank 20: 723 ms against 307 ms with
    520; 256: 248 against 162; 1024: 1502 against 594)."""
    line = 64 // itemsize
    return (((length + line - 1) // line) | 1) * line


def kl_ccd_sparse(indptr, indices, data, F, G, Gsum, l1, l2, n_newton, newton_tol, eps,
                  with_loss, bounds):
    """One CCD sweep over the rows of ``F`` for CSR ``Y ≈ F Gᵀ`` (see :func:`_ccd_row`).

    Row ``i`` of ``F`` touches only row ``i`` of ``Y`` and the rows of ``G``
    at its nonzeros, so rows run in parallel with no approximation; ``f·G[j]``
    is recomputed per row (the cost of gathering ``G[cols]`` anyway), so no
    per-nonzero state lives between sweeps.  Returns per-chunk float64 sums
    of the loss at the nonzeros after the update (per row, then over rows in order).

    One Newton step per component (the solvers' setting) is
    :func:`kl_ccd_sparse_pairs`, more :func:`kl_ccd_sparse_rows`: two kernels, so that
    a fit compiles only the one it runs (the second was ~0.5 s of a first KL fit's
    compile time).
    """
    if n_newton == 1:
        return kl_ccd_sparse_pairs(indptr, indices, data, F, G, Gsum, l1, l2, eps, with_loss,
                                   bounds)
    return kl_ccd_sparse_rows(indptr, indices, data, F, G, Gsum, l1, l2, n_newton,
                              newton_tol, eps, with_loss, bounds)


@kernel(parallel=False)
def _longest_row(indptr, first, stop):
    """The most nonzeros in a row of ``first:stop`` (0 for no rows), as an int64."""
    longest = indptr[first] - indptr[first]  # (a literal 0 compiled a second signature)
    for i in range(first, stop):
        longest = max(longest, indptr[i + 1] - indptr[i])
    return longest


@kernel(parallel=False)
def _ccd_scratch(F, length):
    """The gather scratch (r × ``length``, rows of :func:`_scratch_stride`) and the model
    values for a row of up to ``length`` nonzeros, in ``F``'s dtype."""
    return (np.empty((F.shape[1], _scratch_stride(length, F.itemsize)), dtype=F.dtype),
            np.empty(length, dtype=F.dtype))


@kernel(chunks="partials")
def kl_ccd_sparse_pairs(indptr, indices, data, F, G, Gsum, l1, l2, eps, with_loss, bounds):
    """:func:`kl_ccd_sparse` with one Newton step per component: rows in pairs
    (:func:`_ccd_row_pair`; the second row of a pair has at most :data:`_PAIR_MAX_NNZ`
    nonzeros, else the first goes alone)."""
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros(n_chunks, dtype=np.float64)
    spare = np.zeros(F.shape[1], dtype=F.dtype)
    for c in range(n_chunks):
        first, stop = bounds[c], bounds[c + 1]
        longest = _longest_row(indptr, first, stop)
        Gl, wh = _ccd_scratch(F, longest)
        Gl2, wh2 = _ccd_scratch(F, min(longest, _PAIR_MAX_NNZ))
        s64 = 0.0
        i = first
        while i < stop:
            ib = i + 1 if i + 1 < stop and indptr[i + 2] - indptr[i + 1] <= wh2.size else -1
            loss_a, loss_b = _ccd_row_pair(indptr, indices, data, F, i, ib, G, Gl, wh, Gl2,
                                           wh2, Gsum, l1, l2, eps, with_loss, spare)
            s64 += loss_a
            s64 += loss_b  # 0 for a lone row's empty partner
            i = i + 2 if ib >= 0 else i + 1
        partial[c] = s64
    return partial


@kernel(chunks="partials")
def kl_ccd_sparse_rows(indptr, indices, data, F, G, Gsum, l1, l2, n_newton, newton_tol, eps,
                       with_loss, bounds):
    """:func:`kl_ccd_sparse` with up to ``n_newton`` Newton steps per component, one row
    at a time (:func:`_ccd_row`)."""
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros(n_chunks, dtype=np.float64)
    for c in range(n_chunks):
        first, stop = bounds[c], bounds[c + 1]
        Gl, wh = _ccd_scratch(F, _longest_row(indptr, first, stop))
        s64 = 0.0
        for i in range(first, stop):
            s64 += _ccd_row(indices[indptr[i]:indptr[i + 1]], data[indptr[i]:indptr[i + 1]],
                            F[i], G, Gl, wh, Gsum, l1, l2, n_newton, newton_tol, eps,
                            with_loss)
        partial[c] = s64
    return partial


@kernel(parallel=False)
def _ccd_dense_row(y, f, GT, wh, Gsum, l1, l2, n_newton, newton_tol, eps):
    """CCD with Newton steps on one row ``f`` against a dense row ``y`` (see ``_ccd_row``).

    Same steps as ``_ccd_row``, arranged so that every loop over the row's
    ``q`` entries is a contiguous, branch-free, vectorized loop (this is
    where all the time goes: one division per entry per component):

    * ``GT`` is the other factor transposed (r×q, C order), so component
      ``k`` of every entry is the contiguous row ``GT[k]`` — no gather;
    * the zeros of ``y`` stay in the loops, where they add nothing to the
      gradient and Hessian (``y·g/wh = 0``), instead of a compressed copy;
    * the change of ``wh`` by component ``k``'s step is applied inside the
      next Newton pass (one pass over ``wh`` per step instead of two);
    * the safeguard only runs its (dividing) pass for a step that more than
      halves ``f[k]``, the only steps that can halve a model value
      (:data:`_SAFEGUARD_MARGIN`).

    ``wh`` (length q) receives ``f·GT`` and holds it, current, on return.
    """
    r = f.shape[0]
    q = y.shape[0]
    zero = eps - eps
    one = eps / eps  # 1 in the data's dtype (zero + 1 would be float64: all float32
    half = one / (one + one)  # loops then ran at float64 width, slower than float64 data)
    for j in range(q):
        wh[j] = zero
    k = 0
    while k + 4 <= r:  # four components per pass over wh
        f0, f1, f2, f3 = f[k], f[k + 1], f[k + 2], f[k + 3]
        g0, g1, g2, g3 = GT[k], GT[k + 1], GT[k + 2], GT[k + 3]
        for j in range(q):
            wh[j] += f0 * g0[j] + f1 * g1[j] + f2 * g2[j] + f3 * g3[j]
        k += 4
    while k < r:
        fk = f[k]
        g = GT[k]
        for j in range(q):
            wh[j] += fk * g[j]
        k += 1
    d_prev = zero  # a step not yet added to wh, along g_prev
    g_prev = GT[0]
    for k in range(r):
        g = GT[k]
        lin = Gsum[k] + l1
        for _ in range(n_newton):
            fk = f[k]
            a = zero
            b = zero
            for j in range(q):
                w = wh[j] + d_prev * g_prev[j]
                wh[j] = w
                v = w if w > eps else eps
                inv = one / v
                gj = g[j]
                t = y[j] * gj * inv
                a += t
                b += t * gj * inv
            d_prev = zero
            grad = lin + l2 * fk - a
            hess = l2 + b
            new = _projected_newton(fk, grad, hess, zero)
            d = new - fk
            if d == 0:
                break
            if _may_overshoot(fk, d, half):
                new = _safeguarded(y, g, wh, fk, new, half)
                d = new - fk
            f[k] = new
            d_prev = d
            g_prev = g
            if abs(d) <= newton_tol * new:
                break
    if d_prev != 0:
        for j in range(q):
            wh[j] += d_prev * g_prev[j]


@kernel(parallel=False)
def _safeguarded(y, g, wh, fk, new, half):
    """The CCD safeguard: the step ``fk → new`` of one component cut so that no model
    value ``wh`` at a nonzero of ``y`` falls below half of what it is
    (``−d·g/wh ≤ ½``), by an exact (dividing) pass over the row's values ``y``, the
    component's column ``g`` and ``wh`` (a dense row, or a sparse row's nonzeros);
    returns the new value.  Only for steps :func:`_may_overshoot` lets through."""
    zero = half - half
    inf = (half + half) / zero
    lowest_bits = float_bits(inf)  # min wh/g over the nonzeros with g > 0
    for j in range(y.shape[0]):
        gj = g[j]
        w = wh[j]
        ratio = (w if w > 0 else zero) / gj
        ok = (y[j] != 0) & (gj > 0)
        ratio_ok = ratio if ok else inf
        lowest_bits = min(lowest_bits, float_bits(ratio_ok))
    d = max(new - fk, -half * from_bits(lowest_bits))
    new = fk + d
    return zero if new < 0 else new


@kernel(parallel=False)
def _ccd_dense_row_pair(ya, yb, fa, fb, GT, wha, whb, Gsum, l1, l2, eps):
    """:func:`_ccd_dense_row` with one Newton step per component (the solvers'
    setting) on two rows at once, each with its own model values (``wha``,
    ``whb``): the same steps and sums as two calls (the vectorizer may split a
    pass's sums into other partial sums, so the last bits can differ).

    One pass over ``GT[k]`` serves both rows, and the two rows' chains (a pass,
    its reductions, the Newton step's division, then the next component's pass,
    which needs the step) overlap: 1000×500, one thread, a sweep 0.38 → 0.31 ms
    at r = 2, 1.03 → 0.86 at r = 6, 3.97 → 3.46 at r = 20.
    """
    r = fa.shape[0]
    q = ya.shape[0]
    zero = eps - eps
    one = eps / eps
    half = one / (one + one)
    # Written out rather than shared with _ccd_dense_row through helpers: Numba left
    # such calls out of line, and they cost the dense KL many-fits sweep 10 % (this
    # initial fill, one helper per row) and 25 % (the two Newton steps below).
    for j in range(q):
        wha[j] = zero
        whb[j] = zero
    k = 0
    while k + 4 <= r:  # four components per pass, as _ccd_dense_row
        a0, a1, a2, a3 = fa[k], fa[k + 1], fa[k + 2], fa[k + 3]
        b0, b1, b2, b3 = fb[k], fb[k + 1], fb[k + 2], fb[k + 3]
        g0, g1, g2, g3 = GT[k], GT[k + 1], GT[k + 2], GT[k + 3]
        for j in range(q):
            wha[j] += a0 * g0[j] + a1 * g1[j] + a2 * g2[j] + a3 * g3[j]
            whb[j] += b0 * g0[j] + b1 * g1[j] + b2 * g2[j] + b3 * g3[j]
        k += 4
    while k < r:
        ak = fa[k]
        bk = fb[k]
        g = GT[k]
        for j in range(q):
            wha[j] += ak * g[j]
            whb[j] += bk * g[j]
        k += 1
    da = zero  # the rows' steps not yet added to their model values, along g_prev
    db = zero
    g_prev = GT[0]
    for k in range(r):
        g = GT[k]
        lin = Gsum[k] + l1
        fka = fa[k]
        fkb = fb[k]
        grad_a = zero
        hess_a = zero
        grad_b = zero
        hess_b = zero
        for j in range(q):
            gj = g[j]
            gp = g_prev[j]
            w = wha[j] + da * gp
            wha[j] = w
            inv = one / (w if w > eps else eps)
            t = ya[j] * gj * inv
            grad_a += t
            hess_a += t * gj * inv
            w = whb[j] + db * gp
            whb[j] = w
            inv = one / (w if w > eps else eps)
            t = yb[j] * gj * inv
            grad_b += t
            hess_b += t * gj * inv
        # (the two rows' steps written out, see above: one helper, 5.2 → 6.5 s)
        new = _projected_newton(fka, lin + l2 * fka - grad_a, l2 + hess_a, zero)
        if _may_overshoot(fka, new - fka, half):
            new = _safeguarded(ya, g, wha, fka, new, half)
        fa[k] = new
        da = new - fka
        new = _projected_newton(fkb, lin + l2 * fkb - grad_b, l2 + hess_b, zero)
        if _may_overshoot(fkb, new - fkb, half):
            new = _safeguarded(yb, g, whb, fkb, new, half)
        fb[k] = new
        db = new - fkb
        g_prev = g
    for j in range(q):
        wha[j] += da * g_prev[j]
        whb[j] += db * g_prev[j]


# Columns of a C-ordered Y copied at a time into a contiguous block when the
# factor pairs with Y's columns: 8 float64 are one 64-byte cache line of each
# row of Y, so the copy reads whole lines.
_COLUMN_BLOCK = 8


@kernel(chunks="partials")
def kl_ccd_dense(Y, F, GT, Gsum, l1, l2, n_newton, newton_tol, eps, with_loss, by_rows,
                 bounds):
    """One CCD sweep over the rows of ``F`` for dense, C-contiguous ``Y``.

    ``by_rows``: row ``i`` of ``F`` pairs with row ``i`` of ``Y`` (``Y ≈ F·GT``);
    otherwise with column ``i`` (``Yᵀ ≈ F·GT``): the
    columns are then copied, a block of ``_COLUMN_BLOCK`` at a time, into a
    contiguous per-chunk buffer, so ``X`` is needed in one memory order only.
    ``GT`` is the other factor transposed (r×q, C-contiguous), ``Gsum`` its
    row sums.  ``bounds`` splits the rows of ``F``.

    Returns per-chunk float64 sums of ``Σ_{y>eps} y·log(max(wh, eps))`` at
    the updated rows (zeros unless ``with_loss``): the KL at the nonzeros is
    ``kl_ylogy(Y) − Σ`` of these.
    """
    q = GT.shape[1]
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros(n_chunks, dtype=np.float64)
    for c in range(n_chunks):
        wh = np.empty(q, dtype=F.dtype)
        wh2 = np.empty(q, dtype=F.dtype)
        s = 0.0
        if by_rows:
            s = _ccd_dense_rows(Y, 0, F, bounds[c], bounds[c + 1], GT, wh, wh2, Gsum, l1, l2,
                                n_newton, newton_tol, eps, with_loss)
        else:
            block = np.empty((_COLUMN_BLOCK, q), dtype=Y.dtype)
            for i0 in range(bounds[c], bounds[c + 1], _COLUMN_BLOCK):
                nb = min(_COLUMN_BLOCK, bounds[c + 1] - i0)
                for a in range(q):
                    row = Y[a, i0:i0 + nb]
                    for b in range(nb):
                        block[b, a] = row[b]
                s += _ccd_dense_rows(block, i0, F, i0, i0 + nb, GT, wh, wh2, Gsum, l1, l2,
                                     n_newton, newton_tol, eps, with_loss)
        partial[c] = s
    return partial


@kernel(parallel=False)
def _ccd_dense_rows(Y, y0, F, first, stop, GT, wh, wh2, Gsum, l1, l2, n_newton, newton_tol,
                    eps, with_loss):
    """Rows ``first:stop`` of ``F`` against rows ``first − y0 …`` of ``Y``, in pairs
    (:func:`_ccd_dense_row_pair`) with one Newton step per component; returns their
    summed ``Σ y·log(max(wh, eps))`` (row by row, in order) with ``with_loss``."""
    q = GT.shape[1]
    s = 0.0
    i = first
    if n_newton == 1:
        while i + 2 <= stop:
            ya = Y[i - y0]
            yb = Y[i + 1 - y0]
            _ccd_dense_row_pair(ya, yb, F[i], F[i + 1], GT, wh, wh2, Gsum, l1, l2, eps)
            if with_loss:
                s += _ylogv_sum(ya, wh, q, eps)
                s += _ylogv_sum(yb, wh2, q, eps)
            i += 2
    while i < stop:
        y = Y[i - y0]
        _ccd_dense_row(y, F[i], GT, wh, Gsum, l1, l2, n_newton, newton_tol, eps)
        if with_loss:
            s += _ylogv_sum(y, wh, q, eps)
        i += 1
    return s
