"""β-divergence MU: kernels vs NumPy twins, iterates vs scikit-learn's MU."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from reference import beta_terms
from sklearn.decomposition import non_negative_factorization as skd_nnf
from sklearn.decomposition._nmf import _beta_divergence, _fit_multiplicative_update

import fastnmf
from fastnmf._beta_products import _denominator_part, _numerator_dense
from fastnmf._chunks import row_bounds
from fastnmf._data import DenseData, SparseData
from fastnmf._fit import regularization
from fastnmf.kernels import _math as kmath
from fastnmf.kernels import beta as bk
from fastnmf.solvers import objective_for
from fastnmf.solvers._monitor import Monitor
from fastnmf.solvers.beta import (
    EPS,
    ZEROS_MESSAGE,
    fit_beta,
    gamma_for,
    work_dtype,
)

BETAS = [-0.6, 0.0, 0.5, 1.5, 3.0]
DTYPES = [np.float64, np.float32]


def data(m, n, r=3, seed=0, dtype=np.float64, positive=False, zero_rows=()):
    rng = np.random.default_rng(seed)
    X = rng.poisson(2.0 * rng.random((m, r)) @ rng.random((r, n))).astype(np.float64)
    if positive:
        X += 0.1 + rng.random((m, n))
    X[list(zero_rows)] = 0
    return X.astype(dtype)


def factors(m, n, r, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed + 50)
    return (rng.random((m, r)) + 0.1).astype(dtype), (rng.random((r, n)) + 0.1).astype(dtype)


def run(X, W, H, beta, max_iter, tol=0.0, reg=(0.0, 0.0, 0.0, 0.0), sparse=False,
        update_H=True):
    d = SparseData(sp.csr_matrix(X)) if sparse else DenseData(X)
    W = np.array(W, dtype=X.dtype, order="C")
    Ht = np.array(H.T, dtype=X.dtype, order="C")
    monitor = Monitor(max_iter=max_iter, tol=tol, rule="error")
    loss = fit_beta(d, W, Ht, beta=beta, solver="mu", monitor=monitor, reg=reg,
                    update_H=update_H)
    return W, Ht.T, loss, monitor.close(), monitor


# ------------------------------------------------------------------ kernels


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_terms_dense_and_sparse(beta, dtype):
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    m, n, r = 23, 17, 3
    X = data(m, n, dtype=dtype, zero_rows=(4,))
    X[0, :3] = 1e-9  # at most eps: left out of the loss
    W, H = factors(m, n, r, dtype=dtype)
    W[2] = 0  # model values 0: the eps guards
    Ht = np.ascontiguousarray(H.T)
    P0 = (W @ H).astype(dtype)
    N_ref, D_ref, sums_ref = beta_terms(X, P0, beta)
    for Y in (X, np.asfortranarray(X)[:, ::-1][:, ::-1]):  # C order and a strided view
        P, N, T = P0.copy(), np.empty_like(P0), np.empty_like(P0)
        s0 = _numerator_dense(Y, P, N, T, beta, dtype(EPS), True)
        s1 = _denominator_part(P, beta, dtype(EPS), True)
        assert np.isfinite(P).all() and np.isfinite(N).all()
        np.testing.assert_allclose(N, N_ref, rtol=rtol)
        np.testing.assert_allclose(P, D_ref, rtol=rtol)
        np.testing.assert_allclose((s0, s1), sums_ref, rtol=rtol)
    A = sp.csr_matrix(X)
    P, num = P0.copy(), np.empty((m, r), dtype=dtype)
    s0 = bk.beta_terms_sparse(A.indptr, A.indices, A.data, 0, Ht, P, num, dtype(beta),
                              dtype(EPS), True).sum()
    np.testing.assert_allclose(num, N_ref @ Ht, rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(s0, sums_ref[0], rtol=rtol)
    # and for a block of rows further down (row0 > 0)
    P, num2 = P0[5:].copy(), np.zeros((m, r), dtype=dtype)
    bk.beta_terms_sparse(A.indptr, A.indices, A.data, 5, Ht, P, num2, dtype(beta), dtype(EPS),
                         False)
    np.testing.assert_allclose(num2[5:], (N_ref @ Ht)[5:], rtol=rtol, atol=1e-300)


def test_vector_pow():
    rng = np.random.default_rng(4)
    x = np.concatenate([10.0 ** rng.uniform(-300, 300, 3000), [1e-310, 5e-324, 1.0]])
    for e in (-1.5, -0.5, 0.7, 1.5, 3.0):
        with np.errstate(all="ignore"):
            ref = x ** e
        got = np.array([kmath.pow_pos(v, e) for v in x])
        ok = np.isfinite(ref) & (ref > 1e-300) & (ref < 1e300)
        np.testing.assert_allclose(got[ok], ref[ok], rtol=5e-13)
        small = (x > 0.01) & (x < 100)
        np.testing.assert_allclose(got[small], ref[small], rtol=1e-14)
    assert kmath.pow_pos(0.0, 1.5) == 0 and kmath.pow_pos(0.0, 0.0) == 1
    assert kmath.pow_pos(0.0, -0.5) == np.inf


@pytest.mark.parametrize("dtype", DTYPES)
def test_mu_apply_and_power_sum(dtype):
    rng = np.random.default_rng(2)
    F = rng.random((11, 3)).astype(dtype)
    num = rng.random((11, 3)).astype(dtype)
    den = rng.random((11, 3)).astype(dtype)
    den[0, 0], num[1, 1] = 0, 1e-30
    l1, l2, gamma, clip = 0.0, 0.0, 0.4, 1e-20
    F64 = F.astype(np.float64)
    d = den + l1 + l2 * F64
    d[d == 0] = EPS
    expected = F64 * (num / d) ** gamma
    expected[expected < clip] = 0
    bk.beta_mu_apply(F, num, den, dtype(l1), dtype(l2), dtype(EPS), dtype(gamma), dtype(clip),
                     row_bounds(11, 3))
    np.testing.assert_allclose(F, expected, rtol=1e-12 if dtype == np.float64 else 1e-5)
    x = np.concatenate([rng.random(100) * 5, [0.0, 1e-9]]).astype(dtype)
    keep = x > EPS
    np.testing.assert_allclose(bk.beta_sum_power(x, 1.5, EPS, row_bounds(x.size, 4)).sum(),
                               np.sum(x[keep].astype(np.float64) ** 1.5), rtol=1e-6)


def test_gamma_is_scikit_learns():
    assert gamma_for(0) == 0.5 and gamma_for(0.5) == 1 / 1.5
    assert gamma_for(1.5) == 1 and gamma_for(3) == 0.5 and gamma_for(-1) == 1 / 3


# ------------------------------------------------------------------ vs scikit-learn


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("kind", ["dense", "fortran", "sparse"])
@pytest.mark.parametrize("alpha", [0.0, 0.01])
def test_matches_sklearn_mu(beta, kind, alpha):
    m, n, r = 30, 22, 4
    X = data(m, n, positive=beta <= 0, zero_rows=() if beta <= 0 else (3,))
    # (β ≤ 0: X is positive, so even its CSR stores every entry, as scikit-learn needs)
    W0, H0 = factors(m, n, r)
    reg = regularization(X.shape, alpha, "same", 0.3)
    Ws, Hs, _ = _fit_multiplicative_update(X, W0.copy(), H0.copy(), beta, max_iter=25, tol=0,
                                           l1_reg_W=reg[0], l1_reg_H=reg[1], l2_reg_W=reg[2],
                                           l2_reg_H=reg[3])
    Xk = np.asfortranarray(X) if kind == "fortran" else X
    W, H, loss, history, _ = run(Xk, W0, H0, beta, 25, reg=reg, sparse=kind == "sparse")
    np.testing.assert_allclose(W, Ws, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(H, Hs, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(loss, _beta_divergence(X, Ws, Hs, beta), rtol=1e-9)
    assert history["loss"].shape == (26,)


@pytest.mark.parametrize("beta", [0.0, 1.5])
def test_stops_and_transform_like_sklearn(beta):
    m, n, r = 28, 19, 3
    X = data(m, n, seed=3, positive=True)
    W0, H0 = factors(m, n, r, seed=3)
    _, _, n_sk = _fit_multiplicative_update(X, W0.copy(), H0.copy(), beta, max_iter=400,
                                            tol=1e-3)
    assert n_sk < 400
    *_, monitor = run(X, W0, H0, beta, 400, tol=1e-3)
    assert monitor.n_iter == n_sk and monitor.converged
    Ws, _, _ = _fit_multiplicative_update(X, W0.copy(), H0.copy(), beta, max_iter=15, tol=0,
                                          update_H=False)
    W, H, *_ = run(X, W0, H0, beta, 15, update_H=False)
    np.testing.assert_allclose(W, Ws, rtol=1e-9)
    np.testing.assert_array_equal(H, H0)


@pytest.mark.parametrize("beta", BETAS)
def test_float32_close_to_sklearn(beta):
    m, n, r = 30, 22, 4
    X = data(m, n, dtype=np.float32, positive=True)
    W0, H0 = factors(m, n, r, dtype=np.float32)
    Ws, Hs, _ = _fit_multiplicative_update(X, W0.copy(), H0.copy(), beta, max_iter=15, tol=0)
    W, H, loss, *_ = run(X, W0, H0, beta, 15)
    assert W.dtype == np.float32 and H.dtype == np.float32
    np.testing.assert_allclose(W, Ws, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(loss, _beta_divergence(X, Ws, Hs, beta), rtol=1e-4)


@pytest.mark.parametrize("beta", [1.25, 1.5, 1.75])
@pytest.mark.parametrize("sparse", [False, True])
def test_loss_non_increasing_between_kl_and_frobenius(beta, sparse):
    """For β in [1, 2] MU is majorize–minimize with γ = 1: the loss never increases."""
    m, n, r = 35, 26, 4
    X = data(m, n, seed=5, zero_rows=(1,))
    W0, H0 = factors(m, n, r, seed=5)
    W, H, loss, history, _ = run(X, W0, H0, beta, 60, sparse=sparse)
    L = history["loss"]
    assert np.all(np.diff(L) <= 1e-12 * L[0]) and L[-1] < L[0]
    np.testing.assert_allclose(loss, _beta_divergence(X, W, H, beta), rtol=1e-10)


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_zeros_give_no_nan(beta, dtype):
    m, n, r = 20, 15, 3
    X = data(m, n, dtype=dtype, positive=beta <= 0, zero_rows=() if beta <= 0 else (0, 6))
    W0, H0 = factors(m, n, r, dtype=dtype)
    W0[:, 1] = 0  # a dead component
    W0[4] = 0  # an all-zero row of W: WH = 0 there
    W, H, _, history, _ = run(X, W0, H0, beta, 20)
    assert np.isfinite(W).all() and np.isfinite(H).all() and np.isfinite(history["loss"]).all()
    assert (W >= 0).all() and (H >= 0).all()


def near_zero_data(m=14, n=11, seed=42):
    """scikit-learn's test_nmf_negative_beta_loss data, larger: Gaussian clipped at 0, + 1e-9."""
    X = np.random.RandomState(seed).randn(m, n)
    np.clip(X, 0, None, out=X)
    X[2] = 0  # a whole row at 1e-9: its row of W is clipped to 0, so WH = 0 there
    return X + 1e-9


