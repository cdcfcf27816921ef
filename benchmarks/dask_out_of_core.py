"""fastnmf on Dask, measured: an out-of-core fit from .npz blocks, and a sweep of many fits.

Not a test (nothing is asserted); it prints what docs/dask.md reports.  Each
part runs in its own process so that its peak memory (``ru_maxrss``) is its
own.

    python benchmarks/dask_out_of_core.py write   --rows 1000000 --cols 100000 --nnz 1e8
    python benchmarks/dask_out_of_core.py ooc     [--iters 5 --rank 10]
    python benchmarks/dask_out_of_core.py inmem   [--iters 5 --rank 10]
    python benchmarks/dask_out_of_core.py sweep   [--sweep-shape 2000 1000]
    python benchmarks/dask_out_of_core.py all     (the four above, in turn)

``ooc`` reads every block from disk at every iteration (``persist=False``)
with Dask's synchronous scheduler, so one block is in memory at a time and
each block's kernels use all cores; ``inmem`` loads the same matrix whole and
runs :func:`fastnmf.nmf`.  ``sweep`` runs 9 ranks × 10 runs on a 2-worker
``LocalCluster`` with :func:`fastnmf.dask.map_fits` against a local loop over
:func:`fastnmf.nmf` on the same seeds.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np


def _peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _paths(args):
    return sorted(glob.glob(os.path.join(args.dir, "block_*.npz")))


def write(args):
    from fastnmf.dask import write_sparse_blocks

    t0 = time.perf_counter()
    paths = write_sparse_blocks(args.dir, (args.rows, args.cols), int(args.nnz), args.blocks,
                                seed=0, rank=args.rank)
    elapsed = time.perf_counter() - t0
    sizes = [os.path.getsize(p) for p in paths]
    return {"part": "write", "seconds": elapsed, "blocks": len(paths),
            "disk_MB": sum(sizes) / 2**20, "largest_block_MB": max(sizes) / 2**20}


def _block_memory_mb(paths, rank):
    """What fastnmf holds for one streamed block (Frobenius, ``persist=False``).

    Its CSR, the per-thread copies of ``Xᵦᵀ Wᵦ`` (n×r each) that the scatter
    product sums, the float64 partial sent to the tree, and the block's W.
    """
    import numba
    import scipy.sparse as sp

    X = max((sp.load_npz(p) for p in paths[:3]), key=lambda b: b.nnz)
    m_b, n = X.shape
    csr = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    item = X.dtype.itemsize
    scratch = numba.config.NUMBA_NUM_THREADS * n * rank * item + n * rank * 8
    return (csr + scratch + 2 * m_b * rank * item) / 2**20


def ooc(args):
    import dask

    import fastnmf
    from fastnmf.dask import from_npz_blocks, nmf_dask

    paths = _paths(args)
    X = from_npz_blocks(paths)
    fastnmf.nmf(np.random.default_rng(0).random((50, 20)), 3, max_iter=2)  # compile / load
    t0 = time.perf_counter()
    with dask.config.set(scheduler=args.scheduler):
        res = nmf_dask(X, args.rank, init="random", random_state=0, max_iter=args.iters, tol=0,
                       persist=False)
    total = time.perf_counter() - t0
    per_iter = np.diff(res.history["time"])
    return {"part": "ooc", "shape": list(X.shape), "blocks": len(paths),
            "scheduler": args.scheduler, "rank": args.rank, "iters": res.n_iter,
            "s_per_iter": per_iter.tolist(), "s_per_iter_median": float(np.median(per_iter)),
            "total_s": total, "relative_error": res.relative_error,
            "one_block_MB": _block_memory_mb(paths, args.rank), "peak_rss_MB": _peak_mb()}


def inmem(args):
    import scipy.sparse as sp

    import fastnmf
    from fastnmf.bench.metrics import peak_bytes, reset_peak, rss_bytes

    paths = _paths(args)
    t0 = time.perf_counter()
    X = sp.vstack([sp.load_npz(p) for p in paths], format="csr")
    load = time.perf_counter() - t0
    fastnmf.nmf(np.random.default_rng(0).random((50, 20)), 3, max_iter=2)  # compile / load
    x_mb = (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes) / 2**20
    before = rss_bytes()
    reset = reset_peak()
    t0 = time.perf_counter()
    res = fastnmf.nmf(X, args.rank, init="random", random_state=0, max_iter=args.iters, tol=0)
    total = time.perf_counter() - t0
    per_iter = np.diff(res.history["time"])
    # the fit's own memory: its peak RSS above the RSS with X loaded (X itself not counted)
    fit_peak = (peak_bytes() - before) / 2**20 if reset else float("nan")
    return {"part": "inmem", "shape": list(X.shape), "nnz": int(X.nnz), "rank": args.rank,
            "dtype": str(X.dtype), "X_MB": x_mb, "load_s": load, "s_per_iter": per_iter.tolist(),
            "s_per_iter_median": float(np.median(per_iter)), "total_s": total,
            "relative_error": res.relative_error, "peak_rss_MB": _peak_mb(),
            "fit_peak_beyond_loaded_X_MB": fit_peak}


def sweep(args):
    from dask.distributed import Client, LocalCluster

    import fastnmf
    from fastnmf.dask import map_fits
    from fastnmf.datasets import make_low_rank

    m, n = args.sweep_shape
    X = make_low_rank(m, n, 8, noise=0.1, random_state=0)[0]
    ranks, n_runs = list(range(2, 11)), 10
    seeds = np.random.RandomState(0).randint(np.iinfo(np.int32).max, size=len(ranks) * n_runs)
    tasks = [(r, k, int(seeds[i * n_runs + k])) for i, r in enumerate(ranks)
             for k in range(n_runs)]
    kwargs = dict(init="random", max_iter=args.sweep_iters, tol=1e-4)
    out = {"part": "sweep", "shape": [m, n], "fits": len(tasks), "max_iter": args.sweep_iters}

    def report(**items):
        out.update(items)
        print(json.dumps(items), file=sys.stderr, flush=True)

    fastnmf.nmf(X, 2, max_iter=2)  # compile / load
    t0 = time.perf_counter()
    local = [fastnmf.nmf(X, r, random_state=s, **kwargs) for r, _, s in tasks]
    report(local_loop_s=time.perf_counter() - t0,
           n_iter_total=int(sum(r.n_iter for r in local)))
    try:
        from fastnmf.many import fit_many

        t0 = time.perf_counter()
        many = fit_many(X, ranks, n_runs=n_runs, random_state=0, **kwargs)
        report(fit_many_local_s=time.perf_counter() - t0, fit_many_schedule=many.schedule)
    except ImportError:
        pass
    t0 = time.perf_counter()
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(lambda: fastnmf.nmf(X, 2, max_iter=2) and None)  # compile / load
        report(cluster_start_s=time.perf_counter() - t0)
        t0 = time.perf_counter()
        remote = map_fits(client, X, tasks, kwargs)
        report(map_fits_s=time.perf_counter() - t0)
    # map_fits runs each fit on one thread; a fit's iterates do not depend on
    # that except through accelerated HALS's per-group stopping, so compare
    # the final relative errors rather than the factors.
    diff = [abs(a.relative_error - b.relative_error) / b.relative_error
            for a, b in zip(remote, local, strict=True)]
    report(max_rel_diff_relative_error=float(max(diff)))
    return out


PARTS = {"write": write, "ooc": ooc, "inmem": inmem, "sweep": sweep}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=[*PARTS, "all"])
    p.add_argument("--dir", default="/tmp/fastnmf-ooc")
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--cols", type=int, default=100_000)
    p.add_argument("--nnz", type=float, default=1e8)
    p.add_argument("--blocks", type=int, default=20)
    p.add_argument("--rank", type=int, default=10)
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--scheduler", default="synchronous", choices=["synchronous", "threads"])
    p.add_argument("--sweep-shape", type=int, nargs=2, default=(2000, 1000))
    p.add_argument("--sweep-iters", type=int, default=100)
    args = p.parse_args(argv)
    if args.part == "all":
        for part in ("write", "ooc", "inmem", "sweep"):
            cmd = [sys.executable, __file__, part, *sys.argv[2:]]
            subprocess.run(cmd, check=True)
        return
    print(json.dumps(PARTS[args.part](args)), flush=True)


if __name__ == "__main__":
    main()
