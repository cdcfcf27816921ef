"""Rank sweep wall time: fastnmf.fit_many against a loop over scikit-learn's NMF.

Run:  python benchmarks/rank_sweep.py               (the sweep, dense then sparse)
      python benchmarks/rank_sweep.py --crossover   (sequential vs threads in fit_many)

The sweep fits r = 2..10 with 10 runs each (90 fits per matrix) on a dense
5000×2000 matrix (``make_low_rank``, planted rank 6) and on a sparse count
matrix (``make_sparse_counts``), with the same starts in both packages
(``init="random"``, the same seed per fit: fastnmf draws scikit-learn's
random numbers), ``tol=1e-4``, ``max_iter=200``, HALS against scikit-learn's
``cd``.  Both use every core: fastnmf as ``fit_many`` schedules it,
scikit-learn one fit after another (its ``cd`` solver is single-threaded
apart from BLAS).  Compilation is paid before the timing.  On a shared
machine timings are noisy: compare ratios from the same run.
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

from fastnmf import datasets
from fastnmf.many import fit_many, run_seeds

RANKS = range(2, 11)
N_RUNS = 10
OPTIONS = {"init": "random", "tol": 1e-4, "max_iter": 200}


def sklearn_sweep(X, tasks):
    import warnings

    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # max_iter is the budget
    losses = []
    for rank, _, seed in tasks:
        model = NMF(rank, solver="cd", random_state=seed, **OPTIONS)
        model.fit_transform(X)
        losses.append(0.5 * model.reconstruction_err_ ** 2)
    return np.array(losses)


def sweep(name, X, ranks, n_runs, skip_sklearn=False):
    fit_many(X, [2], n_runs=2, random_state=0, max_iter=2, init="random")  # compile, tune
    t0 = time.perf_counter()
    fits = fit_many(X, ranks, n_runs=n_runs, random_state=0, **OPTIONS)
    t_fast = time.perf_counter() - t0
    loss_fast = np.array([res.loss for res in fits.results])
    print(f"{name}: fastnmf.fit_many {t_fast:7.1f} s  ({fits.schedule}, {fits.n_jobs} at once, "
          f"{len(fits.results)} fits, mean {np.mean([r.n_iter for r in fits.results]):.0f} "
          "iterations)", flush=True)
    if skip_sklearn:
        return
    tasks = run_seeds(0, ranks, n_runs)
    t0 = time.perf_counter()
    loss_sk = sklearn_sweep(X, tasks)
    t_sk = time.perf_counter() - t0
    print(f"{name}: scikit-learn loop   {t_sk:7.1f} s  -> fastnmf {t_sk / t_fast:.1f}x faster; "
          f"median loss ratio fastnmf/sklearn {np.median(loss_fast / loss_sk):.4f}", flush=True)


def crossover():
    """Sequential (all cores per fit) against threads (one core per fit) by size of X."""
    cases = []
    for m, n in ((200, 100), (1000, 500), (2000, 1000), (5000, 2000)):
        X, _, _ = datasets.make_low_rank(m, n, 5, random_state=0)
        cases.append((f"dense {m}x{n}", X))
    for nnz in (200_000, 1_000_000):
        cases.append((f"sparse 20000x5000 nnz {nnz}",
                      datasets.make_sparse_counts(20_000, 5_000, nnz, 10, random_state=0)))
    cores = numba.get_num_threads()
    for name, X in cases:
        fit_many(X, [2], n_runs=2, max_iter=2, random_state=0, n_jobs=cores)  # compile, tune
        fit_many(X, [2], n_runs=2, max_iter=2, random_state=0, n_jobs=1)
        times = {}
        for jobs in (1, cores):
            t0 = time.perf_counter()
            fit_many(X, range(2, 6), n_runs=10, random_state=0, n_jobs=jobs, init="random")
            times[jobs] = time.perf_counter() - t0
        seq, conc = times[1], times[max(times)]
        print(f"{name:28s} sequential {seq:6.2f} s  threads({max(times)}) {conc:6.2f} s  "
              f"ratio {seq / conc:.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crossover", action="store_true")
    parser.add_argument("--sparse-rows", type=int, default=20_000)
    parser.add_argument("--sparse-cols", type=int, default=5_000)
    parser.add_argument("--sparse-nnz", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=N_RUNS)
    parser.add_argument("--no-sklearn", action="store_true")
    args = parser.parse_args()
    if args.crossover:
        crossover()
        return
    X, _, _ = datasets.make_low_rank(5000, 2000, 6, random_state=0)
    sweep("dense 5000x2000", X, RANKS, args.runs, args.no_sklearn)
    S = datasets.make_sparse_counts(args.sparse_rows, args.sparse_cols, args.sparse_nnz, 8,
                                    random_state=0)
    sweep(f"sparse {S.shape[0]}x{S.shape[1]} nnz {S.nnz}", S, RANKS, args.runs,
          args.no_sklearn)


if __name__ == "__main__":
    main()
