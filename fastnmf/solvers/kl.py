"""The outer loops for the generalized Kullback–Leibler (Poisson) objective.

``D(X‖WH) = Σ x log(x/(WH)) − x + WH`` plus the penalties
``l1_W‖W‖₁ + ½l2_W‖W‖² + l1_H‖H‖₁ + ½l2_H‖H‖²``.  Two solvers:

* ``"mu"``: Lee & Seung's multiplicative updates, exactly scikit-learn's
  ``solver="mu", beta_loss="kullback-leibler"`` (same order W then H, same
  ``eps`` guards, same clipping of ``H``, same stopping rule), but the
  ratio ``X ⊘ (WH)`` is only formed at the nonzeros for sparse X, and block
  by block (BLAS in, a Numba kernel, BLAS out) for dense X.
* ``"ccd"``: cyclic coordinate descent with Newton steps per variable
  (Hsieh & Dhillon, KDD 2011), parallel over the rows of the factor being
  updated, after one MU iteration (``CCD_MU_START``).  For sparse X the
  zeros only enter through the column sums of the other factor, so a sweep
  costs about as much as one MU half-step; for dense X a sweep costs one
  division per entry and component, in vectorized loops.

As in :mod:`.frobenius`, H is kept transposed (``Ht``, n×r, C-contiguous) and
both half-steps run one kernel on ``(Y, F, G)`` with ``Y ≈ F Gᵀ``: ``(X, W,
Ht)`` and ``(Xᵀ, Ht, W)``.  The loss is never a separate pass over X during
the iterations: MU gets it from the next W numerator (at the current
factors, before anything changes, so stopping there is exact), CCD from the
model values it keeps current at the nonzeros (dense X: ``Σ y log(WH)`` in a
vectorized log, plus ``Σ y log y − y`` computed once per fit).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .._data import factor_bounds
from .._kl_products import kl_products
from ..kernels import kl as klk
from ._monitor import report_divergence
from ._penalty import NO_PENALTY, Penalty
from ._rows import callback_view, column_side, row_side

# scikit-learn's guard on model values and MU denominators (float32 epsilon).
EPS = float(np.finfo(np.float32).eps)
# scikit-learn zeroes H entries below float64's epsilon after each MU step (β ≤ 1).
CLIP_H = float(np.finfo(np.float64).eps)

# CCD: Newton steps per variable (at most), and the relative step at which
# they stop.  One step per variable per sweep reached scikit-learn's
# 200-iteration KL in 1.2 s against 2.4 s for two steps on sparse counts
# (20000×5000, 1.8M nonzeros, r=20, 2 threads); on dense Poisson 5000×2000
# the two tied (41.6 s vs 40.8 s, loaded machine).
CCD_NEWTON_STEPS = 1
CCD_NEWTON_TOL = 1e-2
# CCD's first iterations are multiplicative updates.  From NNDSVDA on dense
# Poisson counts (K1, 5000×2000, r=20; KL 1.16e9 at the start) one MU
# iteration reaches 5.85e6, one CCD sweep only 6.5e7 (its steps down are
# capped at halving a model value), and CCD then needed 38 iterations to
# reach scikit-learn's 200-iteration KL; after one MU iteration it needs 10
# (8.5 s → 2.6 s CPU, one thread).  Two MU iterations gave no more.
CCD_MU_START = 1

SOLVERS = ("mu", "ccd")
# CCD reaches scikit-learn's 200-iteration KL in ~20 iterations on sparse
# counts (5× less time than our MU, ~80× less than scikit-learn's) and in 11
# on dense K1 (1 MU + 10 CCD; MU needs ~205 at ~1/3.5 of a CCD iteration's
# cost, so CCD is ~5× faster there too).  It is monotone and can leave zero
# entries, which MU cannot.
DEFAULT_SOLVER = "ccd"
STOP_RULES = {"mu": "error", "ccd": "error"}


class MURows:
    """W's half of the multiplicative updates, where W's rows are.

    ``state`` holds W (``"W"``, updated in place) and W's numerator
    ``(X ⊘ WH) Hᵀ`` (``"num_W"``), kept from the loss of one iteration to the
    W update of the next.  A data product that keeps W's rows elsewhere (row
    blocks of a Dask array) runs this class on each of its blocks with that
    block's row state, summing what the methods return
    (:class:`fastnmf.dask.data.BlockRowSide`): the W half-step is written once,
    here.  Every method's results are sums over W's rows.
    """

    # What each method does to the row state's entries ("read", "write" in place,
    # "remake": overwrite without reading; an entry not named is treated as written), for
    # a data product that must not modify the state it was given: it copies only the
    # written entries and drops the remade ones (fastnmf.dask.data._rows_call).
    STATE_USE: ClassVar[dict] = {"numerator": {"W": "read", "num_W": "remake"},
                 "update": {"W": "write", "num_W": "read"}}

    def __init__(self, data, state):
        self.engine = kl_products(data)
        self.state = state
        self.W = state["W"]
        self.bounds = factor_bounds(self.W.shape[0])
        self.num_H = None

    def numerator(self, Ht):
        """W's numerator at the current factors (kept); returns the KL at the nonzeros
        and W's column sums (float64), whose product with H's gives ``Σ WH``."""
        W = self.W
        num = self.state.get("num_W")
        if num is None:
            num = self.state["num_W"] = np.empty_like(W)
        kl_nz = self.engine.numerator(0, W, Ht, W.dtype.type(EPS), True, num)
        return kl_nz, W.sum(0, dtype=np.float64)

    def update(self, Ht, H_sum, l1, l2, then_product):
        """W's MU step from the kept numerator, then (``then_product``) H's numerator
        ``(X ⊘ WH)ᵀ W`` and W's column sums at the new W (else ``(None, None)``)."""
        W = self.W
        t = W.dtype.type
        klk.kl_mu_apply(W, self.state["num_W"], H_sum, l1, l2, t(EPS), t(0), self.bounds)
        if not then_product:
            return None, None
        if self.num_H is None:
            self.num_H = np.empty_like(Ht)
        self.engine.numerator(1, Ht, W, t(EPS), False, self.num_H)
        return self.num_H, W.sum(0)

    def view(self):
        return self.W


