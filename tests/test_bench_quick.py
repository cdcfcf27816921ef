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

import numpy as np
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
    # RcppML where R has it, else a note saying how to get it
    rcppml = () if "rcppml" in res["skipped_methods"] else ("rcppml",)
    assert rcppml or "r-cran-rcppml" in res["skipped_methods"]["rcppml"]
    for wl in ("D1", "S1"):
        for meth in ("fastnmf-hals", "fastnmf-hals1", "fastnmf-mu", "sklearn-cd", "sklearn-mu",
                     "sklearn-minibatch", "scipy-hals", "scipy-mu", *rcppml):
            assert (wl, meth) in methods
    for r in runs:
        c = r["curve"]
        assert len(c["iteration"]) == len(c["time"]) == len(c["loss"]) >= 1
        if r["method"] == "rcppml":  # separate fits from its own start: no iteration 0
            assert c["iteration"][0] == 1 and min(c["time"]) > 0 and r["per_iter_s"] > 0
            continue
        assert len(c["iteration"]) >= 2
        assert c["time"][0] == 0 and min(c["time"][1:]) > 0
        if r["method"] != "sklearn-minibatch":  # its points are separate fits
            assert c["time"] == sorted(c["time"])
        assert r["per_iter_s"] > 0 and r["peak_beyond_x_bytes"] >= 0
        if r["method"].startswith("fastnmf"):
            assert r["floor"]["floor_s"] > 0
            lim = r["limit"]  # the machine's limit: bytes and flops at measured rates
            assert lim["limit_s"] == max(lim["bytes_s"], lim["flops_s"]) > 0
            assert lim["bandwidth_GBs"] > 0 and lim["gemm_GFs"] > 0
            assert r["sweep"]["sweep_s"] > 0 and r["sweep"]["fraction"] > 0
    ref = [r for r in runs if r["role"] == "reference"]
    assert all(r["curve"]["iteration"][-1] == 200 and r["target"] > 0 for r in ref)
    assert any(r["role"] == "scaling" and r["threads"] == 1 for r in res["runs"])


def test_markdown_and_plots(quick_run):
    md = (quick_run / "benchmarks.md").read_text()
    start, end = md.index("<!-- headline:start -->"), md.index("<!-- headline:end -->")
    table = md[start:end].splitlines()[1:]
    assert len(table) >= 4 and all(line.startswith("|") for line in table)  # header, rule, rows
    for section in ("## Machine", "## Thread scaling", "## Compile and import time",
                    "## How to reproduce", "OPENBLAS_CORETYPE", "## Against the machine's limit",
                    "÷ own product kernels | fastnmf ÷ machine limit", "Machine limit: "):
        assert section in md
    start = md.index("## Against the machine's limit")
    table = [line for line in md[start:].split("## Thread scaling")[0].splitlines()
             if line.startswith("| D1") or line.startswith("| S1")]
    assert len(table) == 2 and all(line.endswith("% |") for line in table)
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


# --- where the report goes, --data, the real workloads, the reference's cap -----------------

def test_default_out_is_never_docs():
    """Issue 21: a plain `fastnmf bench` writes into ./fastnmf-bench/; only --out docs
    writes into docs/ (in the site's layout)."""
    from fastnmf.bench.suite import _paths
    from fastnmf.cli import build_parser

    args = build_parser().parse_args(["bench", "--quick"])
    assert args.out == "fastnmf-bench"
    md, img, js = _paths(args.out)
    assert not any(p.startswith("docs") for p in (md, img, js))
    assert _paths("docs") == (os.path.join("docs", "benchmarks.md"),
                              os.path.join("docs", "img", "bench"),
                              os.path.join("docs", "img", "bench", "results.json"))
    assert _paths("/tmp/x")[1] == os.path.join("/tmp/x", "img")


