"""Chunked kernels (_jit.ChunkedKernel): serial Numba code run over chunks of rows by the
package's threads; the same results as one serial call, every combine mode."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import reference as ref
import scipy.sparse as sp

from fastnmf import kernels
from fastnmf._jit import ChunkedKernel, kernel
from fastnmf._threads import numba_threads
from fastnmf.kernels.kl import kl_ylogy

needs_two = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2,
                               reason="one Numba thread: nothing to split")
BOUNDS = np.array([0, 7, 20, 33, 41, 64, 90], dtype=np.int64)  # 6 uneven chunks


def _factors(dtype, m=90, r=5, seed=0):
    rng = np.random.default_rng(seed)
    F = rng.random((m, r)).astype(dtype)
    A = rng.random((m, r)).astype(dtype)
    Hs = rng.random((r, 30)).astype(dtype)
    return F, A, (Hs @ Hs.T).astype(dtype)


@needs_two
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sums_split_over_threads_equal_one_call(dtype):
    """hals_update ("sums", G private): split over 2 threads, the iterates are exactly
    the serial call's and the Gram and sums agree to round-off (added in another order)."""
    F, A, B = _factors(dtype)
    zero = dtype(0)
    out = {}
    for threads in (1, 2):
        Fc = F.copy()
        G = np.full((5, 5), np.nan, dtype=dtype)
        with numba_threads(threads):
            violation, cross = kernels.hals_update(Fc, A, B, zero, zero, BOUNDS, G)
        out[threads] = Fc, G, violation, cross
    np.testing.assert_array_equal(out[1][0], out[2][0])
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out[2][1], out[1][1], rtol=rtol)
    np.testing.assert_array_equal(out[2][1], out[2][1].T)
    np.testing.assert_allclose(out[2][2:], out[1][2:], rtol=1e-12)
    # and against NumPy
    expected = ref.hals_sweep(F, A, B)
    np.testing.assert_allclose(out[2][0], expected, rtol=1e-4 if dtype == np.float32 else 1e-10)
    np.testing.assert_allclose(out[2][1], out[2][0].T @ out[2][0], rtol=rtol * 10)


@needs_two
def test_partials_and_rows_split_equal_one_call():
    """"partials" concatenates per-chunk partials (exactly the serial array); "rows" returns
    the output every chunk wrote its rows of."""
    rng = np.random.default_rng(1)
    values = rng.random(90) * 3
    G = rng.random((40, 4))
    X = sp.random(90, 40, density=0.2, format="csr", random_state=2)
    F = rng.random((90, 4))
    res = {}
    for threads in (1, 2):
        out = np.empty_like(F)
        with numba_threads(threads):
            res[threads] = (kl_ylogy(values, 1e-7, BOUNDS),
                            kernels.csr_matmul(X.indptr, X.indices, X.data, G, BOUNDS, out), out)
    np.testing.assert_array_equal(res[2][0], res[1][0])
    assert res[2][0].shape == (len(BOUNDS) - 1,)
    assert res[2][1] is res[2][2]  # "rows": the kernel's own return value, the output
    np.testing.assert_array_equal(res[2][1], res[1][1])
    np.testing.assert_allclose(res[2][1], X @ G, rtol=1e-12)


@kernel(chunks="sums")
def _count_rows(x, bounds, scale=2.0):
    s = 0.0
    for c in range(bounds.shape[0] - 1):
        for i in range(bounds[c], bounds[c + 1]):
            s += x[i] * scale
    return s


def test_wrapper_keywords_defaults_and_attributes():
    x = np.arange(90, dtype=np.float64)
    assert isinstance(_count_rows, ChunkedKernel)
    assert _count_rows.__name__ == "_count_rows" and _count_rows.__doc__ is None
    for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
        with numba_threads(threads):
            assert _count_rows(x, BOUNDS) == 2 * x.sum()  # default left to the kernel
            assert _count_rows(x, bounds=BOUNDS, scale=1.0) == x.sum()
            assert _count_rows(x, np.array([0], dtype=np.int64)) == 0.0  # no chunks
            assert _count_rows(x, scale=3.0, bounds=BOUNDS) == 3 * x.sum()
    assert len(_count_rows.signatures) == 2  # the dispatcher's: with and without scale
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        _count_rows(x, BOUNDS, nope=1)
    with pytest.raises(ValueError, match="combine must be one of"):
        kernel(chunks="nope")(lambda x, bounds: x)
