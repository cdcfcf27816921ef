"""The benchmark suite in its quickest mode, so that it never rots.

Runs ``fastnmf bench --quick`` on tiny data in a subprocess and checks that the
JSON, the markdown report and the plots are produced and well-formed.  Asserts
nothing about speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, "-m", "fastnmf.cli", "bench", "--quick", "--workloads", "D1,S1",
           "--dtypes", "float64", "--threads", "1,2", "--no-compile", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_json_is_complete(quick_run):
    with open(quick_run / "results.json") as f:
        res = json.load(f)
    m = res["machine"]
    assert m["cores"] >= 1 and m["cpu"] and m["versions"]["numpy"]
    assert set(m["openblas_env"]) == {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}
    runs = [r for r in res["runs"] if r.get("role") in ("reference", "method")]
    assert not [r for r in res["runs"] if "error" in r]
    methods = {(r["workload"], r["method"]) for r in runs}
    for wl in ("D1", "S1"):
        for meth in ("fastnmf-hals", "fastnmf-hals1", "fastnmf-mu", "sklearn-cd", "sklearn-mu",
                     "sklearn-minibatch", "scipy-hals", "scipy-mu"):
            assert (wl, meth) in methods
    for r in runs:
        c = r["curve"]
        assert len(c["iteration"]) == len(c["time"]) == len(c["loss"]) >= 2
        assert c["time"][0] == 0 and min(c["time"][1:]) > 0
        if r["method"] != "sklearn-minibatch":  # its points are separate fits
            assert c["time"] == sorted(c["time"])
        assert r["per_iter_s"] > 0 and r["peak_beyond_x_bytes"] >= 0
        if r["method"].startswith("fastnmf"):
            assert r["floor"]["floor_s"] > 0
    ref = [r for r in runs if r["role"] == "reference"]
    assert all(r["curve"]["iteration"][-1] == 200 and r["target"] > 0 for r in ref)
    assert any(r["role"] == "scaling" and r["threads"] == 1 for r in res["runs"])


def test_markdown_and_plots(quick_run):
    md = (quick_run / "benchmarks.md").read_text()
    start, end = md.index("<!-- headline:start -->"), md.index("<!-- headline:end -->")
    table = md[start:end].splitlines()[1:]
    assert len(table) >= 4 and all(line.startswith("|") for line in table)  # header, rule, rows
    for section in ("## Machine", "## Thread scaling", "## Compile and import time",
                    "## How to reproduce", "OPENBLAS_CORETYPE"):
        assert section in md
    pngs = sorted(os.listdir(quick_run / "img"))
    assert pngs == ["loss_vs_time_D1.png", "loss_vs_time_S1.png"]
    for name in pngs:
        assert (quick_run / "img" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"img/{name}" in md


@pytest.fixture(scope="module")
def quick_kl_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_kl")
    cmd = [sys.executable, "-m", "fastnmf.cli", "bench", "--quick", "--workloads", "K1,KS",
           "--dtypes", "float64", "--threads", "1,2", "--no-compile", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_kl_workloads(quick_kl_run):
    """K1 (dense Poisson) and KS (sparse counts): KL peers only, sklearn MU-KL as reference."""
    with open(quick_kl_run / "results.json") as f:
        res = json.load(f)
    assert not [r for r in res["runs"] if "error" in r]
    runs = [r for r in res["runs"] if r.get("role") in ("reference", "method")]
    assert {(r["workload"], r["method"]) for r in runs} == {
        (wl, m) for wl in ("K1", "KS")
        for m in ("fastnmf-ccd", "fastnmf-mu-kl", "sklearn-mu-kl")}
    ref = {r["workload"]: r for r in runs if r["role"] == "reference"}
    assert all(r["method"] == "sklearn-mu-kl" and r["curve"]["iteration"][-1] == 200
               and r["target"] > 0 for r in ref.values())
    for r in runs:
        c = r["curve"]
        assert len(c["loss"]) >= 2 and c["time"] == sorted(c["time"])
        assert r["per_iter_s"] > 0 and r["peak_beyond_x_bytes"] >= 0
        if r["method"] == "fastnmf-mu-kl":  # the same MU as sklearn's: the same curve
            sk = next(s for s in runs if s["workload"] == r["workload"]
                      and s["method"] == "sklearn-mu-kl")["curve"]
            n = min(len(c["loss"]), len(sk["loss"]), 5)
            assert c["iteration"][:n] == sk["iteration"][:n]
            assert c["loss"][:n] == pytest.approx(sk["loss"][:n], rel=1e-8)
        if r["method"] == "fastnmf-ccd":
            assert r["floor"]["floor_s"] > 0 and r["time_to_target_s"] is not None
    assert any(r["role"] == "scaling" and r["method"] == "fastnmf-ccd" for r in res["runs"])

    md = (quick_kl_run / "benchmarks.md").read_text()
    assert "## Headline: KL / Poisson" in md
    start, end = md.index("<!-- headline-kl:start -->"), md.index("<!-- headline-kl:end -->")
    table = md[start:end].splitlines()[1:]
    assert len(table) == 4 and all(line.startswith("|") for line in table)
    assert {line.split("|")[1].strip() for line in table[2:]} == {"K1", "KS"}
    # the Frobenius headline is there, with its header only (no Frobenius workload ran)
    start, end = md.index("<!-- headline:start -->"), md.index("<!-- headline:end -->")
    assert len(md[start:end].splitlines()[1:]) == 2
    assert "### K1 float64" in md and "speed-up vs sklearn mu-kl" in md


def test_kl_evaluator_is_sklearns():
    """The KL loss of the suite equals scikit-learn's ``_beta_divergence(X, W, H, 1)``."""
    import numpy as np
    from sklearn.decomposition._nmf import _beta_divergence

    from fastnmf import initialize
    from fastnmf.bench import metrics, workloads

    for name in ("K1", "KS"):
        X, rank = workloads.make(name, np.float64, quick=True)
        W, H = initialize(X, rank, "nndsvda", random_state=0)
        H[0, :5] = 0.0  # model values under eps, guarded as sklearn does
        W[:3] = 1e-12
        got = metrics.evaluator(X, "kullback-leibler")(W, H)
        assert got == pytest.approx(_beta_divergence(X, W, H, 1), rel=1e-12)


