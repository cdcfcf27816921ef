"""What every solver's outer loop shares: history, stopping rules, progress, callback."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm


@dataclass(frozen=True)
class IterationInfo:
    """Passed to a user ``callback`` after every iteration.

    ``W`` and ``H`` are views of the solver's working factors: copy them to
    keep them, and do not modify them.  Return ``True`` to stop the fit.
    """

    iteration: int
    loss: float
    elapsed: float
    W: np.ndarray
    H: np.ndarray


RULES = ("violation", "error", "violation|error")

# "violation|error": the error rule must hold at this many checks in a row.  One check
# (scikit-learn's MU rule) stopped some fits in a plateau, above the error scikit-learn's
# cd reaches at its own stop (Fashion-MNIST r=50 by 8e-5 of the error, a noisy 200×300
# rank-12 mixture by 1e-3); two stopped every real workload of the benchmark at or below
# it (docs/algorithms.md, *Stopping rule*).
STALLED_CHECKS = 2


class Monitor:
    """Records the objective per iteration and decides when to stop.

    Stopping rules (the meaning of ``tol``; docs/algorithms.md spells them out):

    * ``"violation"`` (HALS, as scikit-learn's ``cd``): stop when the summed
      projected-gradient violation of the iteration, measured during the
      coordinate updates, is at most ``tol`` times that of the first
      iteration.
    * ``"error"`` (MU, as scikit-learn's ``mu``): every 10 iterations, stop
      when ``‖X − WH‖_F`` decreased by less than ``tol`` times its initial
      value since the previous check.
    * ``"violation|error"`` (accelerated HALS): the violation rule, or the error
      rule met at :data:`STALLED_CHECKS` checks in a row (20 iterations).
      Extrapolated and repeated sweeps reach the error of scikit-learn's ``cd``
      in a fraction of its iterations while the violation, measured at the
      extrapolated points, falls slowly: on real data the violation rule alone
      ran to ``max_iter`` long after the error had stopped moving
      (docs/algorithms.md, *Stopping rule*).

    And always: ``max_iter``, ``max_time`` (seconds), or a callback returning
    True.  Only the ``tol`` rule marks the fit ``converged``.
    """

    def __init__(self, *, max_iter, tol, rule="violation", max_time=None, callback=None,
                 progress=False, verbose=0, loss_name="loss"):
        if rule not in RULES:
            raise ValueError(f"unknown stopping rule {rule!r}")
        self.max_iter = max_iter
        self.tol = tol
        self.rule = rule
        self.max_time = max_time
        self.callback = callback
        self.verbose = verbose
        self.loss_name = loss_name
        self.losses = np.empty(max_iter + 1, dtype=np.float64)
        self.times = np.empty(max_iter + 1, dtype=np.float64)
        self.n_iter = 0
        self.converged = False
        self.stop_reason = "max_iter"
        self._violation_rule = "violation" in rule
        self._error_rule = "error" in rule
        self._first_violation = None  # the violation of iteration 1
        self._error0 = self._previous_error = None  # ‖X − WH‖_F at the start
        self._stalled_needed = STALLED_CHECKS if self._violation_rule else 1
        self._stalled = 0  # error checks in a row that met the rule
        self._bar = tqdm(total=max_iter, disable=not progress, desc="fastnmf", unit="it",
                         leave=False)
        self._t0 = time.perf_counter()

    def start(self, loss0: float, error0: float) -> None:
        """Iteration 0: the objective and ``‖X − WH‖_F`` at the initial factors."""
        self._t0 = time.perf_counter()
        self.losses[0] = loss0
        self.times[0] = 0.0
        self._error0 = self._previous_error = error0

    def _tol_met(self, it: int, error: float, violation: float | None) -> bool:
        met = False
        if self._violation_rule:
            if it == 1:
                self._first_violation = violation
            met = self._first_violation == 0 or violation / self._first_violation <= self.tol
        if self._error_rule and self.tol > 0 and it % 10 == 0:
            if self._error0 == 0:  # X = WH exactly from the start (e.g. X = 0)
                return True
            stalled = (self._previous_error - error) / self._error0 < self.tol
            self._stalled = self._stalled + 1 if stalled else 0
            met = met or self._stalled >= self._stalled_needed
            self._previous_error = error
        return met

    def step(self, it: int, loss: float, error: float, W: np.ndarray, H: np.ndarray,
             violation: float | None = None) -> bool:
        """Record iteration ``it`` (objective ``loss``, ``error = ‖X − WH‖_F``).

        Returns True when the fit should stop.
        """
        elapsed = time.perf_counter() - self._t0
        self.losses[it] = loss
        self.times[it] = elapsed
        self.n_iter = it
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"the {self.loss_name} became {loss} at iteration {it}; this is a bug, "
                "please report it with the data shape and parameters."
            )
        if self.verbose:
            extra = "" if violation is None else f"  violation {violation:.4e}"
            print(f"Iteration {it:4d}  {self.loss_name} {loss:.6e}  error {error:.6e}"
                  f"{extra}  time {elapsed:.3f}s")
        if not self._bar.disable:
            self._bar.set_postfix({self.loss_name: f"{loss:.5g}"}, refresh=False)
            self._bar.update(1)
        if self._tol_met(it, error, violation):
            self.converged, self.stop_reason = True, "tol"
            return True
        if self.max_time is not None and elapsed >= self.max_time:
            self.stop_reason = "max_time"
            return True
        if self.callback is not None and self.callback(
            IterationInfo(it, loss, elapsed, W, H)
        ):
            self.stop_reason = "callback"
            return True
        return False

    def close(self) -> dict:
        self._bar.close()
        k = self.n_iter + 1
        if self.verbose:
            print(f"Stopped after {self.n_iter} iterations ({self.stop_reason}), "
                  f"{self.loss_name} {self.losses[self.n_iter]:.6e}")
        return {
            "iteration": np.arange(k),
            "time": self.times[:k].copy(),
            "loss": self.losses[:k].copy(),
        }


def report_divergence(monitor, it, loss, reg, W, Ht, view=None) -> bool:
    """Record iteration ``it`` (0: the start) of a divergence loop (KL, β): the history
    holds ``loss`` plus the penalties (``reg``, a :class:`~._penalty.Penalty`), and
    ``error`` is scikit-learn's ``sqrt(2·loss)`` (``_beta_divergence(...,
    square_root=True)``).  ``view``: W as the callback sees it
    (default W).  Returns True when the fit should stop."""
    objective = loss + reg.value(W, Ht)
    error = float(np.sqrt(2.0 * max(loss, 0.0)))
    if it == 0:
        monitor.start(objective, error)
        return False
    return monitor.step(it, objective, error, W if view is None else view, Ht.T)
