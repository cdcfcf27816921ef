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
* **RcppML** (R's fastest NMF, where ``Rscript`` and the R package are installed:
  Debian ``r-cran-rcppml``) runs ``RcppML::nmf(A, k, maxit=…, seed=0)`` in one R
  process that holds X, with 1, 2, 4, … iterations, each a fresh fit, timed in R
  around the call, like MiniBatchNMF's epochs; its model ``w·diag(d)·h`` is
  evaluated here as ``W = w·diag(d)``, ``H = h``.  RcppML takes no given start:
  its own random start (seed 0) replaces the shared one, and it computes in
  double precision whatever the workload's dtype.

Kullback–Leibler workloads have their own methods (:data:`LOSS` says which
loss each method minimizes): fastnmf CCD and MU with
``beta_loss="kullback-leibler"``, and **scikit-learn MU-KL**, the same
``_multiplicative_update_w``/``_h`` pair with ``beta_loss=1`` and the clipping
``_fit_multiplicative_update`` applies (``H[H < eps64] = 0`` for β ≤ 1; ``W``
is clipped only for β < 1, so not here).  Its loss after 200 iterations is
the KL target.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

import numpy as np

import fastnmf

from . import baseline, metrics


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

    def timed(epochs):
        t0 = time.perf_counter()
        W, H = fit(X, W0, H0, epochs)
        return time.perf_counter() - t0, evaluate(W, H)

    Xs = _warm_rows(X, 2048)
    fit(Xs, W0[: Xs.shape[0]], H0, 1)
    return _doubling(timed, stop, first_loss=evaluate(W0, H0)), {"iteration_unit": "epoch"}


def _doubling(fit, stop: Stop, first_loss=None):
    """Fresh fits of 1, 2, 4, … iterations (``fit(n) -> (seconds, loss)``) until the
    iteration cap, the target, or out of reach; then one last fit as long as the rest of
    the time cap allows (all fits together ≈ the cap).  Returns the curve: a point per
    fit, its own time."""
    iters, times, losses = ([0], [0.0], [first_loss]) if first_loss is not None else ([], [], [])
    n, spent, final = 1, 0.0, False
    while True:
        elapsed, loss = fit(n)
        spent += elapsed
        iters.append(n)
        times.append(elapsed)
        losses.append(loss)
        if (final or n >= stop.max_iter
                or (stop.target is not None and loss <= stop.target * (1 + stop.rtol))
                or stop.give_up(elapsed, loss)):
            return _curve(iters, times, losses)
        nxt = 2 * n
        if stop.max_time is not None:
            left, per_fit_iter = stop.max_time - spent, elapsed / n
            if nxt * per_fit_iter > left:
                nxt, final = int(left / per_fit_iter), True
                if nxt <= n:
                    return _curve(iters, times, losses)
        n = min(nxt, stop.max_iter)


# --- RcppML (R), where installed -------------------------------------------------------

# Reads X (dense: float64 column-major; sparse: CSC arrays) once, then answers each line
# "maxit" on stdin with a fresh RcppML::nmf fit: its w, d, h into files and
# "seconds iterations" on stdout (the time of the call alone, measured in R).
RCPPML_SCRIPT = r"""
args <- commandArgs(trailingOnly = TRUE)
dir <- args[1]; kind <- args[2]
m <- as.integer(args[3]); n <- as.integer(args[4]); k <- as.integer(args[5])
suppressMessages({library(Matrix); library(RcppML)})
setRcppMLthreads(as.integer(args[6]))
f <- function(name) file.path(dir, name)
if (kind == "dense") {
  A <- matrix(readBin(f("x.bin"), "double", m * n), m, n)
} else {
  p <- readBin(f("indptr.bin"), "integer", n + 1)
  A <- sparseMatrix(i = readBin(f("indices.bin"), "integer", p[n + 1]), p = p,
                    x = readBin(f("data.bin"), "double", p[n + 1]), dims = c(m, n),
                    index1 = FALSE)
}
cat("ready\n"); flush(stdout())
con <- file("stdin"); open(con)
repeat {
  line <- readLines(con, n = 1)
  if (length(line) == 0 || line == "quit") break
  t0 <- as.numeric(Sys.time())  # (microseconds; proc.time() ticks in milliseconds)
  model <- nmf(A, k, tol = 1e-12, maxit = as.integer(line), verbose = FALSE, seed = 0)
  t <- as.numeric(Sys.time()) - t0
  writeBin(as.double(model$w), f("w.bin")); writeBin(as.double(model$d), f("d.bin"))
  writeBin(as.double(model$h), f("h.bin"))
  cat(sprintf("%.6f %d\n", t, as.integer(model$iter))); flush(stdout())
}
"""