def _bench(args, cwd, timeout=300):
    cmd = [sys.executable, "-m", "fastnmf.cli", "bench", "--quick", "--dtypes", "float64",
           "--threads", "2", "--no-compile", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_data_file_through_the_quick_path(tmp_path):
    """`fastnmf bench --data counts.npz --rank R`: the same comparison on the user's matrix,
    written to the default folder under the current one, nothing under docs/."""
    import numpy as np
    import scipy.sparse as sp

    from fastnmf import datasets

    X = datasets.make_sparse_counts(1500, 300, 6000, 4, random_state=0)
    sp.save_npz(tmp_path / "counts.npz", X)
    _bench(["--data", "counts.npz", "--rank", "4",
            "--methods", "fastnmf-hals,fastnmf-hals1,sklearn-cd"], tmp_path)
    assert not (tmp_path / "docs").exists()
    out = tmp_path / "fastnmf-bench"
    with open(out / "results.json") as f:
        res = json.load(f)
    assert res["settings"]["workloads"] == ["counts"] and not res["skipped"]
    assert not [r for r in res["runs"] if "error" in r]
    meta = next(r["meta"] for r in res["runs"] if r["role"] == "prepare")
    # --quick: at most 1000 evenly spaced rows, the columns left empty dropped
    assert meta["shape"][0] == 1000 and meta["rank"] == 4 and meta["sparse"]
    assert meta["description"].startswith("counts.npz")
    assert {r["method"] for r in res["runs"] if r["role"] in ("reference", "method")} == {
        "sklearn-cd", "fastnmf-hals", "fastnmf-hals1"}
    md = (out / "benchmarks.md").read_text()
    assert "| counts | float64 |" in md and "img/loss_vs_time_counts.png" in md
    assert (out / "img" / "loss_vs_time_counts.png").is_file()
    np.testing.assert_array_equal(sp.load_npz(tmp_path / "counts.npz").toarray(), X.toarray())


def test_data_file_kl_from_mtx(tmp_path):
    import scipy.io

    from fastnmf import datasets

    X, _, _ = datasets.make_poisson_counts(80, 40, 3, random_state=1)
    scipy.io.mmwrite(str(tmp_path / "poisson.mtx"), X)
    _bench(["--data", "poisson.mtx", "--rank", "3", "--loss", "kl", "--out", "o",
            "--methods", "fastnmf-ccd,sklearn-mu-kl"], tmp_path)
    with open(tmp_path / "o" / "results.json") as f:
        res = json.load(f)
    runs = [r for r in res["runs"] if r["role"] in ("reference", "method")]
    assert {r["method"] for r in runs} == {"sklearn-mu-kl", "fastnmf-ccd"}
    assert all("error" not in r for r in res["runs"])
    assert "<!-- headline-kl:start -->" in (tmp_path / "o" / "benchmarks.md").read_text()


def test_file_workload_quick_slices_npy(tmp_path):
    """The quick path on a dense .npy: evenly spaced rows and columns, rank at most 8."""
    import dataclasses

    import numpy as np

    from fastnmf.bench import workloads

    X = np.abs(np.random.default_rng(0).standard_normal((2500, 1200)))
    np.save(tmp_path / "x.npy", X)
    w = workloads.from_file(str(tmp_path / "x.npy"), 12)
    spec = dataclasses.asdict(w)
    Xq, rank = workloads.make(w.name, np.float32, quick=True, spec=spec)
    assert Xq.shape == (1000, 1000) and rank == 8 and Xq.dtype == np.float32
    np.testing.assert_allclose(Xq[0, 0], X[0, 0], rtol=1e-6)
    np.testing.assert_allclose(Xq[-1, -1], X[-1, -1], rtol=1e-6)
    Xf, rank = workloads.make(w.name, np.float64, quick=False, spec=spec)
    assert Xf.shape == X.shape and rank == 12
    # a name that is a built-in workload's is kept apart
    np.save(tmp_path / "d1.npy", X[:10])
    assert workloads.from_file(str(tmp_path / "d1.npy"), 2).name == "file-d1"


def test_data_option_errors(tmp_path, capsys):
    from fastnmf.cli import main

    np_file = tmp_path / "x.npy"
    __import__("numpy").save(np_file, __import__("numpy").ones((3, 3)))
    for argv, msg in ((["--data", str(np_file)], "--rank"),
                      (["--data", str(tmp_path / "none.npy"), "--rank", "2"], "no such file"),
                      (["--rank", "3"], "--rank is for --data"),
                      (["--workloads", "XX"], "unknown workload")):
        with pytest.raises(SystemExit, match=msg):
            main(["bench", "--quick", "--no-compile", "--out", str(tmp_path / "o"), *argv])


def test_workload_groups():
    from fastnmf.bench import workloads

    assert workloads.expand(["DEFAULT"]) == list(workloads.DEFAULT)
    assert workloads.expand(["REAL", "WN20", "D1"]) == [*workloads.REAL, "D1"]
    real = [workloads.WORKLOADS[n] for n in workloads.REAL]
    assert all(w.optional and w.quick for w in real)
    assert not set(workloads.REAL) & set(workloads.DEFAULT)
    assert {w.rank for w in real if w.source == "wordnet"} == {20, 50, 100}
    assert workloads.WORKLOADS["WN-KL"].loss == workloads.KL


def test_real_workloads_skip_cleanly_without_data(tmp_path, monkeypatch):
    """No cache and no apt-get: the real workloads are skipped with the reason, the run
    still writes its report (no subprocess starts: nothing to run)."""
    from fastnmf import datasets
    from fastnmf.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets.shutil, "which", lambda name: None)
    assert main(["bench", "--quick", "--no-compile", "--workloads", "real",
                 "--out", str(tmp_path / "o")]) == 0
    with open(tmp_path / "o" / "results.json") as f:
        res = json.load(f)
    assert set(res["skipped"]) == {"WN20", "WN50", "WN100", "FM20", "FM50", "WN-KL"}
    assert all("apt-get" in r for r in res["skipped"].values())
    md = (tmp_path / "o" / "benchmarks.md").read_text()
    assert "### WN50" in md and "Skipped: " in md


