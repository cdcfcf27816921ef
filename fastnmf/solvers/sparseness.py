"""Sparseness-constrained NMF: Hoyer's ``nmfsc`` (JMLR 5, 2004, 1457–1469).

Minimizes ``½‖X − WH‖²`` over ``W ≥ 0``, ``H ≥ 0`` with every column of W
(``sparseness_W``) and/or every row of H (``sparseness_H``) held at a fixed
Hoyer sparseness ``(√n − ‖v‖₁/‖v‖₂)/(√n − 1)``.  A constrained factor takes a
gradient step and each of its vectors is projected back onto the set of that
sparseness (:func:`fastnmf.kernels.project_sparseness`); the step halves until
the objective does not rise, then grows by 1.2 for the next iteration.  Rows of
H keep unit L2 norm (the scale lives in W), columns of W keep the norm they have
after the step, as in Hoyer's code.  An unconstrained factor gets the usual
update (``solver``: HALS, or MU as in Hoyer's code) and, for H, its rows are
renormalized to unit norm.

The step's objective needs no new product with X: for the W half-step it is
``½⟨WᵀW, HHᵀ⟩ − ⟨XHᵀ, W⟩ + const``, both products already at hand.
"""

from __future__ import annotations

import numpy as np

from .. import kernels
from .._data import gram
from .frobenius import INNER_DELTA, UPDATES, _HalfStep, _Loss, inner_sweeps

# Hoyer gives up at a step below 1e-200 starting from 1; starting from 1/λmax(B),
# 60 halvings (a factor 1e18) have not been reached on any fit measured.
MAX_HALVINGS = 60
GROW = 1.2


def project_columns(F, sparseness, norms=None):
    """Project every column of ``F`` (in place) onto Hoyer sparseness ``sparseness``,
    with L2 norms ``norms`` (default: each column's own norm)."""
    Ft = np.ascontiguousarray(F.T)
    if norms is None:
        norms = np.sqrt(np.einsum("ki,ki->k", Ft, Ft, dtype=np.float64))
    kernels.project_sparseness(Ft, float(sparseness), np.asarray(norms, np.float64), Ft)
    F[...] = Ft.T


def _half_objective(F, A, B) -> float:
    """``½⟨FᵀF, B⟩ − ⟨A, F⟩`` in float64: the half-step's objective up to a constant."""
    G = gram(F).astype(np.float64)
    return 0.5 * float(np.vdot(G, B.astype(np.float64))) - float(
        np.einsum("ik,ik->", A, F, dtype=np.float64))


class _Projected:
    """Hoyer's projected-gradient half-step for one factor, with its own step size."""

    def __init__(self, sparseness, unit_norm):
        self.sparseness = sparseness
        self.unit_norm = unit_norm
        self.step = None

    def __call__(self, F, A, B, n_inner=1):
        """Steps on F (rows × r, its columns constrained) from ``A`` and the Gram ``B``.

        Up to ``n_inner`` steps on one product (they cost ``rows·r²`` against the
        product's ``m·n·r``), stopping once a step lowers the objective by less
        than ``INNER_DELTA`` of the first step's decrease, as the HALS sweeps do.
        """
        if self.step is None:
            lmax = float(np.linalg.eigvalsh(B.astype(np.float64))[-1])
            self.step = 1.0 / lmax if lmax > 0 else 1.0
        value = _half_objective(F, A, B)
        first = None
        for _ in range(n_inner):
            new = self._one_step(F, A, B, value)
            if new is None:
                return
            drop, value = value - new, new
            if first is None:
                first = drop
            elif drop <= INNER_DELTA * first:
                return

    def _one_step(self, F, A, B, before):
        """One step; returns the new objective, or None when no step lowers it."""
        grad = F @ B - A
        ones = np.ones(F.shape[1]) if self.unit_norm else None
        for _ in range(MAX_HALVINGS):
            trial = F - F.dtype.type(self.step) * grad
            project_columns(trial, self.sparseness, ones)
            after = _half_objective(trial, A, B)
            if after <= before:
                F[...] = trial
                self.step *= GROW
                return after
            self.step /= 2.0
        return None  # F stays (the stopping rule sees no progress)


