"""Solvers: the outer loops, one module per objective.

An objective names its loop, its solvers (with the stopping rule that gives
``tol`` scikit-learn's meaning for each) and its default solver.  To add a
Frobenius solver, add its factor update to ``frobenius.UPDATES``; to add an
objective, add a module and an entry to ``OBJECTIVES``.  β-divergences other
than β = 2 (Frobenius) and β = 1 (KL) share the MU loop of :mod:`.beta`, with
β bound in by :func:`objective_for`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial

from . import beta, frobenius, kl
from ._monitor import IterationInfo, Monitor


@dataclass(frozen=True)
class Objective:
    name: str
    fit: object  # fit(data, W, Ht, *, solver, monitor, reg, update_H) -> final loss
    stop_rules: dict  # solver -> Monitor rule
    default_solver: str
    aliases: dict = field(default_factory=dict)
    loss_name: str = "loss"
    # the loop splits its dense BLAS products over the threads itself and runs BLAS
    # single-threaded (fastnmf._threads.thread_limits(split_blas=True))
    split_blas: bool = False

    @property
    def solvers(self):
        return tuple(self.stop_rules)

    def stop_rule(self, solver, accelerate=False, update_H=True, penalized=False):
        """The :class:`Monitor` rule that gives ``tol`` its meaning for ``solver``:
        scikit-learn's, and for HALS that may extrapolate (``accelerate`` "auto",
        "extrapolate" or "both") whichever of scikit-learn's two rules, HALS's
        violation or MU's error (at two checks in a row), is met first: the
        violation, measured at extrapolated points, falls slowly.  Repeated sweeps
        alone (``"sweeps"``) measure it at the factors as they are, and keep it; so do
        the fits that never extrapolate: H fixed (``update_H=False``), or "auto" with
        penalties (``penalized``)."""
        rule = self.stop_rules[solver]
        extrapolates = update_H and (accelerate in ("extrapolate", "both") or (
            accelerate == "auto" and not penalized))
        return "violation|error" if rule == "violation" and extrapolates else rule

    def resolve_solver(self, solver):
        if solver is None:
            return self.default_solver
        solver = self.aliases.get(solver, solver)
        if solver not in self.stop_rules:
            names = sorted({*self.stop_rules, *self.aliases})
            raise ValueError(
                f"solver must be one of {names} for beta_loss={self.name!r}, got {solver!r}.")
        return solver


OBJECTIVES = {
    "frobenius": Objective("frobenius", frobenius.fit_frobenius, frobenius.STOP_RULES,
                           default_solver="hals", aliases={"cd": "hals"}, split_blas=True),
    "kullback-leibler": Objective("kullback-leibler", kl.fit_kl, kl.STOP_RULES,
                                  default_solver=kl.DEFAULT_SOLVER, aliases={"cd": "ccd"},
                                  loss_name="KL", split_blas=True),
}
# "kl" and "poisson" (the generalized KL is the Poisson negative log-likelihood, up to
# terms in X only) are fastnmf's aliases; scikit-learn knows the rest.
_BETA_NAMES = {"frobenius": "frobenius", 2: "frobenius", "kullback-leibler": "kullback-leibler",
               1: "kullback-leibler", "kl": "kullback-leibler", "poisson": "kullback-leibler",
               "itakura-saito": 0.0}


def _beta_objective(b: float) -> Objective:
    name = "itakura-saito" if b == 0 else f"beta={b!r}"
    return Objective(name, partial(beta.fit_beta, beta=b), beta.STOP_RULES,
                     default_solver=beta.DEFAULT_SOLVER, loss_name="beta-divergence")


def objective_for(beta_loss) -> Objective:
    """The objective for scikit-learn's ``beta_loss`` value (name or β).

    ``"frobenius"``/2 and ``"kullback-leibler"``/1 (also ``"kl"``, ``"poisson"``) have
    their own solvers;
    ``"itakura-saito"`` (β = 0) and any other finite β run scikit-learn's
    multiplicative updates (:mod:`.beta`).
    """
    key = beta_loss
    if not isinstance(beta_loss, str):
        try:
            key = float(beta_loss)
        except (TypeError, ValueError):
            key = None
    name = _BETA_NAMES.get(key) if key is not None else None
    if isinstance(name, str):
        return OBJECTIVES[name]
    if name is None and isinstance(key, float) and math.isfinite(key):
        name = key
    if name is None:
        raise ValueError(
            f"beta_loss={beta_loss!r} is not supported: use 'frobenius' (2), "
            "'kullback-leibler' (1; also 'kl' or 'poisson'), 'itakura-saito' (0) or another "
            "finite float β.")
    return _beta_objective(name)


__all__ = ["OBJECTIVES", "IterationInfo", "Monitor", "Objective", "objective_for"]
