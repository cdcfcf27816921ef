"""The outer loop for the Frobenius objective, shared by HALS and MU.

One iteration = two half-steps.  Each computes a data product and a Gram
matrix, then hands them to a factor update that never sees X::

    A = X Hᵀ,  B = H Hᵀ   →  W  ← update(W, A, B)
    A = Xᵀ W,  B = Wᵀ W   →  Hᵀ ← update(Hᵀ, A, B)

H is kept transposed (``Ht``, n×r, C-contiguous) so both half-steps run the
same kernel on the same layout.  The loss comes from products already made:
``‖X − WH‖² = ‖X‖² − 2⟨Xᵀ W, Hᵀ⟩ + ⟨Wᵀ W, H Hᵀ⟩``.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from .. import kernels
from .._data import factor_bounds, gram, product_then
from ._penalty import NO_PENALTY, Penalty
from ._rows import callback_view, row_side

# scikit-learn's guard for a zero MU denominator (float32 machine epsilon).
MU_EPS = float(np.finfo(np.float32).eps)

# The cheap formula ‖X‖² − 2⟨A, F⟩ + ⟨WᵀW, HHᵀ⟩ loses digits to cancellation
# when the fit is close: its absolute error is about eps·‖X‖², eps the
# precision of the products (float32 products keep ~1e-7 of ‖X‖², float64
# ~1e-15).  Below CANCEL[dtype]·‖X‖² (formula then good to < 1 % at worst)
# the squared error is evaluated directly, which costs one more product.
CANCEL = {np.dtype(np.float64): 1e-12, np.dtype(np.float32): 1e-5}


# A factor update: ``update(F, A, B, l1, l2, bounds, n_inner, G)`` updates F in place,
# writes the new ``Fᵀ F`` into G (F's dtype) and returns ``(violation, ⟨A, F⟩)``: the
# Gram and the inner product the loss needs come out of the same pass over F.


def _hals(F, A, B, l1, l2, bounds, n_inner, G):
    """HALS sweeps; the violation is the first sweep's projected gradient (for ``tol``)."""
    return kernels.hals_update(F, A, B, l1, l2, bounds, G, n_inner, INNER_DELTA)


def _mu(F, A, B, l1, l2, bounds, n_inner, G):
    return None, kernels.mu_update(F, A, B, l1, l2, F.dtype.type(MU_EPS), bounds, G)


# Accelerated HALS (Gillis & Glineur, Neural Computation 2012): after the data
# product of a half-step, sweep the factor again while the sweeps are cheap
# next to the product and still change it.  A factor with ``rows`` rows whose
# product touches ``work`` entries of X costs, relative to one sweep,
# ρ = 1 + (work + other·r) / (rows·(r + 1)); sweep at most 1 + α·ρ times,
# and stop a group of rows once a sweep moves it by less than δ of its first.
INNER_ALPHA = 0.5
INNER_DELTA = 0.1


def inner_sweeps(work: int, rows: int, other: int, rank: int) -> int:
    """Gillis & Glineur's cap on the sweeps per half-step (α = 0.5)."""
    rho = 1.0 + (work + other * rank) / (rows * (rank + 1.0))
    return 1 + int(INNER_ALPHA * rho)


UPDATES = {"hals": _hals, "mu": _mu}


# accelerate="auto" (True, the default) runs repeated sweeps and switches extrapolation
# on for good at the first iteration that lowers the objective by less than this
# fraction.  Sweeps alone are best while each iteration still buys a lot (from a random
# start, D1 reaches scikit-learn's 200-iteration error in 8 iterations with sweeps, 17 with
# extrapolation from the first iteration); extrapolation pays in the slow tail, which on
# real data comes early (WordNet r=50: 58 iterations with sweeps, 20 with both).  Iterations
# to scikit-learn cd's error, random start / NNDSVDA, at 1e-2, 3e-2, 5e-2, 1e-1: WordNet
# r=50 24/16, 23/19, 27/18, 27/18; Fashion-MNIST r=40 23/13, 20/12, 19/11, 18/11; ORL r=49
# 29/31, 29/27, 29/27; D1 8/17 at every value (docs/algorithms.md has the table).
# Not with penalties (alpha_W, alpha_H): an extrapolated step past zero can empty a whole
# factor, a fixed point of HALS (scikit-learn's test_nmf catches it on a 10×10 matrix).
EXTRAPOLATE_BELOW = 3e-2


