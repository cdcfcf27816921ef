"""Real workloads from several random starts: the speed-up as a distribution, not one draw.

Run:  python benchmarks/random_starts.py [--workloads WN20,FM20] [--seeds 0-4] [--out DIR]
      python benchmarks/random_starts.py --quick      (tiny sizes, under a minute)

`fastnmf bench --start random` draws one random start (seed 0) per workload. From a
random start, where scikit-learn's ``cd`` ends after 200 iterations and where
fastnmf's accelerated HALS goes are both chance: the two can settle in different
stationary points, and the time fastnmf takes to reach scikit-learn's error swings
with the seed (WordNet r = 20, seeds 0–5: 65, 50, 24, >200, >200 and 26 iterations,
docs/performance.md).  This script runs, for each workload, dtype and seed:

1. the start: scikit-learn's ``init="random"`` drawn with that seed (fastnmf's
   ``initialize(X, r, "random", random_state=seed)`` draws the same numbers);
2. scikit-learn's ``cd`` for 200 iterations (or ``--reference-max-time`` seconds,
   whichever comes first): its loss there is the seed's target;
3. fastnmf's default (``fastnmf.nmf``, accelerated HALS with ``accelerate="auto"``)
   from the same start until it reaches the target, for at most the reference's
   time (then "not reached", with the iterations and loss where it stopped).

Both run with every core (``--threads``), one after the other, in this process,
compilation paid before timing; losses are evaluated outside the timed regions by
one evaluator (the suite's, :mod:`fastnmf.bench.metrics`).  The report gives each
seed's row and, per workload and dtype, the median speed-up over the seeds, counting
a "not reached" seed as below every reached one.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import add_report_options, conditions, fmt, header, write_report

from fastnmf import initialize
from fastnmf.bench import metrics, peers, workloads

REFERENCE_ITERS = 200


def _seeds(text: str) -> list[int]:
    """``"0-4"`` or ``"0,3,7"`` → a list of seeds."""
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.strip().partition("-")
        out.extend(range(int(a), int(b) + 1) if b else [int(a)])
    return out


def median_ratio(ratios: list) -> tuple[str, int]:
    """The median of per-seed speed-ups, None (not reached) ranked below every number;
    returns its text and how many seeds were not reached."""
    missed = sum(r is None for r in ratios)
    ranked = sorted(ratios, key=lambda r: -np.inf if r is None else r)
    mid = len(ranked) // 2
    if len(ranked) % 2:
        pick = [ranked[mid]]
    else:
        pick = ranked[mid - 1: mid + 1]
    if any(r is None for r in pick):
        return ("not reached" if all(r is None for r in pick)
                else f"≤ {fmt(max(r for r in pick if r is not None))}×"), missed
    return f"{fmt(float(np.mean(pick)))}×", missed


def run_seed(X, rank: int, loss: str, seed: int, dtype: str, threads: int, cap: float) -> dict:
    """One seed: the reference's run, its target, fastnmf's run to that target."""
    evaluate = metrics.evaluator(X, loss)
    W0, H0 = initialize(X, rank, "random", random_state=seed)
    reference = peers.REFERENCES[loss]
    ref = peers.run_method(reference, X, W0, H0,
                           peers.Stop(max_iter=REFERENCE_ITERS, max_time=cap),
                           evaluate, threads)
    rc = ref["curve"]
    target, ref_time = rc["loss"][-1], rc["time"][-1]
    rtol = metrics.TARGET_RTOL[dtype]
    method = "fastnmf-hals" if loss == "frobenius" else "fastnmf-ccd"
    stop = peers.Stop(max_iter=1000, max_time=ref_time, target=target, rtol=rtol)
    fast = peers.run_method(method, X, W0, H0, stop, evaluate, threads)
    fc = fast["curve"]
    t = metrics.time_to_target(fc["time"], fc["loss"], target, rtol, fc["iteration"])
    hit = np.nonzero(np.asarray(fc["loss"]) <= target * (1 + rtol))[0]
    return dict(seed=seed, reference=reference, method=method, target=target,
                ref_iters=rc["iteration"][-1], ref_time=ref_time,
                fast_time=t, fast_iters=int(fc["iteration"][hit[0]]) if hit.size else None,
                fast_run_iters=fc["iteration"][-1], fast_final=fc["loss"][-1],
                fast_elapsed=fc["time"][-1],
                ratio=None if t is None or t <= 0 else ref_time / t)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_report_options(parser, "tiny sizes and two seeds: checks that the script works")
    parser.add_argument("--workloads", default="WN20,FM20",
                        help="comma-separated suite workloads (default: %(default)s)")
    parser.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 0,3,7 (default: 0-4)")
    parser.add_argument("--dtypes", default="float64")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--reference-max-time", type=float, default=150.0, metavar="SECONDS")
    args = parser.parse_args(argv)
    seeds = _seeds(args.seeds)[:2] if args.quick else _seeds(args.seeds)
    names = workloads.expand(w.strip().upper() for w in args.workloads.split(",") if w.strip())
    cond = conditions()
    command = "python benchmarks/random_starts.py " + " ".join(argv if argv is not None
                                                               else sys.argv[1:])
    lines = header("fastnmf from several random starts, against scikit-learn", cond, command)
    lines += ["Each seed: scikit-learn's `init='random'` start drawn with that seed, shared by "
              f"both; target = scikit-learn's loss after {REFERENCE_ITERS} iterations (or "
              f"{args.reference_max_time:g} s); fastnmf's default runs until it reaches it, "
              "for at most scikit-learn's time. Median: over the seeds, a seed not reached "
              "ranked below every reached one.", ""]
    rows, data = [], {"conditions": cond, "runs": []}
    summary = ["| workload | dtype | seeds | median speed-up | not reached |",
               "|---|---|---|---|---|"]
    for name in names:
        w = workloads.get(name)
        reason = workloads.missing_reason(w, args.quick)
        if reason:
            lines += [f"{name}: skipped ({reason}).", ""]
            continue
        for dtype in args.dtypes.split(","):
            X, rank = workloads.make(name, np.dtype(dtype), args.quick)
            ratios = []
            for seed in seeds:
                r = run_seed(X, rank, w.loss, seed, dtype, args.threads,
                             args.reference_max_time)
                r.update(workload=name, dtype=dtype)
                data["runs"].append(r)
                ratios.append(r["ratio"])
                reached = (f"{fmt(r['fast_time'])} s ({r['fast_iters']} it)"
                           if r["ratio"] is not None else
                           f"not reached ({r['fast_run_iters']} it, {fmt(r['fast_elapsed'])} s, "
                           f"loss {fmt(r['fast_final'], 7)})")
                rows.append(f"| {name} | {dtype} | {seed} | {fmt(r['target'], 9)} | "
                            f"{fmt(r['ref_time'])} s ({r['ref_iters']} it) | {reached} | "
                            f"{fmt(r['ratio'])}{'×' if r['ratio'] is not None else ''} |")
                print(rows[-1], flush=True)
            med, missed = median_ratio(ratios)
            summary.append(f"| {name} | {dtype} | {len(ratios)} | {med} | {missed} |")
    lines += [*summary, "", "| workload | dtype | seed | target loss | scikit-learn cd | "
                        "fastnmf (default) to target | speed-up |",
                        "|---|---|---|---|---|---|---|", *rows]
    md = write_report(args.out, "random-starts", lines, data)
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
