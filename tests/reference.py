"""Naive NumPy twins of the kernels and of the Frobenius NMF loop.

Slow and obviously correct: every kernel in ``fastnmf.kernels`` and every data
product in ``fastnmf._data`` is tested against one of these.  Factors are
updated in float64 unless a caller passes something else; nothing here is
parallel or clever.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# scikit-learn's guard for a zero multiplicative-update denominator.
MU_EPS = float(np.finfo(np.float32).eps)


def dense(X) -> np.ndarray:
    """X as a dense float64 ndarray (sparse inputs summed over duplicates)."""
    return np.asarray(X.toarray() if sp.issparse(X) else X, dtype=np.float64)


def hals_sweep(F, A, B, l1=0.0, l2=0.0, return_violation=False):
    """One HALS sweep, row by row, components in order (scikit-learn's
    ``_update_cdnmf_fast`` with the penalties folded in).  Returns a new array
    (and the projected-gradient violation ``Σ|pg|`` met during the sweep)."""
    F = np.array(F, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    m, r = F.shape
    violation = 0.0
    for i in range(m):
        for k in range(r):
            grad = F[i] @ B[:, k] + l2 * F[i, k] + l1 - A[i, k]
            violation += abs(min(0.0, grad) if F[i, k] == 0 else grad)
            hess = B[k, k] + l2
            if hess <= 0:
                continue
            F[i, k] = max(0.0, F[i, k] - grad / hess)
    return (F, violation) if return_violation else F


def mu_step(F, A, B, l1=0.0, l2=0.0, eps=MU_EPS):
    """One multiplicative update ``F ∘ A ⊘ (F B + l1 + l2 F)``; zero denominators → eps."""
    F = np.asarray(F, dtype=np.float64)
    den = F @ np.asarray(B, dtype=np.float64) + l1 + l2 * F
    den[den == 0] = eps
    return F * np.asarray(A, dtype=np.float64) / den


def product(X, F, side):
    """``X @ F`` (side 0) or ``Xᵀ @ F`` (side 1), in float64."""
    Xd = dense(X)
    return (Xd if side == 0 else Xd.T) @ np.asarray(F, dtype=np.float64)


def sqerr(X, W, H):
    """‖X − W H‖²_F in float64."""
    R = dense(X) - np.asarray(W, dtype=np.float64) @ np.asarray(H, dtype=np.float64)
    return float(np.sum(R * R))


def regularization(shape, alpha_W=0.0, alpha_H=None, l1_ratio=0.0):
    """scikit-learn's scaling: ``(l1_W, l1_H, l2_W, l2_H)``."""
    m, n = shape
    alpha_H = alpha_W if alpha_H is None else alpha_H
    return (n * alpha_W * l1_ratio, m * alpha_H * l1_ratio,
            n * alpha_W * (1 - l1_ratio), m * alpha_H * (1 - l1_ratio))


def objective(X, W, H, reg=(0.0, 0.0, 0.0, 0.0)):
    """½‖X − WH‖² + l1_W ΣW + ½ l2_W ‖W‖² + l1_H ΣH + ½ l2_H ‖H‖²."""
    l1_W, l1_H, l2_W, l2_H = reg
    W = np.asarray(W, dtype=np.float64)
    H = np.asarray(H, dtype=np.float64)
    return (0.5 * sqerr(X, W, H) + l1_W * W.sum() + 0.5 * l2_W * np.sum(W * W)
            + l1_H * H.sum() + 0.5 * l2_H * np.sum(H * H))


def nmf(X, W, H, n_iter, solver="hals", reg=(0.0, 0.0, 0.0, 0.0)):
    """``n_iter`` iterations (W half-step, then H half-step) from ``(W, H)``.

    Returns ``W, H, losses`` with ``losses[0]`` the objective at the start.
    """
    update = hals_sweep if solver == "hals" else mu_step
    l1_W, l1_H, l2_W, l2_H = reg
    Xd = dense(X)
    W = np.array(W, dtype=np.float64)
    H = np.array(H, dtype=np.float64)
    losses = [objective(Xd, W, H, reg)]
    for _ in range(n_iter):
        W = update(W, Xd @ H.T, H @ H.T, l1_W, l2_W)
        H = update(H.T, Xd.T @ W, W.T @ W, l1_H, l2_H).T
        losses.append(objective(Xd, W, H, reg))
    return W, H, np.array(losses)
