"""Sparse (CSR) data products.

``X`` arrives as its three CSR arrays.  Two ways to form a product:

* **gather** (:func:`csr_matmul`): ``out = X @ B`` row by row from the CSR of
  ``X``; row ``i`` of ``out`` gathers the rows of ``B`` named by row ``i``'s
  nonzeros.  ``Xᵀ W`` is the same kernel on the CSR of ``Xᵀ``.  Fast while
  ``B`` stays in cache.
* **scatter** (:func:`csr_matmul_t`): ``out = Xᵀ @ W`` from the CSR of ``X``,
  each thread streaming its rows of ``X`` and ``W`` and adding into its own
  copy of ``out``; the copies are summed afterwards.  No atomics, and ``W``
  is read once, in order.  It wins when ``W`` is much larger than ``out``:
  on S1 (100000×20000, 1e7 nonzeros, r=32, float64, 2 threads, W = 25.6 MB
  which the 32 MB L3 cannot hold next to the streamed matrix) scatter took
  ~47 ms against ~90–110 ms for the gather.

Loops over a row's nonzeros run over *slices* of ``indices``/``data``
starting at 0: a loop ``for p in range(indptr[i], indptr[i + 1])`` cannot be
proven non-negative, so Numba adds wraparound code to every access and LLVM
does not vectorize it (measured ~6× slower).

Column-band cache blocking of the gather (a band pointer per row and band so
each band's slice of ``B`` stays in L2) was measured and lost on S1 for every
band size from 128 KB to 1 MB (e.g. ``X Hᵀ`` 43–113 ms against 38 ms): with
~100 nonzeros per row, a row holds only a few per band and the per-band
bookkeeping costs more than the cache misses it saves.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel


@kernel(parallel=False)
def _gather_rows(indptr, indices, data, B, first, stop, out, rows, add, nonzero):
    """Rows ``first:stop`` of ``X @ B`` (CSR ``X``), each stored into ``out`` (or added to
    it, ``add``) at row ``rows[t]`` (``rows`` None: row ``t``); ``nonzero[t]`` (unless
    None): whether that row of the product has a nonzero entry.

    Row ``t`` is ``Σ_q data[q]·B[indices[q]]`` over its nonzeros, four per pass (a
    quarter of the accumulator traffic; then two, then one), accumulated in a buffer
    of the output's dtype and stored once.  Four against two, NEWS, one thread, both
    sides: 1.13-1.36× at ranks 2-8, 0.99-1.18× at 20 and 50; the same bits.  The
    nonzeros are reached by unsigned offsets into the whole arrays, not by
    slices of them: a slice per row (passed to a helper) cost a fixed ~70–100 ns a row,
    most of the product where rows are short (100000×2000 with 9 nonzeros a row, r = 2:
    11.3 against 2.6 ms; 20000×5000 with 25: 3.0 against 1.2), and unsigned offsets
    need no wraparound code (see the module docstring).  The same sums in the same
    order as before, bit for bit.
    """
    r = B.shape[1]
    acc = np.empty(r, dtype=out.dtype)
    one = np.uint64(1)
    two = np.uint64(2)
    three = np.uint64(3)
    for t in range(first, stop):
        for k in range(r):
            acc[k] = 0
        lo = np.uint64(indptr[t])
        n = np.uint64(indptr[t + 1]) - lo
        q = np.uint64(0)
        while q + three < n:
            p = lo + q
            v0 = data[p]
            v1 = data[p + one]
            v2 = data[p + two]
            v3 = data[p + three]
            b0 = B[np.uint64(indices[p])]
            b1 = B[np.uint64(indices[p + one])]
            b2 = B[np.uint64(indices[p + two])]
            b3 = B[np.uint64(indices[p + three])]
            for k in range(r):
                acc[k] += v0 * b0[k] + v1 * b1[k] + v2 * b2[k] + v3 * b3[k]
            q += np.uint64(4)
        while q + one < n:
            p = lo + q
            v0 = data[p]
            v1 = data[p + one]
            b0 = B[np.uint64(indices[p])]
            b1 = B[np.uint64(indices[p + one])]
            for k in range(r):
                acc[k] += v0 * b0[k] + v1 * b1[k]
            q += np.uint64(2)
        if q < n:
            p = lo + q
            v0 = data[p]
            b0 = B[np.uint64(indices[p])]
            for k in range(r):
                acc[k] += v0 * b0[k]
        o = t if rows is None else rows[t]
        if add:
            for k in range(r):
                out[o, k] += acc[k]
        else:
            for k in range(r):
                out[o, k] = acc[k]
        if nonzero is not None:
            nz = False
            for k in range(r):
                nz = nz or acc[k] != 0
            nonzero[t] = nz


@kernel(chunks="rows")
def csr_matmul(indptr, indices, data, B, bounds, out):
    """``out = X @ B`` for CSR ``X`` (m×n) and dense C-contiguous ``B`` (n×r).

    Row ``i`` of ``out`` is a sum of rows of ``B`` weighted by the nonzeros
    of row ``i`` of ``X`` (:func:`_gather_rows`).  Returns ``out``.
    """
    for c in range(bounds.shape[0] - 1):
        _gather_rows(indptr, indices, data, B, bounds[c], bounds[c + 1], out, None, False,
                     None)
    return out


@kernel(chunks="rows")
def csr_matmul_add(indptr, indices, data, rows, B, bounds, out, nonzero):
    """``out[rows] += X @ B`` for CSR ``X`` whose row ``t`` is row ``rows[t]`` of the whole
    product (``rows`` distinct: its chunks write disjoint rows of ``out``), and
    ``nonzero[t]``: whether that row of the product has a nonzero entry.

    For ``A += X_bᵀ W_b`` on a mini-batch: ``X`` is the CSR of ``X_bᵀ`` without its
    empty rows, so only the rows of ``out`` that the batch touches are read and
    written, and no n×r product is formed (WordNet, batches of 1024 rows: about
    5500 of 86567 columns).  Each row is summed as :func:`csr_matmul` sums it, so
    ``out[rows] += csr_matmul(...)`` gives the same numbers.  Returns ``out``.
    """
    for c in range(bounds.shape[0] - 1):
        _gather_rows(indptr, indices, data, B, bounds[c], bounds[c + 1], out, rows, True,
                     nonzero)
    return out


@kernel
def csr_matmul_t(indptr, indices, data, W, bounds, partial, out):
    """``out = Xᵀ @ W`` for CSR ``X`` (m×n) and dense C-contiguous ``W`` (m×r).

    Chunk ``c`` (rows ``bounds[c]:bounds[c + 1]`` of ``X``) adds its rows'
    contributions into a private n×r copy: the first chunk into ``out`` itself,
    chunk ``c ≥ 1`` into ``partial[c − 1]`` (``partial`` is (n_chunks − 1, n, r),
    the caller's scratch, so large buffers are not reallocated per call); the
    copies are then added row-parallel into ``out`` in chunk order.  Use one chunk
    per thread: each chunk but the first costs a full copy of ``out`` (WordNet's
    86567×50 float64 ``Xᵀ W``: 35 MB per thread).  Returns ``out``.
    """
    r = W.shape[1]
    n_chunks = bounds.shape[0] - 1
    n = out.shape[0]
    if n_chunks == 0:  # X without rows
        for j in range(n):
            for k in range(r):
                out[j, k] = 0
    for c in prange(n_chunks):
        P = out if c == 0 else partial[c - 1]
        for j in range(n):  # not P[:, :] = 0: see factor_updates._add_into
            p = P[j]
            for k in range(r):
                p[k] = 0
        for i in range(bounds[c], bounds[c + 1]):
            lo, hi = indptr[i], indptr[i + 1]
            d = data[lo:hi]
            ix = indices[lo:hi]
            w = W[i]
            for q in range(d.shape[0]):
                v = d[q]
                p = P[ix[q]]
                for k in range(r):
                    p[k] += v * w[k]
    if n_chunks > 1:
        n_blocks = min(n, 64)
        for b in prange(n_blocks):
            for j in range(b * n // n_blocks, (b + 1) * n // n_blocks):
                o = out[j]
                for c in range(1, n_chunks):
                    p = partial[c - 1, j]
                    for k in range(r):
                        o[k] += p[k]
    return out


@kernel(chunks="partials")
def sampled_moments(indptr, indices, x, A, B, bounds):
    """Sums over a CSR pattern with values ``x``, with ``s = A[i]·B[j]`` at each entry:
    ``Σ (x − s)²``, ``Σ s²``, ``Σ x·s`` and ``Σ x²``, as per-chunk float64
    partials of shape (n_chunks, 4) that the caller sums.

    One kernel for every loss evaluated at a set of entries: the direct
    Frobenius error of sparse X (``‖X − WH‖² = Σ_nz (x − s)² + ‖WH‖² − Σ_nz s²``,
    used when the cheap formula loses its digits to cancellation), the
    correction of a masked fit's loss at the missing entries, and the
    held-out error of cross-validation.
    """
    r = A.shape[1]
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros((n_chunks, 4), dtype=np.float64)
    for c in range(n_chunks):
        s_res = 0.0
        s_fit = 0.0
        s_cross = 0.0
        s_xx = 0.0
        for i in range(bounds[c], bounds[c + 1]):
            a = A[i]
            lo, hi = indptr[i], indptr[i + 1]
            d = x[lo:hi]
            ix = indices[lo:hi]
            for q in range(d.shape[0]):
                b = B[ix[q]]
                wh = 0.0
                for k in range(r):
                    wh += np.float64(a[k]) * np.float64(b[k])
                xv = np.float64(d[q])
                e = xv - wh
                s_res += e * e
                s_fit += wh * wh
                s_cross += xv * wh
                s_xx += xv * xv
        partial[c, 0] = s_res
        partial[c, 1] = s_fit
        partial[c, 2] = s_cross
        partial[c, 3] = s_xx
    return partial
