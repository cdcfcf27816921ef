"""Threads, nested parallelism, interrupts and time limits.

fastnmf selects Numba's "threadsafe" threading layer (TBB, else OpenMP) in
``fastnmf/_jit.py``; docs/threads.md records why and what was measured.
"""

from __future__ import annotations

import _thread
import os
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from threadpoolctl import threadpool_info

import fastnmf
from fastnmf import _threads


def _blas_threads():
    return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def _X(m=40, n=30, seed=0, density=1.0):
    rng = np.random.default_rng(seed)
    X = rng.random((m, 4)) @ rng.random((4, n)) + 0.05 * rng.random((m, n))
    if density < 1:
        X[rng.random((m, n)) > density] = 0
    return X


def _fit(X, solver="hals", n_threads=None, **kw):
    return fastnmf.nmf(X, 4, solver=solver, random_state=0, max_iter=40, tol=0,
                       n_threads=n_threads, **kw)


# ------------------------------------------------------------ threading layer


def test_threadsafe_layer_selected():
    _fit(_X(10, 8))
    assert numba.config.THREADING_LAYER in ("threadsafe", "tbb", "omp") or (
        os.environ.get("NUMBA_THREADING_LAYER"))
    assert numba.threading_layer() in ("tbb", "omp")


def test_user_choice_of_layer_is_respected():
    code = "import fastnmf, numba; print(numba.config.THREADING_LAYER)"
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    assert out.stdout.strip() == "workqueue"


def test_workqueue_layer_serializes_concurrent_fits():
    """Where only workqueue exists, concurrent fits take turns instead of aborting."""
    code = textwrap.dedent("""
        import threading, numpy as np, numba, fastnmf
        X = np.random.default_rng(0).random((30, 20))
        ref = fastnmf.nmf(X, 3, random_state=0, max_iter=20, tol=0)
        assert numba.threading_layer() == "workqueue"
        out = [None] * 3
        def go(i):
            out[i] = fastnmf.nmf(X, 3, random_state=0, max_iter=20, tol=0)
        ts = [threading.Thread(target=go, args=(i,)) for i in range(3)]
        [t.start() for t in ts]; [t.join() for t in ts]
        assert all((o.W == ref.W).all() and (o.H == ref.H).all() for o in out)
        print("ok")
    """)
    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"


# ------------------------------------------------------------ concurrent fits


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_concurrent_fits_equal_sequential(fmt):
    cases = [(solver, seed, nt) for solver in ("hals", "mu") for seed in (0, 1)
             for nt in (1, 2)]
    Xs = {seed: _X(seed=seed, density=0.5) for seed in (0, 1)}
    if fmt == "csr":
        Xs = {k: sp.csr_matrix(v) for k, v in Xs.items()}

    def run(case):
        solver, seed, nt = case
        return _fit(Xs[seed], solver, n_threads=nt)

    expected = [run(c) for c in cases]
    numba_before, blas_before = numba.get_num_threads(), _blas_threads()
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(run, cases * 2))
    for exp, res in zip(expected * 2, got, strict=True):
        assert_array_equal(res.W, exp.W)
        assert_array_equal(res.H, exp.H)
    assert numba.get_num_threads() == numba_before
    assert _blas_threads() == blas_before


def test_overlapping_thread_limits_restore_blas():
    """Fit A enters, fit B enters, A leaves, B leaves: BLAS is back as before.

    With one threadpool_limits per fit, B saved A's limit and restored it
    last, leaving BLAS at 1 thread for the rest of the process.
    """
    before = _blas_threads()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    inside = {}

    def fit_a():
        with _threads.thread_limits(1):
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def fit_b():
        a_in.wait(10)
        with _threads.thread_limits(1):
            b_in.set()
            a_out.wait(10)
            inside["b"] = (_threads._BLAS._current,
                           [list(v) for v in _threads._BLAS._stacks.values()])

    ts = [threading.Thread(target=fit_a), threading.Thread(target=fit_b)]
    [t.start() for t in ts]
    [t.join(20) for t in ts]
    # B still holds a limit after A left (OpenBLAS may ignore a limit set from
    # a non-main thread, so only the bookkeeping is checked here; docs/threads.md)
    assert inside["b"] == (1, [[1]])
    assert _threads._BLAS._stacks == {} and _threads._BLAS._saved is None
    assert _blas_threads() == before


def test_thread_count_is_per_thread():
    """Fits with different n_threads at once each see their own Numba count."""
    seen = []

    def run(nt):
        def callback(info):
            seen.append((nt, numba.get_num_threads()))
        _fit(_X(20, 15), n_threads=nt, callback=callback)

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(run, [1, 2, 1, 2]))
    assert len(seen) == 4 * 40
    assert all(asked == got for asked, got in seen), seen


# ------------------------------------------------------------ nested parallelism


