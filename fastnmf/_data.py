"""The data products: the only code that knows whether X is dense or sparse.

A solver asks a data object for ``X @ F`` (``side=0``, F is n×r) or
``Xᵀ @ F`` (``side=1``, F is m×r), for ``‖X‖²``, and for the squared error
computed directly.  Sparsity is decided once, in :func:`make_data`.
"""

from __future__ import annotations

import copy
import functools
import threading

import numba
import numpy as np
import scipy.sparse as sp

from . import kernels
from ._chunks import n_chunks_for, nnz_bounds, row_bounds
from ._threads import run_parts, split_bounds
from .kernels.factor_updates import ROW_GROUP

# Below this fraction of nonzeros a dense ndarray is factorized with the
# sparse kernels (backend="auto").  Measured on the development machine (AMD
# EPYC, 2 cores, OpenBLAS; 5000×2000, r=20, 2 threads; ms per HALS iteration,
# dense vs sparse): float64 10 % 18.2 vs 9.5, 20 % 18.1 vs 13.4, 30 % 17.3 vs
# 15.7 (whole 30-iteration fits with the CSR conversion break even near 25 %);
# float32 10 % 11.1 vs 6.5, 20 % 10.8 vs 11.2.  Script: benchmarks/crossover.py.
SPARSE_DENSITY_THRESHOLD = {np.dtype(np.float64): 0.20, np.dtype(np.float32): 0.15}

# Elements per block when a float32 array is summed in float64 or the error is
# evaluated directly: 2 MiB of float64.  (At 2²² elements the float64 block
# alone added 32 MiB to a float32 fit's peak memory.)
_BLOCK_ELEMENTS = 1 << 18


def _sqnorm_f64(values: np.ndarray) -> float:
    """‖values‖² accumulated in float64 without a full-size float64 copy."""
    flat = values.ravel(order="K")  # a view for C- or F-contiguous input
    if flat.dtype == np.float64:
        return float(flat @ flat)
    total = 0.0
    for start in range(0, flat.size, _BLOCK_ELEMENTS):
        block = flat[start : start + _BLOCK_ELEMENTS].astype(np.float64)
        total += float(block @ block)
    return total


