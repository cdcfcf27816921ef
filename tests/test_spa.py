"""init='spa': the successive projection algorithm on planted separable matrices."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref
import scipy.sparse as sp
from numpy.testing import assert_array_equal

import fastnmf
from fastnmf.init import initialize, spa


def separable(m=40, r=6, n=80, seed=0, noise=0.0, density=1.0):
    """X = W0 [I, H'] Π (+ noise): the anchors are the columns where Π put I;
    the other columns are mixtures whose weights sum to 0.2–0.95."""
    rng = np.random.default_rng(seed)
    W0 = rng.random((m, r)) * (rng.random((m, r)) < density)
    W0[np.arange(r) % m, np.arange(r)] += 1.0  # full column rank
    mix = rng.dirichlet(np.ones(r), size=n - r).T * rng.uniform(0.2, 0.95, n - r)
    perm = rng.permutation(n)
    H0 = np.hstack([np.eye(r), mix])[:, perm]
    X = W0 @ H0
    if noise:
        X += noise * rng.random(X.shape)
    anchors = np.flatnonzero(perm < r)
    return X, anchors, W0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
def test_spa_recovers_the_anchors(dtype, fmt):
    X, anchors, _ = separable(density=0.5 if fmt != "dense" else 1.0)
    X = X.astype(dtype)
    Xin = X if fmt == "dense" else getattr(sp, f"{fmt}_matrix")(X)
    before = X.copy()
    picked, W = spa(Xin, len(anchors))
    assert_array_equal(np.sort(picked), anchors)
    assert_array_equal(W, X[:, picked])  # exactly the columns of X
    assert W.dtype == dtype
    assert_array_equal(picked, ref.spa(X, len(anchors)))
    assert_array_equal(X if fmt == "dense" else Xin.toarray(), before)


def test_spa_with_noise_still_finds_the_anchors():
    X, anchors, _ = separable(noise=1e-3, seed=3)
    picked, _ = spa(X, len(anchors))
    assert_array_equal(np.sort(picked), anchors)


def test_initialize_spa_fits_separable_data():
    X, anchors, _ = separable(seed=1)
    W, H = initialize(X, len(anchors), "spa")
    assert W.shape == (X.shape[0], len(anchors)) and H.shape == (len(anchors), X.shape[1])
    assert np.all(H >= 0)
    assert np.linalg.norm(X - W @ H) <= 1e-3 * np.linalg.norm(X)
    W2, H2 = initialize(X, len(anchors), "spa")  # deterministic
    assert_array_equal(W, W2)
    assert_array_equal(H, H2)


def test_nmf_and_estimator_accept_spa():
    X, anchors, _ = separable(seed=2)
    r = len(anchors)
    res = fastnmf.nmf(sp.csr_matrix(X), r, init="spa", max_iter=30)
    assert res.relative_error < 1e-4
    model = fastnmf.NMF(r, init="spa", max_iter=30)
    W = model.fit_transform(X)
    assert np.linalg.norm(X - W @ model.components_) < 1e-4 * np.linalg.norm(X)


def test_spa_rank_above_the_matrix_rank_and_zero_columns():
    X, anchors, _ = separable(r=3, n=20, seed=4)
    X[:, 5] = 0.0
    picked, W = spa(X, 6)  # rank 3 data: the last picks project nothing out
    assert len(np.unique(picked)) == 6
    assert set(anchors) <= set(picked[:3])
    assert np.all(np.isfinite(W))


def test_spa_errors():
    X, _, _ = separable(n=20)
    with pytest.raises(ValueError, match="init='spa' picks rank columns"):
        spa(X, 21)
    with pytest.raises(ValueError, match="n_components <= min"):
        fastnmf.nmf(X, 45, init="spa")
