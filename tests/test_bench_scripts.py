"""The report scripts of benchmarks/ (MiniBatchNMF and many fits against scikit-learn):
their shared header, and (slow) a --quick run of each that checks the report."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import _common  # noqa: E402


def _conditions(load):
    from fastnmf.bench import metrics

    return {"machine": metrics.machine_info(), "load_before": load,
            "under_load": load > _common.LOAD_LIMIT, "started": "now"}


def test_header_says_when_measured_under_load():
    loaded = "\n".join(_common.header("T", _conditions(3.2), "cmd"))
    quiet = "\n".join(_common.header("T", _conditions(0.1), "cmd"))
    assert "**Measured under load**" in loaded and "3.20" in loaded
    assert "Measured under load" not in quiet and "(a quiet machine)" in quiet
    assert _common.fmt(None) == _common.fmt(float("nan")) == "—"
    assert _common.fmt(12.345) == "12.3"


def test_default_out_is_not_docs():
    assert not _common.DEFAULT_OUT.startswith("docs")


def _run(script, out, *argv):
    # the worktree's fastnmf, not an installed copy elsewhere
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick",
                           "--out", str(out), *argv], capture_output=True, text=True,
                          timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_minibatch_quick_report(tmp_path):
    _run("minibatch_vs_sklearn.py", tmp_path, "--kinds", "dense")
    md = (tmp_path / "minibatch.md").read_text()
    data = json.loads((tmp_path / "minibatch.json").read_text())
    (w,) = data["workloads"]
    rows = {r["method"]: r for r in w["time_to_target"]["rows"]}
    mu = rows["fastnmf MiniBatchNMF (mu)"]
    # scikit-learn's algorithm: the same passes give scikit-learn's loss
    assert mu["passes"] == rows["scikit-learn MiniBatchNMF"]["passes"]
    assert mu["reached"] and abs(mu["loss_ratio"] - 1) < 1e-6
    assert all(r["speedup"] and r["speedup"] > 0 for r in rows.values())
    assert [r["method"] for r in w["stream"]["rows"]] == [
        "scikit-learn MiniBatchNMF", "fastnmf MiniBatchNMF (mu)", "fastnmf MiniBatchNMF (hals)"]
    assert all(r["steps"] == r["blocks"] >= 2 for r in w["stream"]["rows"])
    assert "| fastnmf MiniBatchNMF (hals) |" in md and "peak RSS above start" in md


@pytest.mark.slow
def test_rank_sweep_quick_report(tmp_path):
    _run("rank_sweep.py", tmp_path, "--kinds", "sparse", "--runs", "2")
    md = (tmp_path / "many_fits.md").read_text()
    data = json.loads((tmp_path / "many_fits.json").read_text())
    assert [(s["kind"], s["loss"]) for s in data["sweeps"]] == [
        ("sparse", "frobenius"), ("sparse", "kullback-leibler")]
    for s in data["sweeps"]:
        assert s["fits"] == 6 == len(s["sklearn_losses"]) == len(s["fastnmf_losses"])
        assert s["fastnmf_solver"] == {"frobenius": "hals", "kullback-leibler": "ccd"}[s["loss"]]
        assert 0.5 < s["loss_ratio_median"] < 1.5
    assert md.count("| sparse counts") == 2


def test_random_starts_median_ranks_not_reached_lowest():
    import random_starts

    assert random_starts._seeds("0-2,7") == [0, 1, 2, 7]
    assert random_starts.median_ratio([3.0, None, 12.0]) == ("3×", 1)
    assert random_starts.median_ratio([None, None, 5.0]) == ("not reached", 2)
    assert random_starts.median_ratio([4.0, 8.0, None, 20.0]) == ("6×", 1)
    assert random_starts.median_ratio([None, 8.0, None, 20.0]) == ("≤ 8×", 2)


@pytest.mark.slow
def test_random_starts_quick_report(tmp_path):
    _run("random_starts.py", tmp_path, "--workloads", "D1")
    data = json.loads((tmp_path / "random-starts.json").read_text())
    runs = data["runs"]
    assert [r["seed"] for r in runs] == [0, 1]
    for r in runs:  # each seed has its own start, hence its own target
        assert r["ref_iters"] == 200 and r["target"] > 0
        assert r["ratio"] is None or r["fast_time"] > 0
    assert runs[0]["target"] != runs[1]["target"]
    assert "median speed-up" in (tmp_path / "random-starts.md").read_text()