class _MU:
    """Multiplicative updates over a row side: the W numerator is kept one step ahead."""

    def __init__(self, rows, Ht, reg):
        dtype = Ht.dtype.type
        self.rows = rows
        self.W_terms, self.H_terms = reg.for_W(dtype), reg.for_H(dtype)
        self.eps, self.clip_H = dtype(EPS), dtype(CLIP_H)
        self.bounds_H = factor_bounds(Ht.shape[0])

    def loss(self, Ht):
        """The KL at the current factors, with the W numerator there (for the next step)."""
        kl_nz, W_colsum = self.rows.numerator(Ht)
        return kl_nz + float(W_colsum @ Ht.sum(0, dtype=np.float64))

    def step(self, Ht, update_H):
        """One iteration (W, then H), exactly scikit-learn's; needs :meth:`loss` before."""
        num_H, W_sum = self.rows.update(Ht, Ht.sum(0), *self.W_terms, update_H)
        if update_H:
            W_sum = np.asarray(W_sum, dtype=Ht.dtype)  # (a copy, or float64 sums cast)
            W_sum[W_sum == 0] = 1  # scikit-learn's guard, kept for equal results
            klk.kl_mu_apply(Ht, np.asarray(num_H, dtype=Ht.dtype), W_sum, *self.H_terms,
                            self.eps, self.clip_H, self.bounds_H)


class CCDRows:
    """One CCD sweep over the rows of a factor, where they are (Hsieh & Dhillon's
    coordinate descent is exact per row: row i of W needs row i of X and all of H).

    ``state["W"]`` is the factor swept: W over X (``side=0``, the other factor Ht), or
    Ht over Xᵀ (``side=1``, the other factor W: H's half-step is W's half-step of
    ``Xᵀ ≈ Ht Wᵀ``).  A data product that keeps W's rows elsewhere runs this class on
    each row block (:class:`fastnmf.dask.data.BlockRowSide`), and H's half on each
    column block of X held as a row block of Xᵀ (``side=0`` there,
    :class:`fastnmf.dask.data.BlockColumnSide`): the sweep is written once, here.
    """

    # (as MURows.STATE_USE; MU's numerator is dropped)
    STATE_USE: ClassVar[dict] = {"sweep": {"W": "write", "num_W": "remake"}}

    def __init__(self, data, state, side=0):
        self.engine = kl_products(data)
        self.side = side
        state.pop("num_W", None)  # (MU's numerator, kept by the first iterations)
        self.W = state["W"]
        self.bounds = factor_bounds(self.W.shape[0])

    def sweep(self, G, l1, l2, eps, with_loss):
        """One sweep against the other factor ``G``; returns the KL at the nonzeros of
        the swept rows (with ``with_loss``, else 0) and the swept factor's column sums
        (float64)."""
        kl_nz = self.engine.ccd(self.side, self.W, G, G.sum(0), l1, l2, CCD_NEWTON_STEPS,
                                CCD_NEWTON_TOL, eps, with_loss, self.bounds)
        return kl_nz, self.W.sum(0, dtype=np.float64)

    def view(self):
        return self.W


