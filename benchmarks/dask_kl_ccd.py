"""KL on Dask: the bytes one iteration moves between workers, MU against CCD.

Not a test (nothing is asserted); it prints what docs/dask.md reports.  A
two-process ``LocalCluster`` (one thread each) fits a sparse matrix in row
blocks with ``solver="mu"`` and ``solver="ccd"``, ``max_iter`` 2 and 7, and takes
the workers' outgoing transfer counters (``Worker.transfer_outgoing_bytes_total``,
worker to worker only: the client's traffic is not in it) before and after:
the difference over the 5 extra iterations is the per-iteration traffic.  It
also prints the bytes one prepared column block of X holds (the copy CCD adds).

``--streamed``: X is written as ``.npz`` row blocks (fastnmf.dask.write_sparse_blocks)
and read from them, and each solver runs with ``persist=True`` and ``persist=False``
(out of core: X read from disk at every iteration, and for CCD rechunked by columns
at every iteration); the time per iteration is also the difference over the 5 extra
iterations.

    python benchmarks/dask_kl_ccd.py [--rows 40000 --cols 4000 --density 0.005 --rank 20]
                                     [--streamed]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp


def _outgoing(client):
    return sum(client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
               .values())


def _per_iteration(client, Xd, r, solver, persist):
    """Worker-to-worker bytes and seconds of one iteration (7 against 2 iterations)."""
    import fastnmf
    from fastnmf.dask import nmf_dask

    moved, seconds = {}, {}
    for iters in (2, 7):
        before = _outgoing(client)
        t0 = time.perf_counter()
        kw = dict(beta_loss="kullback-leibler", solver=solver, init="random",
                  random_state=0, max_iter=iters, tol=0)
        if persist:
            fastnmf.nmf(Xd, r, **kw)
        else:
            nmf_dask(Xd, r, persist=False, **kw)
        seconds[iters] = time.perf_counter() - t0
        moved[iters] = _outgoing(client) - before
    return (moved[7] - moved[2]) / 5, (seconds[7] - seconds[2]) / 5, seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40000)
    parser.add_argument("--cols", type=int, default=4000)
    parser.add_argument("--density", type=float, default=0.005)
    parser.add_argument("--rank", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--streamed", action="store_true")
    args = parser.parse_args(argv)

    import dask.array as da
    from dask.distributed import Client, LocalCluster

    from fastnmf.dask import fit as fit_module
    from fastnmf.dask import from_npz_blocks, write_sparse_blocks
    from fastnmf.dask.data import _prepare_block

    keep_rule = fit_module._keep_column_copy
    m, n, r = args.rows, args.cols, args.rank
    if args.streamed:  # (written block by block: sp.random draws from all m·n positions)
        folder = tempfile.mkdtemp(prefix="fastnmf-kl-ccd-")
        paths = write_sparse_blocks(folder, (m, n), round(args.density * m * n), args.blocks,
                                    dtype=np.float64)
        Xd = from_npz_blocks(paths, dtype=np.float64)
        X = sp.vstack([sp.load_npz(path) for path in paths]).tocsr()
        print(f"streamed from {folder} ({args.blocks} .npz row blocks)")
    else:
        X = sp.random(m, n, density=args.density, format="csr", random_state=0,
                      data_rvs=lambda k: np.random.default_rng(0).poisson(3.0, k) + 1.0)
        Xd = da.from_array(X, chunks=(-(-m // args.blocks), n), asarray=False)
    width = -(-n // args.blocks)
    column = _prepare_block(X[:, :width], np.float64, "auto", transpose=True)
    print(f"X: {m}×{n}, {X.nnz} nonzeros (float64), rank {r}, {args.blocks} row blocks; "
          f"W is {m * r * 8} bytes, H {n * r * 8}")
    print(f"column block 0 ({m}×{width}) prepared: {sys.getsizeof(column)} bytes; "
          f"CSR of all of X: {X.data.nbytes + X.indices.nbytes + X.indptr.nbytes} bytes")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=50) as cluster, \
            Client(cluster) as client:
        _per_iteration(client, Xd, r, "ccd", True)  # (a first fit: the workers' compiles)
        runs = [(solver, persist, keep) for persist in (True, False) for solver in ("mu", "ccd")
                for keep in ((True, False) if solver == "ccd" and not persist else (True,))]
        for solver, persist, keep in runs if args.streamed else runs[:2]:
            # persist=False, CCD: X's column copy kept where it fits (the rule), or not
            fit_module._keep_column_copy = keep_rule if keep else lambda *a: False
            per_it, s_per_it, seconds = _per_iteration(client, Xd, r, solver, persist)
            copy = "" if persist or solver == "mu" else (
                ", column copy kept" if keep else ", column copy made at every iteration")
            print(f"{solver}, persist={persist}{copy}: worker-to-worker bytes per iteration "
                  f"{per_it:.3g} ({per_it / (m * r * 8):.2f} × W), {s_per_it:.2f} s per "
                  f"iteration; fit of 7 iterations {seconds[7]:.2f} s, of 2 "
                  f"{seconds[2]:.2f} s (measured under load)")


if __name__ == "__main__":
    main()
