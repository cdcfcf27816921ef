"""Out-of-the-box fits: each package's defaults (tol=1e-4, max_iter=200, NNDSVDA), same data.

What a user gets from ``NMF(n_components=r).fit(X)`` without tuning: wall time of the
whole fit (initialization included), iterations, and the relative error
‖X − WH‖_F / ‖X‖_F it stopped at.  fastnmf runs twice: its default (accelerated HALS)
and ``accelerate=False`` (one sweep per product: scikit-learn cd's iterates, so it
stops where scikit-learn stops).  Every fit is repeated and the fastest kept.

Run: ``python benchmarks/defaults.py [--workloads D1,S1] [--dtypes float64,float32]``
(about 5 minutes on 2 cores for D1 and S1).  Results: docs/performance.md.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import fastnmf
from fastnmf.bench import workloads


def _fit(make_model, X, repeats):
    best = None
    for _ in range(repeats):
        model = make_model()
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn's ConvergenceWarning
            W = model.fit_transform(X)
        elapsed = time.perf_counter() - t0
        if best is None or elapsed < best[0]:
            best = (elapsed, model, W)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workloads", default="D1,S1")
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    from sklearn.decomposition import NMF as SkNMF

    print("| workload | dtype | method | fit time (s) | iterations | relative error |")
    print("|---|---|---|---|---|---|")
    for name in args.workloads.split(","):
        for dtype in args.dtypes.split(","):
            X, rank = workloads.make(name, np.dtype(dtype), quick=False)
            values = X if isinstance(X, np.ndarray) else X.data
            norm = np.sqrt(np.sum(np.square(values, dtype=np.float64)))
            fastnmf.nmf(X[:64], rank, max_iter=3)  # load the compiled kernels first
            methods = {
                "fastnmf NMF() (accelerated HALS)": (fastnmf.NMF, {}),
                "fastnmf NMF(accelerate=False)": (fastnmf.NMF, {"accelerate": False}),
                "scikit-learn NMF()": (SkNMF, {}),
            }
            for label, (cls, kw) in methods.items():
                elapsed, model, _ = _fit(
                    lambda cls=cls, kw=kw, rank=rank: cls(rank, random_state=0, **kw),
                    X, args.repeats)
                rel = model.reconstruction_err_ / norm
                print(f"| {name} | {dtype} | {label} | {elapsed:.2f} | {model.n_iter_} | "
                      f"{rel:.5f} |", flush=True)


if __name__ == "__main__":
    main()