def test_rcppml_is_skipped_with_a_note_where_r_lacks_it(tmp_path, monkeypatch):
    """Without Rscript the RcppML peer is not run and the report says how to get it; the
    other methods run as usual."""
    from fastnmf.bench import peers
    from fastnmf.cli import main

    monkeypatch.setattr(peers.shutil, "which", lambda name: None)
    assert main(["bench", "--quick", "--no-compile", "--workloads", "D1", "--dtypes",
                 "float64", "--threads", "1", "--isolate", "--methods",
                 "fastnmf-hals1,sklearn-cd,rcppml", "--out", str(tmp_path / "o")]) == 0
    with open(tmp_path / "o" / "results.json") as f:
        res = json.load(f)
    assert res["skipped_methods"] == {"rcppml": "Rscript not found (Debian: apt-get install "
                                                "r-cran-rcppml)"}
    assert {r.get("method") for r in res["runs"]} == {None, "sklearn-cd", "fastnmf-hals1"}
    md = (tmp_path / "o" / "benchmarks.md").read_text()
    assert "RcppML (R), own random start: not run, Rscript not found" in md


@pytest.mark.skipif(__import__("fastnmf.bench.peers", fromlist=["x"]).rcppml_missing()
                    is not None, reason="RcppML (Rscript and r-cran-rcppml) not installed")
@pytest.mark.parametrize("sparse", [False, True])
def test_rcppml_peer_fits_the_matrix_it_is_given(sparse):
    """RcppML's model w·diag(d)·h read back in the right orientation: on a planted rank-3
    matrix its fits of 1, 2, 4, … iterations reach a small error, measured by the bench's
    own evaluator, and each point is a separate fit's own time."""
    import scipy.sparse as sp

    from fastnmf.bench import metrics, peers

    rng = np.random.default_rng(0)
    X = rng.random((60, 3)) @ rng.random((3, 45))
    if sparse:
        X[X < np.quantile(X, 0.2)] = 0
        X = sp.csr_matrix(X)
    W0, H0 = np.ones((60, 3)), np.ones((3, 45))  # (not used: RcppML starts on its own)
    evaluate = metrics.evaluator(X, "frobenius")
    curve, notes = peers.METHODS["rcppml"](X, W0, H0, peers.Stop(max_iter=32), evaluate, 1)
    assert curve["iteration"] == [1, 2, 4, 8, 16, 32]
    assert min(curve["time"]) > 0 and notes["iteration_unit"] == "fit"
    assert curve["loss"][-1] <= curve["loss"][0]
    assert curve["loss"][-1] < 0.05 * evaluate(np.zeros((60, 3)), np.zeros((3, 45)))
    assert notes["peak_beyond_x_bytes"] >= 0


