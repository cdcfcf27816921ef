"""Sparse products and the HALS factor kernel (one sweep and repeated) against NumPy twins."""

from __future__ import annotations

import time

import numba
import numpy as np
import pytest
import reference as ref
import scipy.sparse as sp
from numpy.testing import assert_allclose

from fastnmf import _data, kernels
from fastnmf._chunks import nnz_bounds, row_bounds
from fastnmf._data import SparseData

DTYPES = [np.float64, np.float32]
INDEX_DTYPES = [np.int32, np.int64]
RTOL = {np.float64: 1e-12, np.float32: 1e-5}

# (m, n, r): 1×1, one row, one column, rank 1, rank 33, wider than tall
SHAPES = [(1, 1, 1), (1, 9, 4), (9, 1, 3), (30, 20, 1), (25, 40, 33), (12, 50, 8)]


def _csr(m, n, dtype, index_dtype, seed=0, density=0.3):
    """CSR with some empty rows and columns, canonical, of the given dtypes."""
    rng = np.random.default_rng(seed)
    D = rng.random((m, n)) * (rng.random((m, n)) < density)
    if m > 2:
        D[1] = 0.0  # an empty row
    if n > 2:
        D[:, 2] = 0.0  # an empty column
    X = sp.csr_matrix(D.astype(dtype))
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(index_dtype)
    return X, X.toarray().astype(np.float64)  # the stored (rounded) values


def _close(actual, desired, dtype):
    desired = np.asarray(desired, dtype=np.float64)
    scale = max(1.0, float(np.abs(desired).max(initial=0.0)))
    assert_allclose(np.asarray(actual, dtype=np.float64), desired, rtol=RTOL[dtype],
                    atol=RTOL[dtype] * scale)