class _Extrapolation:
    """Ang & Gillis's extrapolation of HALS ("HER", Neural Computation 2019).

    Each half-step's update ``Fn`` is pushed on to ``Fy = max(0, Fn + β(Fn − Fa))``,
    ``Fa`` the factor's previous update, and the next half-step starts from the other
    factor's ``Fy``.  The objective at ``(Wy, Hn)`` comes free from the H half-step's
    products.  When it rose, H is not pushed (the next W update starts from ``Hn``) and
    β shrinks by η, with its bound set to the β that overshot; else β grows by γ up to
    that bound, which itself grows by γ̄ up to 1.  The paper's parameters for HALS:
    β₀ = 0.5, η = 1.5, γ = 1.01, γ̄ = 1.005.  The fit holds ``(Wy, Hn)`` when it stops,
    the pair whose objective was recorded last, so the recorded objective can rise at
    an iteration that overshot (docs/algorithms.md).

    One more copy of each factor is held: its last update (the kernel swaps it with
    the update in flight in place); W's is kept with W's rows (:class:`FrobeniusRows`,
    on the Dask workers for a Dask array).  Measured in docs/performance.md (*Extrapolation*).
    """

    BETA0, ETA, GAMMA, GAMMA_BAR = 0.5, 1.5, 1.01, 1.005

    def __init__(self, Ht, bounds_H, objective):
        self.H_prev = Ht.copy()
        self.bounds_H = bounds_H
        self.beta, self.beta_max = self.BETA0, 1.0
        self.previous = objective
        self.restart_W = True  # W's last update is W as it is now

    def push_W(self, dtype):
        """How the next W update is pushed on, where W's rows are
        (:meth:`FrobeniusRows.update`): ``(β, restart)``, ``restart`` when W as it is
        counts as its last update (W has not changed since that was decided)."""
        push, self.restart_W = (dtype(self.beta), self.restart_W), False
        return push

    def step(self, Ht, HHt, objective):
        """After the H half-step (the fit holds ``(Wy, Hn)``, ``objective`` theirs, HHt
        the Gram of Hn): push Ht on to Hy and write its Gram into HHt, or leave both
        when the objective rose."""
        if objective > self.previous:  # overshot: restart from Hn, smaller β
            self.H_prev[...] = Ht
            self.beta_max = self.beta
            self.beta /= self.ETA
        else:
            kernels.extrapolate(Ht, self.H_prev, Ht.dtype.type(self.beta), self.bounds_H, HHt)
            self.beta = min(self.beta_max, self.GAMMA * self.beta)
            self.beta_max = min(1.0, self.GAMMA_BAR * self.beta_max)
        self.previous = objective

    def reset(self, Ht):
        """The factors were rescaled (rebalancing): the steps start again from them
        (the next push has no momentum)."""
        self.restart_W = True
        self.H_prev[...] = Ht


# WH is unchanged when column k of W is scaled by s and column k of Ht by 1/s,
# and without penalties nothing stops the two from drifting apart: on float32
# data with values ~1e17, W fell to 1e-8 and H rose to 1e25 until H Hᵀ
# overflowed.  When a Gram diagonal passes this bound, the columns are
# rebalanced to equal norms (which changes neither WH nor the iterates' fit).
REBALANCE_AT = {np.dtype(np.float64): 1e200, np.dtype(np.float32): 1e30}


def _rebalance_scales(W_sqnorms, Ht):
    """The scales ``s`` (Ht's dtype) for which ``W[:, k]·s_k`` and ``Ht[:, k]/s_k`` have
    equal norms, from W's squared column norms (float64: W's rows may live elsewhere)."""
    nw = np.sqrt(W_sqnorms)
    nh = np.sqrt(np.einsum("ik,ik->k", Ht, Ht, dtype=np.float64))
    s = np.ones_like(nw)
    ok = (nw > 0) & (nh > 0)
    s[ok] = np.sqrt(nh[ok] / nw[ok])
    return s.astype(Ht.dtype)


# The stopping rule that gives ``tol`` the meaning scikit-learn gives it.
STOP_RULES = {"hals": "violation", "mu": "error"}


