"""Kernels and data products against the naive NumPy twins in ``reference.py``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import reference as ref
import scipy.sparse as sp
from numpy.testing import assert_allclose

from fastnmf import kernels
from fastnmf._chunks import row_bounds
from fastnmf._data import DenseData, SparseData, factor_bounds, make_data

DTYPES = [np.float64, np.float32]
RTOL = {np.float64: 1e-10, np.float32: 2e-4}

# (m, r): rows of the factor and the rank; includes 1×1, one row, one
# component, and a rank larger than the number of rows.
FACTOR_SHAPES = [(1, 1), (1, 5), (7, 1), (40, 3), (33, 8), (3, 6)]


def _chunks(m, many):
    """One chunk, or many (more chunks than rows: some are empty)."""
    return row_bounds(m, m + 3 if many else 1)


def _close(actual, desired, dtype):
    desired = np.asarray(desired, dtype=np.float64)
    scale = max(1.0, float(np.abs(desired).max(initial=0.0)))
    assert_allclose(np.asarray(actual, dtype=np.float64), desired, rtol=RTOL[dtype],
                    atol=RTOL[dtype] * scale)


def _factor_problem(m, r, dtype, seed, zero_row=False, zero_component=False):
    """F (m×r), A (m×r) and a symmetric Gram B (r×r) as HALS/MU see them."""
    rng = np.random.default_rng(seed)
    G = rng.random((9, r))  # the other factor (transposed), 9 rows
    if zero_component:
        G[:, 0] = 0.0  # B[0, 0] == 0: an all-zero row of the other factor
    B = G.T @ G
    B = (B + B.T) / 2
    F = rng.random((m, r))
    A = rng.random((m, r)) * 3.0
    if zero_row:
        F[0] = 0.0
        A[-1] = 0.0
    return (np.ascontiguousarray(F, dtype=dtype), np.ascontiguousarray(A, dtype=dtype),
            np.ascontiguousarray(B, dtype=dtype))


REGS = [(0.0, 0.0), (0.5, 0.0), (0.0, 0.7), (0.3, 0.4)]


def _gram_out(F):
    """The r×r buffer (F's dtype) a factor update writes the new ``Fᵀ F`` into."""
    return np.full((F.shape[1],) * 2, np.nan, dtype=F.dtype)


def _check_gram_and_cross(F, A, G, cross, dtype):
    """An update's by-products: G == Fᵀ F (exactly symmetric), cross == ⟨A, F⟩ (float64)."""
    F64 = F.astype(np.float64)
    _close(G, F64.T @ F64, dtype)
    assert G.dtype == dtype and np.array_equal(G, G.T)
    assert isinstance(float(cross), float)
    assert_allclose(cross, np.sum(A.astype(np.float64) * F64), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", FACTOR_SHAPES)
@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("many_chunks", [False, True])
def test_hals_update(dtype, shape, reg, many_chunks):
    m, r = shape
    F, A, B = _factor_problem(m, r, dtype, seed=m * 10 + r)
    expected, violation = ref.hals_sweep(F, A, B, *reg, return_violation=True)
    G = _gram_out(F)
    got, cross = kernels.hals_update(F, A, B, dtype(reg[0]), dtype(reg[1]),
                                     _chunks(m, many_chunks), G)
    assert F.dtype == dtype
    _close(F, expected, dtype)
    _check_gram_and_cross(F, A, G, cross, dtype)
    # the sweep returns scikit-learn's projected-gradient violation (the cd stopping rule)
    assert_allclose(got, violation, rtol=RTOL[dtype], atol=RTOL[dtype])
    assert np.all(F >= 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", FACTOR_SHAPES)
@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("many_chunks", [False, True])
def test_mu_update(dtype, shape, reg, many_chunks):
    m, r = shape
    F, A, B = _factor_problem(m, r, dtype, seed=m * 10 + r + 1)
    expected = ref.mu_step(F, A, B, *reg)
    G = _gram_out(F)
    cross = kernels.mu_update(F, A, B, dtype(reg[0]), dtype(reg[1]), dtype(ref.MU_EPS),
                              _chunks(m, many_chunks), G)
    assert F.dtype == dtype
    _close(F, expected, dtype)
    _check_gram_and_cross(F, A, G, cross, dtype)
    assert np.all(F >= 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("many_chunks", [False, True])
def test_hals_update_zero_rows_and_zero_gram_diagonal(dtype, many_chunks):
    F, A, B = _factor_problem(12, 4, dtype, seed=3, zero_row=True, zero_component=True)
    F0 = F.copy()
    expected = ref.hals_sweep(F, A, B)
    kernels.hals_update(F, A, B, dtype(0), dtype(0), _chunks(12, many_chunks), _gram_out(F))
    assert np.all(np.isfinite(F))
    _close(F, expected, dtype)
    # a component with B[k, k] == 0 (and no l2) is left unchanged
    assert_allclose(F[:, 0], F0[:, 0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_hals_update_zero_gram_diagonal_with_l2_is_updated(dtype):
    F, A, B = _factor_problem(10, 3, dtype, seed=4, zero_component=True)
    expected = ref.hals_sweep(F, A, B, 0.0, 0.5)
    kernels.hals_update(F, A, B, dtype(0), dtype(0.5), row_bounds(10, 4), _gram_out(F))
    _close(F, expected, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("many_chunks", [False, True])
def test_mu_update_zero_denominator_uses_eps(dtype, many_chunks):
    F, A, B = _factor_problem(12, 4, dtype, seed=5, zero_row=True, zero_component=True)
    F[1] = 0.0  # F B == 0 in row 1: every denominator there is 0
    A[1] = 1.0
    expected = ref.mu_step(F, A, B)
    kernels.mu_update(F, A, B, dtype(0), dtype(0), dtype(ref.MU_EPS), _chunks(12, many_chunks),
                      _gram_out(F))
    assert np.all(np.isfinite(F))
    _close(F, expected, dtype)
    assert np.all(F[0] == 0) and np.all(F[1] == 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (50, 4), (31, 9)])
@pytest.mark.parametrize("many_chunks", [False, True])
def test_inner_f64_and_change_f64(dtype, shape, many_chunks):
    rng = np.random.default_rng(shape[0])
    A = rng.random(shape).astype(dtype)
    B = rng.random(shape).astype(dtype)
    expected = float(np.sum(A.astype(np.float64) * B.astype(np.float64)))
    got = kernels.inner_f64(A, B, _chunks(shape[0], many_chunks))
    assert isinstance(float(got), float)
    assert_allclose(got, expected, rtol=1e-12)
    # change_f64: (‖A − B‖², ‖A‖²) in float64, and B ← A (A untouched)
    A0 = A.copy()
    diff = A.astype(np.float64) - B.astype(np.float64)
    expected = (float(np.sum(diff * diff)), float(np.sum(A.astype(np.float64) ** 2)))
    assert_allclose(kernels.change_f64(A, B, _chunks(shape[0], many_chunks)), expected,
                    rtol=1e-12)
    assert np.array_equal(B, A0) and np.array_equal(A, A0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (9, 1), (50, 4), (31, 9)])
@pytest.mark.parametrize("many_chunks", [False, True])
def test_dense_stats(dtype, shape, many_chunks):
    """Per chunk of rows: nonzeros, ‖X_c‖² in float64 and negatives, against NumPy;
    NaN or inf makes the chunk's ‖X_c‖² non-finite, not the others'."""
    rng = np.random.default_rng(shape[1])
    X = (rng.random(shape) - 0.3).astype(dtype)
    X[rng.random(shape) < 0.3] = 0
    bounds = _chunks(shape[0], many_chunks)
    expected = [(np.count_nonzero(b), np.sum(b.astype(np.float64) ** 2), np.sum(b < 0))
                for b in (X[a:e] for a, e in itertools.pairwise(bounds))]
    got = kernels.dense_stats(X, bounds)
    assert got.shape == (len(bounds) - 1, 3)
    assert_allclose(got, np.array(expected, dtype=np.float64), rtol=1e-12)
    for bad in (np.nan, np.inf):
        Y = X.copy()
        Y[-1, -1] = bad
        finite = np.isfinite(kernels.dense_stats(Y, bounds)[:, 1])
        holds_last_row = (bounds[:-1] < shape[0]) & (bounds[1:] == shape[0])
        assert np.array_equal(finite, ~holds_last_row)


def test_inner_f64_accumulates_in_float64():
    # 10⁶ products of 1 + 2⁻¹³: a float32 accumulator would lose the small part.
    A = np.full((1000, 1000), 1 + 2.0**-13, dtype=np.float32)
    B = np.ones((1000, 1000), dtype=np.float32)
    got = kernels.inner_f64(A, B, row_bounds(1000, 1))
    assert got == pytest.approx(1e6 * (1 + 2.0**-13), rel=1e-12)


# ---------------------------------------------------------------- data products

# (m, n, r); includes 1×1, one row, one column, rank 1, rank > min(m, n)
PRODUCT_SHAPES = [(1, 1, 1), (1, 9, 2), (8, 1, 3), (30, 20, 1), (40, 25, 5), (4, 6, 9),
                  (117, 83, 7)]


def _sparse_X(m, n, dtype, seed, density=0.3, zero_lines=True):
    rng = np.random.default_rng(seed)
    X = rng.random((m, n))
    X[rng.random((m, n)) > density] = 0
    if zero_lines and m > 2 and n > 2:
        X[1] = 0.0
        X[:, 2] = 0.0
    return X.astype(dtype)


def _with_index_dtype(X, index_dtype):
    """CSR of X whose indices and indptr have exactly the requested dtypes."""
    csr = sp.csr_matrix(X)
    idx, ptr = index_dtype
    csr.indices = csr.indices.astype(idx)
    csr.indptr = csr.indptr.astype(ptr)
    assert csr.indices.dtype == idx and csr.indptr.dtype == ptr
    return csr


def _check_products(data, Xd, r, dtype, seed):
    m, n = Xd.shape
    rng = np.random.default_rng(seed)
    Ht = rng.random((n, r)).astype(dtype)
    W = rng.random((m, r)).astype(dtype)
    out0 = np.full((m, r), np.nan, dtype=dtype)  # the kernels must overwrite, not accumulate
    out1 = np.full((n, r), np.nan, dtype=dtype)
    got0 = data.product(Ht, 0, out=out0)
    got1 = data.product(W, 1, out=out1)
    assert got0.dtype == dtype and got1.dtype == dtype
    _close(out0, ref.product(Xd, Ht, 0), dtype)
    _close(out1, ref.product(Xd, W, 1), dtype)
    _close(got0, out0, dtype)
    # direct ‖X − W Htᵀ‖², accumulated in float64
    assert_allclose(data.direct_sqerr(W, Ht), ref.sqerr(Xd, W, Ht.T),
                    rtol=1e-12 if dtype == np.float64 else 1e-5)
    assert_allclose(data.sqnorm, np.sum(Xd.astype(np.float64) ** 2), rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", PRODUCT_SHAPES)
@pytest.mark.parametrize("order", ["C", "F", "strided"])
def test_dense_data(dtype, shape, order):
    m, n, r = shape
    Xd = _sparse_X(m, n, dtype, seed=m + n, density=0.8)
    if order == "F":
        X = np.asfortranarray(Xd)
    elif order == "strided":
        X = np.repeat(Xd, 2, axis=1)[:, ::2]
        assert min(m, n) == 1 or not (X.flags.c_contiguous or X.flags.f_contiguous)
    else:
        X = Xd
    data = DenseData(X)
    assert not data.is_sparse and data.shape == (m, n) and data.dtype == dtype
    _check_products(data, Xd, r, dtype, seed=r)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 5, 3), (9, 13, 8), (64, 33, 2), (5, 70, 6)])
def test_small_rank_dense_kernels(dtype, shape):
    """kernels.rows_times / cols_times (the "dot" and "axpy" layouts of DenseData) on row or column
    ranges, against NumPy; m not a multiple of the four rows cols_times takes at once."""
    m, n, r = shape
    rng = np.random.default_rng(m * n + r)
    X = rng.random((m, n)).astype(dtype)
    F = rng.random((n, r)).astype(dtype)
    W = rng.random((m, r)).astype(dtype)
    zero = dtype(0)
    for a, b in [(0, m), (m // 3, m), (0, (m + 1) // 2)]:
        out = np.full((m, r), np.nan, dtype=dtype)
        kernels.rows_times(X, np.ascontiguousarray(F.T), a, b, out, zero)
        _close(out[a:b], ref.product(X, F, 0)[a:b], dtype)
        assert np.isnan(out[:a]).all() and np.isnan(out[b:]).all()  # only rows a:b
    for a, b in [(0, n), (n // 3, n), (0, (n + 1) // 2)]:
        out_t = np.full((r, b - a), np.nan, dtype=dtype)
        kernels.cols_times(X, W, a, b, out_t, zero)
        _close(out_t.T, ref.product(X, W, 1)[a:b], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("r", [3, 6, 7, 10, 11])
def test_dense_products_split_over_threads(dtype, order, r):
    """A dense X large enough that each product is split over the threads: the small-rank
    loops (the dot form up to SMALL_RANK_ROWS columns, the axpy form up to
    SMALL_RANK_COLS) and BLAS (above) give X's products, and the same bits on one thread
    and on two."""
    from fastnmf import thread_limits
    from fastnmf._data import SMALL_RANK_COLS, SMALL_RANK_ROWS

    m, n = 700, 450  # 315000 entries: split (≥ 2^18)
    rng = np.random.default_rng(r)
    X = np.asarray(rng.random((m, n)), dtype=dtype, order=order)
    data = DenseData(X)
    small = [r <= SMALL_RANK_ROWS, r <= SMALL_RANK_COLS][::1 if order == "C" else -1]
    assert [data._layout(np.empty((n, r)), side, None) in ("dot", "axpy")
            for side in (0, 1)] == small
    F = rng.random((n, r)).astype(dtype)
    W = rng.random((m, r)).astype(dtype)
    got = []
    for threads in (1, 2):
        with thread_limits(threads):
            got.append((data.product(F, 0, np.empty((m, r), dtype)),
                        data.product(W, 1, np.empty((n, r), dtype))))
    _close(got[0][0], ref.product(X, F, 0), dtype)
    _close(got[0][1], ref.product(X, W, 1), dtype)
    for side in (0, 1):  # the loops sum every entry in one order whatever the split
        if small[side]:
            assert np.array_equal(got[0][side], got[1][side])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", PRODUCT_SHAPES)
@pytest.mark.parametrize(
    "index_dtype",
    [(np.int32, np.int32), (np.int64, np.int64), (np.int32, np.int64)],
    ids=["int32", "int64", "mixed"],
)
def test_sparse_data_csr(dtype, shape, index_dtype):
    m, n, r = shape
    Xd = _sparse_X(m, n, dtype, seed=m * n)
    data = SparseData(_with_index_dtype(Xd, index_dtype))
    assert data.is_sparse and data.shape == (m, n) and data.dtype == dtype
    assert data.nnz == np.count_nonzero(Xd)
    _check_products(data, Xd, r, dtype, seed=r + 1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt", ["csc", "coo", "bsr", "csr_array", "csc_array", "coo_array"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 9, 2), (8, 1, 3), (40, 25, 5), (4, 6, 9)])
def test_sparse_data_formats(dtype, fmt, shape):
    m, n, r = shape
    Xd = _sparse_X(m, n, dtype, seed=m + 7 * n)
    if fmt.endswith("_array"):
        X = getattr(sp, fmt)(Xd)
    else:
        X = sp.csr_matrix(Xd).asformat(fmt)
    _check_products(SparseData(X), Xd, r, dtype, seed=r + 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_data_non_canonical(dtype, fmt):
    """Duplicate entries are summed, unsorted indices work, explicit zeros are harmless."""
    rows = np.array([0, 0, 2, 2, 2, 3, 0, 3])
    cols = np.array([3, 1, 0, 0, 4, 2, 1, 2])
    vals = np.array([1.0, 2.0, 0.5, 0.25, 3.0, 0.0, 1.5, 4.0], dtype=dtype)
    coo = sp.coo_matrix((vals, (rows, cols)), shape=(5, 6))
    Xd = np.zeros((5, 6))
    np.add.at(Xd, (rows, cols), vals)
    if fmt == "coo":
        X = coo
    else:
        # build CSR/CSC from raw arrays, with unsorted indices and duplicates kept
        major, minor = (rows, cols) if fmt == "csr" else (cols, rows)
        n_major = 5 if fmt == "csr" else 6
        order = np.argsort(major, kind="stable")
        indptr = np.concatenate([[0], np.cumsum(np.bincount(major, minlength=n_major))])
        cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
        X = cls((vals[order], minor[order], indptr), shape=(5, 6))
        assert not X.has_canonical_format
    _check_products(SparseData(X), Xd.astype(dtype), 3, dtype, seed=11)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_data_all_zero(dtype):
    X = sp.csr_matrix((7, 5), dtype=dtype)
    data = SparseData(X)
    assert data.sqnorm == 0 and data.nnz == 0
    _check_products(data, np.zeros((7, 5), dtype=dtype), 2, dtype, seed=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_equals_dense_products(dtype):
    Xd = _sparse_X(60, 45, dtype, seed=1)
    d, s = DenseData(Xd), SparseData(sp.csr_matrix(Xd))
    rng = np.random.default_rng(0)
    F0, F1 = rng.random((45, 4)).astype(dtype), rng.random((60, 4)).astype(dtype)
    for side, F in ((0, F0), (1, F1)):
        shape = (60 if side == 0 else 45, 4)
        _close(s.product(F, side, np.empty(shape, dtype)),
               d.product(F, side, np.empty(shape, dtype)), dtype)
    assert_allclose(s.direct_sqerr(F1, F0), d.direct_sqerr(F1, F0),
                    rtol=1e-12 if dtype == np.float64 else 1e-5)


@pytest.mark.parametrize(
    ("density", "is_sparse", "backend", "expected"),
    [
        (0.5, False, "auto", "dense"),
        (0.01, False, "auto", "sparse"),
        (0.5, True, "auto", "sparse"),
        (0.5, False, "sparse", "sparse"),
        (0.01, True, "dense", "dense"),
    ],
)
def test_make_data_choice(density, is_sparse, backend, expected):
    Xd = _sparse_X(40, 50, np.float64, seed=2, density=density, zero_lines=False)
    X = sp.csr_matrix(Xd) if is_sparse else Xd
    data = make_data(X, is_sparse, backend)
    assert data.backend == expected
    _check_products(data, Xd, 3, np.float64, seed=3)


@pytest.mark.parametrize("n_rows", [1, 2, 5, 17, 100])
@pytest.mark.parametrize("n_chunks", [1, 2, 3, 16, 150])
def test_row_bounds_cover_all_rows(n_rows, n_chunks):
    b = row_bounds(n_rows, n_chunks)
    assert b.dtype == np.int64
    assert b[0] == 0 and b[-1] == n_rows
    assert np.all(np.diff(b) >= 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kernel", ["hals", "mu"])
def test_update_without_gram(dtype, kernel):
    """A 0×0 G asks for no Gram: the update and ⟨A, F⟩ are those of a call with one."""
    F, A, B = _factor_problem(33, 5, dtype, seed=8)
    results = []
    for G in (_gram_out(F), np.empty((0, 0), dtype=dtype)):
        F1 = F.copy()
        if kernel == "hals":
            out = kernels.hals_update(F1, A, B, dtype(0), dtype(0), row_bounds(33, 3), G, 3, 0.1)
        else:
            out = kernels.mu_update(F1, A, B, dtype(0), dtype(0), dtype(ref.MU_EPS),
                                    row_bounds(33, 3), G)
        results.append((F1, out))
    assert np.array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("with_gram", [True, False])
def test_extrapolate_matches_numpy(dtype, with_gram):
    """F ← max(0, F + β(F − prev)), prev ← the F that came in, G ← Fᵀ F of the result
    (0×0 G: no Gram), over several row groups and chunks."""
    rng = np.random.default_rng(3)
    F = rng.random((200, 7)).astype(dtype)
    prev = (F + rng.normal(scale=0.5, size=F.shape)).astype(dtype)  # some steps go below 0
    F0, prev0 = F.copy(), prev.copy()
    G = np.full((7, 7) if with_gram else (0, 0), np.nan, dtype=dtype)
    kernels.extrapolate(F, prev, dtype(0.7), factor_bounds(200), G)
    Y = np.maximum(0.0, F0.astype(np.float64) + 0.7 * (F0.astype(np.float64) - prev0))
    assert np.any(Y == 0)  # the projection is exercised
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    assert_allclose(F, Y, rtol=rtol, atol=rtol)
    np.testing.assert_array_equal(prev, F0)
    if with_gram:
        assert_allclose(G, Y.T @ Y, rtol=10 * rtol)
