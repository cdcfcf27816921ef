"""Dask: what the row-state copy of each block task costs (docs/dask.md).

Not a test (nothing is asserted); it prints what docs/dask.md reports.  Each W
half-step task on Dask (``fastnmf.dask.data._rows_call``) copies its block's row
state that the solver's class updates in place (``_own_state``: the entries the
method writes, by the class's ``STATE_USE``).  This wraps both (Dask's synchronous
scheduler, one thread) and, per fit, sums the bytes copied, the time of the copies
and the time of the calls themselves.

    python benchmarks/dask_row_state_copy.py [--rows 200000 --cols 2000 --density 0.005]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--cols", type=int, default=2000)
    parser.add_argument("--density", type=float, default=0.005)
    parser.add_argument("--rank", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--iters", type=int, default=5)
    args = parser.parse_args(argv)

    import dask
    import dask.array as da

    import fastnmf
    from fastnmf.dask import data as dask_data

    rows_call, own_state = dask_data._rows_call, dask_data._own_state
    seen = {"bytes": 0, "copy": 0.0, "calls": 0.0}

    def measured_copy(state, use):
        t0 = time.perf_counter()
        out = own_state(state, use)
        seen["copy"] += time.perf_counter() - t0
        seen["bytes"] += sum(value.nbytes for key, value in out.items()
                             if value is not state[key])  # (the copies)
        return out

    def measured_call(*args):
        t0 = time.perf_counter()
        out = rows_call(*args)
        seen["calls"] += time.perf_counter() - t0
        return out

    dask_data._rows_call, dask_data._own_state = measured_call, measured_copy
    m, n, r, it = args.rows, args.cols, args.rank, args.iters
    X = sp.random(m, n, density=args.density, format="csr", random_state=0,
                  data_rvs=lambda k: np.random.default_rng(0).poisson(3.0, k) + 1.0)
    Xd = da.from_array(X, chunks=(-(-m // args.blocks), n), asarray=False)
    W_MiB = m * r * 8 / 2**20
    print(f"X: {m}×{n}, {X.nnz} nonzeros (float64), rank {r}, {args.blocks} row blocks, "
          f"{it} iterations; W is {W_MiB:.1f} MiB (measured under load)")
    for kw in (dict(solver="hals"), dict(beta_loss="kullback-leibler", solver="mu"),
               dict(beta_loss="kullback-leibler", solver="ccd"), dict(beta_loss=0.5)):
        seen.update(bytes=0, copy=0.0, calls=0.0)
        with dask.config.set(scheduler="sync"):
            fastnmf.nmf(Xd, r, init="random", random_state=0, max_iter=it, tol=0,
                        n_threads=1, **kw)
        per_it = seen["bytes"] / it / 2**20
        print(f"{kw}: copied {per_it:.1f} MiB per iteration ({per_it / W_MiB:.1f} × W); "
              f"copies {seen['copy']:.3f} s of the tasks' {seen['calls']:.3f} s "
              f"({100 * seen['copy'] / seen['calls']:.1f} %)")


if __name__ == "__main__":
    main()
