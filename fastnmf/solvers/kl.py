"""The outer loops for the generalized Kullback–Leibler (Poisson) objective.

``D(X‖WH) = Σ x log(x/(WH)) − x + WH`` plus the penalties
``l1_W‖W‖₁ + ½l2_W‖W‖² + l1_H‖H‖₁ + ½l2_H‖H‖²``.  Two solvers:

* ``"mu"``: Lee & Seung's multiplicative updates, exactly scikit-learn's
  ``solver="mu", beta_loss="kullback-leibler"`` (same order W then H, same
  ``eps`` guards, same clipping of ``H``, same stopping rule), but the
  ratio ``X ⊘ (WH)`` is only formed at the nonzeros for sparse X, and block
  by block (BLAS in, a Numba kernel, BLAS out) for dense X.
* ``"ccd"``: cyclic coordinate descent with Newton steps per variable
  (Hsieh & Dhillon, KDD 2011), parallel over the rows of the factor being
  updated; the zeros of X only enter through the column sums of the other
  factor, so a sweep costs about as much as one MU half-step.

As in :mod:`.frobenius`, H is kept transposed (``Ht``, n×r, C-contiguous) and
both half-steps run one kernel on ``(Y, F, G)`` with ``Y ≈ F Gᵀ``: ``(X, W,
Ht)`` and ``(Xᵀ, Ht, W)``.  The loss is never a separate pass over X during
the iterations: MU gets it from the next W numerator (at the current
factors, before anything changes, so stopping there is exact), CCD from the
model values it keeps current at the nonzeros.
"""

from __future__ import annotations

import numpy as np

from .._data import factor_bounds
from ..kernels import kl as klk
from ._penalty import penalties

# scikit-learn's guard on model values and MU denominators (float32 epsilon).
EPS = float(np.finfo(np.float32).eps)
# scikit-learn zeroes H entries below float64's epsilon after each MU step (β ≤ 1).
CLIP_H = float(np.finfo(np.float64).eps)
# Rows of dense X per block of the MU products: ~2 MiB of float64, which keeps
# the block (written by BLAS, rewritten by the ratio kernel, read by BLAS) in
# the L2/L3 cache.
_BLOCK_ELEMENTS = 1 << 18

# CCD: Newton steps per variable (at most), and the relative step at which
# they stop.  One step per variable per sweep reached scikit-learn's
# 200-iteration KL in 1.2 s against 2.4 s for two steps on sparse counts
# (20000×5000, 1.8M nonzeros, r=20, 2 threads); on dense Poisson 5000×2000
# the two tied (41.6 s vs 40.8 s, loaded machine).
CCD_NEWTON_STEPS = 1
CCD_NEWTON_TOL = 1e-2

SOLVERS = ("mu", "ccd")
# CCD reaches scikit-learn's 200-iteration KL in ~20 iterations on sparse
# counts (12× less time than our MU, >100× less than scikit-learn's); on dense
# Poisson data with few zeros it needs ~85 iterations at ~3.4× MU's cost each
# (MU ~1.4× faster there).  It is monotone and can leave zero entries, which
# MU cannot.
DEFAULT_SOLVER = "ccd"
STOP_RULES = {"mu": "error", "ccd": "error"}


class _Sparse:
    """KL products for :class:`SparseData`: Numba kernels on the CSR of X and of Xᵀ."""

    def __init__(self, data):
        self.data = data

    def _args(self, side):
        indptr, indices, values = self.data._arrays[side]
        return indptr, indices, values, self.data._bounds[side]

    def numerator(self, side, F, G, eps, with_loss, out):
        indptr, indices, values, bounds = self._args(side)
        return float(klk.kl_numerator_sparse(indptr, indices, values, F, G, eps, with_loss,
                                             bounds, out).sum())

    def loss_nz(self, W, Ht, eps):
        indptr, indices, values, bounds = self._args(0)
        return float(klk.kl_loss_sparse(indptr, indices, values, W, Ht, eps, bounds).sum())

    def ccd(self, side, F, G, Gsum, l1, l2, n_newton, eps, with_loss, bounds_F):
        indptr, indices, values, bounds = self._args(side)
        return float(klk.kl_ccd_sparse(indptr, indices, values, F, G, Gsum, l1, l2,
                                       n_newton, CCD_NEWTON_TOL, eps, with_loss,
                                       bounds).sum())


