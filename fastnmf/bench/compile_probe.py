"""Run as a script in a fresh interpreter: ``import fastnmf`` time and kernel compile time.

Run by path (not ``-m``) so that nothing of fastnmf is imported before the
timer starts.  ``NUMBA_CACHE_DIR`` (set by the caller) decides whether the
compiled kernels are found on disk (cached) or built (cold).  Prints one JSON
object.
"""

import json
import sys
import time

t0 = time.perf_counter()
import fastnmf  # noqa: E402

import_s = time.perf_counter() - t0

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

rng = np.random.default_rng(0)
first = {}
for dtype in ("float64", "float32"):
    Xd = rng.random((40, 30)).astype(dtype)
    Xs = sp.random(40, 30, density=0.2, random_state=0, format="csr", dtype=dtype)
    for data, X in (("dense", Xd), ("sparse", Xs)):
        for solver in ("hals", "mu"):
            times = []
            for _ in range(2):  # the first call compiles (or loads), the second does not
                t = time.perf_counter()
                fastnmf.nmf(X, 3, solver=solver, max_iter=5, random_state=0)
                times.append(time.perf_counter() - t)
            first[f"{data}-{solver}-{dtype}"] = times[0] - times[1]
json.dump({"import_s": import_s, "first_call_s": sum(first.values()), "by_case": first},
          sys.stdout)