class _HalfStep:
    """A data product, then the factor update that uses it: ``A = X·Fo`` (side 0) or
    ``Xᵀ·Fo`` (side 1), then ``F`` from ``A`` and the Gram ``B``.

    Where the dense product is split over threads, each thread updates the rows of ``F``
    whose rows of ``A`` it just made (:func:`fastnmf._data.product_then`): no Numba
    parallel region to wake, rows still in cache.  The parts' Grams, ``⟨A, F⟩`` and
    violations are summed in row order.
    """

    def __init__(self, data, update):
        self.data = data
        self.update = update
        self._bounds = {}
        # Made and used inside the fit's thread_limits: the fit's Numba thread count,
        # read once (numba.get_num_threads() takes two locks, twice per iteration).
        self.threads = numba.get_num_threads()

    def bounds(self, rows: int, threads: int) -> np.ndarray:
        """:func:`factor_bounds` for ``rows`` at ``threads`` Numba threads (cached)."""
        key = (rows, threads)
        bounds = self._bounds.get(key)
        if bounds is None:
            bounds = self._bounds[key] = factor_bounds(rows)
        return bounds

    def only_update(self, F, A, B, l1, l2, n_inner, G, threads=None):
        """The update alone (its product is at hand); returns ``(violation, cross)``.
        ``threads``: the Numba threads it runs on (default: the fit's).

        The updates add ``Fᵀ F`` group by group in their own pass (a GEMM per group of
        rows still in cache): faster than BLAS's Gram after the update at every rank
        measured (2 threads, float64, update + Gram: 5000×20 0.44 vs 0.53 ms,
        147306×50 32 vs 42 ms, 10304×49 2.3 vs 2.6 ms)."""
        bounds = self.bounds(F.shape[0], self.threads if threads is None else threads)
        return self.update(F, A, B, l1, l2, bounds, n_inner, G)

    def __call__(self, Fo, side, A, F, B, l1, l2, n_inner, G):
        """Product and update; writes ``Fᵀ F`` into G and returns ``(violation, cross)``."""
        def then(a, b):
            if b - a == F.shape[0]:  # one part: in the fit's thread, on its threads
                return (*self.only_update(F, A, B, l1, l2, n_inner, G), G)
            Gp = np.empty_like(G)  # a part of a split product: one Numba thread (run_parts)
            return (*self.only_update(F[a:b], A[a:b], B, l1, l2, n_inner, Gp, 1), Gp)

        parts = product_then(self.data, Fo, side, A, then)
        if len(parts) == 1:
            return parts[0][0], parts[0][1]
        G[...] = parts[0][2]
        for part in parts[1:]:
            G += part[2]
        violation = None if parts[0][0] is None else sum(part[0] for part in parts)
        return violation, sum(part[1] for part in parts)


class FrobeniusRows:
    """W's side of the Frobenius loop, where W's rows are.

    ``state`` holds W (``"W"``, updated in place) and what is kept with W's rows
    between steps: W's last update ``"W_prev"`` (extrapolation) and ``X Hᵀ``
    (``"XHt"``, from :meth:`start` to the first update, and for good when H is
    fixed: it never changes then).  A data product that keeps W's rows elsewhere
    (row blocks of a Dask array) runs this class on each of its blocks with that
    block's row state and sums what the methods return
    (:class:`fastnmf.dask.data.BlockRowSide`): the W half-step is written once,
    here.  Every method's results are sums over W's rows.
    """

    def __init__(self, data, state, solver="hals"):
        self.data = data
        self.state = state
        self.W = state["W"]
        self.half_step = _HalfStep(data, UPDATES[solver])
        self.bounds = factor_bounds(self.W.shape[0])
        self.XHt = state.get("XHt")  # the product buffer, reused while this object lives
        r = self.W.shape[1]
        self.WtW = np.empty((r, r), dtype=self.W.dtype)
        # missing values (fastnmf._masked): S is sampled from this W and the Ht a step is
        # given (in memory the data is bound to them already; a Dask block's is made per
        # step and bound here)
        self._bind = getattr(data, "bind", None)

    def start(self, Ht):
        """``X Hᵀ`` at the start (kept for the first update); returns ``⟨X Hᵀ, W⟩``
        (float64) and ``Wᵀ W``."""
        if self._bind is not None:
            self._bind(self.W, Ht)
        if self.XHt is None:
            self.XHt = np.empty_like(self.W)
        self.state["XHt"] = self.data.product(Ht, 0, out=self.XHt)
        return kernels.inner_f64_serial(self.XHt, self.W), gram(self.W)

    def update(self, Ht, HHt, l1, l2, n_inner, product, push, keep, then_product):
        """W's half-step; returns ``(violation, ⟨X Hᵀ, W⟩, Wᵀ W, Xᵀ W or None)``.

        ``product``: make ``X Hᵀ`` first (else the kept one is used); ``push``: None, or
        ``(β, restart)`` to push W's update on by extrapolation
        (:meth:`_Extrapolation.push_W`); ``keep``: keep ``X Hᵀ`` (H is fixed);
        ``then_product``: also make ``Xᵀ W`` at the new W (where W's rows are elsewhere,
        so each row block of X is read once per iteration).  With ``push`` the Gram is
        the pushed W's (the update's own is not made) and ``⟨X Hᵀ, W⟩`` the update's.
        """
        W = self.W
        if self._bind is not None:
            self._bind(W, Ht)
        beta = None
        if push is not None:
            beta, restart = push
            if restart:  # W as it is counts as its last update
                prev = self.state.get("W_prev")
                if prev is None:
                    self.state["W_prev"] = W.copy()
                else:
                    prev[...] = W
        G = self.WtW if beta is None else self.WtW[:0, :0]  # (pushed: Wy's Gram, below)
        if product:
            if self.XHt is None:
                self.XHt = np.empty_like(W)
            XHt = self.XHt
            violation, cross = self.half_step(Ht, 0, XHt, W, HHt, l1, l2, n_inner, G)
        else:
            XHt = self.state["XHt"]
            violation, cross = self.half_step.only_update(W, XHt, HHt, l1, l2, n_inner, G)
        if beta is not None:  # W holds its update Wn: keep it, move W on to Wy
            kernels.extrapolate(W, self.state["W_prev"], beta, self.bounds, self.WtW)
        if keep:
            self.state["XHt"] = XHt
        else:
            self.state.pop("XHt", None)
        XtW = None
        if then_product:
            XtW = self.data.product(W, 1, out=np.empty((Ht.shape[0], W.shape[1]), W.dtype))
        return violation, cross, self.WtW, XtW

    def col_sqnorms(self):
        """W's squared column norms (float64), for :func:`_rebalance_scales`."""
        return np.einsum("ik,ik->k", self.W, self.W, dtype=np.float64)

    def scale(self, s):
        """``W[:, k] *= s[k]``; returns the new ``Wᵀ W``."""
        self.W *= s
        return gram(self.W)

    def view(self):
        return self.W