class _Dense:
    """KL products for :class:`DenseData`: blocks of rows of the C-ordered one of X, Xᵀ.

    ``Y`` is ``X`` or ``Xᵀ``, whichever is C-contiguous, so that a block of
    its rows is contiguous.  For a block, ``P = F_blk Gᵀ`` (BLAS), ``P ← Y_blk
    ⊘ max(P, eps)`` (Numba, with the loss), then ``F``'s numerator is
    ``P G`` and ``G``'s numerator accumulates ``Pᵀ F_blk`` (BLAS): no m×n
    temporary.
    """

    def __init__(self, data):
        X = data.X
        self.transposed = not X.flags.c_contiguous
        self.Y = X.T if self.transposed else X
        p, q = self.Y.shape
        self.step = max(1, min(p, _BLOCK_ELEMENTS // max(q, 1)))
        self.P = np.empty((self.step, q), dtype=X.dtype)
        self._tmp = None

    def _blocks(self):
        p = self.Y.shape[0]
        for a in range(0, p, self.step):
            b = min(a + self.step, p)
            yield a, b, self.P[: b - a]

    def _ratio(self, a, b, P, F_rows, G_cols, eps, with_loss):
        np.matmul(F_rows[a:b], G_cols.T, out=P)
        return float(klk.kl_ratio_dense(self.Y[a:b], P, eps, with_loss).sum())

    def numerator(self, side, F, G, eps, with_loss, out):
        """``out = (Y ⊘ (F Gᵀ)) G`` for ``side`` 0 (F = W) or 1 (F = Ht), and the KL."""
        row_side = (side == 0) != self.transposed  # is F the factor of Y's rows?
        loss = 0.0
        if row_side:
            for a, b, P in self._blocks():
                loss += self._ratio(a, b, P, F, G, eps, with_loss)
                np.matmul(P, G, out=out[a:b])
            return loss
        # F pairs with the columns of Y: out = Σ_blocks Pᵀ G_blk
        if self._tmp is None or self._tmp.shape != out.shape:
            self._tmp = np.empty_like(out)
        out[...] = 0
        for a, b, P in self._blocks():
            loss += self._ratio(a, b, P, G, F, eps, with_loss)
            np.matmul(P.T, G[a:b], out=self._tmp)
            out += self._tmp
        return loss

    def loss_nz(self, W, Ht, eps):
        F, G = (Ht, W) if self.transposed else (W, Ht)
        return sum(self._ratio(a, b, P, F, G, eps, True) for a, b, P in self._blocks())

    def ccd(self, side, F, G, Gsum, l1, l2, n_newton, eps, with_loss, bounds_F):
        X = self.Y.T if self.transposed else self.Y
        Y = X if side == 0 else X.T
        return float(klk.kl_ccd_dense(Y, F, G, Gsum, l1, l2, n_newton, CCD_NEWTON_TOL, eps,
                                      with_loss, bounds_F).sum())


def _engine(data):
    return _Sparse(data) if data.is_sparse else _Dense(data)


def _sum_WH(W, Ht):
    """``Σ (W Htᵀ)`` = (column sums of W)·(column sums of Ht), in float64."""
    return float(W.sum(0, dtype=np.float64) @ Ht.sum(0, dtype=np.float64))


def _report(monitor, it, kl, reg, W, Ht):
    """Record iteration ``it`` (0: start); ``error`` is scikit-learn's ``sqrt(2·KL)``."""
    kl = max(kl, 0.0)
    objective = kl + penalties(reg, W, Ht)
    error = float(np.sqrt(2.0 * kl))
    if it == 0:
        monitor.start(objective, error)
        return False
    return monitor.step(it, objective, error, W, Ht.T)


def _fit_mu(engine, W, Ht, monitor, reg, update_H):
    dtype = W.dtype.type
    l1_W, l1_H, l2_W, l2_H = (dtype(v) for v in reg)
    eps, clip_H, no_clip = dtype(EPS), dtype(CLIP_H), dtype(0)
    bounds_W, bounds_H = factor_bounds(W.shape[0]), factor_bounds(Ht.shape[0])
    num_W = np.empty_like(W)
    num_H = np.empty_like(Ht)
    # The W numerator at the current factors also gives their KL (at the
    # nonzeros): computed first, so the stopping rule sees the loss of the
    # iteration just finished before anything changes.
    kl = engine.numerator(0, W, Ht, eps, True, num_W) + _sum_WH(W, Ht)
    _report(monitor, 0, kl, reg, W, Ht)
    for it in range(1, monitor.max_iter + 1):
        H_sum = Ht.sum(0)
        klk.kl_mu_apply(W, num_W, H_sum, l1_W, l2_W, eps, no_clip, bounds_W)
        if update_H:
            engine.numerator(1, Ht, W, eps, False, num_H)
            W_sum = W.sum(0)
            W_sum[W_sum == 0] = 1  # scikit-learn's guard, kept for equal results
            klk.kl_mu_apply(Ht, num_H, W_sum, l1_H, l2_H, eps, clip_H, bounds_H)
        kl = engine.numerator(0, W, Ht, eps, True, num_W) + _sum_WH(W, Ht)
        if _report(monitor, it, kl, reg, W, Ht):
            break
    return max(kl, 0.0)


def _fit_ccd(engine, W, Ht, monitor, reg, update_H):
    dtype = W.dtype.type
    l1_W, l1_H, l2_W, l2_H = (dtype(v) for v in reg)
    eps = dtype(EPS)
    bounds_W, bounds_H = factor_bounds(W.shape[0]), factor_bounds(Ht.shape[0])
    n_newton = CCD_NEWTON_STEPS
    kl = engine.loss_nz(W, Ht, eps) + _sum_WH(W, Ht)
    _report(monitor, 0, kl, reg, W, Ht)
    for it in range(1, monitor.max_iter + 1):
        # The last half-step's kernel returns the KL at the nonzeros at the
        # new factors, from the model values it keeps current.
        kl = engine.ccd(0, W, Ht, Ht.sum(0), l1_W, l2_W, n_newton, eps, not update_H,
                        bounds_W)
        if update_H:
            kl = engine.ccd(1, Ht, W, W.sum(0), l1_H, l2_H, n_newton, eps, True, bounds_H)
        kl += _sum_WH(W, Ht)
        if _report(monitor, it, kl, reg, W, Ht):
            break
    return max(kl, 0.0)


_FITS = {"mu": _fit_mu, "ccd": _fit_ccd}


def fit_kl(data, W, Ht, *, solver, monitor, reg=(0.0, 0.0, 0.0, 0.0), update_H=True):
    """Minimize ``D(X‖W Htᵀ)`` + penalties in place over ``W`` (and ``Ht``).

    Parameters
    ----------
    data : DenseData or SparseData
    W, Ht : C-contiguous ndarrays (m×r, n×r) of ``data.dtype``; updated in place.
    solver : {"mu", "ccd"}
    monitor : Monitor
        With ``rule="error"`` for scikit-learn's meaning of ``tol``; the
        ``error`` it sees is ``sqrt(2·KL)`` as scikit-learn's
        ``_beta_divergence(..., square_root=True)``; the history holds the
        KL plus the penalties.
    reg : (l1_W, l1_H, l2_W, l2_H), already scaled.
    update_H : bool
        False solves for W with H fixed (``transform``).

    Returns
    -------
    kl : float
        The generalized KL divergence at the returned factors (entries of X
        at most float32's epsilon count as zeros, as in scikit-learn).
    """
    if solver not in _FITS:
        raise ValueError(f"solver must be one of {SOLVERS} for the KL loss, got {solver!r}.")
    return _FITS[solver](_engine(data), W, Ht, monitor, reg, update_H)


__all__ = ["DEFAULT_SOLVER", "SOLVERS", "STOP_RULES", "fit_kl"]
