"""The regularization terms, shared by every objective."""

from __future__ import annotations

import numpy as np


def penalties(reg, W, Ht) -> float:
    """``l1_W‖W‖₁ + l1_H‖H‖₁ + ½l2_W‖W‖² + ½l2_H‖H‖²`` for ``reg = (l1_W, l1_H, l2_W, l2_H)``."""
    l1_W, l1_H, l2_W, l2_H = reg
    pen = 0.0
    if l1_W:
        pen += l1_W * float(W.sum(dtype=np.float64))
    if l1_H:
        pen += l1_H * float(Ht.sum(dtype=np.float64))
    if l2_W:
        pen += 0.5 * l2_W * float(np.vdot(W, W))
    if l2_H:
        pen += 0.5 * l2_H * float(np.vdot(Ht, Ht))
    return pen
