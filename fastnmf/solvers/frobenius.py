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

import numba
import numpy as np

from .. import kernels
from .._data import factor_bounds, gram, product_then
from ._penalty import penalties

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
    the update in flight in place).  Measured in docs/performance.md (*Extrapolation*).
    """

    BETA0, ETA, GAMMA, GAMMA_BAR = 0.5, 1.5, 1.01, 1.005

    def __init__(self, W, Ht, bounds_W, bounds_H, objective):
        self.W_prev, self.H_prev = W.copy(), Ht.copy()
        self.bounds_W, self.bounds_H = bounds_W, bounds_H
        self.beta, self.beta_max = self.BETA0, 1.0
        self.previous = objective

    def push_W(self, W, WtW):
        """W holds its update Wn: keep it, move W on to Wy and write ``Wyᵀ Wy`` into WtW."""
        kernels.extrapolate(W, self.W_prev, W.dtype.type(self.beta), self.bounds_W, WtW)

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

    def reset(self, W, Ht):
        """The factors were rescaled (rebalancing): the steps start again from them
        (the next push has no momentum)."""
        self.W_prev[...] = W
        self.H_prev[...] = Ht


# WH is unchanged when column k of W is scaled by s and column k of Ht by 1/s,
# and without penalties nothing stops the two from drifting apart: on float32
# data with values ~1e17, W fell to 1e-8 and H rose to 1e25 until H Hᵀ
# overflowed.  When a Gram diagonal passes this bound, the columns are
# rebalanced to equal norms (which changes neither WH nor the iterates' fit).
REBALANCE_AT = {np.dtype(np.float64): 1e200, np.dtype(np.float32): 1e30}


def _rebalance(W, Ht, A_H):
    """Scale W[:, k] by s_k and Ht[:, k] by 1/s_k so the two norms match (in place).

    ``A_H = Xᵀ W`` is scaled with W so ⟨A_H, Ht⟩ keeps its value.
    """
    nw = np.sqrt(np.einsum("ik,ik->k", W, W, dtype=np.float64))
    nh = np.sqrt(np.einsum("ik,ik->k", Ht, Ht, dtype=np.float64))
    s = np.ones_like(nw)
    ok = (nw > 0) & (nh > 0)
    s[ok] = np.sqrt(nh[ok] / nw[ok])
    s = s.astype(W.dtype)
    W *= s
    Ht /= s
    A_H *= s
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

    def bounds(self, rows: int) -> np.ndarray:
        """:func:`factor_bounds` for ``rows`` at this thread's Numba thread count (cached)."""
        key = (rows, numba.get_num_threads())
        if key not in self._bounds:
            self._bounds[key] = factor_bounds(rows)
        return self._bounds[key]

    def only_update(self, F, A, B, l1, l2, n_inner, G):
        """The update alone (its product is at hand); returns ``(violation, cross)``.

        The updates add ``Fᵀ F`` group by group in their own pass (a GEMM per group of
        rows still in cache): faster than BLAS's Gram after the update at every rank
        measured (2 threads, float64, update + Gram: 5000×20 0.44 vs 0.53 ms,
        147306×50 32 vs 42 ms, 10304×49 2.3 vs 2.6 ms)."""
        return self.update(F, A, B, l1, l2, self.bounds(F.shape[0]), n_inner, G)

    def __call__(self, Fo, side, A, F, B, l1, l2, n_inner, G):
        """Product and update; writes ``Fᵀ F`` into G and returns ``(violation, cross)``."""
        def then(a, b):
            Gp = G if b - a == F.shape[0] else np.empty_like(G)
            return (*self.only_update(F[a:b], A[a:b], B, l1, l2, n_inner, Gp), Gp)

        parts = product_then(self.data, Fo, side, A, then)
        if len(parts) > 1:
            G[...] = parts[0][2]
            for part in parts[1:]:
                G += part[2]
        violation = None if parts[0][0] is None else sum(part[0] for part in parts)
        return violation, sum(part[1] for part in parts)


class _Loss:
    """½‖X − WH‖² plus the penalties, from the products at hand."""

    def __init__(self, data, reg):
        self.data = data
        self.reg = reg  # (l1_W, l1_H, l2_W, l2_H)
        self.cancel = CANCEL[np.dtype(data.dtype)] * data.sqnorm

    def sqerr(self, A, cross, WtW, HHt, W, Ht):
        """‖X − WH‖² given ``cross = ⟨A, F⟩ = ⟨X, WH⟩``, A the product that pairs with
        the factor F just updated."""
        gram = float(np.vdot(WtW.astype(np.float64), HHt.astype(np.float64)))
        err = self.data.sqnorm - 2.0 * cross + gram
        correct = getattr(self.data, "correct_sqerr", None)  # missing values (_masked.py)
        if correct is not None:
            err = correct(err, A, W, Ht)
        if err < self.cancel:
            err = self.data.direct_sqerr(W, Ht)
        return max(err, 0.0)

    def objective(self, sqerr, W, Ht):
        return 0.5 * sqerr + penalties(self.reg, W, Ht)


