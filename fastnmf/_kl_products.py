"""The data products of the KL loops: ``(X ⊘ F Gᵀ) G``, its loss, and the CCD sweeps.

Part of the data layer, with :mod:`fastnmf._data`: the only KL code that knows
whether X is dense or sparse (:func:`kl_products` decides once per fit) and
reads a data object's arrays.  Each side runs one kernel on ``(Y, F, G)`` with
``Y ≈ F Gᵀ``: ``(X, W, Ht)`` (side 0) and ``(Xᵀ, Ht, W)`` (side 1).
"""

from __future__ import annotations

import weakref

import numpy as np

from ._chunks import row_bounds
from ._threads import run_parts, split_bounds
from .kernels import kl as klk
from .kernels.masked import sampled_ratio_add

# Rows of dense X per block of the MU products: ~2 MiB of float64, which keeps
# the block (written by BLAS, rewritten by the ratio kernel, read by BLAS) in
# the L2/L3 cache.
_BLOCK_ELEMENTS = 1 << 18
# Below this many elements of X the numerator is not split over threads.
_SPLIT_MIN_ELEMENTS = 1 << 18
# Dense X up to this size gets a C-ordered copy of its transpose for the CCD sweep
# of the factor that pairs with the columns of Y, which otherwise copies them into a
# contiguous block every sweep (1000×500, one thread, H's sweep: 0.75 → 0.56 ms at
# r = 2, 1.38 → 1.18 at r = 6, 2.18 → 1.98 at r = 10; the same sums, bit for bit).
# Small X only: the copy is one more X in memory, made once per data object (the
# fits of fit_many share it), and on large X the block copy is a smaller share.
_TRANSPOSED_COPY_MAX_BYTES = 8 << 20


class SparseKL:
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

    def ccd(self, side, F, G, Gsum, l1, l2, n_newton, tol, eps, with_loss, bounds_F):
        indptr, indices, values, bounds = self._args(side)
        return float(klk.kl_ccd_sparse(indptr, indices, values, F, G, Gsum, l1, l2,
                                       n_newton, tol, eps, with_loss,
                                       bounds).sum())