def _blas():
    """The BLAS libraries' thread counts, sorted."""
    from threadpoolctl import threadpool_info

    return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def _fit_in_worker(seed):
    """Runs in a joblib worker: the limits seen inside the fit, and after it."""
    import numba as nb

    before = (nb.get_num_threads(), _blas())
    inside = []

    def callback(i):
        inside.append((nb.get_num_threads(), _blas()))

    X = np.random.default_rng(seed).random((30, 20))
    res = fastnmf.nmf(X, 3, random_state=0, max_iter=5, tol=0, n_threads=1,
                      callback=callback)
    return res.W, before, inside, (nb.get_num_threads(), _blas())


@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_joblib_workers_respect_and_restore_limits(backend):
    joblib = pytest.importorskip("joblib")
    blas_before = _blas()
    out = joblib.Parallel(n_jobs=2, backend=backend)(
        joblib.delayed(_fit_in_worker)(s) for s in range(4))
    for seed, (W, before, inside, after) in enumerate(out):
        ref = _fit_in_worker(seed)[0]
        assert_array_equal(W, ref)
        assert all(nt == 1 for nt, _ in inside), inside
        if backend == "loky":  # processes: the fit runs in the worker's main thread
            assert all(set(b) <= {1} for _, b in inside), inside
            assert after == before
        else:
            # Numba's count is per thread: restored in each worker. BLAS's limit is the
            # process's: a worker that finishes while the other's fit runs sees that
            # fit's limit, so it is checked once both are done (below).
            assert after[0] == before[0]
    assert _blas() == blas_before


# ------------------------------------------------------------ interrupts and limits


def test_keyboard_interrupt_from_callback_restores_threads():
    numba_before, blas_before = numba.get_num_threads(), _blas_threads()
    calls = []

    def callback(info):
        calls.append(info.iteration)
        assert numba.get_num_threads() == 1
        if info.iteration == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _fit(_X(), n_threads=1, callback=callback)
    assert calls == [1, 2, 3]
    assert numba.get_num_threads() == numba_before
    assert _blas_threads() == blas_before
    # no corrupted state: the next fit is the same as a fresh one
    assert_array_equal(_fit(_X()).W, _fit(_X()).W)


def test_ctrl_c_inside_a_kernel_call_comes_out_as_keyboard_interrupt():
    # Ctrl-C while a compiled kernel's wrapper calls back into Python: Numba raises
    # SystemError("... returned a result with an exception set") from the
    # KeyboardInterrupt (seen in test_ctrl_c_stops_a_long_fit_quickly, 1 run in ~4)
    numba_before = numba.get_num_threads()

    def kernel_call():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as interrupt:
            raise SystemError("CPUDispatcher(...) returned a result with an exception "
                              "set") from interrupt

    with pytest.raises(KeyboardInterrupt), _threads.thread_limits(1, split_blas=True):
        kernel_call()
    with pytest.raises(SystemError, match="other"), _threads.thread_limits(1):
        raise SystemError("other")  # any other SystemError stays one
    assert numba.get_num_threads() == numba_before


def test_ctrl_c_stops_a_long_fit_quickly():
    numba_before, blas_before = numba.get_num_threads(), _blas_threads()
    X = _X(200, 150)
    # compiled (or loaded from the cache) first, so that the interrupt reaches the
    # iterations and not Numba's compiler (whose cache files it could leave half written)
    fastnmf.nmf(X, 5, max_iter=2, tol=0, random_state=0, n_threads=1)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            fastnmf.nmf(X, 5, max_iter=10**7, tol=0, random_state=0, n_threads=1)
    finally:
        timer.cancel()
    # reaching here proves the fit stopped: 10**7 iterations would run for hours.
    # (No wall-time bound: CI machines are shared and noisy.)
    assert numba.get_num_threads() == numba_before
    assert _blas_threads() == blas_before


@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_max_time_is_honoured(solver):
    res = fastnmf.nmf(_X(200, 150), 5, solver=solver, max_iter=10**7, tol=0,
                      random_state=0, max_time=0.2)
    assert res.stop_reason == "max_time" and res.converged is False
    # the rule: stop after the first iteration that ends at or past max_time
    assert res.history["time"][-1] >= 0.2 > res.history["time"][-2]
    assert np.all(np.isfinite(res.W)) and res.W.min() >= 0


@pytest.mark.parametrize("solver", ["hals", "mu"])
@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_callback_true_returns_result_so_far(solver, fmt):
    X = _X(density=0.5)
    X = sp.csr_matrix(X) if fmt == "csr" else X
    res = _fit(X, solver, callback=lambda info: info.iteration == 5)
    assert (res.n_iter, res.converged, res.stop_reason) == (5, False, "callback")
    five = fastnmf.nmf(X, 4, solver=solver, random_state=0, max_iter=5, tol=0)
    assert_array_equal(res.W, five.W)
    assert_array_equal(res.H, five.H)


