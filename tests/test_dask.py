"""fastnmf on Dask (fastnmf/dask/): a real two-process LocalCluster, started here.

The distributed fit of a row-partitioned dask array must give the iterates of
the single-machine fit from the same start, to round-off; a worker killed in
the middle of a fit must not change the answer; many fits on the cluster must
reproduce the local fits for the same seeds.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
from conftest import random_matrix  # noqa: E402

import fastnmf  # noqa: E402
from fastnmf import dask as fdask  # noqa: E402
from fastnmf.dask import fit as fdask_fit  # noqa: E402
from fastnmf.kernels import ROW_GROUP  # noqa: E402

M, N, R = 157, 43, 5
ROW_CHUNKS = (40, 37, 50, 30)  # uneven, and not multiples of 8
TOL = {np.float64: 1e-9, np.float32: 2e-3}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       dashboard_address=None, silence_logs=40)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def _data(sparse, dtype, seed=0):
    X = random_matrix(M, N, seed=seed, density=0.3 if sparse else 1.0, rank=R, dtype=dtype)
    return sp.csr_matrix(X) if sparse else X


def _dask(X, col_chunks=20):
    """X as a dask array with uneven row chunks and several column chunks."""
    return da.from_array(X, chunks=(ROW_CHUNKS, col_chunks), asarray=not sp.issparse(X))


def _close(a, b, dtype):
    tol = TOL[dtype]
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= tol * max(np.abs(a).max(), 1e-30), np.abs(a - b).max()


def _same_fit(ref, got, dtype):
    _close(ref.W, got.W, dtype)
    _close(ref.H, got.H, dtype)
    assert got.n_iter == ref.n_iter
    np.testing.assert_allclose(got.history["loss"], ref.history["loss"], rtol=TOL[dtype])
    assert got.relative_error == pytest.approx(ref.relative_error, rel=TOL[dtype])
    assert got.W.dtype == ref.W.dtype == got.H.dtype


FITS = {  # (beta_loss, solver): keyword arguments
    "hals": dict(beta_loss="frobenius", solver="hals", accelerate="sweeps"),
    "hals-plain": dict(beta_loss="frobenius", solver="hals", accelerate=False),
    # sweeps, then extrapolation once they stall (on the sparse data here, by iteration 8:
    # test_auto_extrapolates_on_dask)
    "hals-auto": dict(beta_loss="frobenius", solver="hals", accelerate="auto"),
    "hals-both": dict(beta_loss="frobenius", solver="hals", accelerate="both"),
    "hals-extrapolate": dict(beta_loss="frobenius", solver="hals", accelerate="extrapolate"),
    "mu": dict(beta_loss="frobenius", solver="mu"),
    "kl-mu": dict(beta_loss="kullback-leibler", solver="mu"),
    "kl-ccd": dict(beta_loss="kullback-leibler", solver="ccd"),
    "beta-0.5": dict(beta_loss=0.5, solver="mu"),
    "beta-1.5": dict(beta_loss=1.5, solver="mu"),
}


@pytest.mark.parametrize("fit, sparse, dtype", [
    ("hals", False, np.float64), ("hals", True, np.float32), ("hals-plain", True, np.float64),
    ("hals-auto", True, np.float64), ("hals-both", False, np.float32),
    ("mu", True, np.float64), ("mu", False, np.float32),
    ("kl-mu", False, np.float64), ("kl-mu", True, np.float32),
    ("kl-ccd", False, np.float32), ("kl-ccd", True, np.float64),
    ("beta-0.5", True, np.float64), ("beta-1.5", False, np.float32),
])
def test_cluster_fit_equals_single_machine(client, fit, sparse, dtype):
    X = _data(sparse, dtype)
    kw = dict(FITS[fit], init="random", random_state=3, max_iter=8, tol=0)
    ref = fastnmf.nmf(X, R, **kw)
    got = fastnmf.nmf(_dask(X), R, **kw)
    _same_fit(ref, got, dtype)
    assert got.backend == ("sparse" if sparse else ref.backend)
    assert isinstance(got.W, np.ndarray)


@pytest.mark.parametrize("fit", ["hals", "hals-plain", "hals-auto", "hals-both",
                                 "hals-extrapolate", "mu", "kl-mu", "kl-ccd", "beta-0.5",
                                 "beta-1.5"])
@pytest.mark.parametrize("sparse, dtype", [(False, np.float64), (True, np.float64),
                                           (False, np.float32), (True, np.float32)])
def test_local_scheduler_equals_single_machine(fit, sparse, dtype):
    X = _data(sparse, dtype, seed=1)
    kw = dict(FITS[fit], init="random", random_state=0, max_iter=12, tol=0)
    with dask.config.set(scheduler="threads"):
        got = fastnmf.nmf(_dask(X), R, **kw)
    _same_fit(fastnmf.nmf(X, R, **kw), got, dtype)


@pytest.mark.parametrize("fit", ["hals", "hals-plain", "hals-both", "mu", "kl-mu", "kl-ccd",
                                 "beta-1.5"])
def test_stopping_rule_and_custom_start(fit):
    """tol has its single-machine meaning (same n_iter), from a custom start and penalties."""
    X = _data(False, np.float64, seed=2)
    rng = np.random.default_rng(5)
    W0, H0 = rng.random((M, R)) + 0.1, rng.random((R, N)) + 0.1
    W_copy, H_copy = W0.copy(), H0.copy()
    kw = dict(FITS[fit], W=W0, H=H0, max_iter=300, tol=3e-3, alpha_W=1e-3, l1_ratio=0.5)
    ref = fastnmf.nmf(X, R, **kw)
    with dask.config.set(scheduler="threads"):
        got = fastnmf.nmf(_dask(X), R, **kw)
    assert ref.converged and 1 < ref.n_iter < 300
    _same_fit(ref, got, np.float64)
    assert got.converged and got.stop_reason == "tol"
    np.testing.assert_array_equal(W0, W_copy)  # inputs never modified
    np.testing.assert_array_equal(H0, H_copy)


@pytest.mark.parametrize("beta, update_H", [(0.0, True), (3.0, False), (-0.5, True)])
def test_beta_mu_is_the_solvers_loop_over_row_blocks(monkeypatch, beta, update_H):
    """β-MU on Dask runs fastnmf.solvers.beta's own loop: its W half-step
    (beta.MURows) on each row block, H's numerator and denominator summed over the
    blocks; Itakura–Saito (β = 0, X without zeros), β = 3 with H fixed, and β = -0.5."""
    from fastnmf.solvers import beta as bs

    rows_updated = []
    update = bs.MURows.update
    monkeypatch.setattr(bs.MURows, "update", lambda self, *args: (
        rows_updated.append(self.W.shape[0]) or update(self, *args)))
    X = _data(False, np.float64, seed=14) + 0.05
    kw = dict(beta_loss=beta, max_iter=7, tol=0, alpha_H=1e-3, alpha_W=1e-3)
    if update_H:
        kw.update(init="random", random_state=2)
    else:
        kw.update(update_H=False, H=np.random.default_rng(2).random((R, N)) + 0.1)
    with dask.config.set(scheduler="sync"):
        got = fastnmf.nmf(_dask(X), R, **kw)
    assert sorted(rows_updated) == sorted(ROW_CHUNKS * 7)
    rows_updated.clear()
    ref = fastnmf.nmf(X, R, **kw)
    assert rows_updated == [M] * 7
    _same_fit(ref, got, np.float64)
    assert got.beta_loss == ref.beta_loss


@pytest.mark.parametrize("solver", ["hals", "mu"])
@pytest.mark.parametrize("sparse, dtype", [(True, np.float64), (False, np.float32)])
def test_fixed_H_equals_single_machine(solver, sparse, dtype):
    """update_H=False (what NMF.transform runs) over row blocks: X Hᵀ is made once and
    kept with each block's rows of W."""
    X = _data(sparse, dtype, seed=3)
    H = (np.random.default_rng(0).random((R, N)) + 0.1).astype(dtype)
    kw = dict(H=H, update_H=False, solver=solver, max_iter=20, tol=0, alpha_W=1e-3)
    with dask.config.set(scheduler="threads"):
        got = fastnmf.nmf(_dask(X), R, **kw)
    ref = fastnmf.nmf(X, R, **kw)
    _close(ref.W, got.W, dtype)
    np.testing.assert_allclose(got.history["loss"], ref.history["loss"], rtol=TOL[dtype])
    np.testing.assert_array_equal(got.H, H)