def _fit_mu(data, W, Ht, monitor, reg, update_H):
    mu = _MU(row_side(data, W, MURows)[0], Ht, reg)
    # The W numerator at the current factors also gives their KL (at the
    # nonzeros): computed first, so the stopping rule sees the loss of the
    # iteration just finished before anything changes.
    kl = max(mu.loss(Ht), 0.0)
    report_divergence(monitor, 0, kl, reg, W, Ht)
    for it in range(1, monitor.max_iter + 1):
        mu.step(Ht, update_H)
        kl = max(mu.loss(Ht), 0.0)
        if report_divergence(monitor, it, kl, reg, W, Ht, callback_view(monitor, mu.rows)):
            break
    return kl


def _fit_ccd(data, W, Ht, monitor, reg, update_H):
    products = kl_products(data)  # made once: the MU start and the sweeps share it
    dtype = W.dtype.type
    eps = dtype(EPS)
    W_terms, H_terms = reg.for_W(dtype), reg.for_H(dtype)
    # The KL at the start: from MU's first numerator (which changes nothing).
    mu = _MU(row_side(products, W, MURows)[0], Ht, reg)
    rows = row_side(products, W, CCDRows)[0]
    columns = column_side(products, Ht, CCDRows) if update_H else None
    kl = max(mu.loss(Ht), 0.0)
    report_divergence(monitor, 0, kl, reg, W, Ht)
    for it in range(1, monitor.max_iter + 1):
        if it <= CCD_MU_START:
            mu.step(Ht, update_H)
            kl = max(mu.loss(Ht), 0.0)
            if report_divergence(monitor, it, kl, reg, W, Ht, callback_view(monitor, mu.rows)):
                break
            continue
        # The last half-step's sweep returns the KL at the nonzeros at the new
        # factors, from the model values it keeps current.
        kl, W_colsum = rows.sweep(Ht, *W_terms, eps, not update_H)
        if update_H:
            kl = columns.sweep(W, *H_terms, eps, True)[0]
        # Σ WH = (column sums of W)·(column sums of Ht), in float64
        kl = max(kl + float(W_colsum @ Ht.sum(0, dtype=np.float64)), 0.0)
        if report_divergence(monitor, it, kl, reg, W, Ht, callback_view(monitor, rows)):
            break
    return kl


_FITS = {"mu": _fit_mu, "ccd": _fit_ccd}


def fit_kl(data, W, Ht, *, solver, monitor, reg=NO_PENALTY, update_H=True):
    """Minimize ``D(X‖W Htᵀ)`` + penalties in place over ``W`` (and ``Ht``).

    Parameters
    ----------
    data : DenseData, SparseData, MaskedData (``"mu"``), or a data product with its
        own ``row_side`` (and, for ``"ccd"`` with ``update_H``, ``column_side``):
        :class:`fastnmf.dask.data.DaskData`, W's rows on the workers
    W, Ht : C-contiguous ndarrays (m×r, n×r) of ``data.dtype``; updated in place
        (W: or the handle of W's rows that ``data`` keeps).
    solver : {"mu", "ccd"}
    monitor : Monitor
        With ``rule="error"`` for scikit-learn's meaning of ``tol``; the
        ``error`` it sees is ``sqrt(2·KL)`` as scikit-learn's
        ``_beta_divergence(..., square_root=True)``; the history holds the
        KL plus the penalties.
    reg : Penalty (or its 4 weights in field order), already scaled.
    update_H : bool
        False solves for W with H fixed (``transform``).

    Returns
    -------
    kl : float
        The generalized KL divergence at the returned factors (entries of X
        at most float32's epsilon count as zeros, as in scikit-learn).
    """
    if solver not in _FITS:
        raise ValueError(f"solver must be one of {SOLVERS} for the KL loss, got {solver!r}.")
    return _FITS[solver](data, W, Ht, monitor, Penalty.of(reg), update_H)


__all__ = ["DEFAULT_SOLVER", "SOLVERS", "STOP_RULES", "fit_kl"]
