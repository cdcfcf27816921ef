"""One benchmark configuration, run in its own process: ``python -m fastnmf.bench.worker IN OUT``.

``IN`` is a JSON list of tasks, ``OUT`` receives the list of their results.
The suite starts one process per task (clean peak-memory numbers); ``--quick``
puts a workload's tasks in one process to save interpreter start-ups.

Tasks of one workload and dtype form a *group*, run in order by
:func:`run_group`: ``prepare`` (make X and the start, save them), the
``reference`` (scikit-learn cd, or MU-KL on Kullback–Leibler workloads, 200
iterations: its loss is the target), then
every other ``method`` with the target and a time cap taken from the reference.
"""

from __future__ import annotations

import gc
import json
import sys
import time

import numpy as np

from . import metrics, peers, workloads

REFERENCE_ITERS = 200


def _fill(task: dict, ctx: dict) -> dict:
    """Give a method task the target and time cap that the reference produced."""
    task = dict(task)
    if task["role"] in ("method", "scaling"):
        ref = ctx.get("reference")
        if task["role"] == "method" and ref is not None:
            task["target"] = ref["target"]
            task["max_time"] = max(task["time_factor"] * ref["target_time_s"],
                                   task.get("min_time", 0.0))
    return task


def _update(ctx: dict, task: dict, result: dict) -> None:
    if task["role"] == "prepare" and "error" in result:
        ctx["prepare_error"] = result["error"]
    if task["role"] == "reference" and "curve" in result:
        curve = result["curve"]
        # the point at iteration REFERENCE_ITERS, or the last if the run ended early: at
        # the reference's time cap (task["max_time"]) on the largest workloads
        k = int(np.searchsorted(curve["iteration"], REFERENCE_ITERS, "right")) - 1
        ctx["reference"] = {"target": curve["loss"][k], "target_time_s": curve["time"][k]}
        result["target"] = curve["loss"][k]
        result["time_to_target_s"] = curve["time"][k]
        result["target_iteration"] = curve["iteration"][k]  # the curve may be thinned
        if curve["iteration"][k] < REFERENCE_ITERS and task.get("max_time"):
            # stopped by the time cap: the target is its loss where it stopped, and its
            # 200 iterations' time is extrapolated from its time per iteration
            result["capped_at_s"] = task["max_time"]
            result["extrapolated_200_s"] = (curve["time"][k] / curve["iteration"][k]
                                            * REFERENCE_ITERS)


def run_group(tasks: list[dict], runner) -> list[dict]:
    """Run ``tasks`` in order with ``runner(task) -> result``, passing the target along."""
    ctx: dict = {}
    results = []
    for task in tasks:
        task = _fill(task, ctx)
        t0 = time.perf_counter()
        try:
            if "prepare_error" in ctx:  # no data: nothing to run (the error says why)
                raise RuntimeError(f"the workload's data failed: {ctx['prepare_error']}")
            result = runner(task)
        except Exception as exc:  # one failed configuration must not lose the whole run
            result = {"error": f"{type(exc).__name__}: {exc}"}
        result.setdefault("wall_s", time.perf_counter() - t0)
        result = {**{k: v for k, v in task.items() if k not in ("folder",)}, **result}
        _update(ctx, task, result)
        results.append(result)
    return results


def run_task(task: dict) -> dict:
    """Run one task in this process."""
    if task["role"] == "prepare":
        t0 = time.perf_counter()
        meta = workloads.prepare(task["workload"], task["dtype"], task["quick"], task["folder"],
                                 task.get("spec"), task.get("start", "nndsvda"))
        return {"meta": meta, "prepare_s": time.perf_counter() - t0}
    return run_method(task)


def run_method(task: dict) -> dict:
    t0 = time.perf_counter()
    X, W0, H0 = workloads.load(task["folder"])
    load_s = time.perf_counter() - t0
    loss = workloads.get(task["workload"], task.get("spec")).loss
    evaluate = metrics.evaluator(X, loss)
    threads = task["threads"]
    name = task["method"]

    # warm-up on a slice (compiled kernels loaded, BLAS threads started) before
    # the memory mark is reset, so neither counts as the method's memory
    Xs = X[: min(64, X.shape[0])]
    peers.run_method(name, Xs, W0[: Xs.shape[0]].copy(), H0.copy(), peers.Stop(max_iter=2),
                     metrics.evaluator(Xs, loss), threads)
    gc.collect()
    can_reset = metrics.reset_peak()
    rss0 = metrics.rss_bytes() if can_reset else metrics.peak_bytes()

    rtol = metrics.TARGET_RTOL[task["dtype"]]
    stop = peers.Stop(max_iter=task["max_iter"], max_time=task.get("max_time"),
                      target=task.get("target"), rtol=rtol)
    out = peers.run_method(name, X, W0, H0, stop, evaluate, threads)
    peak = metrics.peak_bytes()
    out.setdefault("peak_beyond_x_bytes", max(peak - rss0, 0))  # (a peer's own process: its)
    out["rss_after_load_bytes"] = rss0
    out["peak_reset"] = can_reset
    out["load_s"] = load_s

    curve = out["curve"]
    out["per_iter_s"] = _per_iteration(curve, out.get("iteration_unit"))
    if task.get("target") is not None:
        out["time_to_target_s"] = metrics.time_to_target(curve["time"], curve["loss"],
                                                         task["target"], rtol, curve["iteration"])
    out["curve"] = thin(curve)
    if task.get("floor"):
        from .. import thread_limits

        W, H = W0, H0
        r = W.shape[1]
        with thread_limits(threads):
            bw = metrics.memory_bandwidth(32 << 20 if task["quick"] else 256 << 20)
            if hasattr(X, "tocsr"):
                out["floor"] = metrics.sparse_floor(X, W, H, bw, loss)
                product_flops = 2.0 * X.nnz * r
            else:
                out["floor"] = metrics.dense_floor(X, W, H)
                product_flops = 2.0 * X.shape[0] * X.shape[1] * r
            gemm = metrics.gemm_rate(product_flops, X.dtype)
            out["limit"] = metrics.machine_limit(X, r, bw, gemm)
            out["sweep"] = metrics.sweep_vs_gemm(X.shape[0], r, X.dtype)
    out["info"] = {"blas": metrics.blas_info(),
                   "numba_threading_layer": metrics._threading_layer()}
    return out


def thin(curve: dict, keep: int = 100) -> dict:
    """About ``keep`` points of a curve, rounded, for the JSON: the first ones, then
    log-spaced, always the last (the metrics are computed from the full curve first)."""
    n = len(curve["time"])
    idx = np.arange(n) if n <= keep else np.unique(np.concatenate([np.arange(keep // 3),
        np.geomspace(keep // 3, n - 1, keep - keep // 3).astype(int), [n - 1]]))
    return {"iteration": [curve["iteration"][i] for i in idx],
            "time": [float(f"{curve['time'][i]:.5g}") for i in idx],
            "loss": [float(f"{curve['loss'][i]:.10g}") for i in idx]}


def _per_iteration(curve: dict, unit: str | None) -> float | None:
    t, it = np.asarray(curve["time"]), np.asarray(curve["iteration"])
    if unit in ("epoch", "fit"):  # points are separate fits: the longest one's time per unit
        # (the slope between the last two fits went negative when the machine was busy)
        return float(t[-1] / it[-1]) if len(t) and it[-1] > 0 else None
    if len(t) < 2:
        return None
    return float(np.median(np.diff(t) / np.diff(it)))  # the loss may skip iterations


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        tasks = json.load(f)
    results = run_group(tasks, run_task)
    with open(argv[1], "w") as f:
        json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
