"""Kullback–Leibler NMF: kernels vs NumPy twins, solvers vs scikit-learn's MU."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from reference import kl_ccd_sweep, kl_divergence, kl_nz, kl_ratio, kl_ylogy
from sklearn.decomposition._nmf import _beta_divergence, _fit_multiplicative_update

import fastnmf
from fastnmf._chunks import nnz_bounds, row_bounds
from fastnmf._data import DenseData, SparseData
from fastnmf._fit import regularization
from fastnmf.kernels import kl as klk
from fastnmf.solvers._monitor import Monitor
from fastnmf.solvers.kl import EPS, fit_kl

DTYPES = [np.float64, np.float32]
RTOL = {np.float64: 1e-10, np.float32: 2e-4}


# --------------------------------------------------------------------------- data


def counts(m, n, r=4, seed=0, dtype=np.float64, scale=2.0, zero_rows=(), zero_cols=(),
           tiny=False):
    """A Poisson count matrix with planted rank ``r``; optional empty rows/columns and
    entries far below float32's epsilon."""
    rng = np.random.default_rng(seed)
    X = rng.poisson(scale * rng.random((m, r)) @ rng.random((r, n))).astype(np.float64)
    if tiny:
        X[rng.random((m, n)) < 0.05] = 1e-12
        X[rng.random((m, n)) < 0.05] = 1e-30
    X[list(zero_rows)] = 0
    X[:, list(zero_cols)] = 0
    return X.astype(dtype)


def factors(m, n, r, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed + 100)
    return (rng.random((m, r)) + 0.1).astype(dtype), (rng.random((r, n)) + 0.1).astype(dtype)


def csr(X, index_dtype=np.int32):
    A = sp.csr_matrix(X)
    return A.indptr.astype(index_dtype), A.indices.astype(index_dtype), A.data