@pytest.mark.parametrize("sparse, dtype", [(True, np.float64), (True, np.float32),
                                           (False, np.float64)])
def test_direct_sqerr_makes_H_gram_once(monkeypatch, sparse, dtype):
    """The directly computed ‖X − WH‖² (the final error of KL and β fits, float32's final
    Frobenius error) forms Ht's float64 Gram (n·r² work) once on the client and shares it
    with the row blocks, not once per block; the value is the in-memory one to round-off."""
    from fastnmf import _data as data_layer
    from fastnmf.dask import data as dask_data

    X = _data(sparse, dtype, seed=16)
    rng = np.random.default_rng(16)
    W, Ht = rng.random((M, R)).astype(dtype), rng.random((N, R)).astype(dtype)
    want = data_layer.make_data(X, sparse, "auto").direct_sqerr(W, Ht)
    grams = []
    gram_f64 = data_layer.gram_f64

    def recorded(F):
        grams.append(F.shape)
        return gram_f64(F)

    monkeypatch.setattr(data_layer, "gram_f64", recorded)
    monkeypatch.setattr(dask_data, "gram_f64", recorded)
    blocks = dask_data._Blocks(_dask(X, col_chunks=N), np.dtype(dtype), "auto", True, "sync", 1)
    data = dask_data.DaskData(blocks, dtype, R)
    got = data.direct_sqerr(data.rows(W), Ht)
    assert grams.count((N, R)) == 1  # Ht's Gram, once (the blocks' own: their rows of W)
    assert sorted(shape[0] for shape in grams if shape != (N, R)) == (
        sorted(ROW_CHUNKS) if sparse else [])
    assert got == pytest.approx(want, rel=1e-12)


def test_kl_mu_is_the_solvers_loop_over_row_blocks(monkeypatch):
    """KL-MU on Dask runs fastnmf.solvers.kl's own loop over the Dask data product: the
    W half-step is kl.MURows on each row block (one update per block and iteration),
    here with H fixed (no H numerator asked for), and the callback sees W as a dask
    array; the result equals the single-machine fit."""
    from fastnmf.solvers import kl as kls

    rows_updated = []
    update = kls.MURows.update
    monkeypatch.setattr(kls.MURows, "update", lambda self, *args: (
        rows_updated.append(self.W.shape[0]) or update(self, *args)))
    X = _data(True, np.float64, seed=12)
    H = np.random.default_rng(1).random((R, N)) + 0.1
    kw = dict(beta_loss="kullback-leibler", solver="mu", H=H, update_H=False, max_iter=6,
              tol=0, alpha_W=1e-3)
    seen = []
    with dask.config.set(scheduler="sync"):
        got = fastnmf.nmf(_dask(X), R, callback=lambda info: seen.append(info.W), **kw)
    assert sorted(rows_updated) == sorted(ROW_CHUNKS * 6)
    assert len(seen) == 6 and all(isinstance(W, da.Array) for W in seen)
    rows_updated.clear()
    ref = fastnmf.nmf(X, R, **kw)
    assert rows_updated == [M] * 6  # in memory: the same class, on all rows at once
    _close(ref.W, got.W, np.float64)
    np.testing.assert_array_equal(got.H, H)
    np.testing.assert_allclose(got.history["loss"], ref.history["loss"], rtol=TOL[np.float64])
    _close(ref.W, seen[-1].compute(), np.float64)


@pytest.mark.parametrize("sparse, dtype, update_H", [(True, np.float64, True),
                                                     (False, np.float32, True),
                                                     (True, np.float32, False)])
