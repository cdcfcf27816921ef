"""fastnmf.MiniBatchNMF against scikit-learn's MiniBatchNMF: time to the same loss, and
memory while streaming (issue 18 item 4).

Run:  python benchmarks/minibatch_vs_sklearn.py [--out DIR]     (about 10 minutes)
      python benchmarks/minibatch_vs_sklearn.py --quick         (under a minute)

Workloads: a large sparse one, the WordNet 3.0 gloss counts (147306 × 86567,
2.7·10⁶ nonzeros), and a large dense one, the Fashion-MNIST training images
(60000 × 784), both from :mod:`fastnmf.datasets` (fetched once and cached in
``~/.cache/fastnmf``); where one cannot be had, a generated matrix of the same
kind stands in and the report says so.  ``--quick`` takes evenly spaced rows
(2000 of WordNet, 1000 images) and rank 5: a check that the script works.

**Time to the same loss.**  Both packages get the same parameters (rank,
``batch_size``, ``forget_factor``, ...) and the same start (``init="custom"``
with one seeded ``initialize(X, r, "random")``), and scikit-learn runs a fixed
number of passes (``--passes``, with ``tol=0`` and ``max_no_improvement=None``
so that its early stopping does not end the run after a dozen batches).  Its
loss ``½‖X − WH‖²`` (one evaluator for every method, on the W that
``fit_transform`` returns) is the target.  fastnmf runs ``solver="mu"``
(scikit-learn's algorithm: the same passes give the same loss, to round-off)
and ``solver="hals"`` (online HALS); for each, fits of 1, 2, ... passes from the
same start until one reaches the target (within ``RTOL``): its time is the time
to the target.  Passes are whole, so this time is an upper bound (a fit may
cross the target part-way through its last pass).  Compilation is paid before
any timing, and each timed fit is the best of ``--repeat`` runs (default 3), for
both packages: a process's first fit on the whole of X can pay one-off costs
that later fits do not, and a single run would count them.

**Memory while streaming.**  X is written to a scratch folder as row blocks
(``.npy`` dense, ``.npz`` sparse); a fresh process per package reads them one
at a time into ``partial_fit`` and reports its peak resident memory above what
it held before the first block (``/proc/self/status`` VmHWM, reset through
``clear_refs``) and the peak of ``tracemalloc`` (NumPy's allocations, not
Numba's), beside the size of X that a fit in memory would hold.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import add_report_options, conditions, fmt, header, write_report

# (real workload of fastnmf.bench.workloads, generated stand-in if it is missing)
WORKLOADS = {"sparse": ("WN20", "S1"), "dense": ("FM20", "D1")}
# A fit reaches the target when its loss is at most target · (1 + RTOL): the two
# packages compute the same MU steps with different round-off.
RTOL = 1e-6
BATCH_SIZE = 1024
SEED = 0


def load(kind: str, quick: bool, dtype):
    """(name, description, X, rank) of the ``kind`` workload."""
    from fastnmf.bench import workloads

    real, stand_in = WORKLOADS[kind]
    reason = workloads.missing_reason(workloads.WORKLOADS[real])
    name = real if reason is None else stand_in
    X, rank = workloads.make(name, dtype, quick)
    desc = workloads.WORKLOADS[name].description
    if reason is not None:
        desc += f" (stands in for {real}: {reason})"
    return name, desc, (sp.csr_matrix(X) if sp.issparse(X) else X), rank


def _models(rank, passes, batch_size):
    """The three fits of a comparison, as functions of the number of passes."""
    from sklearn.decomposition import MiniBatchNMF as SklearnMiniBatchNMF

    from fastnmf import MiniBatchNMF

    common = dict(n_components=rank, init="custom", batch_size=batch_size, tol=0.0,
                  max_no_improvement=None, random_state=SEED)
    return {
        "scikit-learn MiniBatchNMF": lambda p: SklearnMiniBatchNMF(max_iter=p, **common),
        "fastnmf MiniBatchNMF (mu)": lambda p: MiniBatchNMF(max_iter=p, solver="mu", **common),
        "fastnmf MiniBatchNMF (hals)": lambda p: MiniBatchNMF(max_iter=p, solver="hals",
                                                              **common),
    }


def _fit(make, X, W0, H0, evaluate=None, repeat=1):
    """``repeat`` timed ``fit_transform`` from (W0, H0) (the same fit each time); the
    best time, the loss (``evaluate`` is X's evaluator, None for a warm-up) and steps."""
    times = []
    for _ in range(repeat):
        model = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: the passes are the budget
            t0 = time.perf_counter()
            W = model.fit_transform(X, W=W0.copy(), H=H0.copy())
            times.append(time.perf_counter() - t0)
    loss = None if evaluate is None else evaluate(W, model.components_)
    return {"time": min(times), "times": times, "loss": loss,
            "passes": int(model.n_iter_), "steps": int(model.n_steps_)}


def time_to_target(X, W0, H0, rank, passes, batch_size, max_passes, repeat=1) -> dict:
    """scikit-learn's loss after ``passes`` passes, and each fastnmf solver's time to it
    (each timed fit: the best of ``repeat``, both packages)."""
    from fastnmf.bench.metrics import evaluator

    evaluate = evaluator(X)
    models = _models(rank, passes, batch_size)
    small = X[: min(X.shape[0], 2 * batch_size)]
    for make in models.values():  # compile (fastnmf) and warm up (both), untimed
        _fit(lambda m=make: m(1), small, W0[: small.shape[0]], H0)
    ref_name = "scikit-learn MiniBatchNMF"
    ref = _fit(lambda: models[ref_name](passes), X, W0, H0, evaluate, repeat)
    target = ref["loss"]
    rows = [dict(method=ref_name, **ref, reached=True, time_to_target=ref["time"],
                 tried=[ref])]
    for name, make in models.items():
        if name == ref_name:
            continue
        tried = []
        for p in range(1, max_passes + 1):
            run = _fit(lambda m=make, p=p: m(p), X, W0, H0, evaluate, repeat)
            tried.append(run)
            if run["loss"] <= target * (1 + RTOL):
                break
        last = tried[-1]
        reached = last["loss"] <= target * (1 + RTOL)
        rows.append(dict(method=name, **last, reached=reached,
                         time_to_target=last["time"] if reached else None, tried=tried))
    for row in rows:
        row["loss_ratio"] = row["loss"] / target if target > 0 else float("nan")
        t = row["time_to_target"]
        row["speedup"] = ref["time"] / t if t else None
    return {"target": target, "rows": rows}


# --- memory while streaming -------------------------------------------------------

def write_blocks(X, folder: str, block_rows: int) -> list[str]:
    """X as files of ``block_rows`` rows each (``.npy`` dense, ``.npz`` sparse)."""
    paths = []
    for i, a in enumerate(range(0, X.shape[0], block_rows)):
        block = X[a:a + block_rows]
        if sp.issparse(block):
            path = os.path.join(folder, f"block_{i:05d}.npz")
            sp.save_npz(path, sp.csr_matrix(block), compressed=False)
        else:
            path = os.path.join(folder, f"block_{i:05d}.npy")
            np.save(path, np.ascontiguousarray(block))
        paths.append(path)
    return paths


def _read(path):
    return sp.load_npz(path).tocsr() if path.endswith(".npz") else np.load(path)


def stream_child(spec: dict) -> dict:
    """In a fresh process: ``partial_fit`` over the blocks, peak memory above the start."""
    import tracemalloc

    from fastnmf.bench import metrics

    paths = spec["paths"]
    with np.load(spec["init"]) as f:
        W0, H0 = f["W"], f["H"]
    if spec["package"] == "fastnmf":
        from fastnmf import MiniBatchNMF
        kwargs = {"solver": spec["solver"]}
    else:
        from sklearn.decomposition import MiniBatchNMF
        kwargs = {}
    first = _read(paths[0])
    # warm up (fastnmf: compile) on a copy of the first block, outside the measurement
    MiniBatchNMF(spec["rank"], init="custom", random_state=SEED, **kwargs).partial_fit(
        first, W=W0[: first.shape[0]], H=H0).partial_fit(first)
    del first
    model = MiniBatchNMF(spec["rank"], init="custom", random_state=SEED, **kwargs)
    metrics.reset_peak()
    start = metrics.rss_bytes()
    tracemalloc.start()
    t0 = time.perf_counter()
    for i, path in enumerate(paths):
        block = _read(path)
        if i == 0:
            model.partial_fit(block, W=W0[: block.shape[0]], H=H0)
        else:
            model.partial_fit(block)
        del block
    elapsed = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"time": elapsed, "peak_above_start": metrics.peak_bytes() - start,
            "traced_peak": traced, "blocks": len(paths), "steps": int(model.n_steps_)}


