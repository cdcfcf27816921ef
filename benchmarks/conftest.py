"""pytest-benchmark microbenchmarks (not tests: run with ``python -m pytest benchmarks/``).

Sizes: ``FASTNMF_BENCH_SIZE=small`` (default, seconds), ``medium`` or ``full``
(the sizes of ``fastnmf bench``'s D1 and S1).  Every benchmark makes one
warm-up call before timing, so JIT compilation is never measured, and sets
``benchmark.group`` to workload/solver/rank/dtype so that fastnmf and its peers
appear side by side.  Compare runs with ``--benchmark-autosave`` and
``pytest-benchmark compare``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import fastnmf
from fastnmf import datasets

SIZES = {
    "small": {"dense": (1000, 400, 10), "sparse": (5000, 2000, 100_000, 10)},
    "medium": {"dense": (5000, 2000, 20), "sparse": (50_000, 10_000, 2_000_000, 20)},
    "full": {"dense": (5000, 2000, 20), "sparse": (100_000, 20_000, 10_000_000, 32)},
}
SIZE = os.environ.get("FASTNMF_BENCH_SIZE", "small")
if SIZE not in SIZES:
    raise pytest.UsageError(f"FASTNMF_BENCH_SIZE must be one of {list(SIZES)}, got {SIZE!r}")

DTYPES = ("float64", "float32")


_cache: dict = {}


def workload(kind: str, dtype: str):
    """(X, W0, H0, rank) for ``kind`` in {"dense", "sparse"}, made once per session."""
    key = (kind, dtype)
    if key not in _cache:
        if kind == "dense":
            m, n, r = SIZES[SIZE]["dense"]
            X, _, _ = datasets.make_low_rank(m, n, r, random_state=0, dtype=np.dtype(dtype))
        else:
            m, n, nnz, r = SIZES[SIZE]["sparse"]
            X = datasets.make_sparse_counts(m, n, nnz, r, random_state=0,
                                            dtype=np.dtype(dtype))
        W0, H0 = fastnmf.initialize(X, r, "nndsvda", random_state=0)
        _cache[key] = (X, W0, H0, r)
    return _cache[key]


def run_warm(benchmark, fn, *, group: str, rounds: int = 5):
    """One untimed warm-up call, then ``rounds`` timed calls in group ``group``."""
    benchmark.group = group
    fn()
    return benchmark.pedantic(fn, rounds=rounds, iterations=1)