class _Loss:
    """½‖X − WH‖² plus the penalties, from the products at hand."""

    def __init__(self, data, reg=NO_PENALTY):
        self.data = data
        self.reg = Penalty.of(reg)
        self.sqnorm = data.sqnorm
        self.cancel = CANCEL[np.dtype(data.dtype)] * self.sqnorm
        self.correct = getattr(data, "correct_sqerr", None)  # missing values (_masked.py)
        # ⟨WᵀW, HHᵀ⟩ in float64: float32 Grams are cast first (float64 ones as they are)
        self.f64 = np.dtype(data.dtype) != np.float64

    def sqerr(self, A, cross, WtW, HHt, W, Ht):
        """‖X − WH‖² given ``cross = ⟨A, F⟩ = ⟨X, WH⟩``, A the product that pairs with
        the factor F just updated."""
        if self.f64:
            WtW, HHt = WtW.astype(np.float64), HHt.astype(np.float64)
        err = self.sqnorm - 2.0 * cross + float(np.vdot(WtW, HHt))
        if self.correct is not None:
            err = self.correct(err, A, W, Ht)
        if err < self.cancel:
            err = self.data.direct_sqerr(W, Ht)
        return max(err, 0.0)

    def objective(self, sqerr, W, Ht):
        return 0.5 * sqerr + self.reg.value(W, Ht)


