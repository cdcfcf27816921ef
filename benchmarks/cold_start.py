"""Cold start: the first fit on a fresh machine, for the three common kinds of fit.

    python benchmarks/cold_start.py [--repeat 2] [--no-warmup] [--per-kernel]

For each of Frobenius-dense, Frobenius-sparse and KL-sparse (200×100, rank 5,
default options, float64: :func:`fastnmf.warmup.example`), in a fresh
process with an empty Numba cache (a new ``NUMBA_CACHE_DIR``): the seconds of
``import fastnmf``, of the first fit (wall, and CPU of the thread that compiles:
compilation runs on one core, so CPU seconds move less when the machine is
shared) and how many fastnmf kernels it compiled (``--per-kernel``: the CPU
seconds of each function compiled, its own share); then the same in another
fresh process on the cache the first one left ("warm": what every later
session on the machine pays).  With the warm-up (default): ``python -m
fastnmf.warmup`` on an empty cache, the one command that compiles all three
kinds ahead of time.

Run it on a quiet machine for figures to quote (docs/performance.md, README).
Not a pytest benchmark: each figure needs a process of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# run in a fresh interpreter: import time, the first fit, its compiled kernels, the second
_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import fastnmf
import_s = time.perf_counter() - t0
from fastnmf.warmup import FITS, compiled_kernels, example

fit = sys.argv[1]
X = example(fit)
times, cpu = [], {}
with compiled_kernels(cpu) as compiled:
    for _ in range(2):
        w, c = time.perf_counter(), time.thread_time()
        fastnmf.nmf(X, 5, beta_loss=FITS[fit][0], random_state=0)
        times.append((time.perf_counter() - w, time.thread_time() - c))
json.dump(dict(import_s=import_s, first_s=times[0][0], first_cpu_s=times[0][1],
               second_s=times[1][0], kernels=len(compiled), cpu=cpu), sys.stdout)
"""


def _env(cache: str) -> dict:
    return dict(os.environ, NUMBA_CACHE_DIR=cache, FASTNMF_NO_CACHE="0",
                PYTHONPATH=os.pathsep.join([ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]))


def _child(fit: str, cache: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", _CHILD, fit], env=_env(cache),
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)


def main(argv=None) -> int:
    sys.path.insert(0, ROOT)  # the fastnmf of this tree, as in the children
    from fastnmf.warmup import FITS

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=1, help="cold runs per fit (best kept)")
    p.add_argument("--no-warmup", action="store_true", help="skip timing the warm-up")
    p.add_argument("--per-kernel", action="store_true",
                   help="also list each compiled function's CPU seconds (its own share)")
    args = p.parse_args(argv)
    print(f"{'fit':>17} | {'import':>6} | {'cold first fit':>22} | {'kernels':>7} | "
          f"{'warm first fit':>14} | {'second fit':>10}")
    print(f"{'':>17} | {'s':>6} | {'wall s':>10}   {'CPU s':>9} | {'compiled':>7} | "
          f"{'wall s':>14} | {'wall s':>10}")
    for fit in FITS:
        runs = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="fastnmf-cold-") as cache:
                cold = _child(fit, cache)
                warm = _child(fit, cache)  # a later session: the kernels load from the cache
            runs.append((cold, warm))
        cold, warm = min(runs, key=lambda r: r[0]["first_s"])
        print(f"{fit:>17} | {cold['import_s']:6.2f} | {cold['first_s']:10.2f}   "
              f"{cold['first_cpu_s']:9.2f} | {cold['kernels']:7d} | {warm['first_s']:14.2f} | "
              f"{warm['second_s']:10.3f}", flush=True)
        if args.per_kernel:
            top = sorted(cold["cpu"].items(), key=lambda kv: -kv[1])
            print("    " + ", ".join(f"{name} {s:.2f}" for name, s in top if s >= 0.02))
    if not args.no_warmup:
        with tempfile.TemporaryDirectory(prefix="fastnmf-cold-") as cache:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fastnmf.warmup", "--quiet"],
                           env=_env(cache), check=True)
            print(f"python -m fastnmf.warmup (all three, empty cache): "
                  f"{time.perf_counter() - t0:.1f} s wall")
    print(f"({os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at the end)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
