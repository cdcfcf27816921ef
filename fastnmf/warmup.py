"""Compile the kernels of the common fits before the first one: ``python -m fastnmf.warmup``.

The first fit on a machine compiles its kernels and caches them on disk
(``_jit.CACHE``); every later process loads them.  This runs that first fit
for you, once, e.g. right after installing: a tiny fit of each kind with
the default options, so exactly the kernels a default fit of that kind
compiles, no list to keep up to date.  Kernels no default fit needs (other β,
masks, int64 indices beyond 2³¹ nonzeros) still compile on first use.

``--jobs N`` runs the kinds in N processes at once: compilation runs on one
core, so on a machine with idle cores that is faster than one after another.
A warm-up running in the background while the first fit starts does not help
that fit: both would compile the same kernels (measured: docs/performance.md).

Examples
--------
``python -m fastnmf.warmup`` (float64, every kind), ``python -m
fastnmf.warmup --dtypes float32,float64 --jobs 2``; from Python,
``fastnmf.warmup.warmup()``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

# the fits whose kernels are compiled: name -> (loss, dense or sparse data)
FITS = {
    "frobenius-dense": ("frobenius", "dense"),
    "frobenius-sparse": ("frobenius", "sparse"),
    "kl-sparse": ("kullback-leibler", "sparse"),
    # MiniBatchNMF, both solvers (its default "mu" and online "hals"), Frobenius
    "minibatch-sparse": ("frobenius", "sparse"),
}
DTYPES = ("float32", "float64")


def example(fit: str, dtype="float64"):
    """The small matrix the warm-up (and ``benchmarks/cold_start.py``) fits for ``fit``:
    200×100, random (dense) or 10 % nonzero counts (sparse), seeded."""
    kind = FITS[fit][1]
    rng = np.random.default_rng(0)
    if kind == "dense":
        return rng.random((200, 100)).astype(dtype)
    X = sp.random(200, 100, density=0.1, format="csr", random_state=0, dtype=np.float64)
    X.data = np.ceil(5 * X.data)  # counts, as KL expects (any values would do for Frobenius)
    return X.astype(dtype)


def warm_one(fit: str, dtype="float64") -> float:
    """Compile (or load) the kernels of a default ``fit`` in ``dtype``, in this process;
    returns the seconds it took."""
    from sklearn.exceptions import ConvergenceWarning

    import fastnmf
    from fastnmf._data import SparseData

    loss, kind = FITS[fit]
    X = example(fit, dtype)
    t0 = time.perf_counter()
    if fit.startswith("minibatch"):
        with warnings.catch_warnings():  # (two passes do not converge: not the point)
            warnings.simplefilter("ignore", ConvergenceWarning)
            for solver in ("mu", "hals"):
                fastnmf.MiniBatchNMF(5, solver=solver, batch_size=64, max_iter=2,
                                     random_state=0).fit(X)
        return time.perf_counter() - t0
    res = fastnmf.nmf(X, 5, beta_loss=loss, random_state=0)
    if kind == "sparse" and loss == "frobenius":
        # large sparse fits (by _data.scatter_pays) make Xᵀ W by scatter, not gather
        Ht = np.ascontiguousarray(res.H.T)
        SparseData(X).product(Ht, 0, np.empty_like(res.W), method="scatter")
    return time.perf_counter() - t0


@contextmanager
def compiled_kernels(cpu: dict | None = None):
    """Collect the names of the fastnmf kernels Numba compiles inside the block (a
    kernel loaded from the on-disk cache is not compiled, so not listed).

    ``cpu``, if given, gets the CPU seconds of the compiling thread spent on each
    function compiled (``"module.name"`` → seconds, its own share: a kernel's time
    excludes the helpers and NumPy implementations compiled inside it, which get
    entries of their own).  CPU time, not wall time: it moves much less when other
    jobs share the machine.

    Examples
    --------
    >>> with compiled_kernels() as names:            # doctest: +SKIP
    ...     fastnmf.nmf(X, 5)
    >>> names                                       # doctest: +SKIP
    ['_inner_f64', '_panels', ...]
    """
    from numba.core import event

    names: list[str] = []
    stack: list[list] = []  # per compilation in progress: [start, seconds of nested ones]

    class Listener(event.Listener):
        def on_start(self, ev):
            stack.append([time.thread_time(), 0.0])

        def on_end(self, ev):
            start, nested = stack.pop()
            spent = time.thread_time() - start
            if stack:
                stack[-1][1] += spent
            fn = ev.data["dispatcher"].py_func
            if fn.__module__.startswith("fastnmf"):
                names.append(fn.__name__)
            if cpu is not None:
                key = f"{fn.__module__.rpartition('.')[2]}.{fn.__name__}"
                cpu[key] = cpu.get(key, 0.0) + spent - nested

    with event.install_listener("numba:compile", Listener()):
        yield names


def _check(names, allowed, what) -> list[str]:
    names = [n.strip() for n in names if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ValueError(f"unknown {what} {bad or names!r}: choose from {', '.join(allowed)}")
    return names


def warmup(fits=tuple(FITS), dtypes=("float64",), jobs: int = 1, quiet: bool = True) -> dict:
    """Compile the kernels of default fits into Numba's on-disk cache.

    Parameters
    ----------
    fits : sequence of str, default: all of :data:`FITS`
        ``"frobenius-dense"``, ``"frobenius-sparse"``, ``"kl-sparse"``,
        ``"minibatch-sparse"`` (:class:`fastnmf.MiniBatchNMF`, both solvers).
    dtypes : sequence of str, default=("float64",)
        ``"float64"`` and/or ``"float32"``.
    jobs : int, default=1
        Processes at once (1: one after another, in this process).
    quiet : bool, default=True
        False prints a line per fit.

    Returns
    -------
    dict
        ``"fit/dtype"`` → seconds it took (compiling, or loading from the cache).

    Examples
    --------
    >>> from fastnmf.warmup import warmup
    >>> sorted(warmup(fits=["kl-sparse"]))          # doctest: +SKIP
    ['kl-sparse/float64']
    """
    from ._jit import CACHE

    fits = _check(list(fits), FITS, "fit")
    dtypes = _check(list(dtypes), DTYPES, "dtype")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    if not CACHE:
        raise RuntimeError("FASTNMF_NO_CACHE is set: compiled kernels are not cached, so a "
                           "warm-up would be lost when this process ends")
    todo = [(f, d) for d in dtypes for f in fits]

    def one(job):
        fit, dtype = job
        if jobs == 1:
            seconds = warm_one(fit, dtype)
        else:  # a process of its own: Numba compiles on one core, holding the GIL
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fastnmf.warmup", "--fits", fit,
                            "--dtypes", dtype, "--quiet"], check=True)
            seconds = time.perf_counter() - t0
        if not quiet:
            print(f"{fit:>17} {dtype}: {seconds:6.2f} s", flush=True)
        return f"{fit}/{dtype}", seconds

    # frobenius-sparse needs the dense fit's HALS kernels and the KL fit's sparse
    # product, and MiniBatchNMF the sparse Frobenius fit's: after those each compiles
    # little, where beside them it would compile the same kernels again
    order = ("frobenius-sparse", "minibatch-sparse")
    stages = [[job for job in todo if job[0] not in order],
              *([job for job in todo if job[0] == name] for name in order)]
    out = {}
    with ThreadPoolExecutor(jobs) as pool:
        for stage in stages:
            out.update(pool.map(one, stage))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m fastnmf.warmup",
        description="Compile the kernels of default fits into the on-disk cache, so that "
                    "the first fit on this machine does not wait for them.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--fits", default=",".join(FITS),
                   help=f"comma-separated, from: {', '.join(FITS)}")
    p.add_argument("--dtypes", default="float64", help="comma-separated: float64, float32")
    p.add_argument("--jobs", type=int, default=1,
                   help="processes at once (compilation uses one core each)")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        warmup(args.fits.split(","), args.dtypes.split(","), args.jobs, quiet=args.quiet)
    except (ValueError, RuntimeError) as e:
        p.error(str(e))
    if not args.quiet:
        where = os.environ.get("NUMBA_CACHE_DIR") or "__pycache__ beside fastnmf's kernels"
        print(f"warm-up done in {time.perf_counter() - t0:.1f} s (Numba's cache: {where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
