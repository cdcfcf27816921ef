"""Naive NumPy twins of the kernels (Frobenius, masked, KL, β) and of the Frobenius NMF loop.

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
# scikit-learn zeroes H entries below float64's epsilon after each KL MU step.
CLIP_H = float(np.finfo(np.float64).eps)
# rows per accelerated-HALS group (fastnmf.kernels.ROW_GROUP; a test checks they agree)
GROUP = 64


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


def hals_sweeps(F, A, B, l1=0.0, l2=0.0, n_inner=1, delta=0.1):
    """Accelerated HALS on one product: rows in groups of ``g`` = 64 from row 0 (the
    last ``m mod g`` rows one group), each group swept until a sweep moves it
    by ``‖Δ‖² ≤ δ²‖Δ_first‖²`` or ``n_inner`` sweeps; returns the new array."""
    F = np.array(F, dtype=np.float64)
    m, g = F.shape[0], GROUP
    for start in range(0, m, g):
        rows = slice(start, min(start + g, m))
        block = F[rows]
        new = hals_sweep(block, A[rows], B, l1, l2)
        first = last = float(np.sum((new - block) ** 2))
        sweeps = 1
        while sweeps < n_inner and last > delta**2 * first:
            newer = hals_sweep(new, A[rows], B, l1, l2)
            last = float(np.sum((newer - new) ** 2))
            new, sweeps = newer, sweeps + 1
        F[rows] = new
    return F


def objective_rows(F, A, B, l1=0.0, l2=0.0):
    """The HALS subproblem ``Σᵢ ½fᵢᵀBfᵢ − aᵢᵀfᵢ + l1Σf + ½l2‖f‖²`` (float64)."""
    F, A, B = (np.asarray(v, dtype=np.float64) for v in (F, A, B))
    return float(0.5 * np.sum((F @ B) * F) - np.sum(A * F) + l1 * F.sum()
                 + 0.5 * l2 * np.sum(F * F))


def inner_sweeps(nonzeros, rows, other, rank, alpha=0.5):
    """Gillis & Glineur's cap: ``1 + ⌊α(1 + (nnz + other·r)/(rows·(r + 1)))⌋``."""
    return 1 + int(alpha * (1 + (nonzeros + other * rank) / (rows * (rank + 1))))


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


def nmf(X, W, H, n_iter, solver="hals", reg=(0.0, 0.0, 0.0, 0.0), accelerate=False,
        extrapolate=False):
    """``n_iter`` iterations (W half-step, then H half-step) from ``(W, H)``.

    ``accelerate``: HALS with Gillis & Glineur's repeated sweeps (:func:`hals_sweeps`).
    ``extrapolate``: HALS with Ang & Gillis's extrapolation and restarts (HER), as
    fastnmf/solvers/frobenius.py documents it: the update ``Fn`` is pushed on to
    ``max(0, Fn + β(Fn − Fn_prev))``; the objective is the one at ``(Wy, Hn)``, and when
    it rose H is not pushed and β shrinks.  True: from the first iteration; a number τ:
    from the iteration after the first one that lowered the objective by less than the
    fraction τ, and never with penalties (fastnmf's ``accelerate="auto"``).
    Returns ``W, H, losses`` with ``losses[0]`` the objective at the start.
    """
    l1_W, l1_H, l2_W, l2_H = reg
    Xd = dense(X)
    W = np.array(W, dtype=np.float64)
    H = np.array(H, dtype=np.float64)
    (m, r), n, nnz = W.shape, H.shape[1], np.count_nonzero(Xd)
    inner_W = inner_H = 1
    if accelerate and solver == "hals":
        inner_W, inner_H = inner_sweeps(nnz, m, n, r), inner_sweeps(nnz, n, m, r)
    if solver == "hals":
        def update(F, A, B, l1, l2, n_inner):
            return hals_sweeps(F, A, B, l1, l2, n_inner)
    else:
        def update(F, A, B, l1, l2, n_inner):
            return mu_step(F, A, B, l1, l2)
    stall = None if extrapolate is True or solver != "hals" or any(reg) else extrapolate or None
    extrapolate = extrapolate is True and solver == "hals"
    losses = [objective(Xd, W, H, reg)]
    beta, beta_max, W_prev, H_prev = 0.5, 1.0, W, H
    for it in range(n_iter):
        W = update(W, Xd @ H.T, H @ H.T, l1_W, l2_W, inner_W)
        if extrapolate:
            W, W_prev = np.maximum(0.0, W + beta * (W - W_prev)), W
        H = update(H.T, Xd.T @ W, W.T @ W, l1_H, l2_H, inner_H).T
        losses.append(objective(Xd, W, H, reg))
        if extrapolate and it < n_iter - 1:
            if losses[-1] > losses[-2]:
                H_prev = H
                beta_max, beta = beta, beta / 1.5
            else:
                H, H_prev = np.maximum(0.0, H + beta * (H - H_prev)), H
                beta, beta_max = min(beta_max, 1.01 * beta), min(1.0, 1.005 * beta_max)
        elif stall is not None and losses[-1] > (1.0 - stall) * losses[-2]:
            extrapolate, stall, W_prev, H_prev = True, None, W, H
    return W, H, np.array(losses)


