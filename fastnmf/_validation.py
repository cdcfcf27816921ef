"""Every check of user input, in one place, with messages that name the problem."""

from __future__ import annotations

import numbers
import os
import sys
import warnings

import numpy as np
import scipy.sparse as sp

FLOAT_DTYPES = (np.float64, np.float32)


def _check_values(values: np.ndarray, name: str, nan_hint: str = "") -> None:
    """NaN, inf and negative entries, in two passes without temporaries."""
    if values.size == 0:
        return
    lo, hi = values.min(), values.max()
    if np.isnan(lo) or np.isnan(hi):
        raise ValueError(f"Input {name} contains NaN.{nan_hint}")
    if np.isinf(lo) or np.isinf(hi):
        raise ValueError(f"Input {name} contains infinity.")
    if lo < 0:
        raise ValueError(
            f"Negative values in data passed to {name} (minimum {lo:g}); "
            "NMF needs a nonnegative matrix."
        )


def _float_dtype(dtype: np.dtype, name: str) -> np.dtype:
    """float32 stays float32, float64 stays float64, bool/int become float64."""
    if dtype in FLOAT_DTYPES:
        return dtype
    if dtype.kind in "biu" or dtype == np.float16:
        return np.dtype(np.float64)
    if dtype.kind == "f":  # longdouble
        return np.dtype(np.float64)
    raise TypeError(
        f"{name} has dtype {dtype}; expected a real numeric dtype "
        "(float64, float32, int or bool)."
    )


def check_X(X, name: str = "X", values: bool = True, nan_hint: str = ""):
    """Validate the data matrix.

    Returns ``(X, is_sparse)`` where ``X`` is a float32/float64 ndarray (any
    memory order, never modified) or a scipy sparse matrix/array of that dtype.
    Conversions copy; a valid float input is returned as is.  ``values=False``
    converts without checking the entries (missing values: their positions
    may hold anything, and the rest is checked once they are zeroed).
    ``nan_hint`` is appended to the message for NaN entries.
    """
    if X is None:
        raise TypeError(f"{name} must be a 2-D array or sparse matrix, got None.")
    if sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got a sparse array with ndim={X.ndim}.")
        dtype = _float_dtype(X.dtype, name)
        if X.dtype != dtype:
            X = X.astype(dtype)
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"{name} is empty: shape {X.shape}.")
        # COO/CSR/CSC/BSR all expose their stored values as .data (DOK/LIL do not).
        if X.format not in ("coo", "csr", "csc", "bsr"):
            X = X.tocsr()
        if values:
            _check_values(X.data, name, nan_hint)
        return X, True
    if not hasattr(X, "__array__") and not isinstance(X, (list, tuple)):
        hint = (" To fit an AnnData and keep the factors in it, use "
                "fastnmf.anndata.nmf(adata, rank).") if type(X).__name__ == "AnnData" else ""
        raise TypeError(
            f"{name} must be a 2-D array-like or scipy sparse matrix, got {type(X).__name__}."
            f"{hint}"
        )
    arr = np.asarray(X)
    if arr.dtype == object:
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} has dtype object and is not numeric.") from exc
    dtype = _float_dtype(arr.dtype, name)
    if arr.ndim != 2:
        raise ValueError(
            f"Expected a 2-D array for {name}, got {arr.ndim}-D with shape {arr.shape}. "
            "Reshape your data with X.reshape(-1, 1) for a single feature "
            "or X.reshape(1, -1) for a single sample."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}.")
    if arr.dtype != dtype:
        arr = arr.astype(dtype)
    if values:
        _check_values(arr, name, nan_hint)
    return arr, False


def check_rank(rank) -> int:
    """The number of components: a positive integer."""
    if isinstance(rank, (bool, np.bool_)) or not isinstance(rank, numbers.Integral):
        raise TypeError(f"rank must be a positive integer, got {rank!r}.")
    rank = int(rank)
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}.")
    return rank


def check_factor(F, shape, name: str, dtype) -> np.ndarray:
    """A user-supplied W or H: right shape, finite, nonnegative, not all zero.

    Always returns a fresh C-contiguous array of ``dtype`` (the solvers update
    it in place, and the user's array must not change).
    """
    if F is None:
        raise ValueError(f"{name} must be given (init='custom').")
    if sp.issparse(F):
        raise TypeError(f"{name} must be a dense array, got a sparse matrix.")
    arr = np.asarray(F)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {arr.dtype}; expected a real numeric dtype.")
    if arr.shape != tuple(shape):
        raise ValueError(
            f"Array with wrong shape passed to {name}. Expected {tuple(shape)}, "
            f"but got {arr.shape}."
        )
    _check_values(arr, name)
    if arr.size and np.max(arr) == 0:
        raise ValueError(f"Array passed to {name} is full of zeros.")
    return np.array(arr, dtype=dtype, order="C", copy=True)


def check_nonneg_float(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}.")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value}.")
    return value


def check_positive_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a positive integer, got {value!r}.")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}.")
    return int(value)


def check_option(value, name: str, options) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {value!r}.")
    return value


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category=UserWarning) -> None:
    """``warnings.warn`` pointed at the user's line: the first caller outside fastnmf,
    whichever public function (``nmf``, ``fit_many``, the estimator, Dask) led here, so
    no hand-counted ``stacklevel`` goes stale when a call path changes."""
    frame, level = sys._getframe(0), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            _PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level if frame is not None else 2)