def test_kl_ccd_is_the_solvers_loop_over_row_and_column_blocks(monkeypatch, sparse, dtype,
                                                               update_H):
    """KL coordinate descent on Dask runs fastnmf.solvers.kl's own loop: kl.CCDRows sweeps
    W on each row block of X and Ht on each column block of X (a second copy, held as row
    blocks of Xᵀ, made only when H is updated), with all of W sent there; in memory the
    same class sweeps W over X and Ht over Xᵀ.  Penalties on both factors; the callback
    sees W as a dask array; the result equals the single-machine fit."""
    from fastnmf.solvers import kl as kls

    sweeps = []
    sweep = kls.CCDRows.sweep
    monkeypatch.setattr(kls.CCDRows, "sweep", lambda self, *args: (
        sweeps.append((self.side, self.W.shape[0])) or sweep(self, *args)))
    X = _data(sparse, dtype, seed=15)
    kw = dict(beta_loss="kullback-leibler", solver="ccd", max_iter=7, tol=0, alpha_W=2e-3,
              alpha_H=1e-3, l1_ratio=0.4)
    if update_H:
        kw.update(init="random", random_state=4)
    else:  # (what NMF.transform runs)
        kw.update(update_H=False,
                  H=(np.random.default_rng(4).random((R, N)) + 0.1).astype(dtype))
    seen = []
    with dask.config.set(scheduler="sync"):
        got = fastnmf.nmf(_dask(X), R, callback=lambda info: seen.append(info.W), **kw)
    n_blocks = len(ROW_CHUNKS)
    width = -(-N // n_blocks)  # as many column blocks as row blocks, of whole columns
    columns = [min(width, N - a) for a in range(0, N, width)]
    expected = [(0, rows) for rows in ROW_CHUNKS] + ([(0, c) for c in columns] if update_H
                                                     else [])
    assert sorted(sweeps) == sorted(expected * 6)  # iteration 1 is MU's
    assert len(seen) == 7 and all(isinstance(W, da.Array) for W in seen)
    sweeps.clear()
    ref = fastnmf.nmf(X, R, **kw)
    assert sweeps == ([(0, M), (1, N)] if update_H else [(0, M)]) * 6
    _same_fit(ref, got, dtype)
    _close(ref.W, seen[-1].compute(), dtype)
    if not update_H:
        np.testing.assert_array_equal(got.H, kw["H"])


def test_kl_ccd_refuses_W_larger_than_a_worker():
    """KL CCD sends all of W to the workers that sweep X's column blocks: refused, before
    any work, where W would not fit in half of a worker's memory limit."""
    with distributed.LocalCluster(n_workers=1, processes=False, memory_limit="40kB",
                                  dashboard_address=":0", silence_logs=50) as cluster, \
            distributed.Client(cluster):
        Xd = da.from_array(np.ones((2000, 6)), chunks=(500, 6))  # W: 2000×5 float64, 80 kB
        with pytest.raises(ValueError, match=r"all of W .* solver='mu'"):
            fastnmf.nmf(Xd, 5, beta_loss="kullback-leibler", solver="ccd", init="random")


@pytest.mark.parametrize("update_H", [True, False])
def test_frobenius_is_the_solvers_loop_over_row_blocks(monkeypatch, update_H):
    """Frobenius on Dask runs fastnmf.solvers.frobenius's own loop over the Dask data
    product: the W half-step is frobenius.FrobeniusRows on each row block (one update per
    block and iteration), which also makes the block's Xᵀ W when H is updated; in memory
    the same class runs on all rows at once; the callback sees W as a dask array."""
    from fastnmf.solvers import frobenius as frob

    calls = []
    update = frob.FrobeniusRows.update
    monkeypatch.setattr(frob.FrobeniusRows, "update", lambda self, *args: (
        calls.append((self.W.shape[0], args[-1])) or update(self, *args)))
    X = _data(True, np.float64, seed=13)
    kw = dict(max_iter=6, tol=0, alpha_W=1e-3, l1_ratio=0.3, accelerate="both")
    if update_H:
        kw.update(init="random", random_state=1)
    else:  # (what NMF.transform runs)
        kw.update(update_H=False, H=np.random.default_rng(1).random((R, N)) + 0.1)
    seen = []
    with dask.config.set(scheduler="sync"):
        got = fastnmf.nmf(_dask(X), R, callback=lambda info: seen.append(info.W), **kw)
    realigned = fdask_fit._align_rows(_dask(X)).chunks[0]
    assert sorted(calls) == sorted([(rows, update_H) for rows in realigned] * 6)
    assert len(seen) == 6 and all(isinstance(W, da.Array) for W in seen)
    calls.clear()
    ref = fastnmf.nmf(X, R, **kw)
    assert calls == [(M, False)] * 6  # in memory: H's half-step makes Xᵀ W
    _same_fit(ref, got, np.float64)
    _close(ref.W, seen[-1].compute(), np.float64)


def test_auto_extrapolates_on_dask():
    """accelerate="auto" switches extrapolation on when the sweeps stall, on Dask as in
    memory: here that changes the iterates by iteration 8 (so the Dask fits above that
    equal the in-memory "auto" ones are not equal to "sweeps")."""
    X = _data(True, np.float64, seed=0)
    kw = dict(init="random", random_state=3, max_iter=8, tol=0)
    sweeps = fastnmf.nmf(X, R, accelerate="sweeps", **kw)
    auto = fastnmf.nmf(X, R, accelerate="auto", **kw)
    assert np.abs(auto.W - sweeps.W).max() > 1e-3 * np.abs(sweeps.W).max()
    with dask.config.set(scheduler="threads"):
        _same_fit(auto, fastnmf.nmf(_dask(X), R, accelerate="auto", **kw), np.float64)


@pytest.mark.parametrize("solver, accelerate", [("hals", False), ("mu", False),
                                                ("hals", "extrapolate")])
def test_float32_rebalance_like_single_machine(solver, accelerate, monkeypatch):
    """W small and H huge (H Hᵀ past 1e30 in float32): the client rebalances the
    column scales, scaling each W block where it lives, as the single-machine loop does
    (and extrapolation starts again from the scaled factors)."""
    from fastnmf.solvers import frobenius as frob

    rng = np.random.default_rng(0)
    X = (rng.random((30, 8)) * 2.7e17).astype(np.float32)
    W0 = (rng.random((30, 2)) * 10 + 1).astype(np.float32)
    H0 = (rng.random((2, 8)) * 1e16).astype(np.float32)
    kw = dict(solver=solver, W=W0, H=H0, max_iter=20, tol=0, accelerate=accelerate)
    scaled = []
    scale = frob.FrobeniusRows.scale
    monkeypatch.setattr(frob.FrobeniusRows, "scale",
                        lambda self, s: scaled.append(self.W.shape[0]) or scale(self, s))
    ref = fastnmf.nmf(X, 2, **kw)
    assert scaled == [30] * len(scaled) and scaled
    scaled.clear()
    Xd = da.from_array(X, chunks=(7, 8))
    with dask.config.set(scheduler="sync"):
        got = fastnmf.nmf(Xd, 2, **kw)
    # the W blocks scaled where they live (persisted X is realigned for accelerated HALS)
    blocks = fdask_fit._align_rows(Xd).chunks[0] if accelerate else Xd.chunks[0]
    assert scaled and len(scaled) % len(blocks) == 0 and set(scaled) == set(blocks)
    _close(ref.W, got.W, np.float32)
    _close(ref.H, got.H, np.float32)


def test_accelerated_hals_realigns_row_blocks():
    """Accelerated HALS stops its repeated sweeps per group of ROW_GROUP rows (aligned
    to absolute rows), so persisted X gets its row-block edges moved to multiples of
    ROW_GROUP; a streamed X (persist=False) keeps its blocks, and equals only when
    aligned."""
    X = _data(False, np.float64, seed=4)
    kw = dict(init="random", random_state=0, max_iter=15, tol=0, accelerate="sweeps")
    ref = fastnmf.nmf(X, R, **kw)
    edges = np.cumsum(ROW_CHUNKS)[:-1]
    edges = np.unique([0, *(edges - edges % ROW_GROUP), M])
    realigned = tuple(int(c) for c in np.diff(edges))
    assert realigned != ROW_CHUNKS and sum(realigned) == M
    with dask.config.set(scheduler="threads"):
        _same_fit(ref, fastnmf.nmf(_dask(X), R, **kw), np.float64)
        aligned = da.from_array(X, chunks=(realigned, N))
        _same_fit(ref, fdask.nmf_dask(aligned, R, persist=False, **kw), np.float64)
        streamed = fdask.nmf_dask(_dask(X), R, persist=False, **kw)
    assert np.all(np.diff(streamed.history["loss"]) <= 1e-9 * streamed.history["loss"][0])
    assert streamed.loss == pytest.approx(ref.loss, rel=0.05)
    assert fdask_fit._align_rows(_dask(X)).chunks[0] == realigned


def test_worker_killed_mid_fit(client):
    """Kill a worker process after iteration 2: Dask recomputes the lost blocks of X
    (from their source) and of W (from their lineage); the answer does not change."""
    X = _data(True, np.float64, seed=6)
    kw = dict(init="random", random_state=2, max_iter=10, tol=0, accelerate="sweeps")
    ref = fastnmf.nmf(X, R, **kw)
    killed = []

    def kill_one_worker(info):
        if info.iteration == 2 and not killed:
            killed.append(_kill_a_worker(client))
        return False

    got = fastnmf.nmf(_dask(X), R, callback=kill_one_worker, **kw)
    assert killed
    assert got.stop_reason == "max_iter" and got.n_iter == 10
    _same_fit(ref, got, np.float64)
    client.wait_for_workers(2, timeout=60)  # the nanny restarts it for the next tests


# Run on the workers (client.run(exec, ...): code, not a function of this module, which the
# workers cannot import): the worker that first reaches its third W half-step of a block
# writes its pid into FLAG and sleeps in the middle of that task; any other worker goes on.
_STALL_ONE_TASK = """
import os, time
from fastnmf.solvers import frobenius as _fr
_original = _fr.FrobeniusRows.update
_calls = []
def _update(self, *args, **kwargs):
    _calls.append(None)
    if len(_calls) == 3:
        try:
            fd = os.open(FLAG, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            time.sleep(60)
    return _original(self, *args, **kwargs)
_update.original = _original
_fr.FrobeniusRows.update = _update
"""
_UNSTALL = """
from fastnmf.solvers import frobenius as _fr
_fr.FrobeniusRows.update = getattr(_fr.FrobeniusRows.update, "original",
                                   _fr.FrobeniusRows.update)
"""


def _kill_when_flagged(flag, killed, timeout=60.0):
    """Wait for a worker to write its pid into ``flag``, then SIGKILL that process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(flag) as f:
                pid = int(f.read())
        except (FileNotFoundError, ValueError):  # not yet, or its pid not yet written
            time.sleep(0.01)
            continue
        os.kill(pid, 9)
        killed.append(pid)
        return


def test_worker_killed_while_its_task_runs(client, tmp_path):
    """A worker killed in the middle of a block task (its W half-step running, not between
    iterations as above): Dask runs the task again on another worker, from inputs no task
    modified (_rows_call works on its own copies), and the answer does not change."""
    X = _data(True, np.float64, seed=11)
    kw = dict(init="random", random_state=3, max_iter=6, tol=0, accelerate="sweeps")
    ref = fastnmf.nmf(X, R, **kw)
    flag = str(tmp_path / "running")
    killed = []
    client.run(exec, _STALL_ONE_TASK, {"FLAG": flag})
    watcher = threading.Thread(target=_kill_when_flagged, args=(flag, killed))
    watcher.start()
    try:
        got = fastnmf.nmf(_dask(X), R, **kw)
    finally:
        watcher.join()
        client.wait_for_workers(2, timeout=60)  # the nanny restarts the killed one
        client.run(exec, _UNSTALL, {})
    assert killed  # the fit waited on the stalled task until its worker died
    assert got.stop_reason == "max_iter" and got.n_iter == 6
    _same_fit(ref, got, np.float64)


@pytest.mark.parametrize("fit", ["kl-mu", "kl-ccd", "beta-0.5", "hals-both"])
def test_row_states_are_inputs_never_modified(fit):
    """Block tasks copy the entries of the row state they update (the class's STATE_USE,
    fastnmf.dask.data._own_state): the callback's W of every iteration, computed after
    the fit, is still that iteration's W (Dask's local schedulers hand tasks the very
    objects a later step would update)."""
    X = _data(True, np.float64, seed=9)
    kw = dict(FITS[fit], init="random", random_state=1, max_iter=4, tol=0)
    want, seen = [], []
    fastnmf.nmf(X, R, callback=lambda info: want.append(info.W.copy()), **kw)
    with dask.config.set(scheduler="sync"):
        fastnmf.nmf(_dask(X), R, callback=lambda info: seen.append(info.W), **kw)
    assert len(seen) == len(want) == 4
    for W_seen, W_want in zip(seen, want, strict=True):
        _close(W_want, W_seen.compute(), np.float64)


def _kill_a_worker(client):
    """Kill one worker process (SIGKILL; its nanny starts a fresh one); returns its
    address."""
    address = sorted(client.scheduler_info()["workers"])[0]
    pid = client.run(os.getpid, workers=[address])[address]
    os.kill(pid, 9)
    return address


@pytest.mark.parametrize("side", ["rows", "columns"])
@pytest.mark.parametrize("sparse", [True, False])
def test_worker_killed_during_kl_ccd(client, monkeypatch, side, sparse):
    """KL coordinate descent keeps more on the workers than HALS: W's row states, and X's
    column blocks (a second copy of X) that H's sweep runs on.  A worker killed just as
    a CCD sweep is submitted, on W's side (row blocks) or on H's (column blocks), loses
    some of both: Dask recomputes them from their lineage and the answer does not
    change."""
    X = _data(sparse, np.float64, seed=7)
    kw = dict(beta_loss="kullback-leibler", solver="ccd", init="random", random_state=5,
              max_iter=8, tol=0, alpha_W=1e-3)
    ref = fastnmf.nmf(X, R, **kw)
    cls = fdask.data.BlockRowSide if side == "rows" else fdask.data.BlockColumnSide
    call = cls._call
    killed, sweeps, held = [], [], []

    def kill_then_call(self, method, *args):
        if method == "sweep":
            sweeps.append(side)
            if len(sweeps) == 2 and not killed:  # the second CCD iteration (iteration 3)
                held.append(self.data)
                homes = self.data.blocks._homes() + self.data.columns._homes()
                killed.append(_kill_a_worker(client))
                assert killed[0] in homes  # it held blocks of X (row or column ones)
        return call(self, method, *args)

    monkeypatch.setattr(cls, "_call", kill_then_call)
    got = fastnmf.nmf(_dask(X), R, **kw)
    assert killed
    assert got.stop_reason == "max_iter" and got.n_iter == 8
    _same_fit(ref, got, np.float64)
    # the lost blocks of X were made again, on the workers alive
    homes = held[0].blocks._homes() + held[0].columns._homes()
    assert None not in homes and killed[0] not in homes
    client.wait_for_workers(2, timeout=60)


def test_block_tasks_are_placed_where_X_is(client):
    """Every block task is annotated with the worker that holds its block of X
    (_Blocks._homes, from the scheduler's who_has: it once asked by key strings, got
    nothing back and placed no task), and X's blocks are not copied between workers."""
    X = _data(True, np.float64, seed=8)
    blocks = fdask.data._Blocks(_dask(X, col_chunks=N), np.dtype(np.float64), "auto", True,
                                client, 1)
    distributed.wait(blocks.data)
    held = {key: address for address, keys in client.has_what().items() for key in keys}
    homes = blocks._homes()
    assert homes == [held[d.key] for d in blocks.data]
    for _ in range(3):
        blocks.reduce(fdask.data._block_stats)
    assert all(len(w) == 1 for w in client.who_has(blocks.data).values())