@pytest.mark.parametrize("beta", [-0.6, 0.0, 0.5])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_near_zero_data_finite_and_like_sklearn(beta, sparse, dtype):
    """Entries of 1e-9 (≤ eps: zeros to the loss) with β ≤ 0 drove model values to 0 and
    ``Σ WH^β`` to inf: the loss was −inf and the fit raised (β = −0.6, issue 18)."""
    X64 = near_zero_data()
    X = X64.astype(dtype)
    W0, H0 = factors(*X.shape, 3, seed=1)
    Xk = sp.csr_matrix(X) if sparse else X
    with np.errstate(divide="raise", over="raise", invalid="raise"):
        W, H, loss, history, _ = run(X, W0, H0, beta, 60, sparse=sparse)
    assert np.isfinite(history["loss"]).all() and np.isfinite(loss)
    assert np.isfinite(W).all() and np.isfinite(H).all() and (W >= 0).all() and (H >= 0).all()
    assert (W[2] == 0).all()  # the case that matters was reached
    with np.errstate(all="ignore"):
        Ws, Hs, _ = _fit_multiplicative_update(X64, W0.copy(), H0.copy(), beta, max_iter=60,
                                               tol=0)
    scale_W, scale_H = np.abs(Ws).max(), np.abs(Hs).max()
    if dtype == np.float64:
        np.testing.assert_allclose(W, Ws, rtol=1e-9, atol=1e-12 * scale_W)
        np.testing.assert_allclose(H, Hs, rtol=1e-9, atol=1e-12 * scale_H)
    else:  # 60 iterations of float32 round-off
        np.testing.assert_allclose(W, Ws, rtol=2e-2, atol=1e-4 * scale_W)
        np.testing.assert_allclose(H, Hs, rtol=2e-2, atol=1e-4 * scale_H)
    # and through the public functions, as scikit-learn's own test calls them
    kw = dict(init="random", n_components=3, solver="mu", beta_loss=beta, random_state=0,
              max_iter=1000)
    W, H, n_iter = fastnmf.non_negative_factorization(Xk, **kw)
    assert np.isfinite(W).all() and np.isfinite(H).all() and W.dtype == dtype
    with np.errstate(all="ignore"):
        _, _, n_sk = skd_nnf(X64, **kw)
    if dtype == np.float64:
        assert n_iter == n_sk  # the same stopping iteration


