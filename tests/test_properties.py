"""Property-based tests: any valid matrix, any layout, any rank gives a sane fit.

Properties, for dense (C, Fortran, strided views) and sparse (CSR, CSC, COO,
``csr_array``, with stored zeros, duplicate and unsorted indices, int32/int64
indices) input of every shape up to ~40×30 and values from denormals to 1e30:

* W and H are finite and nonnegative;
* the objective never increases for HALS and MU (up to round-off);
* dense and sparse input give the same factors from the same start;
* the input is never modified;
* the same seed gives the same result.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import fastnmf

settings.register_profile(
    "fastnmf", deadline=None, max_examples=25, derandomize=True, print_blob=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],  # explain: slow
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("fastnmf")

SOLVERS = ("hals", "mu")
SCALES = (1e-30, 1e-12, 1.0, 1e12, 1e30)


@st.composite
def matrices(draw, max_m=40, max_n=30):
    """A nonnegative float/int matrix with zero rows/columns and extreme values."""
    m = draw(st.integers(1, max_m))
    n = draw(st.integers(1, max_n))
    dtype = draw(st.sampled_from([np.float64, np.float32, np.int64]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    density = draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    X = rng.random((m, n)) * (rng.random((m, n)) < density)
    if dtype == np.int64:
        X = np.floor(X * 5).astype(np.int64)
    else:
        scale = draw(st.sampled_from(SCALES))
        if dtype == np.float32:
            # float32 HALS overflows past ~1e12: see test_float32_large_values_stay_finite
            scale = min(scale, 1e6)
        X = (X * scale).astype(dtype)
        if draw(st.booleans()) and X.size:  # a denormal entry
            X.flat[rng.integers(X.size)] = np.finfo(dtype).smallest_subnormal
    if draw(st.booleans()) and m > 1:
        X[rng.integers(m)] = 0  # an all-zero row
    if draw(st.booleans()) and n > 1:
        X[:, rng.integers(n)] = 0  # an all-zero column
    return X


def _layout(X, layout):
    if layout == "C":
        return np.ascontiguousarray(X)
    if layout == "F":
        return np.asfortranarray(X)
    big = np.zeros((2 * X.shape[0], 2 * X.shape[1]), dtype=X.dtype, order="F")
    big[::2, ::2] = X
    return big[::2, ::2]  # neither C- nor F-contiguous


def _sparse(X, fmt, index_dtype, messy, rng):
    """X in a sparse format; ``messy``: stored zeros, duplicates, unsorted indices."""
    rows, cols = np.nonzero(X)
    vals = X[rows, cols]
    if messy and X.size:
        k = max(1, len(vals) // 3)
        # split some values into two duplicates, add explicit zeros, shuffle
        pick = rng.integers(0, max(len(vals), 1), size=k) if len(vals) else np.array([], int)
        half = vals[pick] / 2 if len(vals) else vals[:0]
        if X.dtype.kind == "f" and len(vals):
            vals = vals.copy()
            vals[pick] -= half
            # pick may repeat: recompute so the sum stays exact per entry
            vals = X[rows, cols].copy()
            uniq = np.unique(pick)
            half = vals[uniq] / 2
            vals[uniq] -= half
            rows = np.concatenate([rows, rows[uniq]])
            cols = np.concatenate([cols, cols[uniq]])
            vals = np.concatenate([vals, half])
        zr = rng.integers(0, X.shape[0], size=k)
        zc = rng.integers(0, X.shape[1], size=k)
        rows, cols = np.concatenate([rows, zr]), np.concatenate([cols, zc])
        vals = np.concatenate([vals, np.zeros(k, dtype=X.dtype)])
        order = rng.permutation(len(vals))
        rows, cols, vals = rows[order], cols[order], vals[order]
    rows, cols = rows.astype(index_dtype), cols.astype(index_dtype)
    coo = sp.coo_matrix((vals, (rows, cols)), shape=X.shape)
    if fmt == "coo":
        return coo
    if fmt == "csr_array":
        out = sp.csr_array(coo, copy=False) if not messy else _raw(sp.csr_array, coo, rows,
                                                                    cols, vals, X.shape)
    else:
        out = _raw({"csr": sp.csr_matrix, "csc": sp.csc_matrix}[fmt], coo, rows, cols,
                   vals, X.shape) if messy else coo.asformat(fmt)
    out.indices = out.indices.astype(index_dtype)
    out.indptr = out.indptr.astype(index_dtype)
    return out


def _raw(cls, coo, rows, cols, vals, shape):
    """CSR/CSC built by hand, keeping the duplicates and the unsorted order."""
    major, minor = (rows, cols) if cls in (sp.csr_matrix, sp.csr_array) else (cols, rows)
    n_major = shape[0] if cls in (sp.csr_matrix, sp.csr_array) else shape[1]
    order = np.argsort(major, kind="stable")  # group by row, keep minor order shuffled
    indptr = np.zeros(n_major + 1, dtype=np.int64)
    np.add.at(indptr, major + 1, 1)
    indptr = np.cumsum(indptr)
    return cls((vals[order], minor[order], indptr), shape=shape)


def _snapshot(X):
    if sp.issparse(X):
        parts = [X.data, getattr(X, "indices", None), getattr(X, "indptr", None),
                 getattr(X, "row", None), getattr(X, "col", None)]
        return [None if p is None else p.copy() for p in parts]
    return [X.copy()]


def _assert_unchanged(X, snap):
    for before, after in zip(snap, _snapshot(X), strict=True):
        if before is not None:
            assert after.dtype == before.dtype
            assert_array_equal(after, before)


def _assert_sane(res, shape, rank):
    m, n = shape
    assert res.W.shape == (m, rank) and res.H.shape == (rank, n)
    for F in (res.W, res.H):
        assert np.all(np.isfinite(F)), "factor not finite"
        assert F.min() >= 0, "negative factor entry"
    assert np.all(np.isfinite(res.history["loss"]))


def _sqnorm(X):
    values = X.data if sp.issparse(X) else X
    return float(np.sum(np.asarray(values, dtype=np.float64) ** 2))


def _assert_monotone(loss, dtype, sqnorm):
    """Non-increasing up to round-off, relative to the loss and to ½‖X‖²."""
    loss = np.asarray(loss)
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    steps = np.diff(loss)
    slack = rtol * np.abs(loss[:-1]) + 1e2 * np.finfo(dtype).eps * sqnorm + 1e-300
    assert np.all(steps <= slack), f"objective rose: {loss}"


def _start(shape, rank, dtype, seed):
    rng = np.random.default_rng(seed)
    m, n = shape
    return (rng.random((m, rank)) + 0.1).astype(dtype), (rng.random((rank, n)) + 0.1).astype(dtype)


# ------------------------------------------------------------------ dense


@PROFILE
@given(X=matrices(), layout=st.sampled_from(["C", "F", "strided"]),
       solver=st.sampled_from(SOLVERS), extra_rank=st.integers(0, 2),
       rank_frac=st.floats(0, 1), seed=st.integers(0, 100),
       accelerate=st.sampled_from(["both", True]))
def test_dense_fit_is_sane(X, layout, solver, extra_rank, rank_frac, seed, accelerate):
    X = _layout(X, layout)
    rank = max(1, int(rank_frac * min(X.shape))) + extra_rank
    snap = _snapshot(X)
    kw = dict(solver=solver, init="random" if rank > min(X.shape) else None,
              random_state=seed, max_iter=15, tol=0, accelerate=accelerate)
    res = fastnmf.nmf(X, rank, **kw)
    _assert_unchanged(X, snap)
    _assert_sane(res, X.shape, rank)
    if solver == "mu" or accelerate is True:  # extrapolation's objective may rise
        _assert_monotone(res.history["loss"], res.W.dtype, _sqnorm(X))
    again = fastnmf.nmf(X, rank, **kw)
    assert_array_equal(again.W, res.W)
    assert_array_equal(again.H, res.H)


# ------------------------------------------------------------------ sparse


@PROFILE
@given(X=matrices(), fmt=st.sampled_from(["csr", "csc", "coo", "csr_array"]),
       index_dtype=st.sampled_from([np.int32, np.int64]), messy=st.booleans(),
       solver=st.sampled_from(SOLVERS), rank=st.integers(1, 6), seed=st.integers(0, 100))
def test_sparse_equals_dense_from_same_start(X, fmt, index_dtype, messy, solver, rank,
                                             seed):
    rng = np.random.default_rng(seed)
    S = _sparse(X, fmt, index_dtype, messy, rng)
    dtype = np.float32 if X.dtype == np.float32 else np.float64
    W0, H0 = _start(X.shape, rank, dtype, seed)
    snap = _snapshot(S)
    # the products' round-off, not extrapolation's restart test (a branch on two nearly
    # equal losses near an exact fit), is what this compares: HALS without extrapolation
    kw = dict(solver=solver, W=W0, H=H0, max_iter=10, tol=0, accelerate="sweeps")
    res_s = fastnmf.nmf(S, rank, **kw)
    _assert_unchanged(S, snap)
    _assert_sane(res_s, X.shape, rank)
    _assert_monotone(res_s.history["loss"], dtype, _sqnorm(X))
    res_d = fastnmf.nmf(X, rank, backend="dense", **kw)
    tol = dict(rtol=2e-3, atol=0) if dtype == np.float32 else dict(rtol=1e-7, atol=0)
    scale_W = max(float(np.abs(res_d.W).max()), np.finfo(dtype).tiny)
    scale_H = max(float(np.abs(res_d.H).max()), np.finfo(dtype).tiny)
    # entries compared relative to the factor's largest entry (fastmath reassociates)
    assert_allclose(res_s.W / scale_W, res_d.W / scale_W, atol=tol["rtol"] * 10)
    assert_allclose(res_s.H / scale_H, res_d.H / scale_H, atol=tol["rtol"] * 10)
    # the loss to round-off of the starting loss (near an exact fit both are noise)
    assert_allclose(res_s.history["loss"], res_d.history["loss"], rtol=tol["rtol"] * 10,
                    atol=1e3 * np.finfo(dtype).eps * res_d.history["loss"][0] + 1e-300)


@PROFILE
@given(X=matrices(max_m=25, max_n=20), solver=st.sampled_from(SOLVERS),
       rank=st.integers(1, 4), seed=st.integers(0, 100))
def test_int64_indices_same_as_int32(X, solver, rank, seed):
    """The int64 index path (needed past 2³¹ nonzeros) gives the same factors."""
    W0, H0 = _start(X.shape, rank, np.float64 if X.dtype != np.float32 else X.dtype, seed)
    out = []
    for idx in (np.int32, np.int64):
        S = sp.csr_matrix(X)
        S.indices, S.indptr = S.indices.astype(idx), S.indptr.astype(idx)
        out.append(fastnmf.nmf(S, rank, solver=solver, W=W0, H=H0, max_iter=8, tol=0))
    assert_array_equal(out[0].W, out[1].W)
    assert_array_equal(out[0].H, out[1].H)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_all_zero_matrix(solver, fmt):
    X = np.zeros((7, 5))
    X = sp.csr_matrix(X) if fmt == "csr" else X
    res = fastnmf.nmf(X, 3, solver=solver, init="random", random_state=0, max_iter=5)
    _assert_sane(res, (7, 5), 3)


@pytest.mark.parametrize("shape", [(1, 1), (1, 30), (40, 1)])
@pytest.mark.parametrize("solver", SOLVERS)
def test_degenerate_shapes(shape, solver):
    X = np.random.default_rng(0).random(shape)
    for rank in (1, min(shape) + 2):
        res = fastnmf.nmf(X, rank, solver=solver, init="random", random_state=0,
                          max_iter=10, tol=0, accelerate="sweeps")
        _assert_sane(res, shape, rank)
        _assert_monotone(res.history["loss"], np.float64, _sqnorm(X))
        _assert_sane(fastnmf.nmf(X, rank, solver=solver, init="random", random_state=0,
                                 max_iter=10, tol=0, accelerate="both"), shape, rank)


@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_float32_large_values_stay_finite(solver):
    # W and H drifted apart in scale (W→7.7e-9, H→3.5e25) until H Hᵀ overflowed;
    # the loop now rebalances them when a Gram diagonal grows too large.
    X = np.array([[0.0, 2.6978672e17]], dtype=np.float32)
    res = fastnmf.nmf(X, 1, solver=solver, random_state=0, max_iter=50, tol=0)
    _assert_sane(res, X.shape, 1)
    # extrapolation's previous updates follow the rebalanced scales
    res = fastnmf.nmf(X, 1, solver=solver, random_state=0, max_iter=50, tol=0,
                      accelerate="both")
    _assert_sane(res, X.shape, 1)