def test_streamed_blocks_are_read_where_planned(client, tmp_path):
    """persist=False reads every block from its file at each iteration: each block's own
    tasks (its file's, its preparation) run on one planned worker (_plan_homes: balanced
    by rows), the same every time, where its block task then finds W's rows (before, the
    scheduler read each block wherever it chose and W's row states followed it around)."""
    X = _data(True, np.float64, seed=12)
    edges = np.cumsum((0, *ROW_CHUNKS))
    paths = []
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        paths.append(str(tmp_path / f"block{i}.npz"))
        sp.save_npz(paths[-1], X[a:b])
    Xd = fdask.from_npz_blocks(paths)
    blocks = fdask.data._Blocks(Xd, np.dtype(np.float64), "auto", False, client, 1,
                                streamed=True)
    homes = blocks._homes()
    assert sorted(set(homes)) == sorted(client.scheduler_info()["workers"])
    own = [set(d.__dask_graph__().layers[f"fastnmf-streamed-{b}"].keys())
           for b, d in enumerate(blocks.data)]
    with distributed.get_task_stream(client) as stream:
        for _ in range(2):
            blocks.reduce(fdask.data._block_stats)
    ran = {}
    for task in stream.data:
        ran.setdefault(task["key"], set()).add(task["worker"])
    for b, keys in enumerate(own):
        assert blocks.data[b].key in keys and len(keys) >= 2  # its file's tasks too
        assert all(ran[key] == {homes[b]} for key in keys & ran.keys()), b
        assert blocks.data[b].key in ran
    kw = dict(init="random", random_state=0, max_iter=5, tol=0, accelerate=False)
    _same_fit(fastnmf.nmf(X, R, **kw), fdask.nmf_dask(Xd, R, persist=False, **kw),
              np.float64)