def online_mu_step(F, num, den, A, B, l1=0.0, l2=0.0, eps=MU_EPS, gamma=1.0, rho=0.0,
                   clip=0.0):
    """scikit-learn's online MU update of H (``_multiplicative_update_h`` with ``A``,
    ``B`` and ``rho``), on ``F = Hᵀ``; returns new ``(F, A, B)`` in float64."""
    F, num, A, B = (np.array(M, dtype=np.float64) for M in (F, num, A, B))
    den = np.array(den, dtype=np.float64) + l1 + l2 * F
    den[den == 0] = eps
    A = rho * A + num * F ** (1.0 / gamma)
    B = rho * B + den
    F = (A / B) ** gamma
    F[F < clip] = 0.0
    return F, A, B


def online_hals(X, W, H, batch_size, rho, n_passes, fresh=False):
    """fastnmf's online HALS (``MiniBatchNMF(solver="hals")``, no penalties): per batch
    of rows, W_b by accelerated HALS sweeps on ``X_b Hᵀ`` (``fresh``: from zero, up to
    30 sweeps to δ = 0.01, as ``partial_fit`` does), then ``A ← ρA + X_bᵀW_b``,
    ``B ← ρB + W_bᵀW_b`` and the rows of H whose row of ``A`` the batch changed by
    accelerated HALS sweeps on ``(A, B)``; returns new ``(W, H)`` in float64."""
    Xd = dense(X)
    W = np.array(W, dtype=np.float64)
    Ht = np.array(H, dtype=np.float64).T.copy()
    m, n = Xd.shape
    r = Ht.shape[1]
    A, B = np.zeros((n, r)), np.zeros((r, r))
    for _ in range(n_passes):
        for start in range(0, m, batch_size):
            rows = slice(start, min(start + batch_size, m))
            Xb = Xd[rows]
            nnz, mb = int(np.count_nonzero(Xb)), Xb.shape[0]
            if fresh:
                W[rows] = hals_sweeps(np.zeros_like(W[rows]), Xb @ Ht, Ht.T @ Ht,
                                      n_inner=30, delta=0.01)
            else:
                W[rows] = hals_sweeps(W[rows], Xb @ Ht, Ht.T @ Ht,
                                      n_inner=inner_sweeps(nnz, mb, n, r))
            P = Xb.T @ W[rows]
            A = rho * A + P
            B = rho * B + W[rows].T @ W[rows]
            changed = np.flatnonzero(P.any(axis=1))  # H's rows whose row of A changed
            if changed.size:
                Ht[changed] = hals_sweeps(Ht[changed], A[changed], B,
                                          n_inner=inner_sweeps(nnz, changed.size, mb, r))
    return W, Ht.T