def test_compile_probe():
    """The import/compile-time probe (run cold by the suite; here with the usual cache)."""
    from fastnmf.bench.suite import COMPILE_PROBE

    proc = subprocess.run([sys.executable, COMPILE_PROBE], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["import_s"] > 0 and len(out["by_case"]) == 8


def test_stop_gives_up_only_when_the_target_is_out_of_reach():
    """A convex curve that cannot reach the target is stopped early; one that can is not."""
    import numpy as np

    from fastnmf.bench.peers import Stop

    def run(curve, target, max_time=10.0):
        stop = Stop(max_iter=10_000, max_time=max_time, target=target)
        for it, t in enumerate(np.linspace(0.01, max_time, 1000), start=1):
            if stop.done(it, t, curve(t)):
                return t, stop.gave_up_s
        return None, None

    slow = lambda t: 100.0 + 50.0 / (1.0 + t)  # noqa: E731 (convex, never below 100)
    t, gave_up = run(slow, target=90.0)
    assert gave_up is not None and t == gave_up and t < 10.0 * 0.5
    fast = lambda t: 100.0 * np.exp(-t)  # noqa: E731 reaches 1.0 at t ≈ 4.6
    t, gave_up = run(fast, target=1.0)
    assert gave_up is None and 4.6 < t < 5.0
    # a straight line that reaches the target just before the cap is not given up
    line = lambda t: 100.0 - 9.5 * t  # noqa: E731 reaches 5.0 at t = 10
    t, gave_up = run(line, target=6.0)
    assert gave_up is None


def test_time_to_target_interpolates_within_a_gap():
    from fastnmf.bench.metrics import time_to_target

    times, losses = [0.0, 1.0, 2.0, 5.0], [10.0, 8.0, 6.0, 0.0]
    assert time_to_target(times, losses, 6.0, 0.0) == 2.0  # hit exactly
    assert time_to_target(times, losses, 3.0, 0.0) == 5.0  # no iterations: first point
    # iterations 2 and 5 evaluated: the crossing of 3.0 is half-way through the gap
    assert time_to_target(times, losses, 3.0, 0.0, [0, 1, 2, 5]) == pytest.approx(3.5)
    assert time_to_target(times, losses, -1.0, 0.0, [0, 1, 2, 5]) is None


def test_manual_loop_thins_the_loss_but_times_every_iteration():
    import numpy as np

    from fastnmf.bench import peers

    calls = []

    def evaluate(W, H):
        calls.append(1)
        sum(range(200_000))  # a costly evaluation relative to the step
        return float(np.sum(W))

    def step(W, H):
        return W * 0.99, H

    stop = peers.Stop(max_iter=60)
    curve = peers._manual_loop(step, np.ones((2, 2)), np.ones((2, 2)), None, stop, evaluate)
    it = curve["iteration"]
    assert it[: peers.EVAL_FIRST + 1] == list(range(peers.EVAL_FIRST + 1))
    assert it[-1] == 60 and len(it) < 61 and len(calls) == len(it)
    assert curve["loss"][-1] == pytest.approx(4 * 0.99**60)


def test_headlines_are_copied_into_a_readme(quick_run, tmp_path):
    from fastnmf.bench.report import copy_headlines

    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- headline:start -->\nold table\n<!-- headline:end -->\nend\n")
    assert copy_headlines(str(quick_run / "benchmarks.md"), str(readme)) == [
        "<!-- headline:start -->"]
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("end\n")
    assert "| D1 | float64 |" in text and "| S1 | float64 |" in text
