"""``fastnmf bench``: plan the configurations, run each in a subprocess, write the report."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from tqdm.auto import tqdm

from . import metrics, peers, report, workloads
from .worker import REFERENCE_ITERS, run_group

COMPILE_PROBE = os.path.join(os.path.dirname(__file__), "compile_probe.py")

# The report goes here unless --out says otherwise: never into docs/ by default (a
# --quick run from the repository root would overwrite the committed benchmark page).
DEFAULT_OUT = "fastnmf-bench"
# The reference's 200 iterations stop at this many seconds (WordNet at rank 100 would
# take longer with scikit-learn cd): the target is its loss where it stopped.
REFERENCE_MAX_S = 300.0


def add_bench_parser(subparsers) -> None:
    """Add ``fastnmf bench`` to the console command."""
    p = subparsers.add_parser(
        "bench", help="benchmark fastnmf against scikit-learn, a NumPy/SciPy baseline and "
        "the hardware floor; writes JSON, a markdown report and plots",
        description="Run the benchmark suite. Every configuration runs in its own "
        "subprocess; see docs/benchmarks.md for what is measured.")
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes, a few seconds per workload: checks that the suite works")
    p.add_argument("--workloads", default=None,
                   help="comma-separated names among " + ",".join(workloads.WORKLOADS)
                   + "; 'default' is " + ",".join(workloads.DEFAULT) + ", 'real' is "
                   + ",".join(workloads.REAL) + " (WordNet and Fashion-MNIST, fetched once "
                   "with apt-get and cached; hours in all). Default: 'default', or none "
                   "with --data")
    p.add_argument("--data", metavar="FILE", default=None,
                   help="benchmark your own matrix: .npy, .npz (scipy sparse or NumPy) or "
                   ".mtx; needs --rank")
    p.add_argument("--rank", type=int, default=None, help="the rank for --data")
    p.add_argument("--loss", choices=("frobenius", "kullback-leibler", "kl"),
                   default="frobenius", help="the loss for --data (default: %(default)s)")
    p.add_argument("--full-s2", action="store_true",
                   help="add S2 (10⁶×10⁵, 10⁸ nonzeros: needs ~10 GB of memory and hours)")
    p.add_argument("--start", choices=workloads.STARTS, default="nndsvda",
                   help="the start every method shares: NNDSVDA, or scikit-learn's "
                   "init='random' (both seeded; default: %(default)s)")
    p.add_argument("--methods", default=",".join(peers.METHODS),
                   help="comma-separated (default: all)")
    p.add_argument("--threads", default=None,
                   help="thread counts for the scaling runs, e.g. 1,2 (default: 1..cores); "
                   "the comparison runs at the largest")
    p.add_argument("--dtypes", default="float64,float32")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help="write DIR/benchmarks.md, DIR/results.json and DIR/img/*.png "
                   "(default: %(default)s, in the current folder). A folder named docs "
                   "keeps the documentation site's layout: docs/benchmarks.md, plots and "
                   "JSON in docs/img/bench/ (only an explicit --out docs writes there)")
    p.add_argument("--readme", default=None, metavar="FILE",
                   help="also copy the headline tables into FILE (e.g. README.md), between "
                   "its <!-- headline:start/end --> and <!-- headline-kl:start/end --> markers")
    p.add_argument("--time-factor", type=float, default=1.0,
                   help="a method stops after this multiple of the reference's (scikit-learn "
                   "cd, or MU-KL for KL workloads) time to the target (default: %(default)s)")
    p.add_argument("--max-iter", type=int, default=1000,
                   help="most iterations of any method (default: %(default)s)")
    p.add_argument("--reference-max-time", type=float, default=REFERENCE_MAX_S,
                   metavar="SECONDS",
                   help="the reference (scikit-learn cd or MU-KL) runs 200 iterations or this "
                   "long, whichever comes first; the target is then its loss where it "
                   "stopped, and the report says so (default: %(default)s)")
    p.add_argument("--scaling-iters", type=int, default=10,
                   help="iterations per thread-scaling run (default: %(default)s)")
    p.add_argument("--isolate", action=argparse_bool(), default=None,
                   help="one subprocess per configuration (default: on, off with --quick)")
    p.add_argument("--unset-openblas-env", action="store_true",
                   help="remove OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE from the benchmark "
                   "subprocesses' environment")
    p.add_argument("--no-compile", action="store_true", help="skip the compile-time probes")
    p.set_defaults(func=bench_command)


def argparse_bool():
    import argparse

    return argparse.BooleanOptionalAction


def _paths(out: str) -> tuple[str, str, str]:
    """The report, the plots' folder and the JSON under ``out``; a folder named ``docs``
    keeps the site's layout (``docs/benchmarks.md``, ``docs/img/bench/``)."""
    if os.path.basename(os.path.normpath(out)) == "docs":
        img = os.path.join(out, "img", "bench")
        return os.path.join(out, "benchmarks.md"), img, os.path.join(img, "results.json")
    return (os.path.join(out, "benchmarks.md"), os.path.join(out, "img"),
            os.path.join(out, "results.json"))