def stream_memory(X, W0, H0, rank, block_rows, scratch) -> dict:
    """The streaming measurement of each package, each in its own process."""
    folder = os.path.join(scratch, "blocks")
    os.makedirs(folder, exist_ok=True)
    paths = write_blocks(X, folder, block_rows)
    init = os.path.join(scratch, "init.npz")
    np.savez(init, W=W0[:block_rows], H=H0)
    x_bytes = (X.data.nbytes + X.indices.nbytes + X.indptr.nbytes if sp.issparse(X)
               else X.nbytes)
    block_bytes = max(os.path.getsize(p) for p in paths)
    rows = []
    for package, solver in (("scikit-learn", None), ("fastnmf", "mu"), ("fastnmf", "hals")):
        spec = {"package": package, "solver": solver, "paths": paths, "init": init,
                "rank": rank}
        proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--stream-child",
                               json.dumps(spec)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"streaming with {package} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        label = f"{package} MiniBatchNMF" + (f" ({solver})" if solver else "")
        rows.append(dict(method=label, **result))
    shutil.rmtree(folder)
    return {"x_bytes": x_bytes, "block_rows": block_rows, "block_bytes": block_bytes,
            "rows": rows}


# --- the report -------------------------------------------------------------------

def _mb(b):
    return fmt(b / 2**20)