def hoyer_sparseness(v):
    """``(√n − ‖v‖₁/‖v‖₂) / (√n − 1)`` of one vector (float64)."""
    v = np.abs(np.asarray(v, dtype=np.float64))
    n = v.size
    return (np.sqrt(n) - v.sum() / np.sqrt(v @ v)) / (np.sqrt(n) - 1)


def project_sparseness(s, sparseness, norm):
    """Hoyer's ``projfunc(s, k1, k2, nn=1)`` (Hoyer 2004, his MATLAB code, with the
    step in closed form):
    the nonnegative vector with ``‖v‖₂ = norm`` and Hoyer sparseness ``sparseness``
    closest to ``s`` (ties broken towards the first entry)."""
    s = np.asarray(s, dtype=np.float64)
    n = s.size
    if norm == 0 or sparseness == 0:  # the single point of sparseness 0 (or zero)
        return np.full(n, norm / np.sqrt(n))
    k1 = (np.sqrt(n) - (np.sqrt(n) - 1) * sparseness) * norm
    k2 = norm**2
    v = s + (k1 - s.sum()) / n
    zero = np.zeros(n, dtype=bool)
    for _ in range(n):
        free = ~zero
        midpoint = np.where(zero, 0.0, k1 / free.sum())
        w = v - midpoint
        if w @ w <= 1e-24 * (v @ v):
            # tied free entries at the centre: fastnmf's tie-break (Hoyer's code divides
            # by zero here), towards the first free entry
            w = np.where(zero, 0.0, -1.0 / free.sum())
            w[np.flatnonzero(free)[0]] += 1.0
        # Hoyer's v + αw on the sphere (his quadratic's larger root): since Σw = 0, the
        # point at the circle's radius from the centre along w
        radius = np.sqrt(max(k2 - k1**2 / free.sum(), 0.0))
        v = midpoint + (radius / np.sqrt(w @ w) * w if w @ w > 0 else 0.0)
        if np.all(v >= 0):
            break
        zero |= v <= 0
        v[zero] = 0
        v = v + (k1 - v.sum()) / (n - zero.sum())
        v[zero] = 0
    return np.maximum(v, 0.0)


def spa(X, rank):
    """Successive projection, as Gillis's book writes it: the residual matrix R = X,
    then ``rank`` times: j = argmax ‖R[:, j]‖, u = R[:, j]/‖R[:, j]‖, R ← (I − uuᵀ) R."""
    R = dense(X).copy()
    picked = []
    for _ in range(rank):
        j = int(np.argmax(np.sum(R * R, axis=0)))
        picked.append(j)
        u = R[:, j] / np.linalg.norm(R[:, j])
        R -= np.outer(u, u @ R)
    return np.array(picked)


def masked_kl_mu(X, M, W, H, n_iter, eps=MU_EPS, clip=CLIP_H):
    """The EM multiplicative updates for the KL divergence over the observed entries
    (``M`` True = observed): before each half-step the missing entries are set to the
    current ``WH``, then scikit-learn's KL MU step (W, then H; H clipped at ``clip``)."""
    X0 = np.where(M, dense(X), 0.0)
    W = np.array(W, dtype=np.float64)
    H = np.array(H, dtype=np.float64)

    def ratio():
        WH = W @ H
        return np.where(M, X0, WH) / np.maximum(WH, eps)

    for _ in range(n_iter):
        den = H.sum(1)
        den[den == 0] = eps
        W *= (ratio() @ H.T) / den
        den = W.sum(0)
        den[den == 0] = 1
        H *= (W.T @ ratio()) / den[:, None]
        H[H < clip] = 0
    return W, H