def test_return_dask_keeps_row_chunks(client):
    X = _data(False, np.float64, seed=7)
    Xd = _dask(X)
    kw = dict(init="random", random_state=0, max_iter=3, tol=0, accelerate=False)
    res = fdask.nmf_dask(Xd, R, return_dask=True, **kw)
    assert isinstance(res.W, da.Array)
    assert res.W.chunks[0] == Xd.chunks[0]
    _close(fastnmf.nmf(X, R, **kw).W, res.W.compute(), np.float64)


def test_estimator_on_dask(client):
    X = _data(False, np.float64, seed=8)
    kw = dict(n_components=R, init="random", random_state=0, max_iter=6, tol=0,
              accelerate=False)
    ref = fastnmf.NMF(**kw)
    W_ref = ref.fit_transform(X)
    est = fastnmf.NMF(**kw)
    W = est.fit_transform(_dask(X))
    _close(W_ref, W, np.float64)
    _close(ref.components_, est.components_, np.float64)
    assert est.n_features_in_ == N and est.n_iter_ == 6
    _close(ref.transform(X), est.transform(_dask(X)), np.float64)


def test_map_fits_reproduces_local_fits(client):
    X = _data(True, np.float64, seed=9)
    many = pytest.importorskip("fastnmf.many")
    tasks = many.run_seeds(4, [2, 3, 4], 2)
    kwargs = dict(init="random", max_iter=30, tol=1e-4, n_threads=1)
    results = fdask.map_fits(client, X, tasks, kwargs)
    assert len(results) == len(tasks)
    for (rank, _, seed), got in zip(tasks, results, strict=True):
        ref = fastnmf.nmf(X, rank, random_state=seed, **kwargs)
        np.testing.assert_allclose(got.W, ref.W, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got.H, ref.H, rtol=1e-12, atol=1e-14)
        assert got.n_iter == ref.n_iter