class DenseData:
    """Dense X: products by BLAS (NumPy ``@``), already multi-threaded.

    Each product can be asked of BLAS in two layouts: ``X @ F`` (a tall,
    skinny result) or ``(Fᵀ @ Xᵀ)ᵀ`` (a short, wide result, then a small
    transposed copy).  They cost the same flops but not the same time, and
    they round differently, so the layout is a fixed rule of dtype, memory
    order and size (:func:`dense_layout`), never a timing: a timed choice
    flips between processes on close calls and a fixed ``random_state``
    would no longer give the same factors.
    """

    is_sparse = False
    backend = "dense"
    order = None  # columns as in X (see make_data)

    def __init__(self, X: np.ndarray, nonzeros: int | None = None,
                 sqnorm: float | None = None):
        if not (X.flags.c_contiguous or X.flags.f_contiguous):
            X = np.ascontiguousarray(X)
        self.X = X
        if nonzeros is not None:  # counted already (make_data's density): not again
            self.__dict__["nonzeros"] = int(nonzeros)
        self.shape = X.shape
        self.dtype = X.dtype
        self.nnz = X.size
        self.sqnorm = _sqnorm_f64(X) if sqnorm is None else float(sqnorm)
        self._wide_out = {}  # r×rows buffers for the wide layout, per (side, row range)

    @functools.cached_property
    def nonzeros(self) -> int:
        """Nonzero entries of X: the same count for either backend (a cost model input)."""
        return int(np.count_nonzero(self.X))

    def for_thread(self) -> DenseData:
        """A data object for another thread's fits: the same X and ``‖X‖²`` (computed
        once), its own product buffers."""
        other = copy.copy(self)
        other._wide_out = {}
        return other

    def max(self) -> float:
        """The largest entry of X (0.0 for an empty X)."""
        return float(self.X.max()) if self.X.size else 0.0

    def _product_in(self, layout: str, F: np.ndarray, side: int, out: np.ndarray, then=None):
        Xs = self.X if side == 0 else self.X.T
        # bounds on whole HALS row groups, so `then` may update the factor's rows a:b
        bounds = split_bounds(Xs.shape[0], self.X.size >= _SPLIT_MIN_ELEMENTS, ROW_GROUP)
        if layout == "dot":  # reads F's columns
            F = np.ascontiguousarray(F.T)

        def part(a, b):
            self._rows(layout, Xs, F, side, out, a, b)
            return None if then is None else then(a, b)

        results = run_parts(part, bounds)
        return results if then is not None else out

    def _rows(self, layout, Xs, F, side, out, a, b):
        """Rows ``a:b`` of ``Xs @ F`` into ``out[a:b]``: one BLAS call ("tall", "wide"),
        or a Numba loop at small rank (:mod:`fastnmf.kernels.dense`): "dot" along the
        C-contiguous Xs's rows (F given as its C-contiguous r×n transpose), "axpy" along
        the rows of the C-contiguous ``Xs.T``."""
        if layout == "dot":
            return kernels.rows_times(Xs, F, a, b, out, self.dtype.type(0))
        if layout == "tall":
            return np.matmul(Xs[a:b], F, out=out[a:b])
        key = (side, a, b)
        buf = self._wide_out.get(key)
        if buf is None or buf.shape != (F.shape[1], b - a):
            buf = self._wide_out[key] = np.empty((F.shape[1], b - a), dtype=self.dtype)
        if layout == "axpy":
            kernels.cols_times(Xs.T, F, a, b, buf, self.dtype.type(0))
        else:
            np.matmul(F.T, Xs[a:b].T, out=buf)
        out[a:b] = buf.T
        return out

    def product(self, F: np.ndarray, side: int, out: np.ndarray) -> np.ndarray:
        return self._product_in(self._layout(F, side, out), F, side, out)

    def add_product(self, F: np.ndarray, side: int, out: np.ndarray, scratch,
                    changed: bool = False) -> np.ndarray:
        """``out += X @ F`` (side 0) or ``out += Xᵀ @ F`` (side 1): the BLAS product into
        ``scratch()`` (an array shaped as ``out``, the caller's to reuse), then one add.
        Returns ``out``; with ``changed``, the rows of ``out`` the product changed (its
        nonzero rows, as :meth:`SparseData.add_product` finds them)."""
        P = self.product(F, side, scratch())
        np.add(out, P, out=out)
        return np.flatnonzero(P.any(axis=1)) if changed else out

    def product_then(self, F: np.ndarray, side: int, out: np.ndarray, then) -> list:
        """:meth:`product`, and ``then(a, b)`` on rows ``a:b`` of ``out`` as soon as they
        are made, in the thread that made them (with one Numba thread where the product is
        split); returns the results in row order.  A factor update that follows a product
        then needs no parallel region of its own, and finds its rows of ``out`` in cache:
        a Numba region started after a BLAS call wakes sleeping threads, 45–220 µs on a
        2-core VM (``GOMP_SPINCOUNT=0``), twice per iteration."""
        return self._product_in(self._layout(F, side, out), F, side, out, then)

    def _layout(self, F, side, out) -> str:
        # Xs (X or Xᵀ) C-contiguous: dot products along its rows, else axpys across them
        along = (side == 0) == bool(self.X.flags.c_contiguous)
        if F.shape[1] <= (SMALL_RANK_ROWS if along else SMALL_RANK_COLS):
            return "dot" if along else "axpy"
        return dense_layout(self.X, side)

    def direct_sqerr(self, W: np.ndarray, Ht: np.ndarray, HHt=None) -> float:
        """‖X − W Htᵀ‖² evaluated block by block, accumulated in float64 (``HHt``: as
        :meth:`SparseData.direct_sqerr` takes it; unused, the dense error is summed
        entry by entry)."""
        m, n = self.shape
        step = max(1, _BLOCK_ELEMENTS // n)

        def rows(a, b):
            total = 0.0
            for start in range(a, b, step):
                stop = min(start + step, b)
                total += _sqnorm_f64(self.X[start:stop] - W[start:stop] @ Ht.T)
            return total

        return float(sum(run_parts(rows, split_bounds(m))))


def product_then(data, F: np.ndarray, side: int, out: np.ndarray, then) -> list:
    """``data.product(F, side, out)``, then ``then(a, b)`` over rows of ``out``: per part, in
    the part's thread, for :class:`DenseData` (:meth:`DenseData.product_then`); once, over
    all rows, for any other data (sparse products are Numba kernels already, and masked
    data adds its correction after the whole product)."""
    if type(data) is DenseData:
        return data.product_then(F, side, out, then)
    data.product(F, side, out)
    return [then(0, out.shape[0])]


def gram_f64(F: np.ndarray) -> np.ndarray:
    """``Fᵀ F`` in float64 (r×r), for the directly computed error of sparse X."""
    return F.T.astype(np.float64, copy=False) @ F


def gram(F: np.ndarray) -> np.ndarray:
    """``Fᵀ F`` (r×r); split into row ranges summed in order where the products are split
    (:func:`fastnmf._threads.product_parts`), so the same result for any thread count
    that splits."""
    bounds = split_bounds(F.shape[0], F.shape[0] * F.shape[1] ** 2 >= _GRAM_SPLIT_FLOPS)
    if len(bounds) == 2:
        return F.T @ F
    partial = run_parts(lambda a, b: F[a:b].T @ F[a:b], bounds)
    out = partial[0]
    for part in partial[1:]:
        out += part
    return out


# Grams under this many multiply-adds are not worth a hand-off to other threads.
_GRAM_SPLIT_FLOPS = 1 << 22


# Products with F of at most this many columns run as Numba loops, not BLAS
# (fastnmf.kernels.dense).  Split over 2 threads as a fit splits them, ms, OpenBLAS
# (Haswell kernels) → the loops, `X @ F` / `Xᵀ W`: 5000×2000 float64 r = 2 3.47 → 2.00 /
# 3.91 → 1.68, r = 6 4.74 → 2.83 / 5.07 → 2.55, r = 8 3.62 → 3.86 / 4.24 → 2.88;
# float32 r = 6 2.14 → 1.79 / 1.87 → 1.42, r = 8 1.60 → 2.05 / 1.67 → 1.50; 1000×500
# float64 r = 6 0.206 → 0.161 / 0.287 → 0.159.  One thread (a sweep's concurrent fits),
# float64: 1000×500 r = 8 0.242 → 0.257 / 0.332 → 0.207, r = 10 0.294 → 0.267 / 0.285
# → 0.236, r = 20 0.403 → 0.622 / 0.395 → 0.458.  BLAS's GEMM gets faster at 8
# columns, so the dot form (`X @ F` along X's rows) stops at 6, the axpy form (`Xᵀ W`
# across them) at 10.
SMALL_RANK_ROWS = 6
SMALL_RANK_COLS = 10

# Below this many elements of X a product takes microseconds: one BLAS call, "tall".
_SPLIT_MIN_ELEMENTS = 1 << 18
# From this many elements the wide layout pays off where the rule below says so.
_WIDE_MIN_ELEMENTS = 1 << 20


def dense_layout(X: np.ndarray, side: int) -> str:
    """The BLAS layout of ``X @ F`` (side 0) or ``Xᵀ @ F`` (side 1): "tall" or "wide".

    Measured on OpenBLAS (AVX-512, 2 threads; 19 shapes from 1000×500 to
    60000×784, r = 10–50, both memory orders): in float64 the wide form won
    wherever X is not tiny (60000×784, r=20: 38 against 52 ms for ``X Hᵀ``,
    37 against 60 for ``Xᵀ W``), and already at 2^18 elements when X is read
    across its memory order; in float32 the tall form wins when X is read
    along its memory order (60000×784: 23 against 27 ms) and the wide one,
    by 5–20 %, when it is read across it from 2^20 elements.  Close calls
    (within ~10 %) remain either way; a rule, unlike a timing, gives every
    process the same rounding.
    """
    if X.size < _SPLIT_MIN_ELEMENTS:
        return "tall"
    along = X.flags.c_contiguous if side == 0 else X.flags.f_contiguous
    big = X.size >= _WIDE_MIN_ELEMENTS
    if X.dtype == np.float64:
        return "wide" if (big or not along) else "tall"
    return "wide" if (big and not along) else "tall"


class _Transpose:
    """The CSR of Xᵀ (arrays, row bounds) of one sparse X, made on first use and shared
    by the :meth:`SparseData.for_thread` copies.  It refers to X's matrix and a lock,
    never to a :class:`SparseData`: no reference cycle, so a dropped batch's arrays are
    freed at once, not at the next garbage collection (a stream of ``partial_fit``
    blocks held ~1 MB of dead WordNet blocks per block until one ran)."""

    __slots__ = ("_lock", "_source", "made")

    def __init__(self, source):
        self._source, self.made, self._lock = source, None, threading.Lock()

    def get(self):
        with self._lock:
            if self.made is None:
                csr_t = _canonical_csr(self._source.T)
                self.made = ((csr_t.indptr, csr_t.indices, csr_t.data),
                             nnz_bounds(csr_t.indptr))
            return self.made

    def __getstate__(self):
        """Without the lock, which cannot be pickled: Dask moves row blocks between workers."""
        return {"_source": self._source, "made": self.made}

    def __setstate__(self, state):
        self._source, self.made = state["_source"], state["made"]
        self._lock = threading.Lock()


class _Sides:
    """A pair indexed by side, ``(of X, of Xᵀ)``: item ``index`` of a :class:`_Transpose`
    is side 1, made on first use; ``held`` is side 1 as held now (None: not made)."""

    __slots__ = ("_index", "_transpose", "first")

    def __init__(self, first, transpose: _Transpose, index: int):
        self.first, self._transpose, self._index = first, transpose, index

    @property
    def held(self):
        made = self._transpose.made
        return None if made is None else made[self._index]

    def __getitem__(self, side: int):
        if side == 0:
            return self.first
        if side != 1:
            raise IndexError(side)
        return self._transpose.get()[self._index]

    def __iter__(self):
        """What is held now (side 1 only once made): for counting bytes."""
        yield self.first
        if self.held is not None:
            yield self.held


class SparseData:
    """Sparse X: held as canonical CSR, and as CSR of Xᵀ where a product needs it;
    products by Numba kernels.

    The CSR of ``X`` is the user's own arrays when they are already canonical
    CSR of the right dtype (no copy).  The CSR of ``Xᵀ`` (one extra copy) is
    made at the first product that reads it: when the scatter kernel serves
    ``Xᵀ W``, X alone serves the fit.

    Each side's product has two kernels (see :mod:`fastnmf.kernels.sparse`):
    *gather* from the CSR whose rows are the output rows, or *scatter* from
    the other CSR into one private copy of the output per thread (the first
    thread's is the output itself).  They round
    differently, so the choice is a fixed rule (:meth:`_choose`), not a timing.
    Scatter is chosen when X is big (≥ 2^20 nonzeros), the per-thread copies
    are not large beside the operand they spare from random access (``threads
    × out rows ≤ 2 × operand rows``) and that operand is too big for cache
    (≥ 14 MiB).  Measured (2 threads, r = 10 and 50, float32 and float64, both
    sides, both kernels timed on WordNet, S1, a tall 500000×2000, a wide
    20000×200000 and a 30000×10000 matrix): the rule picks the faster kernel
    in all 40 cases.  WordNet ``Xᵀ W`` (r=50): scatter 68 ms against 94
    (float64), 34 against 48 (float32), and no CSR of Xᵀ.

    With one thread scatter has no private copies to make or sum, and the two-thread
    rule misjudged it (it sent WordNet's ``X Hᵀ`` at r = 50 to scatter, 108 ms
    against 54 for gather, float64): there scatter is chosen when its random writes
    stay in a small output (≤ 16 MiB), or when the output has no more rows than the
    operand and is ≤ 64 MiB.  Measured on the same five matrices at r = 10, 20 and
    50 (60 cases, 1 thread, December's eighth session): the old rule lost 263 ms
    over the 60 products against the faster kernel each time (27 cases more than
    5 % slow), this one 49 ms (6); WordNet r = 20 ``Xᵀ W`` 42 → 12 ms (float64),
    20 → 12 (float32).  Below 2^20 nonzeros gather serves both sides on one thread
    too: seven matrices from 2000×800 (2·10⁴ nonzeros) to 100000×2000 (9·10⁵) and
    NEWS, r = 2, 5, 10 and 20, float32 and float64, both sides: gather 128 ms over the
    112 products, scatter 129 ms (December's tenth session, after the gather lost its
    per-row slices, :func:`fastnmf.kernels.sparse._gather_rows`: it took 280 ms), and
    small fits then never compile the scatter kernel (its ``prange`` costs a first
    sparse fit ~0.7 s of compilation).
    """

    is_sparse = True
    backend = "sparse"
    order = None  # or X's columns as held, when make_data reordered them

    def __init__(self, X):
        csr = _canonical_csr(X)
        self.shape = csr.shape
        self.dtype = csr.dtype
        self.nnz = csr.nnz
        source = X if X.format == "csc" else csr  # X.T of a CSC X is CSR with X's own arrays
        self._transpose = _Transpose(source)  # shared with for_thread()'s copies
        self._arrays = _Sides((csr.indptr, csr.indices, csr.data), self._transpose, 0)
        self._bounds = _Sides(nnz_bounds(csr.indptr), self._transpose, 1)
        self._scratch = [None, None]  # per side: (bounds, private outputs, threads)
        self._nonempty = [None, None]  # per side: :meth:`_touched`'s arrays

    def for_thread(self) -> SparseData:
        """A data object for another thread's fits: the same CSR of X and of Xᵀ (made
        once, by whichever fit needs it first), ``‖X‖²`` and count of nonzeros, its
        own scatter buffers.  Many fits of one sparse X
        (:func:`fastnmf.fit_many`) hold one transpose, not one per thread."""
        for cached in ("sqnorm", "nonzeros"):  # computed here once, not per thread
            getattr(self, cached)
        other = copy.copy(self)
        other._scratch = [None, None]
        return other

    def release_transpose(self) -> None:
        """Drop the CSR of Xᵀ (made again if a product needs it)."""
        self._transpose.made = None
        self._nonempty[1] = None

    @functools.cached_property
    def sqnorm(self) -> float:
        """``‖X‖²`` (float64), made at the first use: a fit asks once, at its first pass."""
        return _sqnorm_f64(self._arrays[0][2])

    @functools.cached_property
    def nonzeros(self) -> int:
        """Nonzero entries of X (stored zeros not counted), as :attr:`DenseData.nonzeros`."""
        return int(np.count_nonzero(self._arrays[0][2]))

    def max(self) -> float:
        """The largest entry of X (X ≥ 0: the largest stored value; 0.0 if none)."""
        values = self._arrays[0][2]
        return float(values.max()) if values.size else 0.0

    def product(self, F: np.ndarray, side: int, out: np.ndarray, method=None) -> np.ndarray:
        """``X @ F`` (side 0) or ``Xᵀ @ F`` (side 1) into ``out``; returns ``out``.

        ``method`` ("gather" or "scatter") overrides the automatic choice.
        """
        if method is None:
            method = self._choose(F, side, out)
        if method == "gather":
            indptr, indices, data = self._arrays[side]
            return kernels.csr_matmul(indptr, indices, data, F, self._bounds[side], out)
        indptr, indices, data = self._arrays[1 - side]
        bounds, partial = self._scatter_scratch(side, out)
        return kernels.csr_matmul_t(indptr, indices, data, F, bounds, partial, out)

    def add_product(self, F: np.ndarray, side: int, out: np.ndarray, scratch=None,
                    changed: bool = False) -> np.ndarray:
        """``out += X @ F`` (side 0) or ``out += Xᵀ @ F`` (side 1), on only the rows of
        ``out`` that X's nonzeros reach (``scratch``: unused, no product is formed).

        A mini-batch's ``X_bᵀ W_b`` touches a few of ``out``'s rows (WordNet, 1024 rows:
        5476 of 86567): forming the n×r product and adding it costs two passes over
        ``out`` for them (:func:`fastnmf.kernels.csr_matmul_add`).  Each touched row is
        summed as the gather kernel sums it.  Returns ``out``; with ``changed``, the rows
        of ``out`` the product changed (its nonzero rows: with X ≥ 0 and F ≥ 0 the same
        rows as the dense product's, whatever the order of the sums).
        """
        indptr, indices, data, rows, bounds = self._touched(side)
        nonzero = np.empty(rows.size, dtype=np.bool_)
        kernels.csr_matmul_add(indptr, indices, data, rows, F, bounds, out, nonzero)
        return rows[nonzero] if changed else out

    def reached(self, side: int) -> np.ndarray:
        """The rows of side ``side``'s products that X's nonzeros reach (side 1: the
        columns of X with a nonzero), the rows :meth:`add_product` writes."""
        return self._touched(side)[3]

    def _touched(self, side: int):
        """The CSR whose rows are side ``side``'s output rows, without its empty rows:
        ``(indptr, indices, data, rows, bounds)``, ``rows`` the output rows they are,
        ``bounds`` chunks balanced by nonzeros; made once per side.

        Side 1 packed from a CSR of Xᵀ made for it alone drops that CSR (its n+1 row
        pointers): a mini-batch of 1024 WordNet rows keeps 5476 + 1 row pointers, not
        86567 + 1, and ``MiniBatchNMF.fit`` keeps every batch's (WordNet: 100 MB less)."""
        made = self._nonempty[side]
        held = self._arrays.first if side == 0 else self._arrays.held
        if made is not None and held is not None and made[1] is not held[1]:
            made = None  # Xᵀ was made again since: pack that one, do not hold two
        if made is None:
            indptr, indices, data = self._arrays[side]
            rows = np.flatnonzero(np.diff(indptr)).astype(indptr.dtype)
            packed = np.append(indptr[rows], indptr[-1])
            made = self._nonempty[side] = (packed, indices, data, rows, nnz_bounds(packed))
            if held is None:
                self._transpose.made = None
        return made

    def _scatter_scratch(self, side, out):
        n_threads = numba.get_num_threads()
        scratch = self._scratch[side]
        if (scratch is None or scratch[2] != n_threads or scratch[1].shape[1:] != out.shape
                or scratch[1].dtype != out.dtype):
            bounds = nnz_bounds(self._arrays[1 - side][0], n_threads)
            # one private n×r copy per chunk but the first (which adds into ``out``)
            shape = (max(bounds.shape[0] - 2, 0), *out.shape)
            scratch = self._scratch[side] = (bounds, np.empty(shape, dtype=out.dtype), n_threads)
        return scratch[:2]

    def _choose(self, F, side, out) -> str:
        """Scatter where its per-thread outputs are small beside an operand too large
        for cache (so gathering its rows misses); a fixed rule, not a timing, so that
        every process rounds the same way (see the class docstring)."""
        operand_rows, rank = F.shape
        scatter = scatter_pays(self.nnz, out.shape[0], operand_rows, rank * F.itemsize,
                               numba.get_num_threads())
        return "scatter" if scatter else "gather"

    def direct_sqerr(self, W: np.ndarray, Ht: np.ndarray, HHt=None) -> float:
        """‖X − W Htᵀ‖² from the nonzeros and the Grams, in float64; ``HHt``: Ht's Gram
        in float64 where the caller has it (row blocks of one fit share it: it is
        the n×r² part of the cost)."""
        indptr, indices, data = self._arrays[0]
        res, fit = kernels.sampled_moments(indptr, indices, data, W, Ht,
                                           self._bounds[0]).sum(0)[:2]
        WtW = gram_f64(W)
        if HHt is None:
            HHt = gram_f64(Ht)
        return float(res + np.vdot(WtW, HHt) - fit)


# Below this many nonzeros a product takes about a millisecond: gather (no private
# copies, and small fits never compile the scatter kernel).
_SCATTER_MIN_NNZ = 1 << 20
_SCATTER_MIN_OPERAND_BYTES = 14 << 20
# One thread: scatter writes into the output itself (no private copies, no sum of them),
# and pays where its random writes stay within these many bytes of output.
_SCATTER_1T_OUT_BYTES = 64 << 20  # ... when the output has no more rows than the operand
_SCATTER_1T_SMALL_OUT_BYTES = 16 << 20  # ... whatever the operand


def scatter_pays(nnz: int, out_rows: int, operand_rows: int, row_bytes: int,
                 threads: int) -> bool:
    """Whether a sparse product with this many output and operand rows (``row_bytes``
    per operand row, and per output row) runs by scatter rather than gather
    (:meth:`SparseData._choose`).

    Small X (any thread count): gather.  Two threads or more: the per-thread copies
    must be small beside the operand that scatter spares from random access, and that
    operand too big for cache.  One thread: the output's size alone decides (see
    :class:`SparseData`)."""
    if nnz < _SCATTER_MIN_NNZ:
        return False
    if threads == 1:
        out_bytes = out_rows * row_bytes
        return (out_bytes <= _SCATTER_1T_SMALL_OUT_BYTES
                or (out_rows <= operand_rows and out_bytes <= _SCATTER_1T_OUT_BYTES))
    return (threads * out_rows <= 2 * operand_rows
            and operand_rows * row_bytes >= _SCATTER_MIN_OPERAND_BYTES)


def _canonical_csr(X):
    """CSR with sorted, unique indices and index arrays of one dtype; never modifies X."""
    csr = X.tocsr()
    if not csr.has_canonical_format:
        csr = csr.copy()  # the arrays may be the caller's: never sort them in place
        csr.sum_duplicates()  # also sorts the indices
    if csr.indices.dtype != csr.indptr.dtype:
        idx = np.promote_types(csr.indices.dtype, csr.indptr.dtype)
        csr = sp.csr_matrix(
            (csr.data, csr.indices.astype(idx), csr.indptr.astype(idx)), shape=csr.shape
        )
    return csr


BACKENDS = ("auto", "dense", "sparse")


# Sparse X's columns in order of their count of nonzeros, most first, for a fit: where a
# few columns hold most nonzeros (text: WordNet's top tenth of the terms hold 81 %), the
# rows of Hᵀ that every product reads most sit together in memory instead of spread
# over all of Hᵀ, and both products run from cache more often.  Measured (WordNet, 2
# threads, quiet, alternated 3×): a one-sweep HALS iteration 150 → 129 ms (r = 50,
# float64), 108 → 91 (r = 50, float32), 214 → 165 (r = 100, float32), 56 → 53 (r = 20,
# float64); the reordered copy costs 0.1 s once.  Only where it can pay: X big, wide
# enough that Hᵀ leaves cache, and skewed (a uniform pattern's top tenth holds ~10 %).
# The reordered copy is the one copy of X a fit may hold, so only fits that never need
# the CSR of Xᵀ reorder: the Frobenius loops where scatter serves Xᵀ W (reorders()).
REORDER_MIN_NNZ = 1 << 20
REORDER_MIN_COLUMNS = 1 << 14
REORDER_TOP_SHARE = 0.5


def column_order(X) -> np.ndarray | None:
    """Sparse X's columns by count of nonzeros, most first (stable), or None where a fit
    keeps X's own order (small, narrow or evenly filled X, or already in that order)."""
    n = X.shape[1]
    if X.nnz < REORDER_MIN_NNZ or n < REORDER_MIN_COLUMNS:
        return None
    if X.format == "csr":
        counts = np.bincount(X.indices, minlength=n)
    elif X.format == "csc":
        counts = np.diff(X.indptr)
    else:
        counts = np.bincount(X.tocoo().col, minlength=n)
    order = np.argsort(-counts, kind="stable")
    if counts[order[: max(1, n // 10)]].sum() < REORDER_TOP_SHARE * counts.sum():
        return None
    if np.array_equal(order, np.arange(n)):
        return None
    return order


def reorders(X, loss: str, rank: int) -> bool:
    """Whether a fit of unmasked sparse X for ``loss`` at ``rank`` may hold X with its
    columns reordered: a Frobenius fit whose ``Xᵀ W`` the scatter kernel serves, so
    the reordered copy is the only copy of X it holds (KL and β fits read the CSR of
    Xᵀ too).  At this thread's Numba thread count, as :meth:`SparseData._choose`."""
    m, n = X.shape
    row_bytes, threads = rank * X.dtype.itemsize, numba.get_num_threads()
    return (loss == "frobenius" and scatter_pays(X.nnz, n, m, row_bytes, threads)
            and not scatter_pays(X.nnz, m, n, row_bytes, threads))


def in_x_order(A: np.ndarray, order: np.ndarray, out: np.ndarray | None = None):
    """Rows of ``A`` held in ``order`` (row ``j`` is X's column ``order[j]``) put back in
    X's column order, into ``out`` (a new array by default); returns it."""
    if out is None:
        out = np.empty_like(A)
    out[order] = A
    return out


def _permuted_csr(X, order: np.ndarray):
    """Canonical CSR of ``X[:, order]`` (new arrays; X's own are never modified)."""
    csr = _canonical_csr(X)
    inverse = np.empty(order.size, dtype=csr.indices.dtype)
    inverse[order] = np.arange(order.size, dtype=csr.indices.dtype)
    out = sp.csr_matrix((csr.data.copy(), inverse[csr.indices], csr.indptr.copy()),
                        shape=csr.shape)
    out.sort_indices()
    return out


class OriginalColumns:
    """A column-reordered data object (``data.order``) seen in X's own column order, for
    what is computed once per fit from X's products (the initialization)."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.order = data, data.shape, data.dtype, data.order

    def product(self, F: np.ndarray, side: int, out: np.ndarray) -> np.ndarray:
        if side == 0:  # X F = X[:, order] F[order]
            return self.data.product(np.ascontiguousarray(F[self.order]), 0, out)
        return in_x_order(self.data.product(F, 1, np.empty_like(out)), self.order, out)


def make_data(X, is_sparse: bool, backend: str = "auto", reorder: bool = False,
              figures=None):
    """Choose the data products once per fit.

    ``auto``: sparse input stays sparse (never densified); a dense array with
    fewer than ``SPARSE_DENSITY_THRESHOLD[dtype]`` nonzeros (20 % for float64, 15 % for
    float32) goes to the sparse kernels.
    ``dense``/``sparse`` force the choice (``dense`` densifies sparse input).
    ``reorder``: sparse X may be held with its columns reordered (:func:`column_order`;
    the data object's ``order``, None when kept): its products then take and give the
    columns' side (Hᵀ, Xᵀ W) in that order.  ``figures``: dense X's
    ``(nonzeros, ‖X‖², …)`` where the caller has them (a row of
    :func:`fastnmf.kernels.dense_stats`).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}.")
    nonzeros = sqnorm = None
    if backend == "auto":
        if is_sparse:
            backend = "sparse"
        else:
            if figures is None:
                nonzeros = np.count_nonzero(X)
            else:
                nonzeros, sqnorm = int(figures[0]), float(figures[1])
            threshold = SPARSE_DENSITY_THRESHOLD[np.dtype(X.dtype)]
            backend = "sparse" if nonzeros / X.size < threshold else "dense"
    if backend == "sparse":
        order = column_order(X) if reorder and is_sparse else None
        if order is None:
            return SparseData(X if is_sparse else sp.csr_matrix(X))
        data = SparseData(_permuted_csr(X, order))
        data.order = order
        return data
    return DenseData(X.toarray() if is_sparse else X, nonzeros, sqnorm)


def factor_bounds(n_rows: int) -> np.ndarray:
    """Chunks for the factor updates: rows cost the same, so equal ranges.

    Bounds are multiples of ``ROW_GROUP`` (64, the HALS kernel's row group), so
    the factor update gives the same result for any number of threads.
    """
    size = ROW_GROUP
    groups = -(-n_rows // size)
    bounds = np.minimum(row_bounds(groups, min(groups, n_chunks_for(n_rows))) * size, n_rows)
    return np.unique(bounds)