class DenseKL:
    """KL products for :class:`DenseData`: blocks of rows of the C-ordered one of X, Xᵀ.

    ``Y`` is ``X`` or ``Xᵀ``, whichever is C-contiguous, so that a block of
    its rows is contiguous.  For a block, ``P = F_blk Gᵀ`` (BLAS), ``P ← Y_blk
    ⊘ max(P, eps)`` (Numba, with the loss), then ``F``'s numerator is
    ``P G`` and ``G``'s numerator accumulates ``Pᵀ F_blk`` (BLAS): no m×n
    temporary.

    Where the fit splits its products (:func:`fastnmf._threads.product_parts`:
    BLAS on one thread), the rows of ``Y`` are split into one range per thread,
    each running its blocks through single-threaded BLAS and a single-threaded
    ratio kernel side by side, with its own block buffer and, for ``G``'s side,
    its own partial numerator (summed in order).  Alternating multi-threaded
    BLAS calls and Numba regions per block left one pool spinning while the
    other worked: K1 (5000×2000, r=20) MU-KL ran 49 ms/it on 2 threads
    against 66 on one.
    """

    def __init__(self, data):
        X = data.X
        self.transposed = not X.flags.c_contiguous
        self.Y = X.T if self.transposed else X
        p, q = self.Y.shape
        self.step = max(1, min(p, _BLOCK_ELEMENTS // max(q, 1)))
        self._scratch = {}  # (what, first row of the part) -> buffer
        self._ylogy_values = {}  # eps -> Σ_{y>eps} y log y − y
        self._Yt = None  # a C-ordered Yᵀ for small X's CCD (_TRANSPOSED_COPY_MAX_BYTES)

    def _buffer(self, what, start, shape):
        """A per-part scratch array: "P" (a block), "acc" and "tmp" (G's numerator); or
        per side (``start`` the side), "GT" (CCD's other factor, transposed)."""
        buf = self._scratch.get((what, start))
        if buf is None or buf.shape != shape:
            buf = self._scratch[what, start] = np.empty(shape, dtype=self.Y.dtype)
        return buf

    def _blocks(self, start=0, stop=None):
        stop = self.Y.shape[0] if stop is None else stop
        P = self._buffer("P", start, (min(self.step, stop - start), self.Y.shape[1]))
        for a in range(start, stop, self.step):
            b = min(a + self.step, stop)
            yield a, b, P[: b - a]

    def _ylogy(self, eps):
        """``Σ_{y>eps} y log y − y`` over X, computed once: the loss's constant part."""
        value = self._ylogy_values.get(eps)
        if value is None:
            flat = self.Y.ravel()  # a view: Y is C-contiguous
            value = self._ylogy_values[eps] = float(
                klk.kl_ylogy(flat, eps, row_bounds(flat.size)).sum())
        return value

    def _ratio(self, a, b, P, F_rows, G_cols, eps, with_loss):
        """``P ← Y[a:b] ⊘ (F_rows[a:b] G_colsᵀ)``; returns ``−Σ y log(WH)`` over the block."""
        np.matmul(F_rows[a:b], G_cols.T, out=P)
        return -float(klk.kl_ratio_dense(self.Y[a:b], P, eps, with_loss).sum())

    def numerator(self, side, F, G, eps, with_loss, out):
        """``out = (Y ⊘ (F Gᵀ)) G`` for ``side`` 0 (F = W) or 1 (F = Ht), and the KL."""
        row_side = (side == 0) != self.transposed  # is F the factor of Y's rows?
        bounds = split_bounds(self.Y.shape[0], self.Y.size >= _SPLIT_MIN_ELEMENTS)

        def rows(start, stop):
            """The KL part over rows start:stop, and (G's side) their partial numerator."""
            loss = 0.0
            if row_side:
                for a, b, P in self._blocks(start, stop):
                    loss += self._ratio(a, b, P, F, G, eps, with_loss)
                    np.matmul(P, G, out=out[a:b])
                return loss, None
            acc = self._buffer("acc", start, out.shape)  # out = Σ_blocks Pᵀ G_blk
            acc[...] = 0
            tmp = self._buffer("tmp", start, out.shape)
            for a, b, P in self._blocks(start, stop):
                loss += self._ratio(a, b, P, G, F, eps, with_loss)
                np.matmul(P.T, G[a:b], out=tmp)
                acc += tmp
            return loss, acc

        parts = run_parts(rows, bounds)
        if not row_side:
            out[...] = parts[0][1]
            for _, acc in parts[1:]:
                out += acc
        loss = sum(part_loss for part_loss, _ in parts)
        return loss + self._ylogy(eps) if with_loss else 0.0

    def loss_nz(self, W, Ht, eps):
        F, G = (Ht, W) if self.transposed else (W, Ht)
        return self._ylogy(eps) + sum(self._ratio(a, b, P, F, G, eps, True)
                                      for a, b, P in self._blocks())

    def ccd(self, side, F, G, Gsum, l1, l2, n_newton, tol, eps, with_loss, bounds_F):
        Y = self.Y
        by_rows = (side == 0) != self.transposed  # is F the factor of Y's rows?
        if not by_rows and Y.nbytes <= _TRANSPOSED_COPY_MAX_BYTES:
            if self._Yt is None:
                self._Yt = np.ascontiguousarray(Y.T)
            Y, by_rows = self._Yt, True
        GT = self._buffer("GT", side, G.shape[::-1])  # r×q: component k of every entry
        GT[...] = G.T  # is one row (a buffer kept, not a new array per half-step)
        ylogwh = float(klk.kl_ccd_dense(Y, F, GT, Gsum, l1, l2, n_newton, tol,
                                        eps, with_loss, by_rows, bounds_F).sum())
        return self._ylogy(eps) - ylogwh if with_loss else 0.0


class MaskedKL:
    """KL products of the completed matrix ``X̃ = X₀ + S`` of a :class:`MaskedData`.

    As for the Frobenius loss (:mod:`fastnmf._masked`), the missing entries
    are imputed by the current model ``S = F Gᵀ``: the generalized KL
    ``D(X̃‖WH) = D_M(X‖WH) + Σ_missing S log(S/WH) − S + WH`` is at least the
    masked divergence ``D_M`` and equal to it at the current factors, so an MU
    step on ``X̃`` (which lowers ``D(X̃‖·)``) never raises ``D_M``: the EM
    algorithm for Poisson data with missing entries.  At the current factors
    ``X̃ ⊘ WH`` is 1 at a missing position, so the numerator is ``X₀``'s plus
    the missing positions' rows of ``G`` (:func:`sampled_ratio_add`), and the
    loss is ``X₀``'s minus ``Σ_missing WH`` (the solver adds ``Σ WH`` over
    every entry).  MU only: CCD's sweeps change the model within a sweep.
    """

    def __init__(self, data):
        self.base = kl_products(data.base)
        self.patterns = data._patterns
        self.bounds = data._bounds

    def _missing(self, side, F, G, eps, out):
        indptr, indices = self.patterns[side]
        return float(sampled_ratio_add(indptr, indices, F, G, G, eps, self.bounds[side],
                                       out).sum())

    def numerator(self, side, F, G, eps, with_loss, out):
        loss = self.base.numerator(side, F, G, eps, with_loss, out)
        missing_wh = self._missing(side, F, G, eps, out)
        return loss - missing_wh if with_loss else 0.0

    def loss_nz(self, W, Ht, eps):
        scratch = np.zeros_like(W)
        return self.base.loss_nz(W, Ht, eps) - self._missing(0, W, Ht, eps, scratch)

    def ccd(self, *args):
        raise ValueError("Missing values with the KL loss need solver='mu'.")


def kl_products(data):
    """The KL products of a :class:`DenseData`, :class:`SparseData` or
    :class:`MaskedData` (of either), chosen once per data object: the fits that share
    one (:func:`fastnmf.fit_many`'s in one thread) share its buffers and dense X's
    ``Σ y log y − y`` (a pass over X with a log per entry, made once).

    KL products are their own (so a loop makes them once and hands them to each of
    its sides); so is a data product that runs the sides where its blocks are (its own
    ``row_side``: :class:`fastnmf.dask.data.DaskData`, whose blocks make theirs)."""
    if isinstance(data, (SparseKL, DenseKL, MaskedKL)) or hasattr(data, "row_side"):
        return data
    engine = _ENGINES.get(data)
    if engine is None:
        if getattr(data, "masked", False):
            engine = MaskedKL(data)
        else:
            engine = SparseKL(data) if data.is_sparse else DenseKL(data)
        _ENGINES[data] = engine
    return engine


# One engine per data object, dropped with it (a data object serves one thread at a time).
_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