@pytest.mark.skipif(__import__("fastnmf.bench.peers", fromlist=["x"]).rcppml_missing()
                    is not None, reason="RcppML (Rscript and r-cran-rcppml) not installed")
def test_rcppml_failure_is_an_error_with_rs_message(monkeypatch):
    """An R error ends the run with R's own message (the configuration fails; it does not
    hang waiting for an answer)."""
    from fastnmf.bench import metrics, peers

    X = np.random.default_rng(0).random((6, 5))
    monkeypatch.setattr(peers, "_write_for_r", lambda X, folder: "sparse")  # no files: fails
    with pytest.raises(RuntimeError, match=r"RcppML did not start: (.|\n)*cannot open"):
        peers.METHODS["rcppml"](X, np.ones((6, 2)), np.ones((2, 5)), peers.Stop(max_iter=4),
                                metrics.evaluator(X, "frobenius"), 1)


def _real_data_missing():
    from fastnmf import datasets

    for which in ("wordnet", "fashion-mnist"):
        if datasets._cached(which) is None:
            return f"{which} not cached (fastnmf.datasets builds it on first use)"
    return None


@pytest.mark.skipif(_real_data_missing() is not None, reason=str(_real_data_missing()))
def test_real_workloads_quick(tmp_path):
    """WordNet and Fashion-MNIST workloads, --quick (a slice), when their data is cached."""
    _bench(["--workloads", "WN20,FM50,WN-KL", "--out", "o", "--methods",
            "fastnmf-hals1,sklearn-cd,fastnmf-mu-kl,sklearn-mu-kl"], tmp_path)
    with open(tmp_path / "o" / "results.json") as f:
        res = json.load(f)
    assert not res["skipped"] and not [r for r in res["runs"] if "error" in r]
    shapes = {r["workload"]: r["meta"]["shape"] for r in res["runs"] if r["role"] == "prepare"}
    assert shapes["WN20"][0] == 2000 and shapes["FM50"] == [1000, 784]
    assert {r["method"] for r in res["runs"] if r["workload"] == "WN-KL" and "method" in r} == {
        "sklearn-mu-kl", "fastnmf-mu-kl"}


def test_reference_stops_at_its_time_cap():
    """A reference that reaches its time cap before 200 iterations sets the target where it
    stopped and says so; the report names the cap and the extrapolated 200 iterations."""
    from fastnmf.bench import report
    from fastnmf.bench.worker import run_group

    def runner(task):
        if task["role"] == "prepare":
            return {"meta": {"description": "d", "shape": [4, 3], "nnz": 12, "x_bytes": 96,
                             "rank": 2}}
        if task["role"] == "reference":  # stopped by max_time after 50 iterations, 10 s
            return {"curve": {"iteration": [0, 25, 50], "time": [0.0, 5.0, 10.0],
                              "loss": [9.0, 5.0, 4.0]}, "per_iter_s": 0.2}
        assert task["target"] == 4.0 and task["max_time"] == 10.0
        return {"curve": {"iteration": [0, 5], "time": [0.0, 1.0], "loss": [9.0, 3.9]},
                "per_iter_s": 0.2, "time_to_target_s": 1.0}

    tasks = [dict(workload="W", dtype="float64", role="prepare"),
             dict(workload="W", dtype="float64", role="reference", method="sklearn-cd",
                  max_iter=200, max_time=10.0),
             dict(workload="W", dtype="float64", role="method", method="fastnmf-hals",
                  time_factor=1.0)]
    out = run_group(tasks, runner)
    ref = out[1]
    assert ref["target"] == 4.0 and ref["target_iteration"] == 50
    assert ref["capped_at_s"] == 10.0 and ref["extrapolated_200_s"] == pytest.approx(40.0)
    text = "\n".join(report.detail("W", "float64", {"sklearn-cd": ref, "fastnmf-hals": out[2]},
                                   out[0]["meta"], None))
    assert "10 s cap" in text and "after 50 of 200" in text and "about 40 s" in text
    assert report._status(ref, ref) == "10 s (50 it, capped)"


def test_a_failed_prepare_stops_its_group():
    from fastnmf.bench.worker import run_group

    def runner(task):
        if task["role"] == "prepare":
            raise ValueError("negative values in X")
        raise AssertionError("must not run")

    out = run_group([dict(role="prepare"), dict(role="reference", method="sklearn-cd")],
                    runner)
    assert all("negative values" in r["error"] for r in out)


