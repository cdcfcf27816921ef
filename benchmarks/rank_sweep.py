"""Many fits: fastnmf.fit_many against a loop over scikit-learn's NMF (issue 19 item 3).

Run:  python benchmarks/rank_sweep.py [--out DIR]      (the four sweeps, about 10 minutes)
      python benchmarks/rank_sweep.py --quick          (under a minute)
      python benchmarks/rank_sweep.py --crossover      (sequential vs threads in fit_many)

Each sweep fits r = 2..10 with 10 runs each (90 fits; ``--quick``: r = 2..4, 3
runs) on one matrix, in both packages with the same start per fit
(``init="random"`` and the same seed: fastnmf draws scikit-learn's random
numbers), the same per-fit tolerance (``tol=1e-4``, scikit-learn's meaning for
each solver) and ``max_iter=200``:

* Frobenius: fastnmf's HALS (``fit_many``'s default solver) against
  scikit-learn's ``cd``, on dense ``make_low_rank`` (1000×500, planted rank 6)
  and sparse ``make_sparse_counts`` (20000×5000, 5·10⁵ nonzeros, rank 8);
* Kullback–Leibler: fastnmf's CCD against scikit-learn's ``mu``
  (``beta_loss="kullback-leibler"``), on dense ``make_poisson_counts``
  (1000×500, rank 6) and smaller sparse counts (3000×1200, 3·10⁴ nonzeros:
  scikit-learn's MU-KL takes seconds per fit on sparse X).

``--dense``, ``--sparse`` and ``--kl-sparse`` change the sizes.

fastnmf runs as ``fit_many`` schedules it (several single-threaded fits at
once for these sizes); scikit-learn one fit after another (its solvers use
every core only through BLAS).  Compilation is paid before the timing.  Every
final loss (½‖X − WH‖² or the generalized KL divergence) is computed by the
same evaluator, outside the timed region, and compared fit by fit (same rank,
same start) and best of each rank against best.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import add_report_options, conditions, fmt, header, write_report

from fastnmf import datasets
from fastnmf.many import fit_many, run_seeds

RANKS = range(2, 11)
N_RUNS = 10
OPTIONS = {"init": "random", "tol": 1e-4, "max_iter": 200}
LOSSES = {"frobenius": ("hals", "cd"), "kullback-leibler": ("ccd", "mu")}


# The sizes of the full run (--quick: dense 200×100, sparse 2000×800 with 2·10⁴ nonzeros).
# scikit-learn's MU-KL on sparse X takes seconds per fit at 10⁵ nonzeros (6-19 s for
# ranks 2-10 on 5000×2000; 409 s for the 90 fits on 4000×1500 with 4.5·10⁴, all measured
# under load), so its sweep has smaller counts than the Frobenius one, to keep the whole
# run within 10 minutes on a quiet machine.
DENSE = (1000, 500)
SPARSE = (20_000, 5_000, 500_000)
KL_SPARSE = (3_000, 1_200, 30_000)


def _sparse(shape):
    m, n, nnz = shape
    S = datasets.make_sparse_counts(m, n, nnz, 8, random_state=0)
    return (f"sparse counts {m}×{n}, {S.nnz} nonzeros (`make_sparse_counts`, rank 8)", S)


def matrices(quick: bool, dense_shape=DENSE, sparse_shape=SPARSE, kl_sparse_shape=KL_SPARSE
             ) -> dict:
    """{(kind, loss): (description, X)}: dense planted matrices, sparse count matrices."""
    m, n = (200, 100) if quick else dense_shape
    if quick:
        sparse_shape = kl_sparse_shape = (2000, 800, 20_000)
    D, _, _ = datasets.make_low_rank(m, n, 6, random_state=0)
    P, _, _ = datasets.make_poisson_counts(m, n, 6, random_state=0)
    return {
        ("dense", "frobenius"): (f"dense {m}×{n} (`make_low_rank`, rank 6)", D),
        ("sparse", "frobenius"): _sparse(sparse_shape),
        ("dense", "kullback-leibler"): (f"dense counts {m}×{n} (`make_poisson_counts`, "
                                        "rank 6)", P),
        ("sparse", "kullback-leibler"): _sparse(kl_sparse_shape),
    }


def sklearn_sweep(X, tasks, loss, evaluate):
    """One scikit-learn NMF per task; the summed fit times and each fit's loss and
    iterations (the loss by ``evaluate``, outside the timed calls)."""
    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    solver = LOSSES[loss][1]
    elapsed, losses, iters = 0.0, [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter is the budget
        for rank, _, seed in tasks:
            model = NMF(rank, solver=solver, beta_loss=loss, random_state=seed, **OPTIONS)
            t0 = time.perf_counter()
            W = model.fit_transform(X)
            elapsed += time.perf_counter() - t0
            losses.append(evaluate(W, model.components_))
            iters.append(model.n_iter_)
    return elapsed, np.array(losses), np.array(iters)


def sweep(X, loss, ranks, n_runs, skip_sklearn=False) -> dict:
    """fastnmf.fit_many and the scikit-learn loop on one matrix, with their losses."""
    from fastnmf.bench.metrics import evaluator

    evaluate = evaluator(X, loss)
    # compile (or load from the cache) every kernel the sweep reaches, extrapolation's
    # too, which HALS starts only once its first iterations stall (2 iterations did not)
    fit_many(X, [2], n_runs=2, random_state=0, max_iter=50, tol=0, init="random",
             beta_loss=loss)
    t0 = time.perf_counter()
    fits = fit_many(X, ranks, n_runs=n_runs, random_state=0, beta_loss=loss, **OPTIONS)
    t_fast = time.perf_counter() - t0
    loss_fast = np.array([evaluate(res.W, res.H) for res in fits.results])
    row = {"fastnmf_time": t_fast, "schedule": fits.schedule, "n_jobs": fits.n_jobs,
           "fits": len(fits.results), "fastnmf_solver": fits.results[0].solver,
           "fastnmf_iters": float(np.mean([res.n_iter for res in fits.results])),
           "fastnmf_losses": loss_fast.tolist()}
    if skip_sklearn:
        return row
    tasks = run_seeds(0, ranks, n_runs)
    assert tasks == fits.tasks
    t_sk, loss_sk, iters_sk = sklearn_sweep(X, tasks, loss, evaluate)
    best = [(min(loss_fast[i * n_runs:(i + 1) * n_runs]),
             min(loss_sk[i * n_runs:(i + 1) * n_runs])) for i in range(len(ranks))]
    row.update(sklearn_time=t_sk, sklearn_iters=float(np.mean(iters_sk)),
               sklearn_losses=loss_sk.tolist(), speedup=t_sk / t_fast,
               loss_ratio_median=float(np.median(loss_fast / loss_sk)),
               loss_ratio_max=float(np.max(loss_fast / loss_sk)),
               worse_fits=int(np.sum(loss_fast > loss_sk * (1 + 1e-6))),
               best_ratio_max=float(max(f / s for f, s in best)))
    return row


def report_lines(results: dict) -> list[str]:
    a = results["args"]
    lines = header("Many fits: fastnmf.fit_many against a loop of scikit-learn fits",
                   results["conditions"], results["command"])
    lines += [f"Every sweep: ranks {a['ranks'][0]}–{a['ranks'][-1]} × {a['n_runs']} runs, "
              "`init='random'` with the same seed per fit in both packages (the same start), "
              "`tol=1e-4` (scikit-learn's meaning for each solver), `max_iter=200`, float64. "
              "fastnmf: `fit_many` (its automatic schedule); scikit-learn: one `NMF` after "
              "another (its time is the sum of the `fit_transform` calls). Losses: one "
              "evaluator for both, fit by fit (same rank, same start).", "",
              "| X | loss | fits | fastnmf (solver, schedule) s | scikit-learn (solver) s | "
              "ratio | mean iterations fastnmf / sklearn | loss ratio fastnmf ÷ sklearn: "
              "median, worst fit | fits worse | best per rank: worst ratio |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results["sweeps"]:
        sk = LOSSES[r["loss"]][1]
        if "sklearn_time" not in r:
            lines.append(f"| {r['description']} | {r['loss']} | {r['fits']} | "
                         f"{fmt(r['fastnmf_time'])} ({r['fastnmf_solver']}, {r['schedule']} "
                         f"×{r['n_jobs']}) | — | — | {r['fastnmf_iters']:.0f} / — | — | — | — |")
            continue
        lines.append(
            f"| {r['description']} | {r['loss']} | {r['fits']} | {fmt(r['fastnmf_time'])} "
            f"({r['fastnmf_solver']}, {r['schedule']} ×{r['n_jobs']}) | "
            f"{fmt(r['sklearn_time'])} ({sk}) | {fmt(r['speedup'])}× | "
            f"{r['fastnmf_iters']:.0f} / {r['sklearn_iters']:.0f} | "
            f"{r['loss_ratio_median']:.4f}, {r['loss_ratio_max']:.4f} | "
            f"{r['worse_fits']} of {r['fits']} | {r['best_ratio_max']:.4f} |")
    lines += ["", "A loss ratio below 1 means fastnmf's fit ended lower than scikit-learn's "
              "from the same start; \"fits worse\" counts fits whose loss ended more than "
              "10⁻⁶ above scikit-learn's (different solvers from one start may stop at "
              "different local minima)."]
    return lines


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


def _shape(text: str) -> tuple[int, ...]:
    return tuple(int(float(part)) for part in text.split(","))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_report_options(parser, "ranks 2-4 × 3 runs on small matrices: under a minute, a "
                       "check that the script works")
    parser.add_argument("--crossover", action="store_true",
                        help="time fit_many's two schedules by size of X instead")
    parser.add_argument("--losses", default="frobenius,kullback-leibler")
    parser.add_argument("--kinds", default="dense,sparse")
    parser.add_argument("--dense", type=_shape, default=DENSE, metavar="ROWS,COLS",
                        help="the dense matrices (default: %(default)s)")
    parser.add_argument("--sparse", type=_shape, default=SPARSE, metavar="ROWS,COLS,NNZ",
                        help="the sparse counts of the Frobenius sweep (default: %(default)s)")
    parser.add_argument("--kl-sparse", type=_shape, default=KL_SPARSE,
                        metavar="ROWS,COLS,NNZ",
                        help="the sparse counts of the KL sweep (default: %(default)s)")
    parser.add_argument("--runs", type=int, default=None,
                        help=f"runs per rank (default: {N_RUNS}, 3 with --quick)")
    parser.add_argument("--no-sklearn", action="store_true")
    args = parser.parse_args(argv)
    if args.crossover:
        crossover()
        return 0
    cond = conditions()
    ranks = range(2, 5) if args.quick else RANKS
    n_runs = args.runs or (3 if args.quick else N_RUNS)
    cases = matrices(args.quick, args.dense, args.sparse, args.kl_sparse)
    results = {"command": "python benchmarks/rank_sweep.py "
               + " ".join(sys.argv[1:] if argv is None else argv),
               "conditions": cond, "sweeps": [],
               "args": {"ranks": list(ranks), "n_runs": n_runs, "quick": args.quick,
                        "options": OPTIONS}}
    for loss in args.losses.split(","):
        for kind in args.kinds.split(","):
            desc, X = cases[(kind, loss)]
            row = sweep(X, loss, ranks, n_runs, args.no_sklearn)
            row.update(description=desc, loss=loss, kind=kind)
            results["sweeps"].append(row)
            text = (f"{desc}, {loss}: fastnmf {row['fastnmf_time']:.1f} s "
                    f"({row['schedule']} x{row['n_jobs']})")
            if "sklearn_time" in row:
                text += (f", scikit-learn {row['sklearn_time']:.1f} s, ratio "
                         f"{row['speedup']:.1f}x, median loss ratio "
                         f"{row['loss_ratio_median']:.4f}")
            print(text, flush=True)
    path = write_report(args.out, "many_fits", report_lines(results), results)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
