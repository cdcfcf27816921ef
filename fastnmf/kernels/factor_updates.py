"""Factor updates for the Frobenius objective: they never see ``X``.

Both kernels update a factor ``F`` (``W``, or ``Hᵀ``) in place from
``A = X Hᵀ`` (or ``Xᵀ W``) and the Gram matrix ``B = H Hᵀ`` (or ``Wᵀ W``).
Row ``i`` of ``F`` depends only on row ``i`` of ``A`` and on ``B``, so rows
are updated in parallel with no approximation: the loop over components
inside a row stays sequential, which is exactly HALS.  Each kernel is serial
code over its chunks of rows; the package's threads run runs of chunks side by
side (``@kernel(chunks="sums")``, :class:`fastnmf._jit.ChunkedKernel`), each
with its own ``G``, added up afterwards.

Regularization enters as in scikit-learn: the objective is
``½‖X − WH‖² + l1·ΣF + ½·l2·‖F‖²`` for the factor being updated.
"""

from __future__ import annotations

import numpy as np

from .._jit import kernel

# The sweep runs at GEMM speed.  Swept row by row, a HALS sweep is a chain of
# short dot products (component k needs F[i, k-1] just written), each ending in a
# horizontal sum: eight rows side by side, it ran at 20–40 % of the rate of a
# GEMM with the same flops (100000×32 float64 13 ms, float32 7–13 ms; 147306×50
# 28–33 ms; 2 threads).  Here a group of rows is held transposed (components ×
# rows) and the components are taken in panels: one small GEMM gives the whole
# panel's gradients at the group's current F (earlier panels already updated,
# later ones not), then the panel's components are updated in order, each a
# loop over the group's rows that the compiler vectorizes, each update
# corrected into the gradients of the panel's later components.  That is
# exactly HALS's Gauss–Seidel order; only the summation order of each dot
# product changes.  Measured (2 threads, one sweep, no Gram): 100000×32 float64
# 8.1 ms, float32 4.7 ms; 147306×50 20.9 / 15.2 ms; 60000×40 6.9 / 3.3 ms.
# Groups of 64 rows beat 32 and 128; panels of one 64-byte line of B (8 float64,
# 16 float32) beat 16/32 float64 panels (more correction work per row).
ROW_GROUP = 64
PANEL_BYTES = 64
# A group's share of the Gram FᵀF: up to this rank by dot products over the group's
# rows, above it by one GEMM (measured in _add_gram's docstring).
GRAM_LOOP_MAX = 64