def test_machine_limit_arithmetic():
    """Bytes and flops of one iteration at given rates; the limit is the larger part."""
    import numpy as np
    import scipy.sparse as sp

    from fastnmf.bench import metrics

    X = np.ones((100, 50))
    lim = metrics.machine_limit(X, 4, bandwidth=1e9, gemm=dict(rate=1e9, n=384))
    assert lim["x_read_bytes"] == 2 * 100 * 50 * 8
    assert lim["factor_bytes"] == 2 * 150 * 4 * 8
    assert lim["bytes_s"] == pytest.approx((80000 + 9600) / 1e9)
    assert lim["flops_s"] == pytest.approx((4 * 5000 * 4 + 3 * 150 * 16) / 1e9)
    assert lim["limit_s"] == max(lim["bytes_s"], lim["flops_s"])
    S = sp.random(100, 50, density=0.1, format="csr", random_state=0, dtype=np.float32)
    lim = metrics.machine_limit(S, 4, bandwidth=1e9, gemm=dict(rate=1e9, n=384))
    assert lim["product_flops"] == 4 * S.nnz * 4
    assert lim["x_read_bytes"] == 2 * (S.data.nbytes + S.indices.nbytes + S.indptr.nbytes)
    sweep = metrics.sweep_vs_gemm(300, 6, np.float32)
    assert sweep["sweep_s"] > 0 and sweep["gemm_s"] > 0 and sweep["fraction"] > 0
    assert metrics.gemm_rate(1e3, np.float64)["n"] == 384


def test_sparse_floor_times_the_products_a_fit_runs(monkeypatch):
    """The sparse yardstick runs each side's kernel as a fit of that loss would: scatter
    from the CSR of X and X's columns reordered for a Frobenius fit where those pay, the
    CSR of Xᵀ and X's order for KL; and says which it timed."""
    import numpy as np
    import scipy.sparse as sp

    from fastnmf import _data
    from fastnmf.bench import metrics

    for name in ("REORDER_MIN_NNZ", "REORDER_MIN_COLUMNS", "_SCATTER_MIN_NNZ",
                 "_SCATTER_MIN_OPERAND_BYTES"):
        monkeypatch.setattr(_data, name, 0)
    rng = np.random.default_rng(0)
    m, n, nnz = 400, 150, 4000
    p = 1.0 / np.arange(1, n + 1)
    cols = rng.permutation(n)[rng.choice(n, size=nnz, p=p / p.sum())]
    X = sp.csr_matrix((rng.random(nnz) + 0.5, (rng.integers(0, m, nnz), cols)), shape=(m, n))
    W, H = rng.random((m, 4)), rng.random((4, n))
    frob = metrics.sparse_floor(X, W, H, 1e10)
    assert set(frob["layouts"]) == {"X@Ht (CSR, columns by count)",
                                    "X.T@W (scatter from the CSR of X, columns by count)"}
    kl = metrics.sparse_floor(X, W, H, 1e10, "kullback-leibler")
    assert set(kl["layouts"]) == {"X@Ht (CSR)", "X.T@W (scatter from the CSR of X)"}
    monkeypatch.setattr(_data, "_SCATTER_MIN_OPERAND_BYTES", 1 << 62)
    kept = metrics.sparse_floor(X, W, H, 1e10)
    assert set(kept["layouts"]) == {"X@Ht (CSR)", "X.T@W (gather from the CSR of X.T)"}


def test_a_single_separate_fit_has_a_time_per_iteration():
    """A peer timed by separate fits (RcppML) may fit once within a short cap: its one
    point still gives the time per iteration (the fit's time over its iterations)."""
    from fastnmf.bench import peers
    from fastnmf.bench.worker import _per_iteration

    calls = []

    def fit(n):
        calls.append(n)
        return 0.06, 1.0  # one iteration already takes more than half the cap

    curve = peers._doubling(fit, peers.Stop(max_iter=100, max_time=0.1))
    assert calls == [1] and curve["iteration"] == [1]
    assert _per_iteration(curve, "fit") == pytest.approx(0.06)
    assert _per_iteration(curve, None) is None  # an iteration-by-iteration curve needs two