@pytest.mark.parametrize("sparse", [False, True])
def test_float32_fit_with_very_negative_beta_uses_float64_blocks(sparse):
    """At β = −4 the numerator's eps^(β−2) ≈ 4e41 overflows float32: nan at iteration 6."""
    X64 = near_zero_data()
    X = X64.astype(np.float32)
    W0, H0 = factors(*X.shape, 3, seed=1)
    data32 = SparseData(sp.csr_matrix(X)) if sparse else DenseData(X)
    assert work_dtype(data32, -4.0) == np.float64
    assert work_dtype(data32, -0.6) == np.float32 and work_dtype(data32, 0.5) == np.float32
    W, H, loss, history, _ = run(X, W0, H0, -4.0, 30, sparse=sparse)
    assert W.dtype == np.float32 and np.isfinite(W).all() and np.isfinite(H).all()
    assert np.isfinite(history["loss"]).all()
    W64, H64, loss64, *_ = run(X64, W0, H0, -4.0, 30, sparse=sparse)
    np.testing.assert_allclose(W, W64, rtol=2e-2, atol=1e-4 * np.abs(W64).max())
    np.testing.assert_allclose(H, H64, rtol=2e-2, atol=1e-4 * np.abs(H64).max())
    np.testing.assert_allclose(loss, loss64, rtol=1e-4)
    # far beyond float64's range: a clear error, not a nan at some iteration
    with pytest.raises(ValueError, match="overflow float64"):
        fastnmf.nmf(X64, 3, beta_loss=-60.0, solver="mu", max_iter=5)


