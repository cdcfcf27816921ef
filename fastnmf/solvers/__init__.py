"""Solvers: the outer loops, one module per objective.

An objective names its loop, its solvers (with the stopping rule that gives
``tol`` scikit-learn's meaning for each) and its default solver.  To add a
Frobenius solver, add its factor update to ``frobenius.UPDATES``; to add an
objective, add a module and an entry to ``OBJECTIVES``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import frobenius, kl
from ._monitor import IterationInfo, Monitor


@dataclass(frozen=True)
class Objective:
    name: str
    fit: object  # fit(data, W, Ht, *, solver, monitor, reg, update_H) -> final loss
    stop_rules: dict  # solver -> Monitor rule
    default_solver: str
    aliases: dict = field(default_factory=dict)
    loss_name: str = "loss"

    @property
    def solvers(self):
        return tuple(self.stop_rules)

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
                           default_solver="hals", aliases={"cd": "hals"}),
    "kullback-leibler": Objective("kullback-leibler", kl.fit_kl, kl.STOP_RULES,
                                  default_solver=kl.DEFAULT_SOLVER, aliases={"cd": "ccd"},
                                  loss_name="KL"),
}
_BETA_NAMES = {"frobenius": "frobenius", 2: "frobenius", "kullback-leibler": "kullback-leibler",
               1: "kullback-leibler"}


def objective_for(beta_loss) -> Objective:
    """The objective for scikit-learn's ``beta_loss`` value (name or β)."""
    key = beta_loss
    if not isinstance(beta_loss, str):
        try:
            key = float(beta_loss)
        except (TypeError, ValueError):
            key = None
    name = _BETA_NAMES.get(key) if key is not None else None
    if name is None:
        raise ValueError(
            f"beta_loss={beta_loss!r} is not supported: use 'frobenius' (2) or "
            "'kullback-leibler' (1). Other β-divergences (e.g. 'itakura-saito') are not "
            "implemented yet.")
    return OBJECTIVES[name]


__all__ = ["OBJECTIVES", "IterationInfo", "Monitor", "Objective", "objective_for"]
