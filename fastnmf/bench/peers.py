"""The methods compared, each run the same way: same X, same start, a loss curve out.

Every runner takes ``(X, W0, H0, stop, evaluate)`` and returns the loss curve
``{"iteration", "time", "loss"}`` from iteration 0, where ``time`` counts only
the method's own work:

* **fastnmf** (HALS with the default ``accelerate="auto"``: repeated sweeps,
  extrapolation once they stall; with repeated sweeps alone,
  ``accelerate="sweeps"``, the default before extrapolation; HALS with one
  sweep per product, ``accelerate=False``, whose iterates are scikit-learn
  cd's, so its time per iteration compares like for like; MU) reports its own
  history (the loss is a by-product of its iteration, so it is timed with it).
* **scikit-learn cd / mu** run sklearn's own iteration code one iteration at a
  time: ``_fit_coordinate_descent(..., max_iter=1)`` (per call it only copies
  ``Hᵀ``, n×r) and the ``_multiplicative_update_w``/``_h`` pair that makes up
  the body of ``_fit_multiplicative_update`` (calling that with
  ``max_iter=1`` would add a full loss evaluation per call).  Only the call
  is timed; the loss is evaluated outside the timer by :class:`LossEvaluator`.
  This is the cost of sklearn's iterations without its every-10-iterations
  convergence check, i.e. slightly favourable to sklearn.
* **MiniBatchNMF** is timed through its public ``fit_transform`` with
  ``max_iter = 1, 2, 4, …`` epochs, each a fresh fit from the same start
  (its own final transform included, as a user would pay it), then one
  last fit with as many epochs as the rest of the time cap allows: all its
  fits together take about the cap.
* **scipy baseline** runs :mod:`.baseline` one iteration at a time, timed like
  sklearn.

Kullback–Leibler workloads have their own methods (:data:`LOSS` says which
loss each method minimizes): fastnmf CCD and MU with
``beta_loss="kullback-leibler"``, and **scikit-learn MU-KL**, the same
``_multiplicative_update_w``/``_h`` pair with ``beta_loss=1`` and the clipping
``_fit_multiplicative_update`` applies (``H[H < eps64] = 0`` for β ≤ 1; ``W``
is clipped only for β < 1, so not here).  Its loss after 200 iterations is
the KL target.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

import fastnmf

from . import baseline


@dataclass
class Stop:
    """When a run ends: ``max_iter``, ``max_time`` (timed seconds), shortly after the target,
    or once the target is out of reach (:meth:`out_of_reach`)."""

    max_iter: int
    max_time: float | None = None
    target: float | None = None
    rtol: float = 0.0
    extra: float = 0.05  # after reaching the target, run this fraction more iterations

    # out of reach: from this fraction of max_time on, a run whose loss cannot reach the
    # target by max_time even at REACH_MARGIN times its recent rate of decrease is stopped
    REACH_AFTER = 0.25
    REACH_MARGIN = 1.5
    REACH_WINDOW = 0.25  # the recent rate: the secant over the last quarter of the time

    def __post_init__(self):
        self._hit = None
        self._times: list[float] = []
        self._losses: list[float] = []
        self.gave_up_s: float | None = None

    def done(self, it: int, elapsed: float, loss: float | None) -> bool:
        """True when the run should end after iteration ``it`` (``loss`` None: not evaluated)."""
        if it >= self.max_iter or (self.max_time is not None and elapsed >= self.max_time):
            return True
        if self.target is not None and loss is not None and self._hit is None:
            if loss <= self.target * (1 + self.rtol):
                self._hit = it
            elif self.give_up(elapsed, loss):
                return True
        return self._hit is not None and it >= self._hit * (1 + self.extra) + 1

    def give_up(self, elapsed: float, loss: float) -> bool:
        """Record (elapsed, loss); True, and note when, once the target is out of reach."""
        if self.target is None or not self.out_of_reach(elapsed, loss):
            return False
        self.gave_up_s = elapsed
        return True

    def out_of_reach(self, elapsed: float, loss: float) -> bool:
        """Whether ``loss`` at ``elapsed`` seconds cannot reach the target within ``max_time``.

        Loss-versus-time curves of these methods are convex (each second buys less
        than the one before), and for a convex decreasing curve the secant over any
        earlier interval falls at least as fast as the curve will from now on; so
        ``loss − rate·(max_time − elapsed)`` bounds the loss at ``max_time`` from below.
        The margin (×1.5 the rate) covers mild departures from convexity (swamps).
        """
        self._times.append(elapsed)
        self._losses.append(loss)
        if self.max_time is None or elapsed < self.REACH_AFTER * self.max_time:
            return False
        i = int(np.searchsorted(self._times, (1 - self.REACH_WINDOW) * elapsed, "right")) - 1
        if i < 0 or self._times[i] >= elapsed:
            return False
        rate = max(self._losses[i] - loss, 0.0) / (elapsed - self._times[i])
        best = loss - self.REACH_MARGIN * rate * (self.max_time - elapsed)
        return best > self.target * (1 + self.rtol)


# the peers timed one iteration at a time evaluate the loss at the first EVAL_FIRST
# iterations, then whenever the evaluations so far took at most EVAL_SHARE of the timed time
EVAL_FIRST = 10
EVAL_SHARE = 0.15


def _curve(iters, times, losses) -> dict:
    return {"iteration": [int(i) for i in iters], "time": [float(t) for t in times],
            "loss": [float(v) for v in losses]}


def _warm_rows(X, rows: int = 64):
    """A small slice of X of the same type and dtype, to warm up code paths before timing."""
    return X[: min(rows, X.shape[0])]


# --- fastnmf ---------------------------------------------------------------------------

def _fastnmf(solver, beta_loss="frobenius", **options):
    def run(X, W0, H0, stop: Stop, evaluate, threads: int):
        Xs = _warm_rows(X)
        fastnmf.nmf(Xs, W0.shape[1], beta_loss=beta_loss, solver=solver,
                    W=W0[: Xs.shape[0]].copy(), H=H0.copy(), max_iter=3, tol=0,
                    n_threads=threads, **options)  # compiles / loads the kernels

        def callback(info):
            return stop.done(info.iteration, info.elapsed, info.loss)

        res = fastnmf.nmf(X, W0.shape[1], beta_loss=beta_loss, solver=solver, W=W0, H=H0,
                          max_iter=stop.max_iter, tol=0, max_time=stop.max_time, n_threads=threads,
                          callback=callback, **options)
        h = res.history
        return _curve(h["iteration"], h["time"], h["loss"]), dict(backend=res.backend)
    return run


# --- scikit-learn ----------------------------------------------------------------------

def _manual_loop(step, W, H, X, stop: Stop, evaluate):
    """Run ``step(W, H) -> (W, H)`` until ``stop``; time only the steps.

    The loss is evaluated outside the timer after the first iterations and then
    whenever the evaluations so far took at most :data:`EVAL_SHARE` of the timed
    time (one data product each: on the large workloads every second or third
    iteration), and always at the last iteration; time to target interpolates
    within a gap (:func:`.metrics.time_to_target`).
    """
    iters, times, losses = [0], [0.0], [evaluate(W, H)]
    elapsed = spent = 0.0
    it = 0
    while True:
        t0 = time.perf_counter()
        W, H = step(W, H)
        elapsed += time.perf_counter() - t0
        it += 1
        loss = None
        if it <= EVAL_FIRST or it >= stop.max_iter or spent <= EVAL_SHARE * elapsed:
            t0 = time.perf_counter()
            loss = evaluate(W, H)
            spent += time.perf_counter() - t0
        finished = stop.done(it, elapsed, loss)
        if finished and loss is None:
            loss = evaluate(W, H)
        if loss is not None:
            iters.append(it)
            times.append(elapsed)
            losses.append(loss)
        if finished:
            return _curve(iters, times, losses)


def _sklearn_cd(X, W0, H0, stop, evaluate, threads):
    from sklearn.decomposition._nmf import _fit_coordinate_descent

    def step(W, H):
        W, H, _ = _fit_coordinate_descent(X, W, H, tol=0.0, max_iter=1)
        return W, H

    Xs = _warm_rows(X)
    _fit_coordinate_descent(Xs, W0[: Xs.shape[0]].copy(), H0.copy(), tol=0.0, max_iter=2)
    return _manual_loop(step, W0.copy(), H0.copy(), X, stop, evaluate), {}


def _sklearn_mu_for(beta_loss):
    """scikit-learn MU, one iteration at a time (the loop body of its MU fit)."""

    def run(X, W0, H0, stop, evaluate, threads):
        from sklearn.decomposition._nmf import (
            _multiplicative_update_h,
            _multiplicative_update_w,
        )

        eps64 = np.finfo(np.float64).eps

        def iteration(X, W, H):
            W, *_ = _multiplicative_update_w(X, W, H, beta_loss=beta_loss, l1_reg_W=0,
                                             l2_reg_W=0, gamma=1.0)
            # (sklearn clips W only for beta_loss < 1)
            H = _multiplicative_update_h(X, W, H, beta_loss=beta_loss, l1_reg_H=0, l2_reg_H=0,
                                         gamma=1.0)
            if beta_loss <= 1:
                H[H < eps64] = 0.0
            return W, H

        Xs = _warm_rows(X)
        iteration(Xs, W0[: Xs.shape[0]].copy(), H0.copy())
        return _manual_loop(lambda W, H: iteration(X, W, H), W0.copy(), H0.copy(), X, stop,
                            evaluate), {}

    return run


_sklearn_mu = _sklearn_mu_for(2)
_sklearn_mu_kl = _sklearn_mu_for(1)


def _minibatch(X, W0, H0, stop, evaluate, threads):
    from sklearn.decomposition import MiniBatchNMF

    def fit(X, W, H, epochs):
        est = MiniBatchNMF(W0.shape[1], init="custom", max_iter=epochs, tol=0,
                           max_no_improvement=None, random_state=0)
        W = est.fit_transform(X, W=W.copy(), H=H.copy())
        return W, est.components_

    Xs = _warm_rows(X, 2048)
    fit(Xs, W0[: Xs.shape[0]], H0, 1)
    iters, times, losses = [0], [0.0], [evaluate(W0, H0)]
    epochs, spent, final = 1, 0.0, False
    while True:
        t0 = time.perf_counter()
        W, H = fit(X, W0, H0, epochs)
        elapsed = time.perf_counter() - t0
        spent += elapsed
        loss = evaluate(W, H)
        iters.append(epochs)
        times.append(elapsed)
        losses.append(loss)
        # each point is a fresh fit: stop on the iteration cap, the target, or out of reach
        if (final or epochs >= stop.max_iter
                or (stop.target is not None and loss <= stop.target * (1 + stop.rtol))
                or stop.give_up(elapsed, loss)):
            return _curve(iters, times, losses), {"iteration_unit": "epoch"}
        # double the epochs while the fits so far and the next stay within the time cap;
        # then one last fit as long as what is left allows (all fits together ≈ the cap)
        nxt = 2 * epochs
        if stop.max_time is not None:
            left, per_epoch = stop.max_time - spent, elapsed / epochs
            if nxt * per_epoch > left:
                nxt, final = int(left / per_epoch), True
                if nxt <= epochs:
                    return _curve(iters, times, losses), {"iteration_unit": "epoch"}
        epochs = min(nxt, stop.max_iter)


# --- the scipy baseline ----------------------------------------------------------------

def _baseline(name):
    iteration = baseline.ITERATIONS[name]

    def run(X, W0, H0, stop, evaluate, threads):
        Xs = _warm_rows(X)
        iteration(Xs, W0[: Xs.shape[0]].copy(), H0.copy())

        def step(W, H):
            iteration(X, W, H)
            return W, H

        return _manual_loop(step, W0.copy(), H0.copy(), X, stop, evaluate), {}
    return run


METHODS = {
    "fastnmf-hals": _fastnmf("hals"),
    "fastnmf-sweeps": _fastnmf("hals", accelerate="sweeps"),
    # one sweep per product: scikit-learn cd's iterates, so its ms/iter compares like for like
    "fastnmf-hals1": _fastnmf("hals", accelerate=False),
    "fastnmf-mu": _fastnmf("mu"),
    "sklearn-cd": _sklearn_cd,
    "sklearn-mu": _sklearn_mu,
    "sklearn-minibatch": _minibatch,
    "scipy-hals": _baseline("hals"),
    "scipy-mu": _baseline("mu"),
    "fastnmf-ccd": _fastnmf("ccd", "kullback-leibler"),
    "fastnmf-mu-kl": _fastnmf("mu", "kullback-leibler"),
    "sklearn-mu-kl": _sklearn_mu_kl,
}
KL_METHODS = ("fastnmf-ccd", "fastnmf-mu-kl", "sklearn-mu-kl")
# the loss each method minimizes: it runs only on workloads with that loss
LOSS = {m: "kullback-leibler" if m in KL_METHODS else "frobenius" for m in METHODS}
REFERENCE = "sklearn-cd"  # the Frobenius reference (its loss after 200 iterations: the target)
REFERENCE_KL = "sklearn-mu-kl"
REFERENCES = {"frobenius": REFERENCE, "kullback-leibler": REFERENCE_KL}
# the methods timed at every thread count, by loss
SCALING = {"frobenius": ("fastnmf-hals", "fastnmf-mu", REFERENCE),
           "kullback-leibler": ("fastnmf-ccd", "fastnmf-mu-kl", REFERENCE_KL)}
LABELS = {
    "fastnmf-hals": "fastnmf HALS (default: sweeps, then extrapolation)",
    "fastnmf-sweeps": "fastnmf HALS, repeated sweeps only",
    "fastnmf-hals1": "fastnmf HALS, 1 sweep (sklearn cd's iterates)",
    "fastnmf-mu": "fastnmf MU",
    "sklearn-cd": "scikit-learn NMF cd",
    "sklearn-mu": "scikit-learn NMF mu",
    "sklearn-minibatch": "scikit-learn MiniBatchNMF",
    "scipy-hals": "NumPy/SciPy HALS",
    "scipy-mu": "NumPy/SciPy MU",
    "fastnmf-ccd": "fastnmf CCD (KL)",
    "fastnmf-mu-kl": "fastnmf MU (KL)",
    "sklearn-mu-kl": "scikit-learn NMF mu (KL)",
}
SHORT = {REFERENCE: "sklearn cd", REFERENCE_KL: "sklearn mu-kl"}


def reference_of(runs: dict) -> str:
    """The reference method of a workload's runs ({method: run})."""
    return REFERENCE_KL if REFERENCE_KL in runs else REFERENCE


def run_method(name, X, W0, H0, stop: Stop, evaluate, threads: int) -> dict:
    """Run one method under ``threads`` (Numba and BLAS), return its curve and notes."""
    with fastnmf.thread_limits(threads):
        curve, notes = METHODS[name](X, W0, H0, stop, evaluate, threads)
    if stop.gave_up_s is not None:
        notes["out_of_reach_s"] = stop.gave_up_s
    return {"curve": curve, **notes}