def masked_kl(X, M, W, H, eps=MU_EPS):
    """The generalized KL divergence over the observed entries, scikit-learn's guards."""
    x = dense(X)[M]
    wh = np.maximum((np.asarray(W, np.float64) @ np.asarray(H, np.float64))[M], eps)
    pos = x > eps
    return float(np.sum(x[pos] * np.log(x[pos] / wh[pos])) - x.sum() + wh.sum())


# ------------------------------------------------- KL and β-divergence kernels


def kl_ratio(Y, F, G):
    """``Y ⊘ max(F Gᵀ, eps)`` in float64 (zeros of Y give zeros)."""
    P = np.maximum(F.astype(np.float64) @ G.T.astype(np.float64), MU_EPS)
    return Y.astype(np.float64) / P


def kl_nz(Y, F, G):
    """scikit-learn's KL without ``Σ WH``: ``Σ_{y>eps} y log(y/max(wh, eps)) − y``."""
    Y = Y.astype(np.float64)
    P = np.maximum(F.astype(np.float64) @ G.T.astype(np.float64), MU_EPS)
    keep = Y > MU_EPS
    return float(np.sum(Y[keep] * np.log(Y[keep] / P[keep]) - Y[keep]))


def kl_ylogy(Y):
    """``Σ_{y>eps} y log y − y``: the KL at the nonzeros that does not depend on WH."""
    y = Y[Y > MU_EPS].astype(np.float64)
    return float(np.sum(y * np.log(y) - y))


def kl_divergence(X, W, H):
    return kl_nz(X, W, H.T) + float(W.sum(0, dtype=np.float64) @ H.sum(1, dtype=np.float64))


def kl_ccd_sweep(Y, F, G, l1, l2, n_newton, newton_tol):
    """Cyclic coordinate descent with projected Newton steps, row by row, in float64."""
    Y, F, G = (np.asarray(a, dtype=np.float64) for a in (Y, F, G))
    F = F.copy()
    Gsum = G.sum(0)
    for i in range(F.shape[0]):
        nz = np.nonzero(Y[i])[0]
        y, Gl = Y[i, nz], G[nz]
        wh = Gl @ F[i]
        for k in range(F.shape[1]):
            for _ in range(n_newton):
                v = np.maximum(wh, MU_EPS)
                t = y * Gl[:, k] / v
                grad = Gsum[k] + l1 + l2 * F[i, k] - t.sum()
                hess = l2 + np.sum(t * Gl[:, k] / v)
                if hess > 0:
                    new = max(0.0, F[i, k] - grad / hess)
                else:
                    new = 0.0 if grad > 0 else F[i, k]
                d = new - F[i, k]
                if d == 0:
                    break
                if d < 0:  # safeguard: no model value at a nonzero falls below half
                    g = Gl[:, k]
                    down = g > 0
                    if np.any(down):
                        d = max(d, np.max(-0.5 * wh[down] / g[down]))
                    new = max(0.0, F[i, k] + d)
                    d = new - F[i, k]
                F[i, k] = new
                wh += d * Gl[:, k]
                if abs(d) <= newton_tol * new:
                    break
    return F


def beta_terms(Y, P, beta):
    """scikit-learn's numerator and denominator factors, and its two loss sums."""
    Y, P = Y.astype(np.float64), P.astype(np.float64)
    Pn = np.maximum(P, MU_EPS) if beta < 2 else P
    Pd = np.maximum(P, MU_EPS) if beta < 1 else P
    N = Y * Pn ** (beta - 2)
    D = Pd ** (beta - 1)
    keep = Y > MU_EPS
    Pl = np.maximum(P, MU_EPS)
    if beta == 0:
        div = Y[keep] / Pl[keep]
        sums = (np.sum(div - np.log(div)), 0.0)
    else:
        # β < 0: raised to eps, where scikit-learn's Σ WH^β is infinite at WH = 0
        Ps = Pl if beta < 0 else P
        sums = (np.sum(Y[keep] * Pl[keep] ** (beta - 1)), np.sum(Ps ** beta))
    return N, D, sums
