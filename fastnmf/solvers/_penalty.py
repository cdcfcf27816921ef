"""The regularization terms, shared by every objective."""

from __future__ import annotations

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


def penalties(reg, W, Ht) -> float:
    """``l1_W‖W‖₁ + l1_H‖H‖₁ + ½l2_W‖W‖² + ½l2_H‖H‖²`` for ``reg = (l1_W, l1_H, l2_W, l2_H)``."""
    l1_W, l1_H, l2_W, l2_H = reg
    return factor_penalty(l1_W, l2_W, W) + factor_penalty(l1_H, l2_H, Ht)
