"""Dense-vs-sparse backend crossover for dense ndarrays: ms per HALS iteration by density.

Run: python benchmarks/crossover.py  (about 2 minutes on 2 cores).  The result sets
``fastnmf._data.SPARSE_DENSITY_THRESHOLD``; docs/algorithms.md has the table.
"""

import time

import numpy as np

import fastnmf

M, N, RANK, ITERS = 5000, 2000, 20, 30


def main():
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        for density in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3):
            X = (rng.random((M, N)) * (rng.random((M, N)) < density)).astype(dtype)
            W0, H0 = fastnmf.initialize(X, RANK, "random", random_state=0)
            cells = []
            for backend in ("dense", "sparse"):
                kw = dict(W=W0, H=H0, tol=0, backend=backend)
                fastnmf.nmf(X, RANK, max_iter=3, **kw)  # compile / tune outside the timing
                t0 = time.perf_counter()
                res = fastnmf.nmf(X, RANK, max_iter=ITERS, **kw)
                fit_s = time.perf_counter() - t0
                per_it = 1000 * res.history["time"][-1] / ITERS
                cells.append(f"{backend} {per_it:.2f} ms/it (fit {fit_s:.2f} s)")
            print(f"{np.dtype(dtype).name} density {density:.3f}  " + "  ".join(cells),
                  flush=True)


if __name__ == "__main__":
    main()