# ------------------------------------------------------------------ kernels


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("tiny", [False, True])
def test_numerator_and_loss_sparse(dtype, index_dtype, tiny):
    m, n, r = 37, 23, 3
    X = counts(m, n, dtype=dtype, zero_rows=(0, 5), zero_cols=(2, 22), tiny=tiny)
    W, H = factors(m, n, r, dtype=dtype)
    W[3] = 0  # model values 0 at the nonzeros of row 3: the eps guard
    Ht = np.ascontiguousarray(H.T)
    indptr, indices, data = csr(X, index_dtype)
    bounds = nnz_bounds(indptr, 4)
    eps = dtype(EPS)
    out = np.empty((m, r), dtype=dtype)
    loss = klk.kl_numerator_sparse(indptr, indices, data, W, Ht, eps, True, bounds, out).sum()
    np.testing.assert_allclose(out, kl_ratio(X, W, Ht) @ Ht, rtol=RTOL[dtype], atol=1e-30)
    assert np.isfinite(out).all()
    ref = kl_nz(X, W, Ht)
    np.testing.assert_allclose(loss, ref, rtol=RTOL[dtype])
    np.testing.assert_allclose(klk.kl_loss_sparse(indptr, indices, data, W, Ht, eps, bounds).sum(),
                               ref, rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("side", [0, 1])
@pytest.mark.parametrize("split", [False, True])
def test_numerator_dense_blocks(dtype, order, side, split, monkeypatch):
    """Blocks of rows, also split over two threads as inside a fit (BLAS single-threaded,
    one row range per thread, G's numerator summed from per-range partials)."""
    import fastnmf._kl_products as S
    from fastnmf._threads import split_bounds, thread_limits

    if split and numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("splitting needs two Numba threads")
    monkeypatch.setattr(S, "_BLOCK_ELEMENTS", 64)  # several blocks, a ragged last one
    monkeypatch.setattr(S, "_SPLIT_MIN_ELEMENTS", 0)
    m, n, r = 41, 19, 4
    X = np.asarray(counts(m, n, dtype=dtype, zero_rows=(1,), zero_cols=(0,)), order=order)
    W, H = factors(m, n, r, dtype=dtype)
    Ht = np.ascontiguousarray(H.T)
    F, G, Y = (W, Ht, X) if side == 0 else (Ht, W, X.T)
    with thread_limits(2 if split else 1, split_blas=split):
        engine = S.DenseKL(DenseData(X))
        assert len(split_bounds(engine.Y.shape[0])) == (3 if split else 2)
        for _ in range(2):  # the second call reuses the scratch buffers
            out = np.full_like(F, np.nan)
            loss = engine.numerator(side, F, G, dtype(EPS), True, out)
            np.testing.assert_allclose(out, kl_ratio(Y, F, G) @ G, rtol=RTOL[dtype])
            np.testing.assert_allclose(loss, kl_nz(X, W, Ht), rtol=RTOL[dtype])
        np.testing.assert_allclose(engine.loss_nz(W, Ht, dtype(EPS)), kl_nz(X, W, Ht),
                                   rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_mu_apply(dtype):
    rng = np.random.default_rng(1)
    F = rng.random((13, 3)).astype(dtype)
    F[0, 0] = 0
    num = rng.random((13, 3)).astype(dtype)
    num[1, 1] = 1e-30
    den0 = np.array([0.5, 0.0, 2.0], dtype=dtype)
    expected = F.astype(np.float64)
    den = den0 + 0.1 + 0.2 * expected
    expected *= num / den
    expected[expected < 1e-20] = 0
    klk.kl_mu_apply(F, num, den0, dtype(0.1), dtype(0.2), dtype(EPS), dtype(1e-20),
                    row_bounds(13, 3))
    np.testing.assert_allclose(F, expected, rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reg", [(0.0, 0.0), (0.5, 0.3)])
@pytest.mark.parametrize("n_newton", [1, 3])  # 1: the dense kernel takes rows in pairs
def test_ccd_sweep_sparse_and_dense(dtype, reg, n_newton):
    m, n, r = 29, 17, 5  # odd counts of rows and columns: pairs and a row left over
    X = counts(m, n, dtype=dtype, zero_rows=(3,), zero_cols=(4,))
    W, H = factors(m, n, r, dtype=dtype)
    Ht = np.ascontiguousarray(H.T)
    l1, l2 = (dtype(v) for v in reg)
    expected = kl_ccd_sweep(X, W, Ht, l1, l2, n_newton, 1e-2)
    indptr, indices, data = csr(X)
    F = W.copy()
    loss = klk.kl_ccd_sparse(indptr, indices, data, F, Ht, Ht.sum(0), l1, l2, n_newton, 1e-2,
                             dtype(EPS), True, nnz_bounds(indptr, 3)).sum()
    np.testing.assert_allclose(F, expected, rtol=100 * RTOL[dtype], atol=1e-12)
    np.testing.assert_allclose(loss, kl_nz(X, F, Ht), rtol=100 * RTOL[dtype])
    assert (F[3] == 0).all()  # an empty row's optimum is zero
    ylogy = kl_ylogy(X)
    # the W side on the rows of X, and on the columns of (C-ordered) Xᵀ
    for Y, by_rows in ((X, True), (np.ascontiguousarray(X.T), False)):
        F2 = W.copy()
        S = klk.kl_ccd_dense(Y, F2, H.copy(), Ht.sum(0), l1, l2, n_newton, 1e-2, dtype(EPS), True,
                             by_rows, row_bounds(m, 3)).sum()
        np.testing.assert_allclose(F2, F, rtol=RTOL[dtype], atol=1e-12)
        np.testing.assert_allclose(ylogy - S, loss, rtol=100 * RTOL[dtype])
    # the H side: columns of X in blocks (17 rows in 2 chunks: ragged blocks), and rows of Xᵀ
    expected = kl_ccd_sweep(X.T, Ht, W, l1, l2, n_newton, 1e-2)
    for Y, by_rows in ((X, False), (np.ascontiguousarray(X.T), True)):
        G = np.ascontiguousarray(H.T)
        klk.kl_ccd_dense(Y, G, np.ascontiguousarray(W.T), W.sum(0), l1, l2, n_newton, 1e-2,
                         dtype(EPS), False, by_rows, row_bounds(n, 2))
        np.testing.assert_allclose(G, expected, rtol=100 * RTOL[dtype], atol=1e-12)


def test_ccd_sparse_pairs_around_rows_longer_than_the_pair_scratch():
    """A row longer than the pairs' second scratch (``_PAIR_MAX_NNZ``) is never the
    second of a pair: the rows around it are swept alone or paired otherwise, with the
    same result as the reference."""
    m, n, r = 7, klk._PAIR_MAX_NNZ + 300, 3
    rng = np.random.default_rng(4)
    X = np.zeros((m, n))
    X[[1, 4]] = rng.poisson(1.0, size=(2, n)) + 1.0  # longer than the cap
    for i in (0, 2, 3, 5, 6):
        X[i, rng.choice(n, 12, replace=False)] = rng.poisson(2.0, size=12) + 1.0
    W, H = factors(m, n, r)
    Ht = np.ascontiguousarray(H.T)
    indptr, indices, data = csr(X)
    F = W.copy()
    klk.kl_ccd_sparse(indptr, indices, data, F, Ht, Ht.sum(0), 0.0, 0.0, 1, 1e-2, EPS, False,
                      nnz_bounds(indptr, 1))
    expected = kl_ccd_sweep(X, W, Ht, 0.0, 0.0, 1, 1e-2)
    np.testing.assert_allclose(F, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("itemsize", [4, 8])
def test_scratch_stride_spreads_rows_over_cache_sets(itemsize):
    """The sparse CCD's r×length scratch is written a column at a time: its rows are an
    odd number of 64-byte lines long, so one column's entries never share an L1 set
    (rows of 512 float64 nonzeros, 4 KiB, used to put them all in one)."""
    for length in range(1, 2100):
        stride = klk._scratch_stride(length, itemsize)
        lines, rest = divmod(stride * itemsize, 64)
        assert stride >= length and rest == 0 and lines % 2 == 1
        assert stride < length + 2 * 64 // itemsize  # at most two lines more


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_newton", [1, 2])
def test_ccd_dense_safeguard_and_tiny_model_values(dtype, n_newton):
    """Steps that would halve a model value are cut exactly as in the sparse kernel,
    including where ``wh < eps`` (there the kernel's cheap bound is not defined)."""
    m, n, r = 21, 34, 3
    X = counts(m, n, dtype=dtype, scale=3.0, tiny=True)
    W, H = factors(m, n, r, dtype=dtype)
    W[:, 0] *= 30  # a first step far down: the safeguard binds
    H[1, ::3] = 1e-12  # model values below eps at some nonzeros
    W[::4, 2] = 0
    Ht = np.ascontiguousarray(H.T)
    indptr, indices, data = csr(X)
    F = W.copy()
    klk.kl_ccd_sparse(indptr, indices, data, F, Ht, Ht.sum(0), dtype(0), dtype(0), n_newton, 1e-2,
                      dtype(EPS), False, nnz_bounds(indptr, 2))
    assert not np.array_equal(F, W)
    F2 = W.copy()
    klk.kl_ccd_dense(X, F2, H.copy(), Ht.sum(0), dtype(0), dtype(0), n_newton, 1e-2, dtype(EPS),
                     False, True, row_bounds(m, 2))
    np.testing.assert_allclose(F2, F, rtol=RTOL[dtype], atol=1e-12)
    expected = kl_ccd_sweep(X, W, Ht, 0.0, 0.0, n_newton, 1e-2)
    np.testing.assert_allclose(F2, expected, rtol=100 * RTOL[dtype], atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_vector_log_and_ylogy(dtype):
    rng = np.random.default_rng(5)
    x = np.concatenate([10.0 ** rng.uniform(-6.9, 30, 5000), [EPS, 1.0, np.sqrt(2), 2.0, 1e300]])
    y = np.ones_like(x)
    got = np.array([klk._ylogv_sum(y[i:i + 1], x[i:i + 1], 1, EPS) for i in range(x.size)])
    np.testing.assert_allclose(got, np.log(x), rtol=1e-15, atol=1e-15)
    # entries of y at most eps are skipped; v below eps counts as eps
    yv = np.array([0.0, 1e-9, 2.0, 3.0]).astype(dtype)
    vv = np.array([5.0, 5.0, 1e-12, 7.0]).astype(dtype)
    np.testing.assert_allclose(klk._ylogv_sum(yv, vv, 4, dtype(EPS)),
                               2 * np.log(np.float64(dtype(EPS))) + 3 * np.log(7.0), rtol=1e-6)
    X = counts(30, 20, dtype=dtype, tiny=True).ravel()
    np.testing.assert_allclose(klk.kl_ylogy(X, dtype(EPS), row_bounds(X.size, 3)).sum(),
                               kl_ylogy(X), rtol=RTOL[dtype])


# ------------------------------------------------------------------ solvers


def run(X, W, H, solver, max_iter, tol=0.0, reg=(0.0, 0.0, 0.0, 0.0), sparse=False,
        update_H=True):
    data = SparseData(sp.csr_matrix(X)) if sparse else DenseData(X)
    W = np.array(W, dtype=X.dtype, order="C")  # copies: the caller's factors stay
    Ht = np.array(H.T, dtype=X.dtype, order="C")
    monitor = Monitor(max_iter=max_iter, tol=tol, rule="error")
    kl = fit_kl(data, W, Ht, solver=solver, monitor=monitor, reg=reg, update_H=update_H)
    history = monitor.close()
    return W, Ht.T, kl, history, monitor


DATA_KINDS = ["dense", "fortran", "sparse"]


def prepare(X, kind):
    return (np.asfortranarray(X) if kind == "fortran" else X), kind == "sparse"


@pytest.mark.parametrize("kind", DATA_KINDS)
@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_mu_matches_sklearn(kind, alpha):
    m, n, r = 40, 31, 5
    X = counts(m, n, zero_rows=(2,), zero_cols=(5,))
    W0, H0 = factors(m, n, r)
    l1_ratio = 0.3
    reg = regularization(X.shape, alpha, "same", l1_ratio)
    Ws, Hs, _ = _fit_multiplicative_update(X, W0.copy(), H0.copy(), "kullback-leibler",
                                           max_iter=30, tol=0, l1_reg_W=reg[0],
                                           l1_reg_H=reg[1], l2_reg_W=reg[2], l2_reg_H=reg[3])
    Xk, sparse = prepare(X, kind)
    W, H, kl, history, _ = run(Xk, W0, H0, "mu", 30, reg=reg, sparse=sparse)
    np.testing.assert_allclose(W, Ws, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(H, Hs, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(kl, _beta_divergence(X, Ws, Hs, 1), rtol=1e-12)
    assert history["loss"].shape == (31,)


@pytest.mark.parametrize("kind", DATA_KINDS)
def test_mu_stops_like_sklearn(kind):
    m, n, r = 30, 20, 3
    X = counts(m, n, seed=3)
    W0, H0 = factors(m, n, r, seed=3)
    tol = 1e-3
    _, _, n_sk = _fit_multiplicative_update(X, W0.copy(), H0.copy(), "kullback-leibler",
                                            max_iter=500, tol=tol)
    assert n_sk < 500
    Xk, sparse = prepare(X, kind)
    *_, monitor = run(Xk, W0, H0, "mu", 500, tol=tol, sparse=sparse)
    assert monitor.n_iter == n_sk and monitor.converged


@pytest.mark.parametrize("kind", DATA_KINDS)
def test_mu_update_H_false_matches_sklearn(kind):
    m, n, r = 25, 18, 3
    X = counts(m, n, seed=4)
    W0, H0 = factors(m, n, r, seed=4)
    Ws, _, _ = _fit_multiplicative_update(X, W0.copy(), H0.copy(), "kullback-leibler",
                                          max_iter=20, tol=0, update_H=False)
    Xk, sparse = prepare(X, kind)
    W, H, *_ = run(Xk, W0, H0, "mu", 20, sparse=sparse, update_H=False)
    np.testing.assert_allclose(W, Ws, rtol=1e-9)
    np.testing.assert_array_equal(H, H0)


def test_mu_float32_close_to_sklearn():
    m, n, r = 40, 31, 5
    X = counts(m, n, dtype=np.float32)
    W0, H0 = factors(m, n, r, dtype=np.float32)
    Ws, Hs, _ = _fit_multiplicative_update(X, W0.copy(), H0.copy(), "kullback-leibler",
                                           max_iter=20, tol=0)
    for sparse in (False, True):
        W, _, kl, *_ = run(X, W0, H0, "mu", 20, sparse=sparse)
        assert W.dtype == np.float32
        np.testing.assert_allclose(kl, _beta_divergence(X, Ws, Hs, 1), rtol=1e-4)


@pytest.mark.parametrize("solver", ["mu", "ccd"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_equals_sparse(solver, dtype):
    m, n, r = 33, 21, 4
    X = counts(m, n, dtype=dtype, zero_rows=(0,), zero_cols=(1,), scale=0.7)
    W0, H0 = factors(m, n, r, dtype=dtype)
    Wd, Hd, kl_d, hd, _ = run(X, W0, H0, solver, 15)
    Ws, Hs, kl_s, hs, _ = run(X, W0, H0, solver, 15, sparse=True)
    rtol = 1e-8 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(Wd, Ws, rtol=rtol, atol=1e-6 * rtol)
    np.testing.assert_allclose(Hd, Hs, rtol=rtol, atol=1e-6 * rtol)
    np.testing.assert_allclose(hd["loss"], hs["loss"], rtol=rtol)
    np.testing.assert_allclose(kl_d, kl_s, rtol=rtol)


@pytest.mark.parametrize("solver", ["mu", "ccd"])
@pytest.mark.parametrize("kind", DATA_KINDS)
@pytest.mark.parametrize("alpha", [0.0, 0.02])
def test_loss_non_increasing_and_true(solver, kind, alpha):
    m, n, r = 45, 30, 5
    X = counts(m, n, seed=7, zero_rows=(4,), zero_cols=(9,), scale=1.0)
    W0, H0 = factors(m, n, r, seed=7)
    reg = regularization(X.shape, alpha, "same", 0.5)
    Xk, sparse = prepare(X, kind)
    W, H, kl, history, _ = run(Xk, W0, H0, solver, 60, reg=reg, sparse=sparse)
    loss = history["loss"]
    assert np.all(np.diff(loss) <= 1e-10 * loss[0])
    assert loss[-1] < loss[0]
    np.testing.assert_allclose(kl, kl_divergence(X, W, H), rtol=1e-9)
    assert (W >= 0).all() and (H >= 0).all()


@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ccd_beats_sklearn_mu(kind, seed):
    m, n, r = 50, 40, 6
    X = counts(m, n, r=6, seed=seed, scale=1.5)
    W0, H0 = factors(m, n, r, seed=seed)
    for iters in (5, 50):
        Ws, Hs, _ = _fit_multiplicative_update(X, W0.copy(), H0.copy(), "kullback-leibler",
                                               max_iter=iters, tol=0)
        *_, kl, _, _ = run(X, W0, H0, "ccd", iters, sparse=kind == "sparse")
        assert kl <= _beta_divergence(X, Ws, Hs, 1)


@pytest.mark.parametrize("solver", ["mu", "ccd"])
@pytest.mark.parametrize("kind", DATA_KINDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_no_nan_with_zeros_and_tiny_values(solver, kind, dtype):
    m, n, r = 24, 16, 4
    X = counts(m, n, dtype=dtype, zero_rows=(0, 7), zero_cols=(3,), tiny=True, scale=0.5)
    W0, H0 = factors(m, n, r, dtype=dtype)
    W0[:, 1] = 0  # a dead component
    H0[2, :] = 1e-30
    Xk, sparse = prepare(X, kind)
    W, H, kl, history, _ = run(Xk, W0, H0, solver, 25, sparse=sparse)
    assert np.isfinite(W).all() and np.isfinite(H).all() and np.isfinite(history["loss"]).all()
    assert (W[[0, 7]] == 0).all() and (H[:, 3] == 0).all()  # empty rows/columns: zero
    if dtype == np.float64:
        np.testing.assert_allclose(kl, kl_divergence(X, W, H), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("solver", ["mu", "ccd"])
@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_all_zero_X(solver, kind):
    X = np.zeros((6, 5))
    W0, H0 = factors(6, 5, 2)
    W, H, kl, history, _ = run(X, W0, H0, solver, 5, sparse=kind == "sparse")
    assert np.isfinite(history["loss"]).all()
    np.testing.assert_allclose(kl, float((W @ H).sum()), atol=1e-12)
    if solver == "ccd":
        assert kl == 0


def test_unknown_solver():
    X = counts(5, 4)
    with pytest.raises(ValueError, match="solver"):
        run(X, *factors(5, 4, 2), "hals", 2)


# ------------------------------------------------------------- through nmf()


@pytest.mark.parametrize("solver", ["mu", "ccd", None])
def test_nmf_kl_dense_equals_sparse_and_reports(solver):
    rng = np.random.default_rng(7)
    X = rng.poisson(rng.random((40, 3)) @ rng.random((3, 30)) * 3).astype(np.float64)
    W0, H0 = fastnmf.initialize(X, 3, "nndsvda", random_state=0)
    kw = dict(beta_loss="kullback-leibler", solver=solver, W=W0, H=H0, max_iter=25, tol=0)
    dense = fastnmf.nmf(X, 3, **kw)
    sparse = fastnmf.nmf(sp.csr_matrix(X), 3, **kw)
    assert dense.solver == (solver or "ccd") and dense.beta_loss == "kullback-leibler"
    np.testing.assert_allclose(dense.W, sparse.W, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(dense.H, sparse.H, rtol=1e-8, atol=1e-12)
    WH = dense.W @ dense.H
    nz = X > 0
    kl = np.sum(X[nz] * np.log(X[nz] / WH[nz])) - X.sum() + WH.sum()
    np.testing.assert_allclose(dense.loss, kl, rtol=1e-8)
    np.testing.assert_allclose(dense.reconstruction_err, np.sqrt(2 * kl), rtol=1e-8)
    np.testing.assert_allclose(dense.relative_error,
                               np.linalg.norm(X - WH) / np.linalg.norm(X), rtol=1e-8)
    assert np.all(np.diff(dense.history["loss"]) <= 1e-12 * dense.history["loss"][:-1])


def test_nmf_kl_cd_alias_and_bad_solver():
    X = np.random.default_rng(0).random((10, 8))
    assert fastnmf.nmf(X, 2, beta_loss=1, solver="cd", max_iter=3).solver == "ccd"
    with pytest.raises(ValueError, match="solver must be one of"):
        fastnmf.nmf(X, 2, beta_loss="kullback-leibler", solver="hals")


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_ccd_starts_with_one_mu_iteration(kind):
    """CCD's first iteration is MU's (``CCD_MU_START``), then the sweeps take over."""
    import fastnmf.solvers.kl as S

    assert S.CCD_MU_START == 1
    m, n, r = 30, 24, 3
    X = counts(m, n, seed=11)
    W0, H0 = factors(m, n, r, seed=11)
    sparse = kind == "sparse"
    Wm, Hm, kl_m, *_ = run(X, W0, H0, "mu", 1, sparse=sparse)
    Wc, Hc, kl_c, *_ = run(X, W0, H0, "ccd", 1, sparse=sparse)
    assert kl_c == kl_m
    np.testing.assert_array_equal(Wc, Wm)
    np.testing.assert_array_equal(Hc, Hm)
    *_, kl_m3, _, _ = run(X, W0, H0, "mu", 3, sparse=sparse)
    *_, kl_c3, _, _ = run(X, W0, H0, "ccd", 3, sparse=sparse)
    assert kl_c3 < kl_m3  # the CCD sweeps after it do better than more MU


def test_kl_products_made_once_per_data_object(monkeypatch):
    """The fits of one prepared X in a thread share its KL products: dense X's
    ``Σ y log y − y`` is one pass over X however many fits run, and the results are
    those of fits that prepare X alone."""
    from fastnmf import _kl_products
    from fastnmf._masked import PreparedX

    X = np.random.default_rng(3).poisson(2.0, (40, 30)).astype(np.float64)
    prepared = PreparedX(X)
    calls = []
    ylogy = klk.kl_ylogy
    monkeypatch.setattr(klk, "kl_ylogy", lambda *a: calls.append(1) or ylogy(*a))
    kw = dict(beta_loss="kl", init="random", max_iter=15, n_threads=1)
    shared = [fastnmf.nmf(prepared, r, random_state=r, **kw) for r in (2, 3, 2)]
    assert len(calls) == 1
    data = prepared.data()
    assert _kl_products.kl_products(data) is _kl_products.kl_products(data)
    for r, res in zip((2, 3, 2), shared, strict=True):
        alone = fastnmf.nmf(X, r, random_state=r, **kw)
        np.testing.assert_array_equal(res.W, alone.W)
        np.testing.assert_array_equal(res.history["loss"], alone.history["loss"])


@pytest.mark.parametrize("order", ["C", "F"])
def test_ccd_transposed_copy_of_small_x_gives_the_same_fit(order, monkeypatch):
    """Small dense X gets a C-ordered copy of its transpose for the CCD side that pairs
    with Y's columns; the block-copy path that large X takes gives the same fit."""
    from fastnmf import _kl_products

    X = np.asarray(counts(40, 30, dtype=np.float64, scale=3.0), order=order)
    kw = dict(beta_loss="kullback-leibler", solver="cd", init="random", random_state=3,
              max_iter=15, tol=0, n_threads=2)
    with_copy = fastnmf.nmf(X, 4, **kw)
    monkeypatch.setattr(_kl_products, "_TRANSPOSED_COPY_MAX_BYTES", 0)
    blocks = fastnmf.nmf(X, 4, **kw)
    np.testing.assert_array_equal(with_copy.W, blocks.W)
    np.testing.assert_array_equal(with_copy.H, blocks.H)
