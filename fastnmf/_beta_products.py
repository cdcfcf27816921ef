"""The data products of the β-divergence MU loop: numerator, denominator and loss.

Part of the data layer, with :mod:`fastnmf._data` and :mod:`fastnmf._kl_products`: the
only β code that knows whether X is dense or sparse and reads a data object's arrays.
Each half-step forms ``P = F Gᵀ`` a block of rows at a time and never an m×n temporary.
"""

from __future__ import annotations

import numpy as np

from ._chunks import row_bounds
from .kernels import beta as bk

# Elements of WH per block: 2 MiB of float64, so that the block (written by
# BLAS, rewritten by the kernel, read by BLAS) stays in cache.
_BLOCK_ELEMENTS = 1 << 18

def _denominator_part(P, beta, eps, with_loss):
    """``Σ P_s^β`` (float64; 0.0 unless ``with_loss``), then ``P ← P_d^(β−1)`` in place.

    ``P_d = max(P, eps)`` when β < 1, as scikit-learn.  ``P_s`` is ``P`` for
    β > 0 (scikit-learn's ``Σ WH^β``), but ``max(P, eps)`` for β < 0: there
    a model value of 0 (a row of W or a column of H clipped to zero, at an
    entry of X at most eps) made ``Σ WH^β`` infinite and the loss −inf
    (scikit-learn's too); the updates already see ``max(P, eps)`` there, so
    the loss is the one of the model they minimize.
    """
    if beta < 0:
        np.maximum(P, eps, out=P)
    s1 = float(np.sum(P ** beta, dtype=np.float64)) if with_loss and beta != 0 else 0.0
    if 0 <= beta < 1:
        np.maximum(P, eps, out=P)
    np.power(P, beta - 1, out=P)
    return s1


def _numerator_dense(Y, P, N, T, beta, eps, with_loss):
    """``N ← Y ∘ P_n^(β−2)`` with scikit-learn's NumPy operations; the loss terms at X's entries.

    Returns ``Σ_{y>eps} y·P_l^(β−1)`` (β ≠ 0) or ``Σ_{y>eps} y/P_l − log(y/P_l)``
    (β = 0), ``P_l = max(P, eps)``, in float64 (0.0 unless ``with_loss``).
    NumPy's power is a SIMD loop; a Numba loop calling libm's ``pow`` per
    entry ran 2.5–5× slower than scikit-learn.
    """
    s0 = 0.0
    if with_loss:
        keep = Y > eps
        np.maximum(P, eps, out=T)
        if beta == 0:
            np.divide(np.where(keep, Y, 1), T, out=T)
            terms = T - np.log(T)
            s0 = float(np.sum(terms, where=keep, dtype=np.float64))
        else:
            np.power(T, beta - 1, out=T)
            T *= Y
            s0 = float(np.sum(T, where=keep, dtype=np.float64))
    if beta < 2:
        np.maximum(P, eps, out=N)
    else:
        N[...] = P
    if beta == 0:  # scikit-learn: WH **= -1; WH **= 2
        np.reciprocal(N, out=N)
        np.square(N, out=N)
    else:
        np.power(N, beta - 2, out=N)
    N *= Y
    return s0


class BetaProducts:
    """Numerator, denominator and loss of one MU half-step, block by block.

    The blocks (and the numerator and denominator the caller passes) are of
    ``dtype`` (:func:`work_dtype`), which may be wider than X's.
    """

    def __init__(self, data, beta, dtype):
        self.data = data
        self.beta = beta
        self.shape = data.shape
        self.dtype = np.dtype(dtype)
        self._buf = None
        self._const = None

    def _buffers(self, rows, q):
        buf = self._buf
        if buf is None or buf[0].shape[1] != q or buf[0].shape[0] < rows:
            n = 1 if self.data.is_sparse else 3
            buf = self._buf = [np.empty((rows, q), dtype=self.dtype) for _ in range(n)]
        return buf

    def _constant(self, eps):
        """The part of the loss that does not depend on WH: ``Σ_{x>eps} x^β`` (β ≠ 0)."""
        if self._const is None:
            if self.beta == 0:
                self._const = -float(self.shape[0]) * float(self.shape[1])
            else:
                values = (self.data._arrays[0][2] if self.data.is_sparse
                          else self.data.X.ravel(order="K"))
                self._const = float(bk.beta_sum_power(values, self.beta, eps,
                                                      row_bounds(values.size)).sum())
        return self._const

    def half(self, side, F, G, num, den, eps, with_loss):
        """``num = (Y ∘ P^(β−2)) G`` and ``den = P^(β−1) G`` for ``Y`` = X (side 0) or Xᵀ.

        ``P = F Gᵀ``, formed and used a block of rows at a time.  With
        ``with_loss``, returns the β-divergence at the current factors (else 0.0).
        """
        p, q = F.shape[0], G.shape[0]
        step = max(1, min(p, _BLOCK_ELEMENTS // max(q, 1)))
        bufs = self._buffers(step, q)
        beta_d = self.dtype.type(self.beta)
        s0 = s1 = 0.0
        if self.data.is_sparse:
            indptr, indices, values = self.data._arrays[side]
        else:
            Y = self.data.X if side == 0 else self.data.X.T
        for a in range(0, p, step):
            b = min(a + step, p)
            P = bufs[0][: b - a]
            np.matmul(F[a:b], G.T, out=P)
            if self.data.is_sparse:
                s0 += float(bk.beta_terms_sparse(indptr, indices, values, a, G, P, num, beta_d,
                                                 eps, with_loss).sum())
            else:
                N, T = bufs[1][: b - a], bufs[2][: b - a]
                s0 += _numerator_dense(Y[a:b], P, N, T, self.beta, eps, with_loss)
                np.matmul(N, G, out=num[a:b])
            s1 += _denominator_part(P, self.beta, eps, with_loss)
            np.matmul(P, G, out=den[a:b])
        if not with_loss:
            return 0.0
        if self.beta == 0:  # Σ (x/wh − log(x/wh)) − m·n
            return s0 + self._constant(eps)
        b = self.beta
        return (self._constant(eps) - b * s0 + (b - 1) * s1) / (b * (b - 1))
