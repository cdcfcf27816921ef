"""Sparse X held with its columns reordered by count (``_data.column_order``): the fit's
results are those of X's own order (to round-off), in X's column order, and X is never
modified."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

import fastnmf
from fastnmf import _data
from fastnmf._masked import PreparedX


def _skewed(m=300, n=240, nnz=5000, seed=0, dtype=np.float64, fmt="csr"):
    """Sparse counts whose columns follow a Zipf law, in shuffled order (as text)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, n + 1)
    cols = rng.permutation(n)[rng.choice(n, size=nnz, p=p / p.sum())]
    rows = rng.integers(0, m, nnz)
    X = sp.coo_matrix((rng.random(nnz) + 0.5, (rows, cols)), shape=(m, n))
    return X.asformat(fmt).astype(dtype)


@pytest.fixture
def reorder_small(monkeypatch):
    """Let small test matrices be reordered, with scatter serving Xᵀ W and gather X Hᵀ
    (the real thresholds are 2^20 nonzeros; small fits run on one thread, whose rule
    would scatter both sides of a small X)."""
    monkeypatch.setattr(_data, "REORDER_MIN_NNZ", 0)
    monkeypatch.setattr(_data, "REORDER_MIN_COLUMNS", 0)
    monkeypatch.setattr(_data, "_SCATTER_MIN_NNZ", 0)
    monkeypatch.setattr(_data, "_SCATTER_MIN_OPERAND_BYTES", 0)
    monkeypatch.setattr(_data, "_SCATTER_1T_SMALL_OUT_BYTES", 0)


def _keep_order(monkeypatch):
    monkeypatch.setattr(_data, "REORDER_MIN_NNZ", 1 << 62)


def test_column_order_rules(reorder_small, monkeypatch):
    X = _skewed()
    order = _data.column_order(X)
    counts = np.bincount(X.tocsr().indices, minlength=X.shape[1])
    assert sorted(order) == list(range(X.shape[1]))
    assert np.all(np.diff(counts[order]) <= 0)  # most nonzeros first
    for fmt in ("csc", "coo"):
        assert_array_equal(_data.column_order(X.asformat(fmt)), order)
    even = sp.random(300, 240, density=0.05, format="csr", random_state=1)
    assert _data.column_order(even) is None  # no column holds much more than another
    assert _data.column_order(X.tocsr()[:, order]) is None  # already in that order
    monkeypatch.setattr(_data, "REORDER_MIN_NNZ", X.nnz + 1)
    assert _data.column_order(X) is None  # small X: kept


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_reordered_products_equal_the_original(reorder_small, dtype, index_dtype):
    X = _skewed(dtype=dtype).tocsr()
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(index_dtype)
    before = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    data = _data.make_data(X, True, "sparse", reorder=True)
    assert data.order is not None
    assert _data.make_data(X, True, "sparse").order is None  # only when asked
    seen = _data.OriginalColumns(data)
    rng = np.random.default_rng(2)
    m, n = X.shape
    Ht, W = rng.random((n, 4)).astype(dtype), rng.random((m, 4)).astype(dtype)
    D = X.toarray().astype(np.float64)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert_allclose(seen.product(Ht, 0, np.empty((m, 4), dtype)), D @ Ht, rtol=rtol)
    assert_allclose(seen.product(W, 1, np.empty((n, 4), dtype)), D.T @ W, rtol=rtol)
    for a, b in zip(before, (X.data, X.indices, X.indptr), strict=True):
        assert_array_equal(a, b)  # X's own arrays untouched


@pytest.mark.parametrize("kw", [
    dict(accelerate=False),
    dict(solver="mu"),
    dict(init="nndsvd", accelerate=False),
    dict(init="spa", accelerate=False),
])
def test_reordered_fit_equals_the_fit_in_x_order(reorder_small, monkeypatch, kw):
    X = _skewed()
    made = []
    real = _data.make_data
    monkeypatch.setattr("fastnmf._masked.make_data", real)

    def spy(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr("fastnmf._fit.make_data", spy)
    a = fastnmf.nmf(X, 5, random_state=0, max_iter=25, tol=0, **kw)
    assert made and made[-1].order is not None  # the fit really ran reordered
    _keep_order(monkeypatch)
    b = fastnmf.nmf(X, 5, random_state=0, max_iter=25, tol=0, **kw)
    assert made[-1].order is None
    assert_allclose(a.W, b.W, rtol=1e-8, atol=1e-10)
    assert_allclose(a.H, b.H, rtol=1e-8, atol=1e-10)
    assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-10)
    assert a.reconstruction_err == pytest.approx(b.reconstruction_err, rel=1e-10)


def test_reordered_fit_with_fixed_H_and_callback(reorder_small, monkeypatch):
    """update_H=False (transform) takes H in X's order; a callback sees H in X's order."""
    X = _skewed()
    H = np.random.default_rng(3).random((4, X.shape[1])) + 0.1
    seen = []

    def look(info):
        seen.append(info.H.copy())

    a = fastnmf.nmf(X, 4, H=H, update_H=False, max_iter=10, tol=0, callback=look)
    assert_array_equal(a.H, H)
    assert all(np.array_equal(h, H) for h in seen) and len(seen) == 10
    _keep_order(monkeypatch)
    b = fastnmf.nmf(X, 4, H=H, update_H=False, max_iter=10, tol=0)
    assert_allclose(a.W, b.W, rtol=1e-10)

    seen.clear()
    c = fastnmf.nmf(X, 4, random_state=0, max_iter=5, tol=0, callback=look)
    assert_array_equal(seen[-1], c.H)


def test_only_frobenius_fits_served_by_scatter_reorder(reorder_small, monkeypatch):
    """The reordered copy must be the one copy of X a fit holds: not for KL/β (they read
    the CSR of Xᵀ), masked fits, or where gather serves Xᵀ W (it reads the CSR of Xᵀ)."""
    from fastnmf._fit import _may_reorder
    from fastnmf.solvers import objective_for

    X = _skewed()
    prepared = PreparedX(X)
    frob, kl = objective_for("frobenius"), objective_for("kullback-leibler")
    assert _may_reorder(prepared, frob, 5) and not _may_reorder(prepared, kl, 5)
    mask = np.ones(X.shape, dtype=bool)
    mask[0, 0] = False
    assert not _may_reorder(PreparedX(X, mask=mask), frob, 5)
    assert not _may_reorder(PreparedX(X.toarray()), frob, 5)
    data = prepared.data("auto", reorder=True)
    assert data.order is not None
    assert prepared.data("auto", reorder=True) is data  # this thread's copy, made once
    assert prepared.data("auto").order is None
    assert PreparedX(X, mask=mask).data("auto", reorder=True).order is None
    monkeypatch.setattr(_data, "_SCATTER_MIN_OPERAND_BYTES", 1 << 62)
    assert not _may_reorder(prepared, frob, 5)
    kl_fit = fastnmf.nmf(X, 4, beta_loss="kullback-leibler", random_state=0, max_iter=5)
    _keep_order(monkeypatch)
    kl_kept = fastnmf.nmf(X, 4, beta_loss="kullback-leibler", random_state=0, max_iter=5)
    assert_array_equal(kl_fit.H, kl_kept.H)
    many = fastnmf.fit_many(X, [3, 4], n_runs=2, random_state=0, max_iter=20, tol=0)
    fits = [f for r in (3, 4) for f in many.runs(r)]
    for (rank, _, seed), fit in zip(many.tasks, fits, strict=True):
        alone = fastnmf.nmf(X, rank, random_state=seed, max_iter=20, tol=0, n_threads=1)
        assert_array_equal(fit.H, alone.H)