def test_fit_many_with_client(client):
    many = pytest.importorskip("fastnmf.many")
    if "client" not in many.fit_many.__code__.co_varnames:
        pytest.skip("fastnmf.many.fit_many has no client option yet")
    X = _data(False, np.float64, seed=10)
    kw = dict(n_runs=2, random_state=1, init="random", max_iter=25, n_threads=1)
    remote = many.fit_many(X, [2, 3], client=client, **kw)
    local = many.fit_many(X, [2, 3], n_jobs=1, **kw)
    assert remote.tasks == local.tasks
    # the workers' BLAS and the local one differ in the last bits (1e-14 relative, with
    # sweeps too), which extrapolation (the default's, once the sweeps stall) carries on
    for a, b in zip(remote.results, local.results, strict=True):
        np.testing.assert_allclose(a.W, b.W, rtol=1e-10, atol=1e-12 * np.abs(b.W).max())


def test_npz_blocks_out_of_core_equals_in_memory(tmp_path):
    paths = fdask.write_sparse_blocks(tmp_path, (90, 30), nnz=900, n_blocks=4, seed=1, rank=3)
    assert len(paths) == 4
    Xd = fdask.from_npz_blocks(paths)
    assert Xd.shape == (90, 30) and Xd.numblocks == (4, 1) and Xd.dtype == np.float32
    X = sp.vstack([sp.load_npz(p) for p in paths]).tocsr()
    assert 700 < X.nnz <= 900
    # the same seed writes the same matrix
    again = fdask.write_sparse_blocks(tmp_path / "again", (90, 30), 900, 4, seed=1, rank=3)
    assert (sp.vstack([sp.load_npz(p) for p in again]) != X).nnz == 0
    kw = dict(init="random", random_state=0, max_iter=10, tol=0, accelerate=False)
    with dask.config.set(scheduler="threads"):
        got = fdask.nmf_dask(Xd, 3, persist=False, **kw)
        got_kl = fdask.nmf_dask(Xd, 3, persist=False, beta_loss="kullback-leibler", **kw)
    _same_fit(fastnmf.nmf(X, 3, **kw), got, np.float32)
    _same_fit(fastnmf.nmf(X, 3, beta_loss="kullback-leibler", solver="mu", **kw), got_kl,
              np.float32)
    with dask.config.set(scheduler="threads"):
        got_beta = fdask.nmf_dask(Xd, 3, persist=False, beta_loss=1.5, **kw)
        # KL CCD streamed: X's column blocks are made again (a rechunk) at each iteration
        # (a local scheduler: the workers' memory is not known, so the copy is not kept)
        with pytest.warns(UserWarning, match="made again from X's source at every iter"):
            got_ccd = fdask.nmf_dask(Xd, 3, persist=False, beta_loss="kl", solver="ccd",
                                     **kw)
    _same_fit(fastnmf.nmf(X, 3, beta_loss=1.5, **kw), got_beta, np.float32)
    _same_fit(fastnmf.nmf(X, 3, beta_loss="kl", solver="ccd", **kw), got_ccd, np.float32)
    # extrapolation streamed: W's last update is kept with W's rows while X is read again
    kw.update(accelerate="extrapolate", max_iter=15)
    with dask.config.set(scheduler="threads"):
        got = fdask.nmf_dask(Xd, 3, persist=False, **kw)
    _same_fit(fastnmf.nmf(X, 3, **kw), got, np.float32)


def test_streamed_missing_values_read_X_once_per_iteration(tmp_path, monkeypatch):
    """persist=False with a mask: the loss's correction reads the blocks' missing sets
    (kept), not X: one read of each block per iteration, as without a mask."""
    from fastnmf.dask import io as fdask_io

    paths = fdask.write_sparse_blocks(tmp_path, (90, 30), nnz=900, n_blocks=3, seed=2, rank=3)
    X = sp.vstack([sp.load_npz(p) for p in paths]).tocsr()
    held = np.random.default_rng(0).random(X.shape) < 0.15
    reads = []
    load = fdask_io._load_npz
    monkeypatch.setattr(fdask_io, "_load_npz", lambda *a: reads.append(1) or load(*a))
    Xd = fdask.from_npz_blocks(paths)
    kw = dict(init="random", random_state=0, tol=0, accelerate=False)
    counts = []
    for it in (4, 9):
        reads.clear()
        with dask.config.set(scheduler="sync"):
            got = fdask.nmf_dask(Xd, 3, persist=False, missing=sp.csr_matrix(held),
                                 max_iter=it, **kw)
        counts.append(len(reads))
    assert counts[1] - counts[0] == 5 * len(paths)  # 5 more iterations, one read each
    _same_fit(fastnmf.nmf(X, 3, missing=sp.csr_matrix(held), max_iter=9, **kw), got,
              np.float32)