def test_split_blas_inside_a_users_block():
    """A fit inside the user's ``thread_limits(2)`` block gets its own request: one BLAS
    thread and products split in two (the innermost request of a thread wins); the
    user's settings come back after it, and the answer equals an unsplit fit's."""
    rng = np.random.default_rng(0)
    X = rng.random((600, 500))
    before = _blas_threads()
    seen = {}
    with _threads.thread_limits(2):
        outer = _threads._BLAS._current
        with _threads.thread_limits(2, split_blas=True):
            seen["inner"] = (_threads._BLAS._current, _threads.product_parts())
        seen["after"] = (_threads._BLAS._current, _threads.product_parts())
    assert outer == 2 and seen == {"inner": (1, 2), "after": (2, 1)}
    assert _blas_threads() == before

    from fastnmf._data import DenseData, gram

    data, Ht, W, F = DenseData(X), rng.random((500, 7)), rng.random((600, 7)), \
        rng.random((200_000, 12))
    with _threads.thread_limits(2, split_blas=True):
        XHt, XtW = data.product(Ht, 0, np.empty((600, 7))), data.product(W, 1, np.empty((500, 7)))
        G = gram(F)
    assert_allclose(XHt, X @ Ht, rtol=1e-12)
    assert_allclose(XtW, X.T @ W, rtol=1e-12)
    assert_allclose(G, F.T @ F, rtol=1e-12)


@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_updates_in_the_product_threads_equal_a_plain_fit(solver, monkeypatch):
    """Where a dense product is split, each part updates the factor rows it made
    (``product_then``): a fit that does so equals, to round-off, one on one thread, and
    the parts really ran (two per product) with row bounds on whole 8-row groups."""
    from fastnmf import _data

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("splitting needs two Numba threads")
    X = np.random.default_rng(3).random((600, 500))  # above the splitting size
    seen = []
    real = _data.DenseData._product_in

    def spy(self, layout, F, side, out, then=None):
        result = real(self, layout, F, side, out, then)
        if then is not None:
            seen.append(len(result))
        return result

    monkeypatch.setattr(_data.DenseData, "_product_in", spy)
    kw = dict(solver=solver, init="nndsvda", random_state=0, max_iter=8, tol=0)
    one = fastnmf.nmf(X, 6, n_threads=1, **kw)
    assert seen and set(seen) == {1}
    seen.clear()
    two = fastnmf.nmf(X, 6, n_threads=2, **kw)
    assert seen and set(seen) == {2}
    assert_allclose(two.W, one.W, rtol=1e-9, atol=1e-12)
    assert_allclose(two.H, one.H, rtol=1e-9, atol=1e-12)
    assert_allclose(two.history["loss"], one.history["loss"], rtol=1e-10)
    with _threads.thread_limits(2, split_blas=True):
        bounds = _threads.split_bounds(500, align=8)
    assert len(bounds) == 3 and bounds[1] % 8 == 0


def test_split_bounds_are_the_row_ranges_and_made_once():
    from fastnmf._chunks import row_bounds

    assert _threads.split_bounds(500) == (0, 500)  # this thread does not split
    with _threads.thread_limits(2, split_blas=True):
        for rows, align in ((500, 1), (500, 64), (1001, 8), (15, 1), (16, 1)):
            expected = row_bounds(rows, 2)
            if align > 1:
                expected[1:-1] = np.round(expected[1:-1] / align) * align
            if rows < max(8, align) * 2:
                expected = np.array([0, rows])
            bounds = _threads.split_bounds(rows, align=align)
            assert bounds == tuple(expected) and all(type(b) is int for b in bounds)
            if len(bounds) > 2:  # a split is made once
                assert _threads.split_bounds(rows, align=align) is bounds
        assert _threads.split_bounds(500, split=False) == (0, 500)


def test_run_parts_runs_one_range_in_place():
    seen = []

    def part(a, b):
        seen.append((a, b, threading.get_ident(), numba.get_num_threads()))
        return b - a

    with _threads.thread_limits(2):
        assert _threads.run_parts(part, (0, 10)) == [10]
        assert seen == [(0, 10, threading.get_ident(), 2)]
        seen.clear()
        assert _threads.run_parts(part, (0, 4, 10)) == [4, 6]
    # (the parts run side by side: either may append first)
    assert sorted(s[:2] for s in seen) == [(0, 4), (4, 10)] and {s[3] for s in seen} == {1}


def test_blas_libraries_are_found_again_after_an_import(monkeypatch):
    limit = _threads._BlasLimit()
    first = limit._controller()
    assert limit._controller() is first  # not scanned again at every fit
    monkeypatch.setitem(sys.modules, "fastnmf_test_new_module", object())
    again = limit._controller()
    assert again is not first and limit._controller() is again
    before = _blas_threads()
    limit.enter(1)
    assert _blas_threads() == [1] * len(before)
    limit.leave(1)
    assert _blas_threads() == before
