"""KL on Dask: the bytes one iteration moves between workers, MU against CCD.

Not a test (nothing is asserted); it prints what docs/dask.md reports.  A
two-process ``LocalCluster`` (one thread each) fits a sparse matrix in row
blocks with ``solver="mu"`` and ``solver="ccd"``, ``max_iter`` 2 and 7, and takes
the workers' outgoing transfer counters (``Worker.transfer_outgoing_bytes_total``,
worker to worker only: the client's traffic is not in it) before and after:
the difference over the 5 extra iterations is the per-iteration traffic.  It
also prints the bytes one prepared column block of X holds (the copy CCD adds).

    python benchmarks/dask_kl_ccd.py [--rows 40000 --cols 4000 --density 0.005 --rank 20]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import scipy.sparse as sp


def _outgoing(client):
    return sum(client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total)
               .values())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40000)
    parser.add_argument("--cols", type=int, default=4000)
    parser.add_argument("--density", type=float, default=0.005)
    parser.add_argument("--rank", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=4)
    args = parser.parse_args(argv)

    import dask.array as da
    from dask.distributed import Client, LocalCluster

    import fastnmf
    from fastnmf.dask.data import _prepare_block

    m, n, r = args.rows, args.cols, args.rank
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
        for solver in ("mu", "ccd"):
            moved, seconds = {}, {}
            for iters in (2, 7):
                before = _outgoing(client)
                t0 = time.perf_counter()
                fastnmf.nmf(Xd, r, beta_loss="kullback-leibler", solver=solver,
                            init="random", random_state=0, max_iter=iters, tol=0)
                seconds[iters] = time.perf_counter() - t0
                moved[iters] = _outgoing(client) - before
            per_it = (moved[7] - moved[2]) / 5
            print(f"{solver}: worker-to-worker bytes per iteration {per_it:.3g} "
                  f"({per_it / (m * r * 8):.2f} × W); fit of 7 iterations {seconds[7]:.2f} s, "
                  f"of 2 {seconds[2]:.2f} s (measured under load)")


if __name__ == "__main__":
    main()