def test_streamed_kl_ccd_keeps_the_column_copy_where_it_fits(client, monkeypatch, tmp_path):
    """persist=False with KL CCD: X's column copy is made once and kept on the workers
    when it is at most half of their memory limits together (a warning says so; X's row
    blocks are still read at every iteration), else made again at every iteration (a
    warning says that); the iterates are the in-memory ones either way."""
    paths = fdask.write_sparse_blocks(tmp_path, (90, 30), nnz=900, n_blocks=4, seed=2, rank=3)
    Xd = fdask.from_npz_blocks(paths, dtype=np.float64)
    X = sp.vstack([sp.load_npz(p) for p in paths]).tocsr().astype(np.float64)
    kw = dict(beta_loss="kl", solver="ccd", init="random", random_state=1, max_iter=6, tol=0)
    ref = fastnmf.nmf(X, 3, **kw)
    made = []
    column_blocks = fdask_fit._column_blocks
    monkeypatch.setattr(fdask_fit, "_column_blocks", lambda *args: (
        made.append(args[4]) or column_blocks(*args)))
    with pytest.warns(UserWarning, match=r"made once and kept on the workers") as seen:
        got = fdask.nmf_dask(Xd, 3, persist=False, **kw)
    need = int(str(seen[0].message).split("about ")[1].split(" bytes")[0])
    assert seen[0].filename == __file__  # points at the user's call, not into fastnmf
    assert need == X.nnz * 16 + 8 * (30 + 4)  # (the estimate: values, indices, pointers)
    assert made == [True]
    _same_fit(ref, got, np.float64)
    # workers whose memory would not hold twice the copy: made again at every iteration
    monkeypatch.setattr(fdask_fit, "_memory_limits", lambda scheduler: [need - 1, need])
    with pytest.warns(UserWarning, match=r"more than half of the workers' memory \(" +
                      f"{2 * need - 1}" + r" bytes\)\) is made again"):
        got = fdask.nmf_dask(Xd, 3, persist=False, **kw)
    assert made == [True, False]
    _same_fit(ref, got, np.float64)


def test_zarr_and_hdf5_loaders(tmp_path):
    X = random_matrix(60, 20, seed=11, rank=3)
    kw = dict(init="random", random_state=0, max_iter=5, tol=0, accelerate=False)
    ref = fastnmf.nmf(X, 3, **kw)
    loaded = []
    if _has("zarr"):
        da.from_array(X, chunks=(16, 20)).to_zarr(str(tmp_path / "x.zarr"))
        loaded.append(fdask.from_zarr(str(tmp_path / "x.zarr"), rows_per_block=25))
    if _has("h5py"):
        import h5py

        with h5py.File(tmp_path / "x.h5", "w") as f:
            f["X"] = X
        loaded.append(fdask.from_hdf5(tmp_path / "x.h5", "X", rows_per_block=25))
    if not loaded:
        pytest.skip("neither zarr nor h5py is installed")
    for Xd in loaded:
        assert Xd.chunks == ((25, 25, 10), (20,))
        with dask.config.set(scheduler="threads"):
            _same_fit(ref, fastnmf.nmf(Xd, 3, **kw), np.float64)


def _has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_default_init_switch_warns_once(monkeypatch):
    from fastnmf.dask import fit as dask_fit

    monkeypatch.setattr(dask_fit, "_warned_random_init", False)
    Xd = _dask(_data(False, np.float64))
    kw = dict(random_state=0, max_iter=2, tol=0, n_threads=1)
    with pytest.warns(UserWarning, match="init='random'") as record:
        first = fastnmf.nmf(Xd, R, **kw)
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastnmf.nmf(Xd, R, **kw)  # once only
        monkeypatch.setattr(dask_fit, "_warned_random_init", False)
        explicit = fastnmf.nmf(Xd, R, init="random", **kw)  # asked for: no warning
    np.testing.assert_array_equal(first.H, explicit.H)


def test_clear_errors():
    Xd = _dask(_data(False, np.float64))
    with pytest.raises(ValueError, match="init='random'"):
        fastnmf.nmf(Xd, R, init="nndsvda")
    with_zero = _data(False, np.float64)
    with_zero[3, 4] = 0.0
    with dask.config.set(scheduler="threads"), pytest.raises(ValueError, match="contains zeros"):
        fastnmf.nmf(_dask(with_zero), R, beta_loss="itakura-saito")
    with pytest.raises(ValueError, match="2-D"):
        fastnmf.nmf(da.ones(10, chunks=5), 2)
    unknown = da.from_array(np.ones((10, 4)), chunks=(5, 4))
    unknown = unknown[unknown[:, 0] > 0]  # boolean indexing: unknown row chunks
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        fastnmf.nmf(unknown, 2)
    negative = da.from_array(-np.ones((10, 4)), chunks=(5, 4))
    with dask.config.set(scheduler="threads"), pytest.raises(ValueError, match="Negative"):
        fastnmf.nmf(negative, 2)
    with pytest.raises(TypeError, match="compute the dask array"):
        fdask.map_fits(None, Xd, [(2, 0, 1)], {})


def _missing_forms(X, seed=4):
    """The same missing set in each form a dask fit takes it: (in-memory X and kwargs,
    dask kwargs); about a fifth of the entries, one block's rows none at all."""
    rng = np.random.default_rng(seed)
    held = rng.random(X.shape) < 0.2
    held[ROW_CHUNKS[0]:sum(ROW_CHUNKS[:2])] = False  # a block with no missing entry
    dense = X.toarray() if sp.issparse(X) else X
    with_nan = np.where(held, np.nan, dense)
    return {
        "mask-numpy": (X, dict(mask=~held), dict(mask=~held)),
        "mask-dask": (X, dict(mask=~held), dict(mask=da.from_array(~held, chunks=(60, 20)))),
        "missing-sparse": (X, dict(missing=sp.csr_matrix(held)),
                           dict(missing=sp.csr_matrix(held))),
        "missing-nan": (with_nan, dict(missing="nan"), dict(missing="nan")),
    }