@kernel(parallel=False)
def _panels(B, width):
    """B's rows in panels of ``width``: ``(n_panels, width, r)``, zero past row r."""
    r = B.shape[0]
    width = max(1, min(width, r))
    out = np.zeros((-(-r // width), width, r), dtype=B.dtype)
    for k in range(r):
        for j in range(r):
            out[k // width, k % width, j] = B[k, j]
    return out


@kernel(parallel=False)
def _load_transposed(M, start, Mt):
    """``Mt = M[start : start + Mt.shape[1]].T`` (a group of rows, components × rows)."""
    for i in range(Mt.shape[1]):
        row = M[start + i]
        for k in range(Mt.shape[0]):
            Mt[k, i] = row[k]


@kernel(parallel=False)
def _sweep_group(Ft, At, T, d, panels, B, l1, l2, zero):
    """One HALS sweep of a group of rows held transposed (``Ft``: r × rows), in place.

    Returns ``(violation, change)``: the projected-gradient violation met during
    the sweep and ``‖F_new − F_old‖²`` (both float64).  ``T`` (panel width × rows)
    and ``d`` (rows) are scratch.
    """
    r, rows = Ft.shape
    width = panels.shape[1]
    violation = 0.0
    change = 0.0
    for P in range(panels.shape[0]):
        k0 = P * width
        if r <= _LOOP_PANEL_MAX:
            _panel_loop(panels[P], Ft, T)
        else:
            np.dot(panels[P], Ft, T)  # the panel's B·F at the current F
        for kk in range(min(width, r - k0)):
            k = k0 + kk
            f = Ft[k]
            a = At[k]
            t = T[kk]
            hess = B[k, k] + l2
            if hess <= 0:  # an all-zero row of the other factor: leave F[:, k]
                for i in range(rows):
                    violation += _pg(f[i], t[i] + f[i] * l2 + l1 - a[i])
                continue
            for i in range(rows):
                grad = t[i] + f[i] * l2 + l1 - a[i]
                violation += _pg(f[i], grad)
                v = f[i] - grad / hess
                v = v if v > 0 else zero
                d[i] = v - f[i]
                change += _sq(d[i])
                f[i] = v
            b = B[k]
            for jj in range(kk + 1, min(width, r - k0)):
                bj = b[k0 + jj]
                tj = T[jj]
                for i in range(rows):
                    tj[i] += d[i] * bj
    return violation, change


# Up to this rank the panel product is made by _panel_loop, above it by BLAS.  One
# call of the whole update (`hals_update`, 1000×r, up to 20 sweeps, 2 threads), µs,
# loops against BLAS: float64 r = 2 53 / 66, 4 56 / 73, 6 87 / 95, 8 90 / 104, and
# r = 10 154 / 121, 12 184 / 132 (loops lose); float32 r = 2 69 / 78, 6 76 / 101, 8
# 88 / 124.  (At 100000×8 the two were level, December's ninth session.)
_LOOP_PANEL_MAX = 8


@kernel(parallel=False)
def _panel_loop(Pn, Ft, T):
    """``T = Pn @ Ft`` as loops: at small ranks a BLAS call costs more than its flops."""
    w, r = Pn.shape
    rows = Ft.shape[1]
    for kk in range(w):
        t = T[kk]
        p = Pn[kk]
        for i in range(rows):
            t[i] = p[0] * Ft[0, i]
        for j in range(1, r):
            pj = p[j]
            fj = Ft[j]
            for i in range(rows):
                t[i] += pj * fj[i]


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
def _add_gram(Ft, Fg, G, scratch):
    """``G += Ft Fg`` with ``Fg = Ftᵀ`` as a C array, the group's rows of F (a group's
    share of the Gram ``Fᵀ F``; skipped for a 0×0 G).

    ``Fg`` rather than the view ``Ft.T``: a product of two C arrays is the one
    ``np.dot`` :func:`_sweep_group` compiles anyway; an F-ordered operand made Numba
    compile a second (measured: 0.1–0.15 s CPU of a first fit).

    Made while the group is still in cache: the Gram the next half-step needs
    costs no pass of its own over the factor.  Up to rank :data:`GRAM_LOOP_MAX` as
    dot products over the group's rows (the upper triangle; the callers
    symmetrize), above it as a GEMM: a BLAS call per 64-row group cost more than
    its flops at small ranks (2 threads, the Gram's share of one sweep, float64 /
    float32: 100000×8 0.62 / 0.49 → 0.07 / 0.08 ms, ×24 1.67 / 1.12 → 1.60 /
    0.41, ×50 6.1 / 3.7 → 3.2 / 2.9, ×64 8.2 / 4.8 → 5.1 / 5.0; at ×100 BLAS is
    level).  Summed in F's dtype, as BLAS would.  (float64 Grams for float32
    factors were tried: the loss formula's error did not shrink, as it comes
    from the float32 product ``A``, and on tiny data a Gram that no longer
    underflows with ``A`` made the loss rise.)
    """
    r = G.shape[0]
    if r != Ft.shape[0]:
        return
    if r > GRAM_LOOP_MAX:
        np.dot(Ft, Fg, scratch)
        _add_into(G, scratch)
        return
    for k in range(r):  # the upper triangle (_symmetrize copies it down at the end)
        fk = Ft[k]
        for j in range(k, r):
            fj = Ft[j]
            total = fk[0] - fk[0]
            for i in range(Ft.shape[1]):
                total += fk[i] * fj[i]
            G[k, j] += total


@kernel(parallel=False)
def _add_rows_gram(F, s, e, Ft, G, scratch):
    """``G += F[s:e]ᵀ F[s:e]`` (a group of rows just updated, still in cache) by
    :func:`_add_gram`, the group transposed into ``Ft`` (r × ROW_GROUP scratch; a
    fresh one for a shorter group): for the updates that hold F by rows, as
    :func:`hals_update` holds its groups transposed anyway (one compiled form, and
    the dot products at small ranks); skipped for a 0×0 G."""
    if G.shape[0] != F.shape[1]:
        return
    if e - s < Ft.shape[1]:
        Ft = np.empty((F.shape[1], e - s), dtype=F.dtype)
    _load_transposed(F, s, Ft)
    _add_gram(Ft, F[s:e], G, scratch)


@kernel(parallel=False)
def _add_into(G, S):
    """``G += S`` for two r×r matrices.

    Element by element on purpose, as :func:`_zero`: an array-valued
    ``G += S`` or ``G[:, :] = S`` makes Numba compile its broadcasting code, error
    messages included, into every kernel that calls it (measured: 1-2 s of each
    cold fit's compile time, where the loops cost nothing).
    """
    for k in range(G.shape[0]):
        for j in range(G.shape[1]):
            G[k, j] += S[k, j]


@kernel(parallel=False)
def _inner_f64(Mt, Nt):
    """``⟨Mt, Nt⟩`` accumulated in float64 (any two C-contiguous matrices of one shape).

    Also the fits' one-off ``⟨X Hᵀ, W⟩`` at the start (``kernels.inner_f64_serial``):
    compiled for :func:`hals_update` anyway, where the parallel
    :func:`fastnmf.kernels.inner_f64` would be one more parallel kernel to compile
    (~1 s) for a single call.
    """
    total = 0.0
    for k in range(Mt.shape[0]):
        m = Mt[k]
        n = Nt[k]
        for i in range(Mt.shape[1]):
            total += np.float64(m[i]) * np.float64(n[i])
    return total


@kernel(parallel=False)
def _zero(G):
    """``G = 0`` (an r×r Gram, before its groups are added in)."""
    for k in range(G.shape[0]):
        for j in range(G.shape[1]):
            G[k, j] = 0


@kernel(parallel=False)
def _symmetrize(G):
    """Make the summed Gram exactly symmetric (upper → lower)."""
    for k in range(G.shape[0]):
        for j in range(k):
            G[k, j] = G[j, k]


@kernel(chunks="sums", private=("G",))
def hals_update(F, A, B, l1, l2, bounds, G, n_inner=1, delta=0.0):
    """HALS (coordinate descent) sweeps over the columns of ``F``, in place.

    One sweep, for each row ``i`` and component ``k`` in order::

        g = F[i] · B[:, k] + l2·F[i, k] + l1 − A[i, k]
        F[i, k] ← max(0, F[i, k] − g / (B[k, k] + l2))

    A component whose Gram diagonal is zero (an all-zero row of the other
    factor) is left unchanged rather than divided by zero.  Rows go in groups
    of :data:`ROW_GROUP` from each chunk's start, each swept by panels of
    components (see the note above :data:`ROW_GROUP`): the iterates are
    HALS's, to round-off.

    Accelerated HALS (Gillis & Glineur 2012): a sweep costs ``r²`` per row
    against ``n·r`` for the row's share of the data product, so repeating it
    on the same ``A`` and ``B`` is nearly free progress.  Each group of rows
    is swept up to ``n_inner`` times while still in cache, stopping once a
    sweep changes it by ``‖ΔF‖² ≤ delta²·‖ΔF_first‖²``.  Every sweep is an
    exact coordinate step on the same convex subproblem, so the objective
    never increases.  ``n_inner=1`` is scikit-learn's ``cd`` exactly.  The
    stopping test is per group, so with ``n_inner > 1`` the result is
    independent of the chunking only when chunk bounds are multiples of
    :data:`ROW_GROUP` (as :func:`fastnmf._data.factor_bounds` makes them).

    Returns ``(violation, cross)``: the projected-gradient violation met during
    the *first* sweep, ``Σ |g|`` over entries with ``F > 0`` or ``g < 0``
    (scikit-learn's ``cd`` stopping quantity, at the factor as it was handed
    in), and ``⟨A, F⟩`` at the updated ``F`` (for the loss), both accumulated
    in float64 group by group; writes the updated factor's Gram ``Fᵀ F`` into ``G``
    (r×r, F's dtype; pass a 0×0 array to skip it).
    """
    n_chunks = bounds.shape[0] - 1
    r = F.shape[1]
    violation = 0.0
    cross = 0.0
    _zero(G)  # the groups' Grams are added in as they are swept
    scratch = np.empty_like(G)
    panels = _panels(B, PANEL_BYTES // F.itemsize)
    d2 = delta * delta
    # 0 in F's dtype: a literal 0 in `v if v > 0 else 0` made every float32 step a
    # round trip through float64 (l1 is finite, validated)
    zero = l1 - l1
    for c in range(n_chunks):
        start, stop = bounds[c], bounds[c + 1]
        rows = min(ROW_GROUP, stop - start)
        Ft = np.empty((r, rows), dtype=F.dtype)
        At = np.empty((r, rows), dtype=F.dtype)
        T = np.empty((panels.shape[1], rows), dtype=F.dtype)
        d = np.empty(rows, dtype=F.dtype)
        for s in range(start, stop, ROW_GROUP):
            if stop - s < rows:  # the chunk's last, shorter group (all three are
                rows = stop - s  # overwritten before use: fresh arrays, no copies)
                Ft = np.empty((r, rows), dtype=F.dtype)
                At = np.empty((r, rows), dtype=F.dtype)
                T = np.empty((panels.shape[1], rows), dtype=F.dtype)
            _load_transposed(F, s, Ft)
            _load_transposed(A, s, At)
            v, first = _sweep_group(Ft, At, T, d, panels, B, l1, l2, zero)
            violation += v
            last, t = first, 1
            while t < n_inner and last > d2 * first:
                last = _sweep_group(Ft, At, T, d, panels, B, l1, l2, zero)[1]
                t += 1
            for i in range(rows):
                f = F[s + i]
                for k in range(r):
                    f[k] = Ft[k, i]
            _add_gram(Ft, F[s : s + rows], G, scratch)
            cross += _inner_f64(At, Ft)
    _symmetrize(G)
    return violation, cross


@kernel(parallel=False)
def group_dot(F, B, s, e, den):
    """``F[s:e] @ B`` into ``den`` (one group of rows; a fresh array when the group has
    fewer rows than ``den``, a chunk's last: np.dot overwrites it, no copy); returns it."""
    if e - s < den.shape[0]:
        den = np.empty((e - s, B.shape[1]), dtype=den.dtype)
    np.dot(F[s:e], B, den)
    return den


@kernel(chunks="sums", private=("G",))
def mu_update(F, A, B, l1, l2, eps, bounds, G):
    """One multiplicative update ``F ← F ∘ A ⊘ (F B + l1 + l2·F)``.

    A zero denominator is replaced by ``eps`` (scikit-learn uses float32's
    machine epsilon).  The whole row's denominators are formed from the old
    row before any entry changes, so this is exactly Lee & Seung's update; a
    group of rows' ``F B`` is one GEMM.  As :func:`hals_update`, writes the
    updated ``Fᵀ F`` into ``G`` (unless ``G`` is 0×0) and returns ``⟨A, F⟩``
    (float64).
    """
    n_chunks = bounds.shape[0] - 1
    r = F.shape[1]
    cross = 0.0
    _zero(G)
    scratch = np.empty_like(G)
    for c in range(n_chunks):
        start, stop = bounds[c], bounds[c + 1]
        den = np.empty((min(ROW_GROUP, stop - start), r), dtype=F.dtype)
        Ft = np.empty((r, ROW_GROUP), dtype=F.dtype)
        for s in range(start, stop, ROW_GROUP):
            e = min(s + ROW_GROUP, stop)
            den = group_dot(F, B, s, e, den)
            Fg = F[s:e]
            Ag = A[s:e]
            for i in range(e - s):
                f = Fg[i]
                a = Ag[i]
                q = den[i]
                for k in range(r):
                    dk = q[k] + f[k] * l2 + l1
                    if dk == 0:
                        dk = eps
                    f[k] *= a[k] / dk
            _add_rows_gram(F, s, e, Ft, G, scratch)
            cross += _inner_f64(Ag, Fg)
    _symmetrize(G)
    return cross


@kernel(chunks="sums", private=("G",))
def extrapolate(F, prev, beta, bounds, G):
    """Extrapolate a factor past its update, in place: ``F ← max(0, F + beta·(F − prev))``
    and ``prev ←`` the update (F as it came in), and ``G ← Fᵀ F`` of the result (group
    by group while in cache; a 0×0 G skips it).

    ``prev`` is the factor's previous update on the way in and its current update on
    the way out (the next call's ``prev``): no third copy.  Ang & Gillis's
    extrapolation with the projection onto ``F ≥ 0``: the next HALS update starts from
    a feasible point.
    """
    n_chunks = bounds.shape[0] - 1
    r = F.shape[1]
    _zero(G)
    scratch = np.empty_like(G)
    zero = beta - beta
    for c in range(n_chunks):
        Ft = np.empty((r, ROW_GROUP), dtype=F.dtype)
        for s in range(bounds[c], bounds[c + 1], ROW_GROUP):
            e = min(s + ROW_GROUP, bounds[c + 1])
            for i in range(s, e):
                f = F[i]
                p = prev[i]
                for k in range(r):
                    v = f[k]
                    y = v + beta * (v - p[k])
                    p[k] = v
                    f[k] = y if y > 0 else zero
            _add_rows_gram(F, s, e, Ft, G, scratch)
    _symmetrize(G)