def rcppml_missing() -> str | None:
    """Why the RcppML peer cannot run here, or None when it can."""
    rscript = shutil.which("Rscript")
    hint = "Debian: apt-get install r-cran-rcppml"
    if rscript is None:
        return f"Rscript not found ({hint})"
    proc = subprocess.run([rscript, "-e", "cat(format(packageVersion('RcppML')))"],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        return f"the R package RcppML is not installed ({hint})"
    return None


def _write_for_r(X, folder: str) -> str:
    """X in the files :data:`RCPPML_SCRIPT` reads; returns its kind."""
    if hasattr(X, "tocsc"):
        Xc = X.tocsc()
        Xc.sort_indices()
        for name, a, dt in (("indptr", Xc.indptr, np.int32), ("indices", Xc.indices, np.int32),
                            ("data", Xc.data, np.float64)):
            np.ascontiguousarray(a, dtype=dt).tofile(os.path.join(folder, f"{name}.bin"))
        return "sparse"
    np.ascontiguousarray(np.asarray(X).T, dtype=np.float64).tofile(os.path.join(folder, "x.bin"))
    return "dense"


# The longest the R process may stay silent: loading X, or one fit (a hung process must
# not hang the suite).
RCPPML_WAIT_S = 1800.0


def _line_from(proc, errors: str, what: str) -> str:
    """The next line R prints, within :data:`RCPPML_WAIT_S`; else an error with the end of
    its stderr (``errors``: the file it goes to)."""
    ready, _, _ = select.select([proc.stdout], [], [], RCPPML_WAIT_S)
    line = proc.stdout.readline() if ready else ""
    if not line:
        with open(errors) as f:
            tail = f.read()[-300:].strip()
        raise RuntimeError(f"RcppML {what}: {tail or 'no answer in time'}")
    return line


def _rcppml(X, W0, H0, stop, evaluate, threads):
    # (the suite leaves this peer out where R lacks it: MISSING; a missing R package
    # shows as R's own error when the script starts, so no R process is spent on asking)
    rscript = shutil.which("Rscript")
    if rscript is None:
        raise RuntimeError(f"RcppML unavailable: {rcppml_missing()}")
    (m, n), k = X.shape, W0.shape[1]
    rss0 = peak = None
    with tempfile.TemporaryDirectory(prefix="fastnmf-rcppml-") as folder:
        script, errors = os.path.join(folder, "fit.R"), os.path.join(folder, "stderr.txt")
        with open(script, "w") as f:
            f.write(RCPPML_SCRIPT)
        kind = _write_for_r(X, folder)
        with open(errors, "w") as err:
            proc = subprocess.Popen([rscript, script, folder, kind, str(m),
                                     str(n), str(k), str(threads)], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            if _line_from(proc, errors, "did not start").strip() != "ready":
                raise RuntimeError("RcppML did not start: unexpected output")
            rss0 = metrics.proc_status_kib("VmRSS", proc.pid)  # R holding X

            def fit(maxit):
                proc.stdin.write(f"{maxit}\n")
                proc.stdin.flush()
                answer = _line_from(proc, errors, "failed").split()
                w, d, h = (np.fromfile(os.path.join(folder, f"{v}.bin"))
                           for v in ("w", "d", "h"))
                W = (w.reshape(k, m).T * d).astype(X.dtype)
                H = np.ascontiguousarray(h.reshape(n, k).T, dtype=X.dtype)
                return float(answer[0]), evaluate(W, H)

            curve = _doubling(fit, stop)
            peak = metrics.proc_status_kib("VmHWM", proc.pid)
        finally:
            try:
                proc.stdin.write("quit\n")
                proc.stdin.close()
                proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait()
    notes = {"iteration_unit": "fit", "start": "RcppML's own random start (seed 0)"}
    if rss0 is not None and peak is not None:  # the R process's, above it holding X
        notes["peak_beyond_x_bytes"] = max(peak - rss0, 0) * 1024
    return curve, notes


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
    "rcppml": _rcppml,
}
# the methods that need something outside Python, and what says whether it is there
MISSING = {"rcppml": rcppml_missing}
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
    "rcppml": "RcppML (R), own random start",
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
