"""The regularization terms, shared by every objective: one small immutable type."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def factor_penalty(l1, l2, F) -> float:
    """``l1‖F‖₁ + ½l2‖F‖²`` (F ≥ 0).

    F is an array, or the handle of a factor whose rows live elsewhere (W's row
    blocks on Dask workers), which sums its own terms: ``F.penalty(l1, l2)``.
    """
    if not (l1 or l2):
        return 0.0
    own = getattr(F, "penalty", None)
    if own is not None:
        return own(l1, l2)
    pen = 0.0
    if l1:
        pen += l1 * float(F.sum(dtype=np.float64))
    if l2:
        pen += 0.5 * l2 * float(np.vdot(F, F))
    return pen


class Penalty(NamedTuple):
    """The penalties of one fit, already scaled (:func:`fastnmf._options.regularization`):
    ``l1_W‖W‖₁ + ½l2_W‖W‖² + l1_H‖H‖₁ + ½l2_H‖H‖²``.

    A named tuple, so ``Penalty(*reg)`` takes any 4-sequence in this order and a
    ``Penalty`` still unpacks as one.  What the loops ask of it: :attr:`active`,
    each side's ``(l1, l2)`` in the factors' dtype (:meth:`for_W`, :meth:`for_H`),
    and the terms' value at the factors (:meth:`value`).
    """

    l1_W: float = 0.0
    l1_H: float = 0.0
    l2_W: float = 0.0
    l2_H: float = 0.0

    @classmethod
    def of(cls, reg) -> Penalty:
        """``reg`` as a Penalty (a Penalty as it is; a 4-sequence in field order)."""
        return reg if isinstance(reg, cls) else cls(*reg)

    @property
    def active(self) -> bool:
        """Whether any weight is nonzero."""
        return any(self)

    def for_W(self, dtype=float) -> tuple:
        """W's ``(l1, l2)``, as ``dtype`` scalars (the kernels take the factors' dtype)."""
        return dtype(self.l1_W), dtype(self.l2_W)

    def for_H(self, dtype=float) -> tuple:
        """H's ``(l1, l2)``, as ``dtype`` scalars."""
        return dtype(self.l1_H), dtype(self.l2_H)

    def value(self, W, Ht) -> float:
        """The penalty terms at ``(W, Ht)`` (Ht = Hᵀ; W may be the handle of W's row
        blocks, see :func:`factor_penalty`); 0.0 without touching a factor when a
        side's weights are zero."""
        return factor_penalty(self.l1_W, self.l2_W, W) + factor_penalty(self.l1_H, self.l2_H, Ht)


NO_PENALTY = Penalty()