def fit_frobenius(data, W, Ht, *, solver, monitor, reg=(0.0, 0.0, 0.0, 0.0),
                  update_H=True, accelerate=True):
    """Minimize ``½‖X − W Htᵀ‖² + penalties`` in place over ``W`` (and ``Ht``).

    Parameters
    ----------
    data : DenseData or SparseData
    W, Ht : C-contiguous ndarrays (m×r, n×r) of ``data.dtype``; updated in place.
    solver : {"hals", "mu"}
    monitor : Monitor
    reg : (l1_W, l1_H, l2_W, l2_H), already scaled.
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
    update = UPDATES[solver]
    m, r = W.shape
    n = Ht.shape[0]
    dtype = W.dtype.type
    l1_W, l1_H, l2_W, l2_H = (dtype(v) for v in reg)
    reg_on = any(reg)
    bounds_W = factor_bounds(m)
    half_step = _HalfStep(data, update)
    loss = _Loss(data, reg)
    inner_W = inner_H = 1
    if solver == "hals" and accelerate in (True, "auto", "sweeps", "both"):
        inner_W = inner_sweeps(data.nonzeros, m, n, r)
        inner_H = inner_sweeps(data.nonzeros, n, m, r)

    XHt = np.empty((m, r), dtype=W.dtype)
    XtW = np.empty((n, r), dtype=W.dtype)
    WtW = np.empty((r, r), dtype=W.dtype)  # the Grams, written by the updates
    HHt = gram(Ht)
    data.product(Ht, 0, out=XHt)  # the first W half-step's product, also gives L[0]
    sqerr = loss.sqerr(XHt, kernels.inner_f64_serial(XHt, W), gram(W), HHt, W, Ht)
    objective = loss.objective(sqerr, W, Ht)
    monitor.start(objective, np.sqrt(sqerr))
    previous = objective
    extrapolation = None
    if solver == "hals" and update_H and accelerate in ("extrapolate", "both"):
        extrapolation = _Extrapolation(W, Ht, bounds_W, factor_bounds(n), objective)
    # "auto": extrapolation joins the sweeps once they stall (see EXTRAPOLATE_BELOW)
    stall_watch = solver == "hals" and update_H and accelerate in (True, "auto") and not reg_on

    for it in range(1, monitor.max_iter + 1):
        # with extrapolation the W update's own Gram is not needed (Wy's is)
        G_W = WtW if extrapolation is None else WtW[:0, :0]
        if it > 1 and update_H:
            violation, cross = half_step(Ht, 0, XHt, W, HHt, l1_W, l2_W, inner_W, G_W)
        else:  # X Hᵀ at hand: made for L[0], and never changes with H fixed
            violation, cross = half_step.only_update(W, XHt, HHt, l1_W, l2_W, inner_W, G_W)
        if extrapolation is not None:
            extrapolation.push_W(W, WtW)
        if update_H:
            v_H, cross = half_step(W, 1, XtW, Ht, WtW, l1_H, l2_H, inner_H, HHt)
            if violation is not None:
                violation += v_H
            limit = REBALANCE_AT[W.dtype]
            if not reg_on and not (WtW.diagonal().max() < limit
                                   and HHt.diagonal().max() < limit):
                _rebalance(W, Ht, XtW)  # leaves ⟨Xᵀ W, Hᵀ⟩ as it is
                WtW, HHt = gram(W), gram(Ht)
                if extrapolation is not None:
                    extrapolation.reset(W, Ht)
        sqerr = loss.sqerr(XtW if update_H else XHt, cross, WtW, HHt, W, Ht)
        objective = loss.objective(sqerr, W, Ht)
        if monitor.step(it, objective, np.sqrt(sqerr), W, Ht.T, violation):
            break  # W, Ht are the pair whose objective was just recorded
        if extrapolation is not None and it < monitor.max_iter:
            extrapolation.step(Ht, HHt, objective)
        elif stall_watch and objective > (1.0 - EXTRAPOLATE_BELOW) * previous:
            extrapolation = _Extrapolation(W, Ht, bounds_W, factor_bounds(n), objective)
            stall_watch = False
        previous = objective
    if W.dtype == np.float32:  # report the final error to float64 accuracy
        sqerr = data.direct_sqerr(W, Ht)
    return sqerr
