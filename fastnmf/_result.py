"""What a fit returns: :class:`NMFResult`."""

from __future__ import annotations

import time
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

    row_names, column_names : sequence or None
        X's row and column labels when X was a pandas DataFrame (its ``index``
        and ``columns``), else None: :meth:`W_frame` and :meth:`H_frame` put
        them back.

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
    row_names: object = field(default=None, repr=False)
    column_names: object = field(default=None, repr=False)

    def component_names(self, prefix: str = "nmf") -> list[str]:
        """The components' names, ``nmf0, nmf1, …`` (scikit-learn's ``get_feature_names_out``)."""
        return [f"{prefix}{k}" for k in range(self.H.shape[0])]

    def W_frame(self, prefix: str = "nmf"):
        """``W`` as a pandas DataFrame: X's row labels (``row_names``, else 0, 1, …) by
        the components (``nmf0, nmf1, …``, see :meth:`component_names`).

        Needs pandas (imported only here).
        """
        return _pandas().DataFrame(self.W, index=self.row_names,
                                   columns=self.component_names(prefix))

    def H_frame(self, prefix: str = "nmf"):
        """``H`` as a pandas DataFrame: the components (``nmf0, nmf1, …``) by X's
        column labels (``column_names``, else 0, 1, …).

        Needs pandas (imported only here).
        """
        return _pandas().DataFrame(self.H, index=self.component_names(prefix),
                                   columns=self.column_names)

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


def fit_result(W, Ht, final, sqerr, *, data, monitor, history, solver, beta_loss, t0,
               row_names=None, column_names=None) -> NMFResult:
    """The :class:`NMFResult` of a finished fit (in memory or on Dask).

    ``final`` is what the objective's loop returned (``‖X − WH‖²`` for the Frobenius
    loss, the divergence for the others), ``sqerr`` the Frobenius ``‖X − WH‖²`` at the
    end (so ``relative_error`` means one thing for every loss), ``t0`` the fit's
    ``time.perf_counter()`` at its start.
    """
    if beta_loss == "frobenius":
        err = float(np.sqrt(final))
    else:
        err = float(np.sqrt(2.0 * max(final, 0.0)))
    return NMFResult(
        W=W,
        H=np.ascontiguousarray(Ht.T),
        loss=float(history["loss"][-1]),
        reconstruction_err=err,
        relative_error=float(np.sqrt(sqerr / data.sqnorm)) if data.sqnorm > 0 else 0.0,
        n_iter=monitor.n_iter,
        converged=monitor.converged,
        stop_reason=monitor.stop_reason,
        history=history,
        solver=solver,
        backend=data.backend,
        beta_loss=beta_loss,
        elapsed=time.perf_counter() - t0,
        row_names=row_names,
        column_names=column_names,
    )


def frame_labels(X) -> tuple[object, object]:
    """``(index, columns)`` of a pandas DataFrame (or anything with both), else ``(None, None)``."""
    if hasattr(X, "columns") and hasattr(X, "index") and not callable(X.index):
        return X.index, X.columns
    return None, None


def _pandas():
    try:
        import pandas
    except ImportError:
        raise ImportError("W_frame() and H_frame() return pandas DataFrames and need pandas, "
                          "which is not installed: pip install pandas (or use .W and .H, "
                          "NumPy arrays)") from None
    return pandas
