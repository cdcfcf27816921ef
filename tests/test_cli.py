"""The console command, run in-process: exit status and messages (issues 18 and 21)."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastnmf.cli import build_parser, main


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, *words):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]


@pytest.fixture
def counts(tmp_path):
    X = sp.random(40, 30, density=0.3, format="csr", random_state=0) * 10
    path = tmp_path / "counts.npz"
    sp.save_npz(path, X)
    return path


def test_missing_file(capsys, tmp_path):
    code, _, err = _run(capsys, "fit", tmp_path / "nothere.npz")
    _one_line_error(code, err, "nothere.npz", "no such file")


def test_unreadable_file(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_text("not a zip file")
    _one_line_error(*_run(capsys, "fit", bad)[::2], "cannot read", "bad.npz")
    odd = tmp_path / "x.csv"
    odd.write_text("1,2\n")
    _one_line_error(*_run(capsys, "fit", odd)[::2], "cannot read", ".npy")


@pytest.mark.parametrize("value, words", [(-1.0, ("Negative values",)),
                                           (np.nan, ("NaN", "missing"))])
def test_bad_values(capsys, tmp_path, value, words):
    X = np.random.default_rng(0).random((20, 10))
    X[3, 4] = value
    path = tmp_path / "x.npy"
    np.save(path, X)
    code, _, err = _run(capsys, "fit", path, "--rank", 2)
    _one_line_error(code, err, *words)


def test_nan_as_missing(capsys, tmp_path):
    X = np.random.default_rng(0).random((20, 10))
    X[3, 4] = np.nan
    path = tmp_path / "x.npy"
    np.save(path, X)
    code, out, _ = _run(capsys, "fit", path, "--rank", 2, "--missing", "nan", "--max-iter", 5)
    assert code == 0 and "5 iterations" in out


def test_debug_shows_the_traceback(capsys, tmp_path):
    with pytest.raises(Exception, match="no such file"):
        main(["--debug", "fit", str(tmp_path / "nothere.npz")])
    with pytest.raises(Exception, match="no such file"):
        main(["fit", str(tmp_path / "nothere.npz"), "--debug"])


@pytest.mark.parametrize("argv, words", [
    (["--rank", "0"], ("--rank", "positive integer")),
    (["--rank", "x"], ("--rank", "positive integer")),
    (["--threads", "0"], ("--threads", "positive integer")),
    (["--threads", "-2"], ("--threads", "positive integer")),
    (["--beta-loss", "poison"], ("--beta-loss", "poison", "kullback-leibler")),
])
def test_bad_options(capsys, counts, argv, words):
    with pytest.raises(SystemExit) as e:
        main(["fit", str(counts), *argv])
    assert e.value.code == 2
    _one_line_error(2, capsys.readouterr().err, *words)


def test_rank_above_both_dimensions(capsys, counts):
    code, _, err = _run(capsys, "fit", counts, "--rank", 5000)
    _one_line_error(code, err, "5000", "above both dimensions", "40 x 30")


def test_rank_above_one_dimension_warns(capsys, counts):
    code, _, err = _run(capsys, "fit", counts, "--rank", 35, "--max-iter", 2)
    assert code == 0 and "warning" in err and "35" in err


def test_plot_folder_checked_before_any_fit(capsys, counts, tmp_path, monkeypatch):
    import fastnmf.rank

    def no_fit(*args, **kwargs):
        raise AssertionError("fitted before checking --plot")

    monkeypatch.setattr(fastnmf.rank, "select_rank", no_fit)
    code, _, err = _run(capsys, "rank", counts, "--plot", tmp_path / "missing_dir" / "x.png")
    _one_line_error(code, err, "--plot", "missing_dir", "does not exist")
    code, _, err = _run(capsys, "fit", counts, "--save", tmp_path / "nope" / "out.npz")
    _one_line_error(code, err, "--save", "does not exist")


def test_nnz_is_exact(capsys):
    code, out, _ = _run(capsys, "fit", "--data", "sparse", "--rows", 200, "--cols", 100,
                        "--nnz", 3000, "--rank", 3, "--max-iter", 2)
    assert code == 0 and "200 x 100, 3000 nonzeros" in out
    code, _, err = _run(capsys, "fit", "--data", "sparse", "--rows", 10, "--cols", 10,
                        "--nnz", 101)
    _one_line_error(code, err, "--nnz", "101")


@pytest.mark.parametrize("loss, solver, shown", [
    ("kl", None, "kullback-leibler loss, solver=ccd"),
    ("poisson", "mu", "kullback-leibler loss, solver=mu"),
    ("1.5", None, "beta=1.5 loss, solver=mu"),
])
def test_beta_loss(capsys, counts, tmp_path, loss, solver, shown):
    import fastnmf

    out_file = tmp_path / "res.npz"
    argv = ["fit", counts, "--rank", 3, "--beta-loss", loss, "--max-iter", 4, "--tol", 0,
            "--save", out_file] + (["--solver", solver] if solver else [])
    code, out, _ = _run(capsys, *argv)
    assert code == 0 and shown in out
    ref = fastnmf.nmf(sp.load_npz(counts), 3, beta_loss=loss if loss != "1.5" else 1.5,
                      solver=solver, max_iter=4, tol=0, random_state=0)
    with np.load(out_file) as saved:
        np.testing.assert_allclose(saved["H"], ref.H, rtol=1e-10)


def test_solver_that_does_not_fit_the_loss(capsys, counts):
    code, _, err = _run(capsys, "fit", counts, "--beta-loss", "kl", "--solver", "hals")
    _one_line_error(code, err, "solver", "hals")


def test_progress_flag(capsys, counts):
    code, _, err = _run(capsys, "fit", counts, "-r", 2, "--max-iter", 3, "--progress")
    assert code == 0 and "fastnmf" in err  # the bar's label
    code, _, err = _run(capsys, "fit", counts, "-r", 2, "--max-iter", 3, "--no-progress")
    assert code == 0 and err == ""


def test_help_shows_defaults_and_every_option_has_help():
    parser = build_parser()
    subparsers = parser._subparsers._group_actions[0].choices
    for name in ("fit", "rank", "demo"):
        sub = subparsers[name]
        for action in sub._actions:
            assert action.help, f"fastnmf {name} {action.option_strings} has no help text"
        text = sub.format_help()
        assert "(default: 200)" in text  # --max-iter
    fit_help = subparsers["fit"].format_help()
    assert "(default: frobenius)" in fit_help and "(default: 20)" in fit_help


def test_default_fit_shows_structure(capsys):
    """`fastnmf fit` with no file fits generated dense low rank + 10 % noise (smaller here):
    the relative error comes down to the noise's, far below the ~0.9 of sampled counts."""
    code, out, _ = _run(capsys, "fit", "--rows", 500, "--cols", 200, "--rank", 5)
    assert code == 0 and "500 x 200" in out and "backend=dense" in out
    rel = float(out.split("relative error")[1].split()[0])
    assert rel < 0.1


