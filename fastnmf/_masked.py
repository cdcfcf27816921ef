"""Missing values: fit only the observed entries of X (Frobenius loss).

The missing set is always a CSR *pattern* of positions (:class:`Pattern`),
whatever the user gave (a boolean mask of observed entries, a sparse or
boolean matrix of missing ones, or NaN), so sparse X never needs a dense mask.

The fit minimizes ``‖M ∘ (X − WH)‖²`` (M = observed) by majorize–minimize:
each half-step works on the completed matrix ``X̃ = X₀ + S``, with ``X₀`` = X
with the missing entries zeroed and ``S`` = the current ``W H`` sampled on the
missing positions.  ``‖X̃ − WH‖² = ‖M∘(X − WH)‖² + ‖(1−M)∘(W'H' − WH)‖²`` is
at least the masked loss and equal to it at the current factors ``W', H'``,
so any step that lowers it (a HALS sweep, several of them, an MU step) lowers
the masked loss: the masked loss never increases.  :class:`MaskedData` is a
data object like :class:`~fastnmf._data.DenseData` whose ``product`` returns
``X̃ F``; the Frobenius loop's row side binds it to the fit's factors
(:class:`fastnmf.solvers.frobenius.FrobeniusRows`, in memory and on each Dask
block), so ``S`` is always taken from the factors as they are when the product is
asked for; the KL products take the factors as arguments and need no binding.  The
loss is exact: the solver's cheap formula
``‖X₀‖² − 2⟨X̃ᵀW, Ht⟩ + ⟨WᵀW, HHᵀ⟩`` is corrected by
``2 Σ_missing S∘(WH) − Σ_missing (WH)²`` (:meth:`MaskedData.correct_sqerr`).

Each product costs the unmasked product plus ``2·r`` flops per missing entry.

:class:`PreparedX` validates X and resolves the missing set once, and builds
the data objects once per thread: what :func:`fastnmf.nmf` does per call and
:func:`fastnmf.fit_many` does once for many fits.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numba
import numpy as np
import scipy.sparse as sp

from . import _validation as v
from . import kernels
from ._chunks import nnz_bounds
from ._data import _BLOCK_ELEMENTS, _sqnorm_f64, make_data


class Pattern(NamedTuple):
    """Positions of an m×n matrix as canonical CSR structure (sorted, unique, int64)."""

    indptr: np.ndarray
    indices: np.ndarray
    shape: tuple

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    def rows(self) -> np.ndarray:
        """The row of every position (COO rows), in pattern order."""
        return np.repeat(np.arange(self.shape[0], dtype=np.int64), np.diff(self.indptr))

    def transpose(self) -> Pattern:
        m, n = self.shape
        order = np.lexsort((self.rows(), self.indices))  # by column, then row
        return _pattern_from_coords(self.indices[order], self.rows()[order], (n, m),
                                    canonical=True)

    def tocsr(self) -> sp.csr_matrix:
        """A boolean scipy CSR matrix with True at the positions."""
        return sp.csr_matrix((np.ones(self.nnz, dtype=bool), self.indices, self.indptr),
                             shape=self.shape)


def _pattern_from_coords(rows, cols, shape, canonical=False) -> Pattern:
    """The pattern of the positions ``(rows[q], cols[q])`` (duplicates allowed)."""
    m, n = shape
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if not canonical:
        lin = np.unique(rows * n + cols)  # sorted by row, then column
        rows, cols = lin // n, lin % n
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=m), out=indptr[1:])
    return Pattern(indptr, np.ascontiguousarray(cols), (int(m), int(n)))


def check_missing_input(A, name: str, shape):
    """A user's boolean ``mask`` (True = observed) or ``missing`` (True = missing, also
    a scipy sparse matrix) checked against X's ``shape``, before any pattern is made;
    returns it as an array (numpy, scipy sparse, or an array that converts itself
    lazily, such as a dask array: checked by its dtype and shape, not computed)."""
    if sp.issparse(A):
        if name == "mask":
            raise TypeError(
                "mask must be a dense boolean array (True = observed); for sparse X give the "
                "held-out entries as missing=<sparse matrix> instead.")
    else:
        arr = A if hasattr(A, "to_delayed") else np.asarray(A)
        if arr.dtype != bool:
            if name == "mask":
                raise TypeError(
                    f"mask must be a boolean array (True = observed), got dtype {arr.dtype}; "
                    "convert it with mask.astype(bool) if that is meant.")
            raise TypeError(
                f"missing must be 'nan', a scipy sparse matrix or a boolean array (True = "
                f"missing), got an array of dtype {arr.dtype}.")
        A = arr
    if tuple(A.shape) != tuple(shape):
        raise ValueError(f"{name} has shape {tuple(A.shape)} but X has shape {tuple(shape)}.")
    return A


def pattern_of(missing, shape) -> Pattern:
    """The pattern of a user's ``missing``: a sparse matrix or a boolean array.

    Sparse: the stored entries with a nonzero value (NaN counts) are missing.
    Dense: must be boolean, True = missing.
    """
    missing = check_missing_input(missing, "missing", shape)
    if sp.issparse(missing):
        coo = missing.tocoo()
        keep = coo.data != 0
        return _pattern_from_coords(coo.row[keep], coo.col[keep], shape)
    rows, cols = np.nonzero(missing)
    return _pattern_from_coords(rows, cols, shape, canonical=True)


def _mask_pattern(mask, shape) -> Pattern:
    """The missing positions of a boolean mask of *observed* entries."""
    rows, cols = np.nonzero(~check_missing_input(mask, "mask", shape))
    return _pattern_from_coords(rows, cols, shape, canonical=True)


def _nan_pattern(X, is_sparse) -> Pattern:
    if is_sparse:
        coo = X.tocoo()
        keep = np.isnan(coo.data)
        return _pattern_from_coords(coo.row[keep], coo.col[keep], X.shape)
    rows, cols = np.nonzero(np.isnan(X))
    return _pattern_from_coords(rows, cols, X.shape, canonical=True)


def _union(patterns, shape) -> Pattern:
    if len(patterns) == 1:
        return patterns[0]
    rows = np.concatenate([p.rows() for p in patterns])
    cols = np.concatenate([p.indices for p in patterns])
    return _pattern_from_coords(rows, cols, shape)


def values_at(X, pattern: Pattern) -> np.ndarray:
    """X's entries at the pattern's positions, in pattern order (X dense or sparse)."""
    rows, cols = pattern.rows(), pattern.indices
    if not sp.issparse(X):
        return np.asarray(X[rows, cols])
    csr = X.tocsr()
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    out = np.zeros(pattern.nnz, dtype=csr.dtype)
    # Both sides sorted by (row, column): match positions by linear index.
    n = X.shape[1]
    x_lin = np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(csr.indptr)) * n
    x_lin += csr.indices
    p_lin = rows * n + cols
    at = np.searchsorted(x_lin, p_lin)
    found = at < x_lin.shape[0]
    found[found] = x_lin[at[found]] == p_lin[found]
    out[found] = csr.data[at[found]]
    return out


def _zero_missing(X, is_sparse, pattern: Pattern):
    """X with the missing entries zeroed (a copy only when one of them is not 0)."""
    if not is_sparse:
        rows, cols = pattern.rows(), pattern.indices
        if not np.any(X[rows, cols] != 0):  # NaN != 0: copied and zeroed too
            return X
        X0 = np.array(X, order="K", copy=True)
        X0[rows, cols] = 0
        return X0
    coo = X.tocoo()
    n = X.shape[1]
    lin = coo.row.astype(np.int64) * n + coo.col
    p_lin = pattern.rows() * n + pattern.indices
    drop = np.isin(lin, p_lin)
    if not drop.any():
        return X
    keep = ~drop
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=X.shape)


NAN_HINT = (" To fit X with missing values, pass missing='nan': the NaN entries are then "
            "left out of the fit.")


def check_missing_counts(n_missing: int, shape, given: dict) -> None:
    """Refuse a missing set that is all of X; warn when a user's ``mask`` or ``missing``
    (``given``: name -> its count of missing entries) leaves more than half of X missing.

    The two take boolean arrays of opposite meaning (``mask``: True = observed,
    ``missing``: True = missing), so one passed for the other leaves out most
    of X; a genuine fit with most entries missing is rare.  Counts, not patterns: a
    Dask fit sums them over its row blocks (:mod:`fastnmf.dask.data`).
    """
    m, n = shape
    if n_missing == m * n:
        raise ValueError("Every entry of X is missing: nothing to fit.")
    for name, count in given.items():
        fraction = count / (m * n)
        if fraction > 0.5:
            own, other, meant = (("observed", "missing", "missing") if name == "mask"
                                 else ("missing", "mask", "observed"))
            v.warn(
                f"{name} (True = {own}) leaves {fraction:.0%} of X's entries missing. If "
                f"True marks the {meant} entries, pass it as {other}= instead.")


def missing_set(X, is_sparse, mask=None, missing=None):
    """The missing set of a validated X (``v.check_X(X, values=False)``) and X with it
    zeroed, validated: ``(X0, is_sparse, pattern, given)``, ``given`` the count of
    missing entries of each of the user's sets by parameter name (for
    :func:`check_missing_counts`, which this does not call: a Dask fit calls this on each
    row block and checks the sums)."""
    patterns, given = [], {}
    if isinstance(missing, str):
        if missing != "nan":
            raise ValueError(f"missing must be 'nan', a scipy sparse matrix or a boolean "
                             f"array, got {missing!r}.")
        patterns.append(_nan_pattern(X, is_sparse))
    elif isinstance(missing, Pattern):  # select_rank's held-out set: no swap check
        patterns.append(missing)
    elif missing is not None:
        patterns.append(pattern_of(missing, X.shape))
        given["missing"] = patterns[-1].nnz
    if mask is not None:
        patterns.append(_mask_pattern(mask, X.shape))
        given["mask"] = patterns[-1].nnz
    pattern = _union(patterns, X.shape)
    X0, is_sparse = v.check_X(_zero_missing(X, is_sparse, pattern))
    return X0, is_sparse, pattern, given


def masked_solver(objective, solver, update_H=True) -> str:
    """The solver of a fit with missing values (``objective``: an objective of
    :mod:`fastnmf.solvers`, ``solver`` as the user gave it), or a clear error: the
    Frobenius loss takes every solver; KL takes MU (the EM step), the default there, and
    refuses CCD asked for by name (its sweeps change the model within a sweep); other β
    and ``update_H=False`` are refused.  The same for in-memory and Dask fits."""
    resolved = objective.resolve_solver(solver)
    if objective.name == "kullback-leibler":
        if resolved != "mu" and solver is not None:
            raise ValueError(f"Missing values (mask/missing) with the KL loss need "
                             f"solver='mu' (the EM/MU step), got solver={solver!r}.")
        resolved = objective.resolve_solver("mu")
    elif objective.name != "frobenius":
        raise ValueError("Missing values (mask/missing) are supported with beta_loss "
                         "'frobenius' and 'kullback-leibler', not yet with other β.")
    if not update_H:
        raise ValueError("Missing values (mask/missing) need update_H=True.")
    return resolved


def check_data(X, mask=None, missing=None):
    """Validate X and resolve its missing set.

    Returns ``(X0, is_sparse, pattern)``: ``X0`` is X as :func:`check_X`
    returns it, with the missing entries zeroed (a copy only if needed; X is
    never modified); ``pattern`` is the missing set, or None without one.
    Entries at missing positions are never read: they may be NaN, infinite
    or negative.  ``missing`` may also be a :class:`Pattern` (fastnmf's own
    held-out sets), taken as is.  A user's ``mask`` or ``missing`` that leaves
    more than half of X missing is warned about (a likely swap of the two).
    """
    if mask is None and missing is None:
        # NaN is an error unless missing values are asked for: say how
        X, is_sparse = v.check_X(X, nan_hint=NAN_HINT)
        return X, is_sparse, None
    X, is_sparse = v.check_X(X, values=False)
    X0, is_sparse, pattern, given = missing_set(X, is_sparse, mask, missing)
    check_missing_counts(pattern.nnz, X.shape, given)
    return X0, is_sparse, pattern


def missing_terms(patterns, side: int, S: np.ndarray, W: np.ndarray, Ht: np.ndarray,
                  bounds=None) -> float:
    """``2 Σ_missing S∘(WH) − Σ_missing (WH)²`` (float64), what
    :meth:`MaskedData.correct_sqerr` adds to the cheap formula, for the ``S`` a product
    of ``side`` was made with (in the order of ``patterns[side]``: the missing set's
    pattern and its transpose)."""
    pattern = patterns[side]
    if bounds is None:
        bounds = nnz_bounds(pattern.indptr)
    P, Q = (W, Ht) if side == 0 else (Ht, W)
    _, sq, cross, _ = kernels.sampled_moments(pattern.indptr, pattern.indices, S, P, Q,
                                              bounds).sum(0)
    return float(2.0 * cross - sq)


class MaskedData:
    """The data products of the completed matrix ``X̃ = X₀ + (W Htᵀ on the missing set)``.

    Wraps the DenseData or SparseData of ``X₀``; :meth:`bind` attaches the
    fit's factors (updated in place by the solver), from which every
    :meth:`product` samples ``S``.  ``sqnorm`` is ``‖X₀‖²``, the squared norm
    of the observed entries.
    """

    masked = True
    order = None  # X's columns as given: a masked fit never reorders them

    def __init__(self, base, pattern: Pattern, pattern_t: Pattern):
        self.base = base
        self.is_sparse = base.is_sparse
        self.backend = base.backend
        self.shape = base.shape
        self.dtype = base.dtype
        self.nnz = base.nnz + pattern.nnz  # entries a product touches
        self.sqnorm = base.sqnorm
        self.pattern, self.pattern_t = pattern, pattern_t
        self._patterns = ((pattern.indptr, pattern.indices),
                          (pattern_t.indptr, pattern_t.indices))
        self._bounds = (nnz_bounds(pattern.indptr), nnz_bounds(pattern_t.indptr))
        self._vals = (np.empty(pattern.nnz, dtype=base.dtype),
                      np.empty(pattern.nnz, dtype=base.dtype))
        self._out = [None, None]
        self._last = None  # the side of the last product (its S is in _vals[side])
        self._W = self._Ht = None

    @property
    def nonzeros(self) -> int:
        """Entries a product touches: X₀'s nonzeros and the missing positions (cost model)."""
        return self.base.nonzeros + self.pattern.nnz

    def bind(self, W: np.ndarray, Ht: np.ndarray) -> None:
        """Sample ``S`` from these factors (C-contiguous, updated in place) from now on."""
        self._W, self._Ht = W, Ht
        self._out = [None, None]

    def _pair(self, side):
        return (self._W, self._Ht) if side == 0 else (self._Ht, self._W)

    def product(self, F: np.ndarray, side: int, out: np.ndarray) -> np.ndarray:
        """``X̃ @ F`` (side 0) or ``X̃ᵀ @ F`` (side 1) into ``out``, X̃ at the bound factors."""
        if self._W is None:
            raise RuntimeError("MaskedData.product before bind(W, Ht).")
        self.base.product(F, side, out)
        indptr, indices = self._patterns[side]
        A, B = self._pair(side)
        kernels.sampled_matmul_add(indptr, indices, A, B, F, self._bounds[side],
                                   self._vals[side], out)
        self._out[side] = out
        self._last = side
        return out

    def last_sample(self):
        """``(side, S)`` of the last product made (S in the pattern's order of that side:
        X's for side 0, Xᵀ's for side 1), or None before any."""
        return None if self._last is None else (self._last, self._vals[self._last])

    def correct_sqerr(self, err: float, A: np.ndarray, W: np.ndarray, Ht: np.ndarray) -> float:
        """The masked ``‖M∘(X − WH)‖²`` from the solver's ``‖X₀‖² − 2⟨A, F⟩ + ⟨WᵀW, HHᵀ⟩``.

        ``A`` is the last product of one side (``X̃ Hᵀ`` or ``X̃ᵀ W``), made
        with the current value of the factor it multiplied; ``⟨A, F⟩`` then
        exceeds ``⟨X₀, WH⟩`` by ``Σ_missing S∘(WH)``, and ``‖X₀ − WH‖²``
        exceeds the masked loss by ``Σ_missing (WH)²``.  An ``A`` that is
        not the last product (no solver does that) gets the direct formula.
        """
        side = 0 if A is self._out[0] else 1 if A is self._out[1] else None
        if side is None:
            return self.direct_sqerr(W, Ht)
        return float(err + missing_terms((self.pattern, self.pattern_t), side,
                                         self._vals[side], W, Ht, self._bounds[side]))

    def missing_sqsum(self, W: np.ndarray, Ht: np.ndarray) -> float:
        """``Σ_missing (WH)²`` in float64."""
        indptr, indices = self._patterns[0]
        zeros = np.zeros(self.pattern.nnz, dtype=self.dtype)
        return float(kernels.sampled_moments(indptr, indices, zeros, W, Ht,
                                             self._bounds[0]).sum(0)[1])

    def direct_sqerr(self, W: np.ndarray, Ht: np.ndarray, HHt=None) -> float:
        """``‖M∘(X − W Htᵀ)‖²`` evaluated directly, accumulated in float64 (``HHt``: Ht's
        float64 Gram, if at hand, for sparse X's formula)."""
        if self.is_sparse:
            return self.base.direct_sqerr(W, Ht, HHt) - self.missing_sqsum(W, Ht)
        X = self.base.X
        m, n = self.shape
        indptr, indices = self._patterns[0]
        step = max(1, _BLOCK_ELEMENTS // n)
        total = 0.0
        for start in range(0, m, step):
            stop = min(m, start + step)
            R = X[start:stop] - W[start:stop] @ Ht.T
            lo, hi = indptr[start], indptr[stop]
            R[np.repeat(np.arange(stop - start), np.diff(indptr[start:stop + 1])),
              indices[lo:hi]] = 0
            total += _sqnorm_f64(R)
        return total


class PreparedX:
    """X validated and its missing set resolved, once; data objects built once.

    :func:`fastnmf.nmf` accepts one in place of X (that is how
    :func:`fastnmf.fit_many` shares the work among many fits).  One data object
    is built per backend and Numba thread count (the backend's choice, ``‖X‖²``,
    the count of nonzeros, sparse X's CSR and the CSR of Xᵀ: made once for
    all the fits); each Python thread fits with its own copy of it
    (``for_thread()``), which shares those and holds its own product buffers.
    The pattern's transpose is shared too.
    """

    def __init__(self, X, *, mask=None, missing=None):
        self.X, self.is_sparse, self.pattern = check_data(X, mask, missing)
        self.masked = self.pattern is not None
        self.pattern_t = self.pattern.transpose() if self.masked else None
        self.shape = self.X.shape
        self.dtype = self.X.dtype
        self._local = threading.local()
        self._shared = {}  # (backend, threads) -> the data object the threads copy
        self._lock = threading.Lock()

    def data(self, backend: str = "auto", make=make_data, reorder: bool = False):
        """The data object for this thread (built on first use by ``make``), for ``backend``;
        with ``reorder``, unmasked sparse X may be held with its columns reordered
        (``data.order``, :func:`fastnmf._data.column_order`)."""
        cache = self._local.__dict__.setdefault("cache", {})
        reorder = reorder and not self.masked
        key = (backend, numba.get_num_threads(), reorder)
        data = cache.get(key)
        if data is None:
            with self._lock:
                shared = self._shared.get(key)
                if shared is None:
                    shared = self._shared[key] = make(self.X, self.is_sparse, backend,
                                                      reorder=reorder)
            data = shared.for_thread()
            if self.masked:
                data = MaskedData(data, self.pattern, self.pattern_t)
            cache[key] = data
        return data