def report_lines(results: dict) -> list[str]:
    a = results["args"]
    lines = header("MiniBatchNMF: fastnmf against scikit-learn", results["conditions"],
                   results["command"])
    lines += [f"Parameters shared by every fit: batch_size={a['batch_size']}, "
              "forget_factor=0.7 (the default), init='custom' from one seeded "
              "`initialize(X, r, 'random')`, tol=0, max_no_improvement=None, "
              f"{a['dtype']}, all cores. scikit-learn runs {a['passes']} passes; its loss "
              "½‖X − WH‖² (on the W its fit_transform returns) is the target. fastnmf's "
              "time to the target is the time of its first fit, of 1, 2, ... passes, whose "
              f"loss is within {RTOL:g} of the target or below (whole passes: an upper "
              f"bound). Each timed fit is the best of {a.get('repeat', 1)} runs of it, "
              "for both packages (the slowest run in brackets).", ""]
    for w in results["workloads"]:
        t = w["time_to_target"]
        lines += [f"## {w['name']}: {w['description']}", "",
                  f"X: {w['shape'][0]} × {w['shape'][1]}, {w['nnz']} nonzeros, "
                  f"{'sparse' if w['sparse'] else 'dense'}; rank {w['rank']}; "
                  f"target loss {t['target']:.6g}.", "",
                  "| method | passes (batches) | time s | loss ÷ target | time to target s | "
                  "scikit-learn's time ÷ time to target |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in t["rows"]:
            ttt = fmt(r["time_to_target"]) if r["reached"] else (
                f"not reached in {r['passes']} passes")
            slowest = max(r.get("times", [r["time"]]))
            lines.append(f"| {r['method']} | {r['passes']} ({r['steps']}) | {fmt(r['time'])} "
                         f"({fmt(slowest)}) | "
                         f"{r['loss_ratio']:.6f} | {ttt} | "
                         f"{fmt(r['speedup']) + '×' if r['speedup'] else '—'} |")
        s = w["stream"]
        lines += ["", f"Streaming: X ({_mb(s['x_bytes'])} MB in memory) read as "
                  f"{s['rows'][0]['blocks']} blocks of {s['block_rows']} rows (largest file "
                  f"{_mb(s['block_bytes'])} MB), one `partial_fit` per block, in a fresh "
                  "process per method.", "",
                  "| method | time s | peak RSS above start MB | traced peak MB (NumPy) |",
                  "|---|---:|---:|---:|"]
        for r in s["rows"]:
            lines.append(f"| {r['method']} | {fmt(r['time'])} | {_mb(r['peak_above_start'])} | "
                         f"{_mb(r['traced_peak'])} |")
        lines.append("")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_report_options(parser, "rank 5, 2000 WordNet rows and 1000 images, 2 passes: "
                       "under a minute, a check that the script works")
    parser.add_argument("--passes", type=int, default=None,
                        help="scikit-learn's passes over X (default: 3, 2 with --quick)")
    parser.add_argument("--max-passes", type=int, default=None,
                        help="most passes of a fastnmf fit (default: 3 × --passes)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--block-rows", type=int, default=None,
                        help="rows per streamed block (default: 4 × --batch-size, "
                        "--batch-size with --quick)")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed runs of each fit, the best kept (default: 3, 1 with "
                        "--quick): a single run also times one-off costs of the process")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    parser.add_argument("--kinds", default="sparse,dense", help="sparse, dense or both")
    parser.add_argument("--stream-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stream_child:
        print(json.dumps(stream_child(json.loads(args.stream_child))))
        return 0
    cond = conditions()
    passes = args.passes or (2 if args.quick else 3)
    batch = min(args.batch_size, 256) if args.quick else args.batch_size
    block_rows = args.block_rows or (batch if args.quick else 4 * batch)
    repeat = args.repeat or (1 if args.quick else 3)
    dtype = np.dtype(args.dtype)
    results = {"command": "python benchmarks/minibatch_vs_sklearn.py "
               + " ".join(sys.argv[1:] if argv is None else argv),
               "conditions": cond, "workloads": [],
               "args": {"passes": passes, "batch_size": batch, "dtype": args.dtype,
                        "block_rows": block_rows, "quick": args.quick, "repeat": repeat}}
    from fastnmf import initialize

    scratch = tempfile.mkdtemp(prefix="fastnmf-minibatch-")
    try:
        for kind in args.kinds.split(","):
            name, desc, X, rank = load(kind.strip(), args.quick, dtype)
            W0, H0 = initialize(X, rank, "random", random_state=SEED)
            print(f"{name}: {X.shape[0]} x {X.shape[1]}, rank {rank}", flush=True)
            ttt = time_to_target(X, W0, H0, rank, passes, batch,
                                 args.max_passes or 3 * passes, repeat)
            for r in ttt["rows"]:
                print(f"  {r['method']:28s} {r['passes']:3d} passes {r['time']:8.2f} s  "
                      f"loss/target {r['loss_ratio']:.6f}", flush=True)
            stream = stream_memory(X, W0, H0, rank, block_rows, scratch)
            for r in stream["rows"]:
                print(f"  stream {r['method']:28s} {r['time']:8.2f} s  peak above start "
                      f"{r['peak_above_start'] / 2**20:8.1f} MB (X: "
                      f"{stream['x_bytes'] / 2**20:.1f} MB)", flush=True)
            results["workloads"].append({
                "name": name, "description": desc, "shape": list(X.shape), "rank": rank,
                "sparse": bool(sp.issparse(X)),
                "nnz": int(X.nnz if sp.issparse(X) else np.count_nonzero(X)),
                "time_to_target": ttt, "stream": stream})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    path = write_report(args.out, "minibatch", report_lines(results), results)
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