def _chunk_options(indptr):
    m = indptr.shape[0] - 1
    return [row_bounds(m, 1), nnz_bounds(indptr, 2), row_bounds(m, m + 3)]  # last: empty chunks


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_csr_matmul_gather(dtype, index_dtype, shape):
    m, n, r = shape
    X, D = _csr(m, n, dtype, index_dtype, seed=m + n + r)
    B = np.random.default_rng(1).random((n, r)).astype(dtype)
    for bounds in _chunk_options(X.indptr):
        out = np.full((m, r), np.nan, dtype=dtype)
        got = kernels.csr_matmul(X.indptr, X.indices, X.data, B, bounds, out)
        assert got is out
        _close(out, D @ B.astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_csr_matmul_t_scatter(dtype, index_dtype, shape):
    m, n, r = shape
    X, D = _csr(m, n, dtype, index_dtype, seed=m * n + r)
    W = np.random.default_rng(2).random((m, r)).astype(dtype)
    for bounds in _chunk_options(X.indptr):
        # a private copy per chunk but the first, which adds into ``out`` (NaN: all written)
        partial = np.full((max(bounds.shape[0] - 2, 0), n, r), np.nan, dtype=dtype)
        out = np.full((n, r), np.nan, dtype=dtype)
        got = kernels.csr_matmul_t(X.indptr, X.indices, X.data, W, bounds, partial, out)
        assert got is out
        _close(out, D.T @ W.astype(np.float64), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_csr_matmul_add_into_listed_rows(dtype, index_dtype, shape):
    """``out[rows] += X @ B`` for X's rows listed in ``rows``; other rows untouched; and
    which rows of ``X @ B`` have a nonzero (B's every third row zero: some have none)."""
    m, n, r = shape
    X, D = _csr(m, n, dtype, index_dtype, seed=m + 2 * n + r)
    B = np.random.default_rng(3).random((n, r)).astype(dtype)
    B[::3] = 0
    rows = np.random.default_rng(4).permutation(m + 5)[:m].astype(index_dtype)
    for bounds in _chunk_options(X.indptr):
        out = np.random.default_rng(5).random((m + 5, r)).astype(dtype)
        expected = out.astype(np.float64)
        product = D @ B.astype(np.float64)
        expected[rows] += product
        nonzero = np.zeros(m, dtype=np.bool_)
        got = kernels.csr_matmul_add(X.indptr, X.indices, X.data, rows, B, bounds, out,
                                     nonzero)
        assert got is out
        _close(out, expected, dtype)
        assert np.array_equal(nonzero, (product != 0).any(axis=1))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("side", [0, 1])
@pytest.mark.parametrize("shape", [(40, 15), (1, 1), (0, 6), (6, 0), (3, 200)])
def test_add_product_touches_only_the_rows_it_reaches(dtype, index_dtype, side, shape):
    """``add_product``: ``out += X F`` / ``Xᵀ F``, sparse and dense alike, the same numbers
    as the gather product plus an add (sparse) and never a write to a row X's nonzeros
    do not reach (checked with NaN there)."""
    m, n = shape
    X, D = _csr(m, n, dtype, index_dtype, seed=m + n + side)
    X.data[: X.nnz // 3] = 0  # stored zeros reach their row like any nonzero
    D = X.toarray().astype(np.float64)
    rng = np.random.default_rng(7)
    F = rng.random(((m, n)[1 - side], 5)).astype(dtype)
    out_rows = (m, n)[side]
    reached = np.diff((X if side == 0 else X.T.tocsr()).indptr) > 0
    Dx = D if side == 0 else D.T
    for data in (SparseData(X), _data.DenseData(D.astype(dtype))):
        out = rng.random((out_rows, 5)).astype(dtype)
        if data.is_sparse:
            out[~reached] = np.nan
        before = out.copy()
        got = data.add_product(F, side, out, lambda o=out: np.empty_like(o))
        assert got is out
        # the rows the product changed: the same for both (stored zeros change nothing)
        changed = data.add_product(F, side, np.zeros_like(out),
                                   lambda o=out: np.empty_like(o), changed=True)
        assert np.array_equal(changed, np.flatnonzero((Dx @ F != 0).any(axis=1)))
        if data.is_sparse:
            gathered = data.product(F, side, np.empty_like(out), "gather")
            assert np.array_equal(out[reached], before[reached] + gathered[reached])
            assert np.isnan(out[~reached]).all()
        else:
            _close(out, before.astype(np.float64) + Dx @ F.astype(np.float64), dtype)


@pytest.mark.parametrize("made_before", [False, True])
def test_add_product_keeps_no_full_transpose_it_made_for_itself(made_before):
    """``Xᵀ F`` added into the rows it reaches keeps the packed rows only: the CSR of Xᵀ
    (n + 1 row pointers) it was packed from is dropped when it was made for this alone
    (``MiniBatchNMF.fit`` holds every batch: n + 1 pointers each), kept when a product
    had made it; the numbers are the gather product's either way, also after Xᵀ's CSR
    is made again (then the packed rows are taken from it: no second copy held)."""
    X, _ = _csr(30, 400, np.float64, np.int64, seed=3, density=0.02)  # wide: many empty columns
    data = SparseData(X)
    F = np.random.default_rng(0).random((30, 4))
    gathered = SparseData(X).product(F, 1, np.empty((400, 4)), "gather")
    if made_before:
        data.product(F, 1, np.empty((400, 4)), "gather")
    out = np.zeros((400, 4))
    data.add_product(F, 1, out)
    assert np.array_equal(out, gathered)
    held = data._arrays.held
    assert (held is not None) == made_before
    packed = data._nonempty[1]
    assert packed[0].size == np.count_nonzero(np.diff(X.tocsc().indptr)) + 1
    data.product(F, 1, np.empty((400, 4)), "gather")  # Xᵀ's CSR made again (or kept)
    out[...] = 0
    data.add_product(F, 1, out)
    assert np.array_equal(out, gathered)
    assert data._nonempty[1][1] is data._arrays.held[1]


def test_sparse_data_is_freed_without_a_garbage_collection():
    """No reference cycle through the lazily made transpose: a dropped batch's arrays go
    at once (a stream of blocks otherwise held its dead blocks until a collection)."""
    import gc
    import weakref

    X, _ = _csr(30, 20, np.float64, np.int32)
    data = SparseData(X)
    data.product(np.ones((30, 2)), 1, np.empty((20, 2)), "gather")  # makes Xᵀ's CSR
    data.add_product(np.ones((30, 2)), 1, np.zeros((20, 2)))
    copy = data.for_thread()
    alive = weakref.ref(data), weakref.ref(copy)
    gc.disable()
    try:
        del data, copy
        assert all(ref() is None for ref in alive)
    finally:
        gc.enable()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("method", ["gather", "scatter", None])
def test_sparse_data_product_both_sides(dtype, index_dtype, method, monkeypatch):
    monkeypatch.setattr(_data, "_SCATTER_MIN_NNZ", 0)  # the rule may pick scatter
    monkeypatch.setattr(_data, "_SCATTER_MIN_OPERAND_BYTES", 0)
    X, D = _csr(40, 15, dtype, index_dtype, seed=3)
    data = SparseData(X)
    rng = np.random.default_rng(4)
    Ht = rng.random((15, 6)).astype(dtype)
    W = rng.random((40, 6)).astype(dtype)
    for _ in range(2):  # second call uses the remembered choice and scratch
        out0 = data.product(Ht, 0, np.empty((40, 6), dtype), method)
        out1 = data.product(W, 1, np.empty((15, 6), dtype), method)
        _close(out0, D @ Ht.astype(np.float64), dtype)
        _close(out1, D.T @ W.astype(np.float64), dtype)
    if method is None:
        # scatter for side 0 would need threads × 40 output rows ≤ 2 × 15 operand rows
        assert data._choose(Ht, 0, np.empty((40, 6), dtype)) == "gather"
        assert data._choose(W, 1, np.empty((15, 6), dtype)) == "scatter"


@pytest.mark.parametrize("scatter", [True, False])
def test_sparse_data_makes_the_transpose_only_when_a_product_reads_it(scatter, monkeypatch):
    """The CSR of Xᵀ is made at the first product that needs it: never when the scatter
    kernel (from the CSR of X) serves ``Xᵀ W``."""
    monkeypatch.setattr(_data, "_SCATTER_MIN_NNZ", 0)
    monkeypatch.setattr(_data, "_SCATTER_MIN_OPERAND_BYTES", 0 if scatter else 1 << 40)
    X, D = _csr(400, 15, np.float64, np.int32, seed=5)  # scatter: threads × 15 ≤ 2 × 400
    data = SparseData(X)
    assert data._arrays.held is None and data._bounds.held is None
    W = np.random.default_rng(6).random((400, 4))
    for _ in range(2):
        out = data.product(W, 1, np.empty((15, 4)))
        _close(out, D.T @ W, np.float64)
        assert (data._arrays.held is None) == scatter
    data.release_transpose()
    _close(data.product(W, 1, np.empty((15, 4)), "gather"), D.T @ W, np.float64)
    assert data._arrays.held is not None  # made again on demand


def test_sparse_product_choice_does_not_depend_on_timing(monkeypatch):
    """Gather and scatter round differently, so ``Xᵀ W``'s kernel is chosen by a rule,
    never by a timing: with a clock that returns noise, fits of one seed on a tall X
    (where scatter is a candidate) are still bit for bit the same.  A timed choice
    flips between fits and between processes, and a fixed seed no longer fixes the
    result."""
    import fastnmf

    monkeypatch.setattr(_data, "_SCATTER_MIN_NNZ", 0)
    monkeypatch.setattr(_data, "_SCATTER_MIN_OPERAND_BYTES", 0)
    noise = np.random.default_rng(0)
    monkeypatch.setattr(time, "perf_counter", lambda: float(noise.random()))
    X, _ = _csr(3000, 40, np.float64, np.int32, seed=8)
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("on one thread the two kernels add in the same order")
    fits = [fastnmf.nmf(X, 5, random_state=0, max_iter=6, tol=0, backend="sparse", n_threads=2)
            for _ in range(4)]
    for other in fits[1:]:
        assert np.array_equal(other.W, fits[0].W) and np.array_equal(other.H, fits[0].H)


@pytest.mark.parametrize("threads", [1, 2])
def test_scatter_rule(threads):
    """The sparse kernel rule on WordNet's shape (147306×86567, 2.7·10⁶ nonzeros) and
    a wide 20000×200000, as measured: ``Xᵀ W`` by scatter from r = 20 (float64) on two
    threads, at any r on one; ``X Hᵀ`` by gather at r = 50 (scatter was twice as slow
    on one thread); one thread scatters into a small output, not into an 80 MB one."""
    m, n, nnz, f64 = 147306, 86567, 2_747_041, 8
    pays = _data.scatter_pays
    assert pays(nnz, n, m, 20 * f64, threads)
    assert pays(nnz, n, m, 10 * f64, threads) == (threads == 1)
    assert not pays(nnz, m, n, 50 * f64, threads)
    assert pays(nnz, m, n, 10 * f64, threads) == (threads == 1)  # 11.8 MB of output
    assert not pays(1000, n, m, 50 * f64, threads)  # small X: gather
    if threads == 1:
        wide_m, wide_n = 20000, 200000
        assert pays(5_000_000, wide_n, wide_m, 10 * f64, 1)  # 16 MB of output
        assert not pays(5_000_000, wide_n, wide_m, 50 * f64, 1)  # 80 MB


def test_reorder_only_where_x_alone_serves(monkeypatch):
    """X's columns are reordered only where scatter serves ``Xᵀ W`` and gather ``X Hᵀ``
    (the reordered copy is then the one copy of X a fit holds): on one thread both
    sides of this X scatter, so its order is kept."""
    from fastnmf import thread_limits

    monkeypatch.setattr(_data, "_SCATTER_MIN_OPERAND_BYTES", 0)
    X = sp.random(3000, 2000, density=0.2, format="csr", random_state=0)  # > 2^20 nnz
    with thread_limits(1):
        assert _data.scatter_pays(X.nnz, 2000, 3000, 40, 1)
        assert _data.scatter_pays(X.nnz, 3000, 2000, 40, 1)
        assert not _data.reorders(X, "frobenius", 5)
    if numba.config.NUMBA_NUM_THREADS >= 2:
        with thread_limits(2):
            assert _data.reorders(X, "frobenius", 5)


def test_dense_layout_rule():
    """The dense layout: wide for float64 and for float32 read across its memory order
    (from 2^20 elements); tall for small X."""
    small = np.zeros((100, 100))
    assert _data.dense_layout(small, 0) == _data.dense_layout(small, 1) == "tall"
    big64 = np.zeros((1200, 1000))
    assert _data.dense_layout(big64, 0) == _data.dense_layout(big64, 1) == "wide"
    mid64 = np.zeros((600, 500))  # split, not yet big: wide only across the order
    assert (_data.dense_layout(mid64, 0), _data.dense_layout(mid64, 1)) == ("tall", "wide")
    big32 = np.zeros((1200, 1000), dtype=np.float32)
    assert (_data.dense_layout(big32, 0), _data.dense_layout(big32, 1)) == ("tall", "wide")
    assert (_data.dense_layout(big32.T, 0), _data.dense_layout(big32.T, 1)) == ("wide", "tall")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_sampled_moments(dtype, index_dtype, shape):
    m, n, r = shape
    X, D = _csr(m, n, dtype, index_dtype, seed=7 * m + n)
    rng = np.random.default_rng(5)
    W = rng.random((m, r)).astype(dtype)
    Ht = rng.random((n, r)).astype(dtype)
    WH = W.astype(np.float64) @ Ht.T.astype(np.float64)
    mask = D != 0
    res = ((D - WH)[mask] ** 2).sum()
    fit = (WH[mask] ** 2).sum()
    cross = (D * WH)[mask].sum()
    xx = (D.astype(np.float64)[mask] ** 2).sum()
    for bounds in _chunk_options(X.indptr):
        got = kernels.sampled_moments(X.indptr, X.indices, X.data, W, Ht, bounds).sum(0)
        assert_allclose(got, [res, fit, cross, xx], rtol=1e-10, atol=1e-12)


def _hals_twin(F, A, B, l1, l2):
    """Row by row, components in order, in float64; returns (F, violation)."""
    F = np.array(F, dtype=np.float64)
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    violation = 0.0
    for i in range(F.shape[0]):
        for k in range(F.shape[1]):
            grad = F[i] @ B[:, k] + l2 * F[i, k] + l1 - A[i, k]
            violation += abs(min(0.0, grad) if F[i, k] == 0 else grad)
            if B[k, k] + l2 > 0:
                F[i, k] = max(0.0, F[i, k] - grad / (B[k, k] + l2))
    return F, violation


def _factor_problem(m, r, dtype, seed):
    rng = np.random.default_rng(seed)
    G = rng.random((9, r))
    G[:, 0] = 0.0  # B[0, 0] == 0: that component is skipped without l2
    B = G.T @ G
    F = rng.random((m, r))
    F[0, -1] = 0.0  # an entry at the bound (projected gradient)
    A = rng.random((m, r)) * 3.0
    return (np.ascontiguousarray(F, dtype=dtype), np.ascontiguousarray(A, dtype=dtype),
            np.ascontiguousarray(B, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 3, 4, 7, 8, 9, 13, 23, 63, 64, 65, 130])  # group tails
@pytest.mark.parametrize("r", [1, 5, 33])
@pytest.mark.parametrize("reg", [(0.0, 0.0), (0.3, 0.4)])
def test_hals_update_one_sweep(dtype, m, r, reg):
    F, A, B = _factor_problem(m, r, dtype, seed=m * 100 + r)
    expected, violation = _hals_twin(F, A, B, *reg)
    for bounds in (row_bounds(m, 1), row_bounds(m, 3), row_bounds(m, m + 3)):
        F1 = F.copy()
        G = np.empty((r, r), dtype=dtype)
        v1, cross = kernels.hals_update(F1, A, B, dtype(reg[0]), dtype(reg[1]), bounds, G)
        _close(F1, expected, dtype)
        assert_allclose(v1, violation, rtol=RTOL[dtype] * 10, atol=RTOL[dtype])
        # the Gram and ⟨A, F⟩ of the updated factor, every group tail included
        F64 = F1.astype(np.float64)
        _close(G, F64.T @ F64, dtype)
        assert_allclose(cross, np.sum(A * F64), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [1, 3, 9, 40, 64, 150])
@pytest.mark.parametrize("r", [1, 5, 12, 19])
@pytest.mark.parametrize("n_inner", [2, 7, 50])
@pytest.mark.parametrize("reg", [(0.0, 0.0), (0.3, 0.4)])
def test_hals_update_repeated_sweeps(dtype, m, r, n_inner, reg):
    """Accelerated HALS: repeated sweeps per row group == the NumPy twin, for any
    chunking with bounds on multiples of the group; the violation is the first sweep's."""
    F, A, B = _factor_problem(m, r, dtype, seed=m * 7 + r)
    expected = ref.hals_sweeps(F, A, B, *reg, n_inner=n_inner, delta=0.1)
    _, violation = _hals_twin(F, A, B, *reg)
    sub = ref.objective_rows(F, A, B, *reg)
    aligned = np.unique(np.r_[0 : m : kernels.ROW_GROUP, m])
    for bounds in (_data.factor_bounds(m), np.array([0, m]), aligned):
        F1 = F.copy()
        v, _ = kernels.hals_update(F1, A, B, dtype(reg[0]), dtype(reg[1]),
                                   bounds.astype(np.int64), np.empty((r, r), dtype=dtype),
                                   n_inner, 0.1)
        _close(F1, expected, dtype)
        assert_allclose(v, violation, rtol=RTOL[dtype] * 10, atol=RTOL[dtype])
        # every sweep is an exact coordinate step: the subproblem objective never rises
        assert ref.objective_rows(F1, A, B, *reg) <= sub + 1e-6 * abs(sub) + 1e-12


def test_hals_update_more_sweeps_solve_the_subproblem():
    """Many sweeps with delta=0 converge to the nonnegative least-squares solution."""
    from scipy.optimize import nnls

    rng = np.random.default_rng(5)
    H = rng.random((4, 30))
    X = rng.random((9, 30))
    W = rng.random((9, 4))
    kernels.hals_update(W, X @ H.T, H @ H.T, 0.0, 0.0, row_bounds(9, 2), np.empty((4, 4)),
                        500, 0.0)
    expected = np.array([nnls(H.T, x)[0] for x in X])
    assert_allclose(W, expected, atol=1e-8)


def test_factor_bounds_are_whole_row_groups():
    assert kernels.ROW_GROUP == ref.GROUP == 64
    for n in (1, 3, 4, 5, 17, 90, 1001, 100_000):
        b = _data.factor_bounds(n)
        assert b[0] == 0 and b[-1] == n and np.all(np.diff(b) > 0)
        assert np.all(b[:-1] % kernels.ROW_GROUP == 0)