def fit_frobenius(data, W, Ht, *, solver, monitor, reg=NO_PENALTY,
                  update_H=True, accelerate=True):
    """Minimize ``½‖X − W Htᵀ‖² + penalties`` in place over ``W`` (and ``Ht``).

    Parameters
    ----------
    data : DenseData, SparseData, MaskedData, or a data product with its own
        ``row_side`` (:class:`fastnmf.dask.data.DaskData`: W's rows on the workers)
    W, Ht : C-contiguous ndarrays (m×r, n×r) of ``data.dtype``; updated in place
        (W: or the handle of W's rows that ``data`` keeps).
    solver : {"hals", "mu"}
    monitor : Monitor
    reg : Penalty (or its 4 weights in field order), already scaled.
    update_H : bool
        False solves for W with H fixed (``transform``).
    accelerate : bool or {"auto", "sweeps", "extrapolate", "both"}
        HALS only: ``"sweeps"`` repeats the sweeps on each product while they
        pay (:func:`inner_sweeps`), ``"extrapolate"`` extrapolates each update
        (:class:`_Extrapolation`), ``"both"`` does both, ``"auto"`` (or True)
        the sweeps and, once they stall and without penalties, extrapolation
        too (:data:`EXTRAPOLATE_BELOW`); False is one sweep per product, as
        scikit-learn's ``cd``.

    Returns
    -------
    sqerr : float
        ``‖X − W Htᵀ‖²`` at the returned factors (computed directly for
        float32, whose cheap formula keeps only ~5 digits of a close fit).
    """
    m, r = W.shape
    n = Ht.shape[0]
    dtype = W.dtype.type
    reg = Penalty.of(reg)
    l1_W, l2_W = reg.for_W(dtype)
    l1_H, l2_H = reg.for_H(dtype)
    # W's half-step runs where W's rows are; H's here.  Where they are elsewhere (Dask),
    # the W step also makes Xᵀ W (tree-summed); here H's half-step makes it, each part
    # of the product followed by its rows' update (product_then).
    rows, remote = row_side(data, W, FrobeniusRows, solver=solver)
    half_step = _HalfStep(data, UPDATES[solver])
    loss = _Loss(data, reg)
    inner_W = inner_H = 1
    if solver == "hals" and accelerate in (True, "auto", "sweeps", "both"):
        inner_W = inner_sweeps(data.nonzeros, m, n, r)
        inner_H = inner_sweeps(data.nonzeros, n, m, r)

    XtW = np.empty((n, r), dtype=W.dtype)
    HHt = gram(Ht)  # the Grams: written by the updates
    cross, WtW = rows.start(Ht)  # the first W half-step's product, also gives L[0]
    # the product the loss's correction for missing values pairs with (_masked.py)
    product_W = None if remote else rows.XHt
    sqerr = loss.sqerr(product_W, cross, np.asarray(WtW, W.dtype), HHt, W, Ht)
    objective = loss.objective(sqerr, W, Ht)
    monitor.start(objective, math.sqrt(sqerr))
    previous = objective
    extrapolation = None
    if solver == "hals" and update_H and accelerate in ("extrapolate", "both"):
        extrapolation = _Extrapolation(Ht, factor_bounds(n), objective)
    # "auto": extrapolation joins the sweeps once they stall (see EXTRAPOLATE_BELOW)
    stall_watch = solver == "hals" and update_H and accelerate in (True, "auto") and not reg.active
    limit = REBALANCE_AT[W.dtype]

    for it in range(1, monitor.max_iter + 1):
        # (it 1: X Hᵀ at hand, made for L[0]; with H fixed it never changes)
        push = None if extrapolation is None else extrapolation.push_W(dtype)
        violation, cross, WtW, XtW_made = rows.update(
            Ht, HHt, l1_W, l2_W, inner_W, it > 1 and update_H, push, not update_H,
            remote and update_H)
        WtW = np.asarray(WtW, dtype=W.dtype)  # (Dask: summed in float64)
        if update_H:
            if XtW_made is None:
                v_H, cross = half_step(W, 1, XtW, Ht, WtW, l1_H, l2_H, inner_H, HHt)
            else:
                XtW[...] = XtW_made
                v_H, cross = half_step.only_update(Ht, XtW, WtW, l1_H, l2_H, inner_H, HHt)
            if violation is not None:
                violation += v_H
            # (the diagonals are ≥ 0: a sum of traces below the limit clears both)
            if not reg.active and not (WtW.trace() + HHt.trace() < limit) and not (
                    WtW.diagonal().max() < limit and HHt.diagonal().max() < limit):
                s = _rebalance_scales(rows.col_sqnorms(), Ht)
                WtW = np.asarray(rows.scale(s), dtype=W.dtype)
                Ht /= s
                XtW *= s  # leaves ⟨Xᵀ W, Hᵀ⟩ as it is
                HHt = gram(Ht)
                if extrapolation is not None:
                    extrapolation.reset(Ht)
        sqerr = loss.sqerr(XtW if update_H else product_W, cross, WtW, HHt, W, Ht)
        objective = loss.objective(sqerr, W, Ht)
        if monitor.step(it, objective, math.sqrt(sqerr), callback_view(monitor, rows), Ht.T,
                        violation):
            break  # W, Ht are the pair whose objective was just recorded
        if extrapolation is not None and it < monitor.max_iter:
            extrapolation.step(Ht, HHt, objective)
        elif stall_watch and objective > (1.0 - EXTRAPOLATE_BELOW) * previous:
            extrapolation = _Extrapolation(Ht, factor_bounds(n), objective)
            stall_watch = False
        previous = objective
    if W.dtype == np.float32:  # report the final error to float64 accuracy
        sqerr = data.direct_sqerr(W, Ht)
    return sqerr
