"""fit_many: the seed contract, scheduling that does not change results, the table."""

from __future__ import annotations

import sys
import threading
import types

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import random_matrix
from sklearn.utils import check_random_state

import fastnmf
from fastnmf.many import ManyFits, fit_many, run_seeds

KW = {"init": "random", "max_iter": 40}


def assert_same_results(a: ManyFits, b: ManyFits, exact=True):
    assert a.tasks == b.tasks
    for x, y in zip(a.results, b.results, strict=True):
        assert x.n_iter == y.n_iter
        if exact:
            np.testing.assert_array_equal(x.W, y.W)
            np.testing.assert_array_equal(x.H, y.H)
            assert x.loss == y.loss
        else:
            np.testing.assert_allclose(x.W, y.W, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(x.loss, y.loss, rtol=1e-9)


def test_run_seeds_contract():
    tasks = run_seeds(42, [3, 2, 5], 4)
    seeds = check_random_state(42).randint(np.iinfo(np.int32).max, size=12)
    assert tasks == [(rank, run, int(seeds[i * 4 + run]))
                     for i, rank in enumerate([3, 2, 5]) for run in range(4)]
    assert all(type(x) is int for task in tasks for x in task)
    assert run_seeds(np.int64(4), range(2, 4), 1) == run_seeds(4, [2, 3], 1)
    assert run_seeds(None, [2], 3) != run_seeds(None, [2], 3)  # fresh entropy


@pytest.mark.parametrize("ranks, n_runs, error, match", [
    ([], 2, ValueError, "empty"),
    ([2, 2], 2, ValueError, "duplicates"),
    ([0], 2, ValueError, "rank must be >= 1"),
    ([2.5], 2, TypeError, "rank"),
    ("abc", 2, TypeError, "rank"),
    (None, 2, TypeError, "ranks must be"),
    ([2], 0, ValueError, "n_runs"),
])
def test_run_seeds_rejects_bad_input(ranks, n_runs, error, match):
    with pytest.raises(error, match=match):
        run_seeds(0, ranks, n_runs)


def test_each_fit_is_nmf_with_its_seed():
    X = random_matrix(30, 20, seed=1, rank=3)
    fits = fit_many(X, [2, 3], n_runs=2, random_state=7, n_jobs=1, **KW)
    for (rank, _, seed), res in zip(fits.tasks, fits.results, strict=True):
        direct = fastnmf.nmf(X, rank, random_state=seed, **KW)
        np.testing.assert_array_equal(res.W, direct.W)
        assert res.W.shape == (30, rank)


@pytest.mark.parametrize("sparse", [False, True])
def test_concurrent_equals_sequential_and_is_reproducible(sparse):
    X = random_matrix(40, 30, seed=2, rank=3, density=0.4 if sparse else 1.0)
    X = sp.csr_matrix(X) if sparse else X
    seq = fit_many(X, [2, 3, 4], n_runs=3, random_state=0, n_jobs=1, n_threads=1, **KW)
    conc = fit_many(X, [2, 3, 4], n_runs=3, random_state=0, n_jobs=2, **KW)
    again = fit_many(X, [2, 3, 4], n_runs=3, random_state=0, n_jobs=3, **KW)
    assert seq.schedule == "sequential" and conc.schedule == "threads" and conc.n_jobs == 2
    assert_same_results(seq, conc)
    assert_same_results(conc, again)
    # every core per fit (the large-matrix schedule): the same to round-off
    seq_all = fit_many(X, [2, 3, 4], n_runs=3, random_state=0, n_jobs=1, **KW)
    assert_same_results(seq, seq_all, exact=False)


def test_masked_fits_concurrent_equal_sequential():
    X = random_matrix(30, 25, seed=3, rank=3)
    M = np.random.default_rng(3).random(X.shape) < 0.8
    seq = fit_many(X, [2, 3], n_runs=2, random_state=1, n_jobs=1, n_threads=1, mask=M, **KW)
    conc = fit_many(X, [2, 3], n_runs=2, random_state=1, n_jobs=2, mask=M, **KW)
    assert_same_results(seq, conc)
    direct = fastnmf.nmf(X, 3, mask=M, random_state=seq.tasks[2][2], **KW)
    np.testing.assert_array_equal(seq.results[2].W, direct.W)


def test_best_table_and_records():
    X = random_matrix(30, 20, seed=4, rank=3)
    fits = fit_many(X, [3, 2], n_runs=3, random_state=0, **KW)
    assert fits.ranks == (3, 2) and fits.n_runs == 3 and len(fits.results) == 6
    for rank in (2, 3):
        runs = fits.runs(rank)
        assert len(runs) == 3
        assert fits.best(rank).loss == min(r.loss for r in runs)
        assert fits.best_per_rank[rank] is fits.best(rank)
    table = fits.table()
    assert [row["rank"] for row in table] == [3, 3, 3, 2, 2, 2]
    assert set(table[0]) == {"rank", "run", "seed", "loss", "relative_error", "n_iter",
                             "converged", "time"}
    rec = fits.to_records()
    assert rec.shape == (6,)
    np.testing.assert_array_equal(rec.rank, [3, 3, 3, 2, 2, 2])
    np.testing.assert_array_equal(rec.loss, [row["loss"] for row in table])
    assert rec.n_iter.dtype == np.int64 and rec.converged.dtype == bool
    with pytest.raises(KeyError, match="was not fitted"):
        fits.runs(7)


def test_progress_bar_counts_every_fit():
    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    fit_many(random_matrix(15, 10), [2, 3], n_runs=2, random_state=0, progress=bar,
             n_jobs=2, **KW)
    assert bar.n == 4


def test_auto_schedule_by_size(monkeypatch):
    import fastnmf.many as many

    X = random_matrix(20, 10)
    assert fit_many(X, [2], n_runs=2, random_state=0, max_iter=2).schedule == "threads"
    monkeypatch.setattr(many, "CONCURRENT_MAX_ENTRIES", 100)
    assert fit_many(X, [2], n_runs=2, random_state=0, max_iter=2).schedule == "sequential"
    S = sp.csr_matrix(X)
    assert fit_many(S, [2], n_runs=2, random_state=0, max_iter=2).schedule == "threads"
    monkeypatch.setattr(many, "CONCURRENT_MAX_NNZ", 100)
    assert fit_many(S, [2], n_runs=2, random_state=0, max_iter=2).schedule == "sequential"


@pytest.mark.parametrize("kwargs, error, match", [
    ({"n_jobs": 0}, ValueError, "n_jobs"),
    ({"n_jobs": 1.5}, TypeError, "n_jobs"),
    ({"n_threads": 0}, ValueError, "n_threads"),
    ({"n_runs": -1}, ValueError, "n_runs"),
    ({"mask": np.ones((2, 2), dtype=bool)}, ValueError, "mask has shape"),
])
def test_bad_options_fail_before_any_fit(kwargs, error, match):
    with pytest.raises(error, match=match):
        fit_many(random_matrix(10, 8), [2], random_state=0, **kwargs)


def test_an_error_in_one_fit_is_raised():
    X = random_matrix(10, 8)
    with pytest.raises(ValueError, match="n_components <= min"):  # nndsvda cannot give rank 9
        fit_many(X, [2, 9], n_runs=2, random_state=0, n_jobs=2, init="nndsvda")


def test_client_goes_through_dask_map_fits(monkeypatch):
    """The Dask path: map_fits(client, X, tasks, nmf_kwargs), results kept in task order."""
    calls = []

    def map_fits(client, X, tasks, nmf_kwargs):
        calls.append((client, X, tasks, nmf_kwargs))
        return [fastnmf.nmf(X, rank, random_state=seed, **nmf_kwargs)
                for rank, _, seed in tasks]

    monkeypatch.setitem(sys.modules, "fastnmf.dask", types.SimpleNamespace(map_fits=map_fits))
    X = random_matrix(20, 15, seed=5, rank=2)
    M = np.random.default_rng(5).random(X.shape) < 0.9
    fits = fit_many(X, [2, 3], n_runs=2, random_state=3, client="CLIENT", mask=M, **KW)
    (client, X_sent, tasks, kwargs), = calls
    assert client == "CLIENT" and tasks == run_seeds(3, [2, 3], 2)
    assert isinstance(X_sent, np.ndarray) and X_sent.shape == X.shape
    assert sp.issparse(kwargs["missing"]) and "mask" not in kwargs
    assert kwargs["init"] == "random" and fits.schedule == "dask"
    local = fit_many(X, [2, 3], n_runs=2, random_state=3, n_jobs=1, mask=M, **KW)
    assert_same_results(fits, local)


def test_real_dask_cluster_gives_the_local_results():
    pytest.importorskip("distributed")
    dask_mod = pytest.importorskip("fastnmf.dask")
    if not hasattr(dask_mod, "map_fits"):
        pytest.skip("fastnmf.dask.map_fits not available")
    from distributed import Client

    X = random_matrix(20, 15, seed=6, rank=2)
    with Client(processes=False, n_workers=1, threads_per_worker=2,
                dashboard_address=":0") as client:
        remote = fit_many(X, [2, 3], n_runs=2, random_state=0, client=client, **KW)
    local = fit_many(X, [2, 3], n_runs=2, random_state=0, n_jobs=1, n_threads=1, **KW)
    assert_same_results(remote, local)


def test_docstring_examples():
    import doctest

    import fastnmf.many

    assert doctest.testmod(fastnmf.many).failed == 0


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_keep_best_holds_one_pair_of_factors_per_rank(n_jobs):
    """keep="best": the same fits, the same table and best per rank, but only the best
    fit of each rank (the first of equals) still holds W and H."""
    X = random_matrix(40, 30, seed=3, rank=3)
    every = fit_many(X, [2, 3], n_runs=4, random_state=0, n_jobs=n_jobs, n_threads=1, **KW)
    lean = fit_many(X, [2, 3], n_runs=4, random_state=0, n_jobs=n_jobs, n_threads=1,
                    keep="best", **KW)
    assert (every.keep, lean.keep) == ("all", "best")
    assert lean.table() == [{**row, "time": lean_row["time"]}
                            for row, lean_row in zip(every.table(), lean.table(), strict=True)]
    for rank in (2, 3):
        runs = lean.runs(rank)
        losses = [res.loss for res in runs]
        held = [i for i, res in enumerate(runs) if res.W is not None]
        assert held == [int(np.argmin(losses))]
        assert all(res.H is None for res in runs if res.W is None)
        np.testing.assert_array_equal(lean.best(rank).W, every.best(rank).W)
        np.testing.assert_array_equal(lean.best(rank).H, every.best(rank).H)
    assert all(res.history["loss"].size > 1 for res in lean.results)


def test_keep_best_ties_keep_the_first():
    """Equal losses (the same seed twice is impossible, so the same X and start via a
    custom start): the first run keeps its factors, as ManyFits.best picks it."""
    X = random_matrix(20, 15, seed=4, rank=2)
    W0, H0 = random_matrix(20, 2, seed=5), random_matrix(2, 15, seed=6)
    fits = fit_many(X, [2], n_runs=3, random_state=0, n_jobs=1, keep="best", init="custom",
                    W=W0, H=H0, max_iter=10)
    assert len({res.loss for res in fits.results}) == 1
    assert [res.W is not None for res in fits.results] == [True, False, False]


def test_keep_rejects_unknown():
    with pytest.raises(ValueError, match="keep must be one of"):
        fit_many(random_matrix(10, 8), [2], keep="last")


# ------------------------------------------- fits that share X's prepared data


def _data_in_thread(prepared, backend="auto"):
    """``prepared.data(backend)`` as a fit in a fresh Python thread (one Numba thread) sees it."""
    from fastnmf._threads import thread_limits

    out = []

    def fit_thread():
        with thread_limits(1):
            out.append(prepared.data(backend))

    t = threading.Thread(target=fit_thread)
    t.start()
    t.join()
    return out[0]


def test_threads_share_one_transpose_and_keep_their_own_buffers():
    from fastnmf._masked import PreparedX

    X = sp.csr_matrix(random_matrix(60, 40, seed=4, rank=3, density=0.3))
    prepared = PreparedX(X)
    a, b = _data_in_thread(prepared), _data_in_thread(prepared)
    assert a is not b
    assert a._arrays[0][2] is b._arrays[0][2]  # one CSR of X
    assert a._arrays[1][1] is b._arrays[1][1]  # one CSR of Xᵀ, made by the first to ask
    assert a._scratch is not b._scratch
    assert a.sqnorm == b.sqnorm == pytest.approx(float((X.data ** 2).sum()), rel=1e-12)
    dense = PreparedX(X.toarray())
    c, d = _data_in_thread(dense, "dense"), _data_in_thread(dense, "dense")
    assert c.X is d.X and c._wide_out is not d._wide_out


@pytest.mark.parametrize("loss", ["frobenius", "kullback-leibler"])
@pytest.mark.parametrize("sparse", [False, True])
def test_shared_data_fits_equal_fits_of_their_own(loss, sparse):
    """Fits in threads that share X's data (one CSR of Xᵀ, one KL constant, buffers
    reused from fit to fit in a thread) give, bit for bit, the fit of each seed on X
    prepared for that fit alone."""
    X = random_matrix(50, 35, seed=5, rank=3, density=0.4 if sparse else 1.0)
    X = sp.csr_matrix(X) if sparse else X
    kw = dict(KW, beta_loss=loss, n_threads=1)
    fits = fit_many(X, [2, 4, 3], n_runs=3, random_state=2, n_jobs=2, **kw)
    for (rank, _, seed), res in zip(fits.tasks, fits.results, strict=True):
        alone = fastnmf.nmf(X, rank, random_state=seed, **kw)
        np.testing.assert_array_equal(res.W, alone.W)
        np.testing.assert_array_equal(res.H, alone.H)
        np.testing.assert_array_equal(res.history["loss"], alone.history["loss"])


@pytest.mark.parametrize("loss, solver, kw", [
    ("frobenius", "hals", {"accelerate": "sweeps"}),
    ("frobenius", "hals", {"accelerate": False}),
    ("frobenius", "mu", {}),
    ("kullback-leibler", "ccd", {}),
    ("kullback-leibler", "mu", {}),
])
def test_every_fit_of_a_sweep_is_monotone(loss, solver, kw):
    """HALS without extrapolation, MU and KL-CCD never raise the objective: neither do
    the fits of a sweep that share buffers."""
    X = random_matrix(40, 30, seed=6, rank=4)
    fits = fit_many(X, [2, 3, 5], n_runs=2, random_state=0, n_jobs=2, beta_loss=loss,
                    solver=solver, init="random", max_iter=60, tol=0, **kw)
    for res in fits.results:
        losses = res.history["loss"]
        assert np.all(np.diff(losses) <= 1e-10 * losses[:-1])