def _env(unset_openblas: bool) -> dict:
    env = dict(os.environ)
    if unset_openblas:
        for k in metrics.OPENBLAS_VARS:
            env.pop(k, None)
    return env


class Runner:
    """Runs task lists in fresh interpreters and returns their results."""

    def __init__(self, env: dict, scratch: str):
        self.env = env
        self.scratch = scratch
        self.count = 0

    def __call__(self, tasks: list[dict]) -> list[dict]:
        self.count += 1
        src = os.path.join(self.scratch, f"tasks{self.count}.json")
        dst = os.path.join(self.scratch, f"results{self.count}.json")
        with open(src, "w") as f:
            json.dump(tasks, f)
        proc = subprocess.run([sys.executable, "-m", "fastnmf.bench.worker", src, dst],
                              env=self.env, capture_output=True, text=True)
        if proc.returncode != 0 or not os.path.exists(dst):
            err = (proc.stderr or "").strip().splitlines()[-3:]
            return [{**t, "error": f"worker exited {proc.returncode}: {' | '.join(err)}"}
                    for t in tasks]
        with open(dst) as f:
            return json.load(f)


def compile_times(env: dict) -> dict:
    """``import fastnmf`` and first-call compile time, cold and cached, in fresh processes."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="fastnmf-numba-cache-") as cache:
        env = {**env, "NUMBA_CACHE_DIR": cache}
        env.pop("FASTNMF_NO_CACHE", None)
        for label in ("cold", "cached"):
            proc = subprocess.run([sys.executable, COMPILE_PROBE], env=env, capture_output=True,
                                  text=True)
            try:
                out[label] = json.loads(proc.stdout)
            except json.JSONDecodeError:
                out[label] = {"error": (proc.stderr or "no output").strip()[-300:]}
    return out


def plan(args, name: str, dtype: str, folder: str, threads: list[int], scaling: bool,
         methods: list[str], spec: dict | None = None) -> list[dict]:
    """The tasks of one workload and dtype, in the order they must run (``spec``: a
    file workload, see :func:`.workloads.get`)."""
    base = dict(workload=name, dtype=dtype, quick=args.quick, folder=folder,
                start=getattr(args, "start", "nndsvda"))
    if spec:
        base["spec"] = spec
    loss = workloads.get(name, spec).loss
    reference = peers.REFERENCES[loss]
    top = max(threads)
    tasks = [dict(base, role="prepare")]
    cap = getattr(args, "reference_max_time", None)
    tasks.append(dict(base, role="reference", method=reference, threads=top,
                      max_iter=REFERENCE_ITERS, **({"max_time": cap} if cap else {})))
    for m in methods:
        if m == reference or peers.LOSS[m] != loss:  # KL peers on KL workloads only
            continue
        max_iter = min(args.max_iter, 300) if args.quick else args.max_iter
        tasks.append(dict(base, role="method", method=m, threads=top, max_iter=max_iter,
                          time_factor=args.time_factor, min_time=0.1 if args.quick else 1.0,
                          floor=m.startswith("fastnmf")))
    if scaling:
        for t in threads:
            if t == top:
                continue
            for m in peers.SCALING[loss]:
                if m in methods or m == reference:
                    tasks.append(dict(base, role="scaling", method=m, threads=t,
                                      max_iter=args.scaling_iters,
                                      floor=m == peers.SCALING[loss][0]))
    return tasks


def bench_command(args) -> int:
    t_start = time.perf_counter()
    chosen = args.workloads if args.workloads is not None else (
        "" if args.data else "default")
    names = workloads.expand(w.strip().upper() for w in chosen.split(",") if w.strip())
    if args.full_s2 and "S2" not in names:
        names.append("S2")
    unknown = [n for n in names if n not in workloads.WORKLOADS]
    if unknown:
        raise SystemExit(f"fastnmf bench: unknown workload(s) {unknown}; "
                         f"choose among {list(workloads.WORKLOADS)}, default or real")
    specs: dict = {}
    if args.data:
        if args.rank is None or args.rank < 1:
            raise SystemExit("fastnmf bench: --data needs --rank R (a positive integer)")
        if not os.path.isfile(args.data):
            raise SystemExit(f"fastnmf bench: --data {args.data!r}: no such file")
        if not args.data.lower().endswith((".npy", ".npz", ".mtx", ".mtx.gz")):
            raise SystemExit(f"fastnmf bench: --data {args.data!r}: use .npy, .npz or .mtx")
        loss = workloads.KL if args.loss in ("kl", workloads.KL) else workloads.FROBENIUS
        w = workloads.from_file(args.data, args.rank, loss)
        specs[w.name] = dataclasses.asdict(w)
        names.append(w.name)
    elif args.rank is not None:
        raise SystemExit("fastnmf bench: --rank is for --data (the workloads have theirs)")
    if not names:
        raise SystemExit("fastnmf bench: no workload to run")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in peers.METHODS]
    if bad:
        raise SystemExit(f"fastnmf bench: unknown method(s) {bad}; choose among "
                         f"{list(peers.METHODS)}")
    # peers outside Python (RcppML through Rscript) run where installed, else a note
    skipped_methods = {m: why for m in methods if m in peers.MISSING
                       for why in [peers.MISSING[m]()] if why}
    methods = [m for m in methods if m not in skipped_methods]
    dtypes = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if any(d not in ("float64", "float32") for d in dtypes):
        raise SystemExit("fastnmf bench: --dtypes takes float64 and/or float32")
    cores = os.cpu_count() or 1
    threads = ([int(t) for t in args.threads.split(",")] if args.threads
               else list(range(1, cores + 1)))
    isolate = (not args.quick) if args.isolate is None else args.isolate
    md_path, img_dir, json_path = _paths(args.out)
    env = _env(args.unset_openblas_env)

    results = {
        "machine": metrics.machine_info(),
        "settings": dict(quick=args.quick, workloads=names, dtypes=dtypes, threads=threads,
                         methods=methods, start=args.start, time_factor=args.time_factor,
                         max_iter=args.max_iter, reference_iters=REFERENCE_ITERS,
                         reference_max_time=args.reference_max_time, data=args.data,
                         target_rtol=metrics.TARGET_RTOL, isolate=isolate,
                         unset_openblas_env=args.unset_openblas_env,
                         openblas_env_seen=metrics.machine_info()["openblas_env"],
                         openblas_env_used={k: env.get(k) for k in metrics.OPENBLAS_VARS},
                         command=" ".join(["fastnmf", "bench", *sys.argv[2:]])
                         if sys.argv[1:2] == ["bench"] else "fastnmf bench"),
        "skipped": {},
        "skipped_methods": skipped_methods,
        "runs": [],
    }
    groups = []
    for name in names:
        reason = workloads.missing_reason(workloads.get(name, specs.get(name)), args.quick)
        if reason:
            results["skipped"][name] = reason
            continue
        for i, dtype in enumerate(dtypes):
            groups.append((name, dtype, i == 0))

    scratch = tempfile.mkdtemp(prefix="fastnmf-bench-")
    runner = Runner(env, scratch)
    try:
        n_steps = (0 if args.no_compile else 1) + len(groups)
        with tqdm(total=n_steps, desc="fastnmf bench", unit="step") as bar:
            if not args.no_compile:
                bar.set_postfix_str("compile times")
                t0 = time.perf_counter()
                results["compile"] = compile_times(env)
                results["compile"]["wall_s"] = time.perf_counter() - t0
                bar.update(1)
            for name, dtype, scaling in groups:
                folder = os.path.join(scratch, f"{name}-{dtype}")
                tasks = plan(args, name, dtype, folder, threads, scaling, methods,
                             specs.get(name))
                bar.set_postfix_str(f"{name} {dtype}")
                if isolate:
                    def one(task, name=name, dtype=dtype):
                        bar.set_postfix_str(f"{name} {dtype} {task.get('method', 'data')}"
                                            f" ×{task.get('threads', '')}")
                        return runner([task])[0]
                    out = run_group(tasks, one)
                else:
                    out = runner(tasks)
                results["runs"].extend(out)
                shutil.rmtree(folder, ignore_errors=True)
                bar.update(1)
        # the machine as the benchmark processes saw it (BLAS kernel, threading layer)
        seen = next((r["info"] for r in results["runs"] if "info" in r), None)
        if seen:
            results["machine"]["blas_in_runs"] = seen["blas"]
            results["machine"]["numba_threading_layer"] = seen["numba_threading_layer"]
        for r in results["runs"]:  # the same in every run: recorded once, above
            r.pop("info", None)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["total_s"] = time.perf_counter() - t_start

    os.makedirs(os.path.dirname(json_path) or ".", exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(results, f, separators=(",", ":"))
    report.write(results, md_path, img_dir, json_path)
    if args.readme:
        report.copy_headlines(md_path, args.readme)
    errors = [r for r in results["runs"] if "error" in r]
    print(f"fastnmf bench: {len(results['runs'])} configurations in "
          f"{results['total_s']:.0f} s ({len(errors)} failed); wrote {md_path}, {json_path} "
          f"and plots in {img_dir}")
    for r in errors:
        print(f"  failed: {r.get('workload')} {r.get('dtype')} {r.get('method', r['role'])}: "
              f"{r['error']}", file=sys.stderr)
    return 1 if errors else 0
