"""What every solver's outer loop shares: history, stopping rule, progress, callback."""

from __future__ import annotations

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


class Monitor:
    """Records the loss per iteration and decides when to stop.

    The stopping rule (documented in docs/algorithms.md): stop after iteration
    ``k`` when the relative decrease of the objective over the last iteration,
    ``(L[k-1] - L[k]) / L[k-1]``, is at most ``tol``; or when ``max_iter`` or
    ``max_time`` is reached; or when the callback returns True.  Only the
    relative-decrease rule marks the fit ``converged``.
    """

    def __init__(self, *, max_iter, tol, max_time=None, callback=None, progress=False,
                 verbose=0, loss_name="loss"):
        self.max_iter = max_iter
        self.tol = tol
        self.max_time = max_time
        self.callback = callback
        self.verbose = verbose
        self.loss_name = loss_name
        self.losses = np.empty(max_iter + 1, dtype=np.float64)
        self.times = np.empty(max_iter + 1, dtype=np.float64)
        self.n_iter = 0
        self.converged = False
        self.stop_reason = "max_iter"
        self._bar = tqdm(total=max_iter, disable=not progress, desc="fastnmf", unit="it",
                         leave=False)
        self._t0 = time.perf_counter()

    def start(self, loss0: float) -> None:
        self._t0 = time.perf_counter()
        self.losses[0] = loss0
        self.times[0] = 0.0

    def step(self, it: int, loss: float, W: np.ndarray, H: np.ndarray) -> bool:
        """Record iteration ``it``; return True when the fit should stop."""
        elapsed = time.perf_counter() - self._t0
        self.losses[it] = loss
        self.times[it] = elapsed
        self.n_iter = it
        prev = self.losses[it - 1]
        decrease = (prev - loss) / prev if prev > 0 else 0.0
        if self.verbose:
            print(f"Iteration {it:4d}  {self.loss_name} {loss:.6e}  "
                  f"rel. decrease {decrease:.3e}  time {elapsed:.3f}s")
        self._bar.update(1)
        if self._bar.disable is False:
            self._bar.set_postfix({self.loss_name: f"{loss:.5g}"}, refresh=False)
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"the {self.loss_name} became {loss} at iteration {it}; this is a bug, "
                "please report it with the data shape and parameters."
            )
        if loss == 0 or decrease <= self.tol:
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