def _unit_rows_of_H(W, Ht, XtW):
    """Scale each column of Ht to unit norm and W's column (and XᵀW's) by that norm."""
    norms = np.sqrt(np.einsum("ik,ik->k", Ht, Ht, dtype=np.float64))
    norms[norms == 0] = 1.0
    s = norms.astype(W.dtype)
    Ht /= s
    W *= s
    if XtW is not None:
        XtW *= s


def start_sparse(W, Ht, sparseness_W, sparseness_H):
    """Hoyer's start: rows of H to unit norm (WH unchanged), then the projections."""
    _unit_rows_of_H(W, Ht, None)
    if sparseness_H is not None:
        project_columns(Ht, sparseness_H, np.ones(Ht.shape[1]))
    if sparseness_W is not None:
        project_columns(W, sparseness_W)


def fit_sparse(data, W, Ht, *, solver, monitor, sparseness_W=None, sparseness_H=None,
               update_H=True, accelerate=True):
    """Minimize ``½‖X − W Htᵀ‖²`` in place, the constrained factors at their sparseness.

    Parameters
    ----------
    data, W, Ht, monitor
        As for :func:`~fastnmf.solvers.frobenius.fit_frobenius`.
    solver : {"hals", "mu"}
        The update of a factor without a sparseness constraint.
    sparseness_W, sparseness_H : float in [0, 1] or None
        Hoyer sparseness of every column of W / row of H; None leaves it free.
    update_H : bool
        False solves for W with H fixed (``sparseness_H`` is then not used).
    accelerate : bool or "auto" or "sweeps"
        Repeated sweeps (HALS) or projected gradient steps on each product
        while they pay (the cap of :func:`~fastnmf.solvers.frobenius.inner_sweeps`);
        True and "auto" do the same (no extrapolation here).

    Returns
    -------
    sqerr : float
        ``‖X − W Htᵀ‖²`` at the returned factors.
    """
    m, r = W.shape
    n = Ht.shape[0]
    half_step = _HalfStep(data, UPDATES[solver])
    loss = _Loss(data)
    zero = W.dtype.type(0)
    inner_W = inner_H = 1
    if accelerate in (True, "auto", "sweeps"):  # the sweeps' cap (HALS) for any solver's steps
        inner_W = inner_sweeps(data.nonzeros, m, n, r)
        inner_H = inner_sweeps(data.nonzeros, n, m, r)
    step_W = None if sparseness_W is None else _Projected(sparseness_W, unit_norm=False)
    step_H = None
    if update_H:
        start_sparse(W, Ht, sparseness_W, sparseness_H)
        if sparseness_H is not None:
            step_H = _Projected(sparseness_H, unit_norm=True)
    elif sparseness_W is not None:
        project_columns(W, sparseness_W)

    XHt = np.empty((m, r), dtype=W.dtype)
    XtW = np.empty((n, r), dtype=W.dtype)
    WtW = gram(W)
    HHt = gram(Ht)
    data.product(Ht, 0, out=XHt)
    cross = float(np.einsum("ik,ik->", XHt, W, dtype=np.float64))
    sqerr = loss.sqerr(XHt, cross, WtW, HHt, W, Ht)
    monitor.start(0.5 * sqerr, np.sqrt(sqerr))
    for it in range(1, monitor.max_iter + 1):
        if it > 1 and update_H:
            data.product(Ht, 0, out=XHt)
        if step_W is not None:
            step_W(W, XHt, HHt, inner_W)
            WtW = gram(W)
        else:
            half_step.only_update(W, XHt, HHt, zero, zero, inner_W, WtW)
        A, F = XHt, W
        if update_H:
            data.product(W, 1, out=XtW)
            if step_H is not None:
                step_H(Ht, XtW, WtW, inner_H)
            else:
                half_step.only_update(Ht, XtW, WtW, zero, zero, inner_H, HHt)
                _unit_rows_of_H(W, Ht, XtW)
                WtW = gram(W)
            HHt = gram(Ht)
            A, F = XtW, Ht
        cross = float(np.einsum("ik,ik->", A, F, dtype=np.float64))
        sqerr = loss.sqerr(A, cross, WtW, HHt, W, Ht)
        if monitor.step(it, 0.5 * sqerr, np.sqrt(sqerr), W, Ht.T):
            break
    if W.dtype == np.float32:  # report the final error to float64 accuracy
        sqerr = data.direct_sqerr(W, Ht)
    return sqerr
