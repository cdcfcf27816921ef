"""What a fit returns: :class:`NMFResult`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class NMFResult:
    """The outcome of :func:`nmf`.

    Attributes
    ----------
    W : ndarray of shape (n_samples, rank)
    H : ndarray of shape (rank, n_features)
    loss : float
        The objective at the end: ``½‖X − WH‖²_F`` (Frobenius), the
        generalized KL divergence ``D(X‖WH)`` or the β-divergence, plus the
        penalties.
    reconstruction_err : float
        scikit-learn's ``reconstruction_err_``: ``‖X − WH‖_F`` for the
        Frobenius loss, ``sqrt(2·D(X‖WH))`` for KL and other β.
    relative_error : float
        ``‖X − WH‖_F / ‖X‖_F`` (for either loss).  With missing values
        (``mask``/``missing``), loss and errors are over the observed entries.
    n_iter : int
        Iterations run.
    converged : bool
        True when the stopping rule on ``tol`` was met (not ``max_iter``,
        ``max_time`` or a callback).
    stop_reason : {"tol", "max_iter", "max_time", "callback"}
    history : dict of ndarrays
        ``iteration``, ``time`` (seconds since the solver started) and
        ``loss`` (the objective), starting at iteration 0 (the initial factors).
    solver, backend, beta_loss : str
        What ran.
    elapsed : float
        Wall time of the whole call, in seconds (validation and init included).

    ``W, H = result`` unpacks the factors; the repr shows their shapes, not
    their entries.
    """

    W: np.ndarray
    H: np.ndarray
    loss: float
    reconstruction_err: float
    relative_error: float
    n_iter: int
    converged: bool
    stop_reason: str
    history: dict = field(repr=False)
    solver: str = "hals"
    backend: str = "dense"
    beta_loss: str = "frobenius"
    elapsed: float = 0.0

    def __iter__(self):
        """``W`` then ``H``, so that ``W, H = nmf(X, r)`` works."""
        yield self.W
        yield self.H

    def __repr__(self) -> str:
        def shape(F):  # (never converts F: it may be large, or not a NumPy array)
            return "×".join(map(str, getattr(F, "shape", ()))) + f" {getattr(F, 'dtype', '')}"

        return (f"NMFResult(W: {shape(self.W)}, H: {shape(self.H)}, loss={self.loss:.6g}, "
                f"relative_error={self.relative_error:.4g}, n_iter={self.n_iter}, "
                f"converged={self.converged}, stop_reason={self.stop_reason!r}, "
                f"solver={self.solver!r}, backend={self.backend!r}, "
                f"beta_loss={self.beta_loss!r}, elapsed={self.elapsed:.3g}s)")
