"""Hoyer's sparseness constraints: the projection kernel and the constrained fit."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

import fastnmf
from fastnmf import kernels
from fastnmf.demo import hoyer_sparseness
from fastnmf.solvers.sparseness import project_columns

PROFILE = settings(deadline=None, max_examples=60, derandomize=True)
DTYPES = [np.float64, np.float32]


def _project(V, sparseness, norms, dtype=np.float64):
    V = np.ascontiguousarray(V, dtype=dtype)
    out = np.empty_like(V)
    return kernels.project_sparseness(V, sparseness, np.asarray(norms, np.float64), out)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 2, 3, 17, 400])
@pytest.mark.parametrize("sparseness", [0.0, 0.2, 0.5, 0.8, 1.0])
def test_kernel_matches_reference(dtype, n, sparseness):
    rng = np.random.default_rng(n)
    V = rng.standard_normal((6, n)) + 0.5
    V[1] = np.abs(V[1])          # already nonnegative
    V[2] = 1.0                   # all tied
    V[3, : n // 2] = V[3, 0]     # partly tied
    V[4] = 0.0                   # zero vector, projected to a given norm
    norms = np.linalg.norm(V, axis=1)
    norms[4] = 2.0
    norms[5] = 0.0               # zero norm: a zero row
    V_before = V.astype(dtype).copy()
    Vd = V.astype(dtype)
    out = _project(Vd, sparseness, norms, dtype)
    assert_array_equal(Vd, V_before)
    assert out.dtype == dtype
    tol = 1e-10 if dtype == np.float64 else 1e-5
    if sparseness == 0:  # the root of a zero discriminant: both are good to ~√eps only
        tol = max(tol, 1e-7)
    for i in range(len(V)):
        expected = ref.project_sparseness(Vd[i], sparseness, norms[i])
        assert_allclose(out[i], expected, atol=tol * max(1.0, norms[i]), rtol=tol)


@st.composite
def vectors(draw):
    n = draw(st.integers(2, 60))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["normal", "nonneg", "ties", "spiky"]))
    if kind == "normal":
        v = rng.standard_normal(n)
    elif kind == "nonneg":
        v = rng.random(n) * (rng.random(n) < 0.6)
    elif kind == "ties":
        v = rng.integers(0, 3, n).astype(np.float64)
    else:
        v = rng.random(n) ** 8
    v *= draw(st.sampled_from([1e-6, 1.0, 1e6]))
    return v


@PROFILE
@given(vectors(), st.floats(0.0, 1.0), st.floats(1e-3, 1e3))
def test_projection_hits_target_and_is_idempotent(v, sparseness, norm):
    out = _project(v[None, :], sparseness, [norm])[0]
    assert np.all(out >= 0)
    assert abs(np.linalg.norm(out) - norm) <= 1e-9 * norm
    assert abs(ref.hoyer_sparseness(out) - sparseness) <= 1e-6
    again = _project(out[None, :], sparseness, [norm])[0]
    assert_allclose(again, out, atol=1e-9 * norm)


@PROFILE
@given(vectors(), st.floats(0.0, 1.0))
def test_projection_float32_hits_target(v, sparseness):
    out = _project(v[None, :], sparseness, [1.0], np.float32)[0]
    assert np.all(out >= 0)
    assert abs(ref.hoyer_sparseness(out) - sparseness) <= 1e-4


def test_project_columns_keeps_norms():
    rng = np.random.default_rng(0)
    F = rng.random((50, 4))
    norms = np.linalg.norm(F, axis=0)
    G = F.copy()
    project_columns(G, 0.7)
    assert_allclose(np.linalg.norm(G, axis=0), norms)
    assert_allclose(hoyer_sparseness(G, axis=0), 0.7, atol=1e-9)


def _X(m=60, n=45, r=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((m, r)) @ (rng.random((r, n)) ** 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("solver", ["hals", "mu"])
@pytest.mark.parametrize("which", ["W", "H", "both"])
def test_fit_holds_the_sparseness(dtype, solver, which):
    X = _X().astype(dtype)
    X_before = X.copy()
    kw = {"W": dict(sparseness_W=0.5), "H": dict(sparseness_H=0.6),
          "both": dict(sparseness_W=0.5, sparseness_H=0.6)}[which]
    res = fastnmf.nmf(X, 4, solver=solver, random_state=0, max_iter=150, tol=0, **kw)
    assert_array_equal(X, X_before)
    assert res.W.dtype == dtype and res.H.dtype == dtype
    assert np.all(res.W >= 0) and np.all(res.H >= 0)
    tol = 1e-6 if dtype == np.float64 else 1e-4
    if "sparseness_W" in kw:
        assert_allclose(hoyer_sparseness(res.W, axis=0), 0.5, atol=tol)
    if "sparseness_H" in kw:
        assert_allclose(hoyer_sparseness(res.H, axis=1), 0.6, atol=tol)
    assert_allclose(np.linalg.norm(res.H, axis=1), 1.0, rtol=tol)
    # Hoyer's steps never raise the objective (up to round-off)
    loss = res.history["loss"]
    assert np.all(np.diff(loss[1:]) <= 1e-6 * loss[1])
    # the reported error is the factors' error
    assert_allclose(res.reconstruction_err,
                    np.sqrt(ref.sqerr(X, res.W, res.H)), rtol=1e-4 if dtype == np.float32 else 1e-8)
    again = fastnmf.nmf(X, 4, solver=solver, random_state=0, max_iter=150, tol=0, **kw)
    assert_array_equal(again.W, res.W)


def test_fit_moves_from_the_start_and_fits():
    """Not a projection of the start only: the fit beats its first iterate clearly."""
    X = _X()
    res = fastnmf.nmf(X, 4, random_state=0, max_iter=300, sparseness_H=0.5)
    loss = res.history["loss"]
    assert loss[-1] < 0.5 * loss[1]
    assert res.relative_error < 0.2


def test_sparse_equals_dense():
    X = _X()
    X[X < np.quantile(X, 0.5)] = 0
    kw = dict(random_state=0, max_iter=40, tol=0, sparseness_H=0.6, backend=None)
    del kw["backend"]
    dense = fastnmf.nmf(X, 4, backend="dense", **kw)
    sparse = fastnmf.nmf(sp.csr_matrix(X), 4, backend="sparse", **kw)
    assert_allclose(sparse.W, dense.W, rtol=1e-7, atol=1e-9)
    assert_allclose(sparse.H, dense.H, rtol=1e-7, atol=1e-9)


def test_update_H_false_constrains_W_only():
    X = _X()
    H = np.random.default_rng(1).random((4, X.shape[1]))
    res = fastnmf.nmf(X, 4, H=H, update_H=False, sparseness_W=0.4, sparseness_H=0.9,
                      max_iter=50)
    assert_array_equal(res.H, H)
    assert_allclose(hoyer_sparseness(res.W, axis=0), 0.4, atol=1e-6)


@pytest.mark.parametrize("kw, message", [
    (dict(sparseness_W=1.5), r"sparseness_W must be None or in \[0, 1\]"),
    (dict(sparseness_H=-0.1), "sparseness_H"),
    (dict(sparseness_H="a"), "sparseness_H"),
    (dict(sparseness_H=0.5, beta_loss="kl"), "beta_loss='frobenius'"),
    (dict(sparseness_H=0.5, alpha_W=0.1), "alpha_W=0"),
    (dict(sparseness_W=0.5, accelerate="both"), "accelerate"),
    (dict(sparseness_W=0.5, mask=np.ones((60, 45), bool)), "missing values"),
])
def test_bad_options(kw, message):
    with pytest.raises((ValueError, TypeError), match=message):
        fastnmf.nmf(_X(), 4, max_iter=5, **kw)


def test_estimator_passes_sparseness():
    X = _X()
    model = fastnmf.NMF(4, sparseness_H=0.6, random_state=0, max_iter=100)
    W = model.fit_transform(X)
    assert_allclose(hoyer_sparseness(model.components_, axis=1), 0.6, atol=1e-6)
    assert W.shape == (60, 4)
    assert model.transform(X).shape == (60, 4)
    with pytest.raises(ValueError, match="sparseness_H"):
        fastnmf.NMF(4, sparseness_H=2.0).fit(X)


def test_non_negative_factorization_passes_sparseness():
    X = _X()
    W, H, n_iter = fastnmf.non_negative_factorization(X, n_components=4, sparseness_H=0.6,
                                                      sparseness_W=0.3, random_state=0,
                                                      max_iter=100)
    model = fastnmf.NMF(4, sparseness_H=0.6, sparseness_W=0.3, random_state=0, max_iter=100)
    assert_array_equal(W, model.fit_transform(X))
    assert_array_equal(H, model.components_)
    assert n_iter == model.n_iter_
    assert_allclose(hoyer_sparseness(H, axis=1), 0.6, atol=1e-6)
    assert_allclose(hoyer_sparseness(W, axis=0), 0.3, atol=1e-6)
    with pytest.raises(ValueError, match="sparseness_W"):
        fastnmf.non_negative_factorization(X, n_components=4, sparseness_W=-0.1)


@pytest.mark.parametrize("kw, names", [
    (dict(sparseness_H=0.5), "sparseness_H"),
    (dict(sparseness_W=0.5), "sparseness_W"),
    (dict(sparseness_W=0.2, sparseness_H=0.5, solver="hals"), "sparseness_W and sparseness_H"),
])
def test_minibatch_refuses_sparseness(kw, names):
    """MiniBatchNMF cannot honour Hoyer's constraints: a clear error before any change."""
    X = _X()
    with pytest.raises(ValueError, match=f"MiniBatchNMF does not support {names}: "):
        fastnmf.MiniBatchNMF(4, random_state=0, **kw).fit(X)
    with pytest.raises(ValueError, match=r"fastnmf\.NMF or fastnmf\.nmf"):
        fastnmf.MiniBatchNMF(4, random_state=0, **kw).partial_fit(X[:20])
    model = fastnmf.MiniBatchNMF(4, random_state=0).partial_fit(X[:20])
    before = model.components_.copy(), model.n_steps_
    with pytest.raises(ValueError, match="does not support"):
        model.set_params(**kw).partial_fit(X[20:40])
    assert_array_equal(model.components_, before[0])
    assert model.n_steps_ == before[1]