@pytest.mark.parametrize("beta", [0.0, -0.5, "itakura-saito"])
def test_zeros_with_nonpositive_beta_raise_like_sklearn(beta):
    X = data(12, 9, positive=True)
    X[3, 4] = 0
    with pytest.raises(ValueError, match="beta_loss <= 0 and X contains zeros"):
        fastnmf.nmf(X, 2, beta_loss=beta, max_iter=3)
    with pytest.raises(ValueError, match="beta_loss <= 0 and X contains zeros"):
        fastnmf.nmf(sp.csr_matrix(X), 2, beta_loss=beta, max_iter=3)  # an implicit zero
    assert ZEROS_MESSAGE.startswith("When beta_loss <= 0")
    X[3, 4] = 1.0
    res = fastnmf.nmf(sp.csr_matrix(X), 2, beta_loss=beta, max_iter=3)  # every entry stored
    assert res.backend == "sparse" and np.isfinite(res.loss)


def test_objectives_and_solvers():
    assert objective_for(2).name == "frobenius" and objective_for(1.0).name == "kullback-leibler"
    assert objective_for("itakura-saito").name == "itakura-saito"
    assert objective_for(0).name == "itakura-saito"
    assert objective_for(0.5).name == "beta=0.5"
    for bad in ("gaussian", float("nan"), float("inf"), None):
        with pytest.raises(ValueError, match="not supported"):
            objective_for(bad)
    X = data(10, 8, positive=True)
    with pytest.raises(ValueError, match="solver must be one of"):
        fastnmf.nmf(X, 2, beta_loss=0.5, solver="cd")


# ------------------------------------------------------------- through nmf() / NMF


@pytest.mark.parametrize("beta", ["itakura-saito", 0.5, 3])
def test_nmf_and_estimator(beta):
    from sklearn.decomposition import NMF as SkNMF

    X = data(30, 20, seed=9, positive=True)
    X_in = X.copy()
    kw = dict(init="nndsvda", solver="mu", beta_loss=beta, max_iter=40, tol=0, random_state=0)
    sk = SkNMF(3, **kw)
    W_sk = sk.fit_transform(X)
    est = fastnmf.NMF(3, **kw)
    W = est.fit_transform(X)
    np.testing.assert_array_equal(X, X_in)  # never modified
    np.testing.assert_allclose(W, W_sk, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(est.components_, sk.components_, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(est.reconstruction_err_, sk.reconstruction_err_, rtol=1e-9)
    res = fastnmf.nmf(X, 3, beta_loss=beta, max_iter=10, tol=0)
    assert res.solver == "mu" and res.n_iter == 10
    expected = "itakura-saito" if beta == "itakura-saito" else f"beta={float(beta)!r}"
    assert res.beta_loss == expected