def _suggestion_lines(out):
    return [line for line in out.splitlines() if line.startswith("suggested rank")]


@pytest.mark.filterwarnings("ignore:select_rank")  # ranks 2-3 only: the range note
def test_rank_kl_prints_the_rule(capsys, counts):
    """`fastnmf rank --beta-loss kl`: select_rank's KL cross-validation, its numbers and its
    suggestion, and the line that says which rule made the suggestion."""
    from fastnmf import select_rank

    code, out, _ = _run(capsys, "rank", counts, "--ranks", "2-3", "--beta-loss", "kl",
                        "--max-iter", 20, "--repeats", 2, "--quiet")
    assert code == 0
    sel = select_rank(sp.load_npz(counts), [2, 3], n_repeats=2, random_state=0,
                      beta_loss="kullback-leibler", max_iter=20)
    assert f"{sel.table[0]['test_error']:14.6g}" in out
    lines = _suggestion_lines(out)
    assert lines[0] == f"suggested rank (cv): {sel.suggested('cv')}"
    assert lines[-1] == f"suggested rank: {sel.suggested()} (the default rule, cv: {sel.rule()})"


def test_rank_combined_default_named(capsys, counts):
    code, out, _ = _run(capsys, "rank", counts, "--ranks", "2-3", "--method", "cv",
                        "--method", "stability", "--runs", 2, "--repeats", 2,
                        "--max-iter", 20, "--quiet")
    assert code == 0
    lines = _suggestion_lines(out)
    assert [line.split(":")[0] for line in lines] == [
        "suggested rank (cv)", "suggested rank (stability)", "suggested rank"]
    assert "(the default rule, cv and stability combined: among the ranks" in lines[-1]


@pytest.mark.parametrize("argv, words", [
    (["--beta-loss", "itakura-saito"], ("beta_loss", "itakura-saito")),
    (["--beta-loss", "kl", "--solver", "ccd"], ("solver", "ccd")),
])
def test_rank_bad_loss(capsys, counts, argv, words):
    """A loss that cross-validation cannot use: one line, status 2, before any fit."""
    code, _, err = _run(capsys, "rank", counts, "--ranks", "2-3", "--quiet", *argv)
    _one_line_error(code, err, *words)


def test_rank_unknown_loss(capsys, counts):
    with pytest.raises(SystemExit) as e:
        main(["rank", str(counts), "--beta-loss", "cosine"])
    assert e.value.code == 2
    _one_line_error(2, capsys.readouterr().err, "--beta-loss", "cosine", "kullback-leibler")
