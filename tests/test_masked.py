"""Missing values: the sampled kernels, the missing-set helpers and masked fits."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import random_factors, random_matrix
from reference import hals_sweep, mu_step

import fastnmf
from fastnmf import kernels
from fastnmf._chunks import nnz_bounds
from fastnmf._masked import MaskedData, PreparedX, check_data, pattern_of, values_at

DTYPES = [np.float64, np.float32]
RTOL = {np.float64: 1e-10, np.float32: 2e-4}


def random_mask(shape, observed=0.8, seed=0):
    return np.random.default_rng(seed + 7).random(shape) < observed


def masked_sqerr(X, M, W, H):
    R = np.asarray(X, dtype=np.float64) - np.asarray(W, np.float64) @ np.asarray(H, np.float64)
    return float(np.sum(R[M] ** 2))


# --- kernels against NumPy ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("side", [0, 1])
def test_sampled_matmul_add_matches_numpy(dtype, side):
    m, n, r = 37, 23, 5
    M = random_mask((m, n), 0.7, seed=side)
    M[3] = True  # a row with no missing entry
    M[:, 4] = False  # a column with every entry missing
    W, H = random_factors(m, n, r, seed=1, dtype=dtype)
    Ht = np.ascontiguousarray(H.T)
    pattern = pattern_of(~M, (m, n))
    pat = pattern if side == 0 else pattern.transpose()
    A, B = (W, Ht) if side == 0 else (Ht, W)
    F = np.random.default_rng(2).random(B.shape).astype(dtype)
    out0 = np.random.default_rng(3).random((A.shape[0], r)).astype(dtype)
    vals = np.empty(pat.nnz, dtype=dtype)
    out = kernels.sampled_matmul_add(pat.indptr, pat.indices, A, B, F, nnz_bounds(pat.indptr),
                                     vals, out0.copy())
    S = np.where(~M, W.astype(np.float64) @ H.astype(np.float64), 0.0)
    S = S if side == 0 else S.T
    np.testing.assert_allclose(out, out0 + S @ F.astype(np.float64), rtol=RTOL[dtype])
    rows = pat.rows()
    np.testing.assert_allclose(vals, S[rows, pat.indices], rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_sampled_reductions_match_numpy(dtype):
    m, n, r = 31, 19, 4
    M = random_mask((m, n), 0.6, seed=3)
    W, H = random_factors(m, n, r, seed=4, dtype=dtype)
    pattern = pattern_of(~M, (m, n))
    rows, cols = pattern.rows(), pattern.indices
    WH = W.astype(np.float64) @ H.astype(np.float64)
    x = np.random.default_rng(5).random(pattern.nnz).astype(dtype)
    bounds = nnz_bounds(pattern.indptr)
    res, sq, cross, xx = kernels.sampled_moments(pattern.indptr, pattern.indices, x, W,
                                                 np.ascontiguousarray(H.T), bounds).sum(0)
    np.testing.assert_allclose(cross, np.sum(x * WH[rows, cols]), rtol=1e-6)
    np.testing.assert_allclose(sq, np.sum(WH[rows, cols] ** 2), rtol=1e-6)
    np.testing.assert_allclose(res, np.sum((x - WH[rows, cols]) ** 2), rtol=1e-6)
    np.testing.assert_allclose(xx, np.sum(x.astype(np.float64) ** 2), rtol=1e-6)


def test_empty_pattern_kernels_do_nothing():
    W, H = random_factors(6, 5, 2)
    pattern = pattern_of(np.zeros((6, 5), dtype=bool), (6, 5))
    out = np.ones((6, 2))
    kernels.sampled_matmul_add(pattern.indptr, pattern.indices, W, np.ascontiguousarray(H.T),
                               np.ascontiguousarray(H.T), nnz_bounds(pattern.indptr),
                               np.empty(0), out)
    np.testing.assert_array_equal(out, 1.0)


# --- the missing set ---------------------------------------------------------------------

def test_pattern_of_sparse_dense_and_mask_agree():
    M = random_mask((9, 7), 0.6)
    from_bool = pattern_of(~M, M.shape)
    coo = sp.coo_matrix(~M).astype(np.float64)
    dup = sp.coo_matrix((np.r_[coo.data, coo.data], (np.r_[coo.row, coo.row],
                                                      np.r_[coo.col, coo.col])), shape=M.shape)
    with_zero = sp.csr_matrix((np.r_[coo.data, 0.0], (np.r_[coo.row, 0], np.r_[coo.col, 0])),
                              shape=M.shape) if M[0, 0] else sp.csr_matrix(coo)
    for other in (pattern_of(coo, M.shape), pattern_of(dup, M.shape),
                  pattern_of(with_zero, M.shape), check_data(np.ones(M.shape), mask=M)[2]):
        np.testing.assert_array_equal(other.indptr, from_bool.indptr)
        np.testing.assert_array_equal(other.indices, from_bool.indices)
    assert (from_bool.tocsr().toarray() == ~M).all()
    assert (from_bool.transpose().tocsr().toarray() == ~M.T).all()


@pytest.mark.parametrize("fmt", ["dense", "csr", "coo_unsorted"])
def test_values_at(fmt):
    X = random_matrix(8, 6, density=0.5, seed=2)
    pattern = pattern_of(random_mask(X.shape, 0.5, seed=1), X.shape)
    if fmt == "dense":
        Xf = X
    elif fmt == "csr":
        Xf = sp.csr_matrix(X)
    else:
        coo = sp.coo_matrix(X)
        order = np.random.default_rng(0).permutation(coo.nnz)
        Xf = sp.coo_matrix((coo.data[order], (coo.row[order], coo.col[order])), shape=X.shape)
    np.testing.assert_array_equal(values_at(Xf, pattern), X[pattern.rows(), pattern.indices])


def test_masked_data_product_is_the_completed_matrix():
    X = random_matrix(20, 15, seed=3)
    M = random_mask(X.shape, 0.7)
    W, H = random_factors(20, 15, 3)
    Ht = np.ascontiguousarray(H.T)
    for backend in ("dense", "sparse"):
        data = PreparedX(X, mask=M).data(backend)
        assert isinstance(data, MaskedData) and data.backend == backend
        data.bind(W, Ht)
        Xt = np.where(M, X, W @ H)
        out = data.product(Ht, 0, np.empty((20, 3)))
        np.testing.assert_allclose(out, Xt @ H.T, rtol=1e-12)
        out = data.product(W, 1, np.empty((15, 3)))
        np.testing.assert_allclose(out, Xt.T @ W, rtol=1e-12)
        np.testing.assert_allclose(data.direct_sqerr(W, Ht), masked_sqerr(X, M, W, H),
                                   rtol=1e-12)
        np.testing.assert_allclose(data.sqnorm, np.sum(X[M] ** 2), rtol=1e-12)
        # the solver's cheap formula, corrected, is the masked error
        A = data.product(W, 1, np.empty((15, 3)))
        cheap = data.sqnorm - 2 * np.vdot(A, Ht) + np.vdot(W.T @ W, H @ H.T)
        np.testing.assert_allclose(data.correct_sqerr(cheap, A, W, Ht),
                                   masked_sqerr(X, M, W, H), rtol=1e-10)
        # a product it did not make: falls back to the direct formula
        np.testing.assert_allclose(data.correct_sqerr(-1.0, A.copy(), W, Ht),
                                   masked_sqerr(X, M, W, H), rtol=1e-12)


# --- masked fits -------------------------------------------------------------------------

def naive_masked_hals(X, M, W, H, n_iter, solver="hals"):
    """EM-HALS / EM-MU in float64: impute the missing entries by WH before each half-step."""
    update = hals_sweep if solver == "hals" else mu_step
    W, H = W.astype(np.float64), H.astype(np.float64)
    for _ in range(n_iter):
        Xt = np.where(M, X, W @ H)
        W = update(W, Xt @ H.T, H @ H.T)
        Xt = np.where(M, X, W @ H)
        H = update(H.T, Xt.T @ W, W.T @ W).T
    return W, H


@pytest.mark.parametrize("solver", ["hals", "mu"])
@pytest.mark.parametrize("sparse", [False, True])
def test_masked_fit_matches_naive_em(solver, sparse):
    X = random_matrix(30, 20, seed=5, rank=3)
    M = random_mask(X.shape, 0.75, seed=5)
    W0, H0 = random_factors(30, 20, 3, seed=5)
    Xin = sp.csr_matrix(X) if sparse else X
    res = fastnmf.nmf(Xin, 3, W=W0, H=H0, mask=M, solver=solver, max_iter=6, tol=0,
                      accelerate=False)
    W, H = naive_masked_hals(X, M, W0, H0, 6, solver)
    np.testing.assert_allclose(res.W, W, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.H, H, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(res.reconstruction_err ** 2, masked_sqerr(X, M, W, H),
                               rtol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("solver", ["hals", "mu"])
@pytest.mark.parametrize("backend", ["dense", "sparse"])
@pytest.mark.parametrize("accelerate", ["sweeps", True, "both"])
def test_masked_loss_is_exact_and_never_increases(dtype, solver, backend, accelerate):
    """Never increases without extrapolation (which may overshoot, then restarts; True is
    "auto", which extrapolates once the sweeps stall)."""
    X = random_matrix(40, 30, seed=6, rank=4, dtype=dtype)
    M = random_mask(X.shape, 0.7, seed=6)
    res = fastnmf.nmf(X, 4, mask=M, solver=solver, backend=backend, random_state=0,
                      init="random", max_iter=60, tol=0, accelerate=accelerate)
    losses = res.history["loss"]
    slack = 1e-12 if dtype == np.float64 else 1e-5
    if accelerate == "sweeps" or solver == "mu":
        assert np.all(np.diff(losses) <= slack * losses[0]), np.diff(losses).max()
    assert losses[-1] < 0.5 * losses[0]
    exact = masked_sqerr(X, M, res.W, res.H)
    # the history's loss is the cheap formula ‖X‖² − 2⟨A, F⟩ + ⟨WᵀW, HHᵀ⟩: with float32
    # products its error is a few float32 eps of ‖X‖² (here 3e-4, 6e-4 of the loss itself,
    # the last digits varying with how Numba compiled the kernels)
    atol = 0.0 if dtype == np.float64 else 2 * np.finfo(np.float32).eps * np.sum(
        X[M].astype(np.float64) ** 2)
    np.testing.assert_allclose(2 * res.loss, exact, rtol=1e-9 if dtype == np.float64 else 1e-4,
                               atol=atol)
    np.testing.assert_allclose(res.relative_error, np.sqrt(exact / np.sum(
        X[M].astype(np.float64) ** 2)), rtol=1e-6 if dtype == np.float64 else 1e-4)
    assert res.W.dtype == dtype and res.backend == backend


@pytest.mark.parametrize("solver", ["hals", "mu"])
@pytest.mark.parametrize("sparse", [False, True])
def test_changing_masked_entries_changes_nothing(solver, sparse):
    X = random_matrix(25, 18, seed=8, rank=3, density=0.6 if sparse else 1.0)
    M = random_mask(X.shape, 0.7, seed=8)
    Y = X.copy()
    Y[~M] = np.random.default_rng(1).random((~M).sum()) * 100
    kw = dict(mask=M, solver=solver, random_state=0, init="random", max_iter=40, tol=0)
    conv = sp.csr_matrix if sparse else np.asarray
    a = fastnmf.nmf(conv(X), 3, **kw)
    b = fastnmf.nmf(conv(Y), 3, **kw)
    np.testing.assert_array_equal(a.W, b.W)
    np.testing.assert_array_equal(a.H, b.H)
    # values at missing positions are never read: NaN, inf or negative are fine
    Z = X.copy()
    Z[~M] = np.where(np.arange((~M).sum()) % 3 == 0, np.nan,
                     np.where(np.arange((~M).sum()) % 3 == 1, -5.0, np.inf))
    c = fastnmf.nmf(conv(Z), 3, **kw)
    np.testing.assert_array_equal(a.W, c.W)


def test_missing_nan_equals_mask_and_inputs_are_not_modified():
    X = random_matrix(20, 16, seed=9, rank=2)
    M = random_mask(X.shape, 0.8, seed=9)
    Xnan = X.copy()
    Xnan[~M] = np.nan
    before = Xnan.copy()
    kw = dict(random_state=0, max_iter=30, tol=0)
    a = fastnmf.nmf(X, 2, mask=M, **kw)
    b = fastnmf.nmf(Xnan, 2, missing="nan", **kw)
    c = fastnmf.nmf(X, 2, missing=sp.csr_matrix(~M), **kw)
    d = fastnmf.nmf(X, 2, missing=~M, **kw)
    for other in (b, c, d):
        np.testing.assert_array_equal(a.W, other.W)
    np.testing.assert_array_equal(Xnan, before)
    # sparse X with NaN stored values, and a union of mask and missing
    S = sp.csr_matrix(np.where(M, X, np.nan))
    data_before = S.data.copy()
    e = fastnmf.nmf(S, 2, missing="nan", **kw)
    np.testing.assert_allclose(e.W, a.W, rtol=1e-10)
    np.testing.assert_array_equal(S.data, data_before)
    half = ~M & (np.arange(M.size).reshape(M.shape) % 2 == 0)
    f = fastnmf.nmf(X, 2, mask=~half, missing=sp.csr_matrix(~M & ~half), **kw)
    np.testing.assert_array_equal(a.W, f.W)


@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_all_observed_mask_equals_unmasked_fit(solver):
    X = random_matrix(30, 22, seed=10, rank=3)
    kw = dict(solver=solver, random_state=0, max_iter=50)
    a = fastnmf.nmf(X, 3, **kw)
    b = fastnmf.nmf(X, 3, mask=np.ones(X.shape, dtype=bool), **kw)
    assert a.n_iter == b.n_iter
    np.testing.assert_allclose(b.W, a.W, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b.loss, a.loss, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_equals_sparse_masked(dtype):
    X = random_matrix(35, 25, seed=11, rank=3, density=0.5, dtype=dtype)
    M = random_mask(X.shape, 0.8, seed=11)
    kw = dict(mask=M, random_state=0, init="random", max_iter=30, tol=0)
    a = fastnmf.nmf(X, 3, backend="dense", **kw)
    b = fastnmf.nmf(sp.csr_matrix(X), 3, **kw)
    assert b.backend == "sparse"
    tol = 1e-9 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(b.W, a.W, rtol=tol, atol=tol)
    np.testing.assert_allclose(b.loss, a.loss, rtol=tol)


def test_fully_missing_row_and_column_are_allowed():
    X = random_matrix(20, 15, seed=12, rank=2)
    M = np.ones(X.shape, dtype=bool)
    M[4] = False
    M[:, 7] = False
    W0, H0 = random_factors(20, 15, 2, seed=12)
    for solver in ("hals", "mu"):
        res = fastnmf.nmf(X, 2, mask=M, W=W0, H=H0, solver=solver, max_iter=50)
        assert np.isfinite(res.W).all() and np.isfinite(res.H).all()
        # no data for them: they keep their starting values
        np.testing.assert_allclose(res.W[4], W0[4], rtol=1e-12)
        np.testing.assert_allclose(res.H[:, 7], H0[:, 7], rtol=1e-12)
    np.testing.assert_allclose(res.reconstruction_err ** 2, masked_sqerr(X, M, res.W, res.H),
                               rtol=1e-9)


def test_masked_fit_recovers_missing_entries_of_low_rank_data():
    rng = np.random.default_rng(13)
    X = rng.random((60, 3)) @ rng.random((3, 40))
    M = rng.random(X.shape) < 0.7
    res = fastnmf.nmf(X, 3, mask=M, random_state=0, max_iter=2000, tol=1e-10)
    WH = res.W @ res.H
    assert np.linalg.norm((WH - X)[~M]) / np.linalg.norm(X[~M]) < 1e-2


def test_estimator_and_many_share_nothing_between_fits():
    """A prepared X reused by two fits gives the result of two separate calls."""
    X = random_matrix(20, 12, seed=14, rank=2)
    M = random_mask(X.shape, 0.8, seed=14)
    prepared = PreparedX(X, mask=M)
    a = fastnmf.nmf(prepared, 2, random_state=1, init="random", max_iter=20)
    b = fastnmf.nmf(prepared, 3, random_state=2, init="random", max_iter=20)
    c = fastnmf.nmf(X, 3, mask=M, random_state=2, init="random", max_iter=20)
    np.testing.assert_array_equal(b.W, c.W)
    assert a.W.shape == (20, 2)


# --- errors ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    ({"mask": np.ones((3, 3), dtype=bool)}, ValueError, "mask has shape"),
    ({"mask": np.ones((6, 5))}, TypeError, "boolean"),
    ({"mask": sp.csr_matrix(np.ones((6, 5), dtype=bool))}, TypeError, "dense boolean"),
    ({"missing": "zeros"}, ValueError, "missing must be 'nan'"),
    ({"missing": np.zeros((6, 5))}, TypeError, "boolean"),
    ({"missing": sp.csr_matrix((5, 5))}, ValueError, "missing has shape"),
    ({"mask": np.zeros((6, 5), dtype=bool)}, ValueError, "Every entry of X is missing"),
    ({"mask": np.ones((6, 5), dtype=bool), "beta_loss": 0.5}, ValueError,
     "not yet with other"),
    ({"mask": np.ones((6, 5), dtype=bool), "update_H": False,
      "H": np.ones((2, 5))}, ValueError, "update_H=True"),
])
def test_bad_masks_raise_clear_errors(kwargs, error, match):
    X = random_matrix(6, 5)
    with pytest.raises(error, match=match):
        fastnmf.nmf(X, 2, **kwargs)


def test_nan_is_an_error_unless_missing():
    X = random_matrix(6, 5)
    X[1, 1] = np.nan
    with pytest.raises(ValueError, match="contains NaN"):
        fastnmf.nmf(X, 2)
    assert np.isfinite(fastnmf.nmf(X, 2, missing="nan", max_iter=5).W).all()
    with pytest.raises(ValueError, match="contains NaN"):  # NaN outside the missing set
        fastnmf.nmf(X, 2, mask=np.ones(X.shape, dtype=bool))
    negative = random_matrix(6, 5)
    negative[0, 0] = -1
    with pytest.raises(ValueError, match="Negative"):
        fastnmf.nmf(negative, 2, missing=sp.csr_matrix(([1.0], ([1], [1])), shape=(6, 5)))


# --- masked Kullback–Leibler (the EM step on MU) -------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("side", [0, 1])
def test_sampled_ratio_add_matches_numpy(dtype, side):
    m, n, r = 29, 17, 4
    M = random_mask((m, n), 0.7, seed=5 + side)
    M[:, 2] = False  # a column with every entry missing
    W, H = random_factors(m, n, r, seed=6, dtype=dtype)
    W[0] = 0  # model values 0 < eps: the ratio is then S/eps = 0
    Ht = np.ascontiguousarray(H.T)
    pat = pattern_of(~M, (m, n))
    pat = pat if side == 0 else pat.transpose()
    A, B = (W, Ht) if side == 0 else (Ht, W)
    out0 = np.random.default_rng(8).random((A.shape[0], r)).astype(dtype)
    eps = dtype(np.finfo(np.float32).eps)
    total = kernels.sampled_ratio_add(pat.indptr, pat.indices, A, B, B, eps,
                                      nnz_bounds(pat.indptr), out := out0.copy()).sum()
    S = np.where(~M, W.astype(np.float64) @ H.astype(np.float64), 0.0)
    S = S if side == 0 else S.T
    R = np.where(S != 0, S / np.maximum(S, float(eps)), 0.0)
    np.testing.assert_allclose(out, out0 + R @ B.astype(np.float64), rtol=RTOL[dtype])
    np.testing.assert_allclose(total, S.sum(), rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("sparse", [False, True])
def test_masked_kl_mu_matches_numpy(dtype, sparse):
    from reference import masked_kl, masked_kl_mu

    rng = np.random.default_rng(11)
    m, n, r = 40, 30, 3
    X = rng.poisson(3 * rng.random((m, r)) @ rng.random((r, n))).astype(dtype)
    M = random_mask((m, n), 0.75, seed=12)
    W, H = random_factors(m, n, r, seed=13, dtype=dtype)
    Xin = sp.csr_matrix(X) if sparse else X
    before = Xin.copy()
    res = fastnmf.nmf(Xin, r, beta_loss="kullback-leibler", mask=M, init="custom", W=W, H=H,
                      max_iter=25, tol=0.0)
    assert res.solver == "mu" and res.W.dtype == dtype
    Wr, Hr = masked_kl_mu(X, M, W, H, 25)
    tol = 1e-8 if dtype == np.float64 else 2e-3
    np.testing.assert_allclose(res.W, Wr, rtol=tol, atol=tol * Wr.max())
    np.testing.assert_allclose(res.H, Hr, rtol=tol, atol=tol * Hr.max())
    np.testing.assert_allclose(res.loss, masked_kl(X, M, res.W, res.H), rtol=1e-3 * (
        dtype == np.float32) + 1e-9)
    loss = res.history["loss"]
    assert np.all(np.diff(loss) <= 1e-6 * loss[0])  # the EM step never raises it
    # values at missing positions are never read
    Xbad = np.where(M, X, np.nan).astype(dtype)
    res2 = fastnmf.nmf(Xbad, r, beta_loss="kl", missing="nan", init="custom", W=W, H=H,
                       max_iter=25, tol=0.0)
    np.testing.assert_allclose(res2.W, res.W, rtol=1e-5)
    if sparse:
        assert (Xin != before).nnz == 0
    else:
        np.testing.assert_array_equal(Xin, before)


def test_masked_kl_refuses_ccd_and_other_beta():
    X = np.random.default_rng(0).random((10, 8))
    M = random_mask(X.shape)
    with pytest.raises(ValueError, match="solver='mu'"):
        fastnmf.nmf(X, 2, beta_loss="kl", solver="ccd", mask=M)
    with pytest.raises(ValueError, match="not yet with other"):
        fastnmf.nmf(X + 0.1, 2, beta_loss="itakura-saito", mask=M)
    assert fastnmf.nmf(X, 2, beta_loss="kl", solver="mu", mask=M, max_iter=5).solver == "mu"
