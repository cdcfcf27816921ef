"""The options every fit shares, checked and scaled in one place (in memory or on Dask)."""

from __future__ import annotations

from . import _validation as v
from ._data import BACKENDS
from .solvers._penalty import Penalty


def regularization(shape, alpha_W, alpha_H, l1_ratio):
    """scikit-learn's scaling: penalties grow with the other dimension of X.

    Returns the :class:`~fastnmf.solvers._penalty.Penalty` ``(l1_W, l1_H, l2_W, l2_H)``
    for the objective
    ``½‖X − WH‖² + l1_W‖W‖₁ + ½l2_W‖W‖² + l1_H‖H‖₁ + ½l2_H‖H‖²``.
    """
    n_samples, n_features = shape
    alpha_W = v.check_nonneg_float(alpha_W, "alpha_W")
    alpha_H = alpha_W if isinstance(alpha_H, str) and alpha_H == "same" else (
        v.check_nonneg_float(alpha_H, "alpha_H"))
    l1_ratio = v.check_nonneg_float(l1_ratio, "l1_ratio")
    if l1_ratio > 1:
        raise ValueError(f"l1_ratio must be in [0, 1], got {l1_ratio}.")
    return Penalty(
        n_features * alpha_W * l1_ratio,
        n_samples * alpha_H * l1_ratio,
        n_features * alpha_W * (1.0 - l1_ratio),
        n_samples * alpha_H * (1.0 - l1_ratio),
    )


def check_loop_options(backend, max_iter, tol, max_time, callback):
    """Validate the options every fit loop shares; returns ``(max_iter, tol, max_time)``."""
    v.check_option(backend, "backend", BACKENDS)
    max_iter = v.check_positive_int(max_iter, "max_iter")
    tol = v.check_nonneg_float(tol, "tol")
    if max_time is not None:
        max_time = v.check_nonneg_float(max_time, "max_time")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable.")
    return max_iter, tol, max_time


ACCELERATIONS = ("auto", "sweeps", "extrapolate", "both")


def check_accelerate(accelerate):
    """HALS's accelerations: "auto" (True), "sweeps", "extrapolate", "both", or none
    (False); returned as the name, or False."""
    if isinstance(accelerate, str):
        v.check_option(accelerate, "accelerate", ACCELERATIONS)
        return accelerate
    if accelerate in (True, False):  # also numpy's bools
        return "auto" if accelerate else False
    raise TypeError(f"accelerate must be True, False, 'auto', 'sweeps', 'extrapolate' or "
                    f"'both', got {accelerate!r}.")


def is_dask(X) -> bool:
    """Whether X is a Dask collection, decided without importing Dask."""
    return type(X).__module__.split(".")[0] == "dask"


def check_sparseness(sparseness_W, sparseness_H, *, objective, masked, reg, accelerate):
    """Hoyer's sparseness constraints: each None or a float in [0, 1], with a Frobenius
    fit without penalties, missing values or extrapolation (the combinations
    :mod:`fastnmf.solvers.sparseness` implements).  Returns the two values."""
    out = []
    for value, name in ((sparseness_W, "sparseness_W"), (sparseness_H, "sparseness_H")):
        if value is not None:
            value = v.check_nonneg_float(value, name)
            if value > 1:
                raise ValueError(f"{name} must be None or in [0, 1] (Hoyer's sparseness), "
                                 f"got {value}.")
        out.append(value)
    if out == [None, None]:
        return None, None
    if objective != "frobenius":
        raise ValueError("sparseness_W/sparseness_H need beta_loss='frobenius' (Hoyer's "
                         f"algorithm), got beta_loss={objective!r}.")
    if masked:
        raise ValueError("sparseness_W/sparseness_H cannot be combined with missing values "
                         "(mask/missing) yet.")
    if reg.active:
        raise ValueError("sparseness_W/sparseness_H replace the penalties: use them with "
                         "alpha_W=0 and alpha_H=0.")
    if accelerate in ("extrapolate", "both"):
        raise ValueError("sparseness_W/sparseness_H cannot be combined with "
                         f"accelerate={accelerate!r}; use True or 'sweeps' (repeated "
                         "sweeps: 'auto' does not extrapolate here) or False.")
    return tuple(out)