@pytest.mark.parametrize("fit", ["hals", "hals-plain", "hals-both", "mu", "kl-mu"])
@pytest.mark.parametrize("sparse, dtype, form", [
    (False, np.float64, "mask-numpy"), (True, np.float64, "missing-sparse"),
    (False, np.float32, "mask-dask"), (False, np.float64, "missing-nan"),
])
def test_missing_values_equal_single_machine(fit, sparse, dtype, form):
    """Masked fits on Dask: the in-memory masked fit's iterates and masked loss (the row
    blocks' masked data products; the Frobenius loss corrected block by block)."""
    X = _data(sparse, dtype, seed=6)
    X_in, ref_kw, dask_kw = _missing_forms(X)[form]
    kw = dict(FITS[fit], init="random", random_state=2, max_iter=15, tol=0)
    ref = fastnmf.nmf(X_in, R, **ref_kw, **kw)
    Xd = da.from_array(X_in if form == "missing-nan" else X, chunks=(ROW_CHUNKS, 20),
                       asarray=not sp.issparse(X_in))
    with dask.config.set(scheduler="threads"):
        got = fastnmf.nmf(Xd, R, **dask_kw, **kw)
    _same_fit(ref, got, dtype)
    # the loss is the masked one: the observed entries' error
    observed = ref_kw.get("mask")
    if observed is not None and fit.startswith(("hals", "mu")):
        dense = X.toarray() if sp.issparse(X) else X
        err = np.sum(((dense - got.W @ got.H) * observed) ** 2, dtype=np.float64)
        assert got.history["loss"][-1] == pytest.approx(0.5 * err, rel=TOL[dtype] * 10)


@pytest.mark.parametrize("persist", [True, False])
def test_missing_values_on_the_cluster(client, persist):
    """Two worker processes, blocks kept or read again at every iteration (the dask mask's
    rows read with X's), sweeps then extrapolation: the in-memory masked fit."""
    X = _data(True, np.float64, seed=7)
    X_in, ref_kw, dask_kw = _missing_forms(X, seed=8)["mask-dask"]
    kw = dict(init="random", random_state=1, max_iter=12, tol=0, accelerate="auto")
    ref = fastnmf.nmf(X_in, R, **ref_kw, **kw)
    got = fdask.nmf_dask(_dask(X), R, persist=persist, **dask_kw, **kw)
    _same_fit(ref, got, np.float64)
    held = ~ref_kw["mask"]
    assert not np.isnan(got.W).any() and held.any()


def test_missing_values_clear_errors():
    X = _data(False, np.float64)
    Xd = _dask(X)
    mask = np.ones(X.shape, bool)
    mask[0, :3] = False
    with pytest.raises(ValueError, match="need solver='mu'"):
        fastnmf.nmf(Xd, R, beta_loss="kullback-leibler", solver="ccd", mask=mask)
    with pytest.raises(ValueError, match="not yet with other β"):
        fastnmf.nmf(Xd, R, beta_loss=1.5, mask=mask)
    with pytest.raises(ValueError, match="update_H=True"):
        fastnmf.nmf(Xd, R, H=np.ones((R, N)), update_H=False, mask=mask)
    with pytest.raises(ValueError, match="shape"):
        fastnmf.nmf(Xd, R, mask=mask[1:])
    with pytest.raises(ValueError, match="shape"):
        fastnmf.nmf(Xd, R, mask=da.from_array(mask[:, 1:]))
    with pytest.raises(TypeError, match="boolean"):
        fastnmf.nmf(Xd, R, mask=mask.astype(np.float64))
    with pytest.raises(TypeError, match="dense boolean"):
        fastnmf.nmf(Xd, R, mask=sp.csr_matrix(mask))
    with pytest.raises(ValueError, match="'nan'"):
        fastnmf.nmf(Xd, R, missing="none")
    with dask.config.set(scheduler="threads"):
        with pytest.raises(ValueError, match="Every entry of X is missing"):
            fastnmf.nmf(Xd, R, mask=np.zeros(X.shape, bool))
        with pytest.warns(UserWarning, match="pass it as missing="):
            fastnmf.nmf(Xd, R, mask=~mask, max_iter=2)
        with_nan = X.copy()
        with_nan[5, 5] = np.nan
        with pytest.raises(ValueError, match="missing='nan'"):  # NaN: the hint, as in memory
            fastnmf.nmf(_dask(with_nan), R)


def test_import_fastnmf_does_not_import_dask():
    code = "import sys, fastnmf; fastnmf.nmf; sys.exit('dask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_no_import_cycle_through_the_dask_package():
    """fastnmf._fit hands dask arrays to fastnmf.dask, which never imports _fit back
    (map_fits's worker task goes through the public fastnmf.nmf)."""
    from test_layers import cycles, import_graph

    graph = import_graph()
    assert "fastnmf.dask.fit" in graph["fastnmf._fit"]
    assert not [c for c in cycles(graph) if any(m.startswith("fastnmf.dask") for m in c)]


def test_sparse_block_data_travels_between_workers():
    """Dask moves prepared row blocks between worker processes (cloudpickle): the
    lock of the SparseData's shared transpose (``_Transpose``) is made anew on arrival."""
    import cloudpickle

    from fastnmf._data import SparseData

    X = _data(True, np.float64)
    data = SparseData(X)
    F = np.random.default_rng(0).random((X.shape[0], R))
    want = data.product(F, 1, np.empty((X.shape[1], R)))
    for obj in (data, data.for_thread()):
        moved = cloudpickle.loads(cloudpickle.dumps(obj))
        assert moved._transpose._lock is not obj._transpose._lock
        np.testing.assert_array_equal(moved.product(F, 1, np.empty((X.shape[1], R))), want)
