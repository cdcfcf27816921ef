"""Rank selection: held-out sets, consensus scores, the planted rank found, the console command."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import random_factors

from fastnmf import cli
from fastnmf.rank import (
    component_silhouette,
    consensus_matrix,
    cophenetic,
    dispersion,
    heldout_error,
    select_rank,
    speckled_holdout,
)


def planted_low_rank(seed=0, rank=4, m=80, n=60, noise=0.1):
    rng = np.random.default_rng(seed)
    return rng.random((m, rank)) @ rng.random((rank, n)) + noise * rng.random((m, n))


def planted_clusters(seed=0, k=3, m=40, n=60):
    """Columns in k groups: each column is mostly one component plus a random mixture."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(k), n // k)
    W = 2 * rng.random((m, k)) ** 4
    H = 0.3 * rng.random((k, n))
    H[groups, np.arange(n)] += 1
    return W @ H + 0.2 * rng.random((m, n)), groups


def test_speckled_holdout_fraction_and_seed():
    a = speckled_holdout((200, 100), 0.1, random_state=0)
    assert abs(a.nnz / 20000 - 0.1) < 0.01
    lin = a.rows() * 100 + a.indices
    assert np.all(np.diff(lin) > 0)  # sorted and distinct
    b = speckled_holdout((200, 100), 0.1, random_state=0)
    np.testing.assert_array_equal(a.indices, b.indices)
    c = speckled_holdout((200, 100), 0.1, random_state=1)
    assert c.nnz != a.nnz or not np.array_equal(c.indices, a.indices)
    for bad in (0.0, 1.0, -0.5):
        with pytest.raises(ValueError, match="holdout"):
            speckled_holdout((10, 10), bad)


@pytest.mark.parametrize("sparse", [False, True])
def test_heldout_error_matches_numpy(sparse):
    rng = np.random.default_rng(0)
    X = rng.random((30, 20)) * (rng.random((30, 20)) < 0.5)
    W, H = random_factors(30, 20, 3)
    P = speckled_holdout(X.shape, 0.3, random_state=2)
    mask = P.tocsr().toarray()
    expected = np.linalg.norm((X - W @ H)[mask]) / np.linalg.norm(X[mask])
    got = heldout_error(sp.csr_matrix(X) if sparse else X, W, H, P)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_consensus_scores_on_known_labels():
    crisp = np.array([[0, 0, 1, 1, 2], [1, 1, 0, 0, 2], [2, 2, 0, 0, 1]])
    C = consensus_matrix(crisp)
    expected = np.array([[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 1, 1, 0],
                         [0, 0, 0, 0, 1]], dtype=float)
    np.testing.assert_array_equal(C, expected)
    assert dispersion(C) == 1.0
    assert cophenetic(C) == pytest.approx(1.0)
    mixed = np.array([[0, 0, 1, 1], [0, 1, 0, 1], [0, 1, 1, 0], [0, 0, 0, 1]])
    Cm = consensus_matrix(mixed)
    naive = np.mean([(run[:, None] == run[None, :]) for run in mixed], axis=0)
    np.testing.assert_allclose(Cm, naive)
    assert dispersion(Cm) < 1.0
    assert np.isnan(cophenetic(np.ones((4, 4))))  # one cluster: no structure to correlate


def test_component_silhouette():
    rng = np.random.default_rng(0)
    centers = np.eye(3, 10) + 0.05
    stable = np.concatenate([centers * rng.uniform(0.5, 2) for _ in range(8)])
    assert component_silhouette(stable, 3) > 0.95
    assert component_silhouette(rng.random((24, 10)), 3) < 0.5
    assert np.isnan(component_silhouette(stable, 1))


@pytest.mark.parametrize("sparse", [False, True])
def test_cross_validation_is_minimal_at_the_planted_rank(sparse):
    X = planted_low_rank(seed=0, rank=4, noise=0.3)
    X = sp.csr_matrix(X) if sparse else X
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the lowest error inside the range: no note
        sel = select_rank(X, range(2, 8), method="cv", n_repeats=2, random_state=0,
                          max_iter=300)
    test = sel.column("test_error")
    train = sel.column("train_error")
    assert sel.suggested() == 4, test
    assert np.all(np.diff(train) < 0)  # training error keeps falling with the rank
    assert test[-1] > test[2]  # ... test error does not
    assert len(sel.cv_folds) == 2 * 6


def test_consensus_cophenetic_peaks_at_the_planted_clusters():
    X, groups = planted_clusters(seed=0, k=3)
    sel = select_rank(X, range(2, 7), method=["consensus", "stability"], n_runs=15,
                      samples="columns", random_state=0, max_iter=200)
    coph = dict(zip(sel.ranks, sel.column("cophenetic"), strict=True))
    disp = dict(zip(sel.ranks, sel.column("dispersion"), strict=True))
    assert coph[3] > 0.99
    assert all(coph[r] < coph[3] for r in (2, 4, 5, 6)), coph
    assert all(disp[r] < disp[3] - 0.02 for r in (2, 4, 5, 6)), disp
    assert sel.suggested("consensus") == 3
    # at the planted rank every run finds the planted grouping
    C = sel.consensus[3]
    np.testing.assert_array_equal(C, groups[:, None] == groups[None, :])
    sil = sel.column("silhouette")
    assert sil[1] > 0.9 and sil[1] == np.nanmax(sil[1:])
    assert sel.fits.n_runs == 15 and len(sel.fits.results) == 15 * 5


def test_samples_axis_rows_clusters_rows():
    X, groups = planted_clusters(seed=1, k=3)
    sel = select_rank(X.T, [3], method="consensus", samples="rows", n_runs=5, random_state=0,
                      max_iter=100)
    np.testing.assert_array_equal(sel.consensus[3], groups[:, None] == groups[None, :])
    # rows are the samples by default, as in scikit-learn and fastnmf.cluster
    default = select_rank(X.T, [3], method="consensus", n_runs=5, random_state=0,
                          max_iter=100)
    assert default.samples == "rows"
    np.testing.assert_array_equal(default.consensus[3], sel.consensus[3])
    cols = select_rank(X, [3], method="consensus", samples="columns", n_runs=5,
                       random_state=0, max_iter=100)
    np.testing.assert_array_equal(cols.consensus[3], groups[:, None] == groups[None, :])


@pytest.mark.filterwarnings("ignore:select_rank")  # ranks 2-3 only: the range note
def test_table_records_plot_and_progress():
    import matplotlib

    matplotlib.use("Agg")
    X, _ = planted_clusters(seed=2)
    sel = select_rank(X, [2, 3], method=["cv", "consensus"], n_runs=3, n_repeats=1,
                      random_state=0, max_iter=50, progress=True)
    rec = sel.to_records()
    assert list(rec.dtype.names) == ["rank", "train_error", "test_error", "test_error_std",
                                     "loss", "relative_error", "cophenetic", "dispersion"]
    np.testing.assert_array_equal(rec.rank, [2, 3])
    fig = sel.plot()
    assert [ax.get_title() for ax in fig.axes] == ["cross-validation", "consensus"]
    for ax, method in zip(fig.axes, ["cv", "consensus"], strict=True):
        labels = ax.get_legend_handles_labels()[1]
        assert f"suggested: {sel.suggested(method)}" in labels
    assert sel.default_method() == "cv" and fig._suptitle is None
    with pytest.raises(ValueError, match="was not run"):
        sel.suggested("stability")
    with pytest.raises(KeyError, match="no column"):
        sel.column("silhouette")


@pytest.mark.parametrize("ranks, kwargs, error, match", [
    ([2, 3], {"method": "aic"}, ValueError, "method must be one of"),
    ([2, 3], {"method": []}, ValueError, "method is empty"),
    ([2, 3], {"samples": "cells"}, ValueError, "samples"),
    ([2, 3], {"holdout": 1.5}, ValueError, "holdout"),
    ([2, 3], {"holdout": 1.0}, ValueError, "holdout"),
    ([2, 3], {"holdout": 0.0}, ValueError, "holdout"),
    ([2, 3], {"n_repeats": 0}, ValueError, "n_repeats"),
    ([2, 3], {"method": "consensus", "n_runs": 0}, ValueError, "n_runs"),
    ([2, 3], {"cv_tol": -0.1}, ValueError, "cv_tol"),
    ([0, 2], {}, ValueError, "rank must be >= 1"),
    ([2, 3], {"beta_loss": "kl", "solver": "ccd"}, ValueError, "solver='mu'"),
    ([2, 3], {"beta_loss": 0.5}, ValueError, "need beta_loss"),
    ([2, 2.5], {}, TypeError, "rank must be a positive integer"),
    ([2, 9], {}, ValueError, r"ranks \[9\] exceed min\(X.shape\) = 8"),
    ([2, 3], {"mask": np.ones((10, 8), dtype=bool) & (np.arange(10) != 4)[:, None]},
     ValueError, r"rows \[4\] of X have no observed entry"),
    ([2, 3], {"missing": np.arange(8)[None, :].repeat(10, 0) == 6}, ValueError,
     r"columns \[6\] of X have no observed entry"),
])
def test_select_rank_rejects_bad_input_before_any_fit(ranks, kwargs, error, match,
                                                       monkeypatch):
    import fastnmf.rank

    def no_fit(*args, **kw):
        raise AssertionError("a fit ran before the input was checked")

    monkeypatch.setattr(fastnmf.rank, "fit_many", no_fit)
    X = planted_low_rank(m=10, n=8, rank=2)
    with pytest.raises(error, match=match):
        select_rank(X, ranks, **kwargs)


def test_select_rank_with_missing_values_scores_only_observed_entries(monkeypatch):
    import fastnmf.rank

    X = planted_low_rank(seed=4, rank=3, m=50, n=40, noise=0.05)
    M = np.random.default_rng(0).random(X.shape) < 0.9
    scored = []
    real = fastnmf.rank.heldout_error

    def spy(X_, W, H, pattern):
        scored.append(pattern)
        return real(X_, W, H, pattern)

    monkeypatch.setattr(fastnmf.rank, "heldout_error", spy)
    Xnan = np.where(M, X, np.nan)
    sel = select_rank(Xnan, [2, 3, 4, 5], missing="nan", n_repeats=2, random_state=0,
                      max_iter=300)
    assert sel.suggested("cv") == 3
    for pattern in scored:  # the held-out entries scored are all observed
        assert M[pattern.rows(), pattern.indices].all() and pattern.nnz > 0
    cons = select_rank(X, [2, 3], method="consensus", mask=M, n_runs=3, random_state=0,
                       max_iter=50)
    assert cons.fits.results[0].W.shape == (50, 2)


def test_cross_validation_of_counts_with_the_kl_loss():
    rng = np.random.default_rng(3)
    W = rng.gamma(0.5, size=(120, 4))
    H = rng.gamma(0.5, size=(4, 90))
    X = rng.poisson(5 * W @ H).astype(np.float64)
    for data in (X, sp.csr_matrix(X)):
        sel = select_rank(data, [2, 3, 4, 5, 6], method="cv", beta_loss="kullback-leibler",
                          n_repeats=2, random_state=0, max_iter=400, tol=1e-6)
        assert sel.suggested("cv") == 4, sel.column("test_error")
        test = sel.column("test_error")
        assert test[2] < test[0] and np.all(np.isfinite(test))


def _selection(test_error, test_std=None, coph=None, ranks=None, n_repeats=3):
    from fastnmf.rank import RankSelection

    ranks = list(range(2, 2 + len(test_error))) if ranks is None else ranks
    table = []
    for i, r in enumerate(ranks):
        row = {"rank": r, "train_error": 0.0, "test_error": test_error[i],
               "test_error_std": 0.0 if test_std is None else test_std[i]}
        if coph is not None:
            row.update(cophenetic=coph[i], dispersion=coph[i])
        table.append(row)
    folds = [{"repeat": k, "rank": r} for k in range(n_repeats) for r in ranks]
    methods = ("cv", "consensus") if coph is not None else ("cv",)
    return RankSelection(ranks=tuple(ranks), methods=methods, table=table, cv_folds=folds)


def test_cv_rule_smallest_rank_as_good_as_the_best():
    # the curve: flat within noise past the planted rank 5, lowest at 7
    sel = _selection([0.5, 0.4, 0.226, 0.0082, 0.0080, 0.0078, 0.0079], ranks=range(2, 9))
    assert sel.suggested() == 5
    assert "standard error" in sel.rule()
    # a real drop beyond the tolerance is followed
    assert _selection([0.5, 0.3, 0.2, 0.1, 0.15]).suggested() == 5
    # one standard error of the best (0.05/√4), when wider than 2 % of the fall (0.004)
    curve = [0.5, 0.45, 0.31, 0.30]
    assert _selection(curve, [0, 0, 0, 0.05], n_repeats=4).suggested() == 4
    assert _selection(curve, [0, 0, 0, 0.0], n_repeats=4).suggested() == 5
    assert _selection(curve, [0, 0, 0, 0.05], n_repeats=1).suggested() == 5  # no SE from one
    assert _selection([0.5, 0.45, 0.303, 0.30]).suggested() == 4  # within 2 % of the fall


def test_range_note_when_the_lowest_error_is_at_an_end():
    assert _selection([0.5, 0.3, 0.2, 0.25]).range_note() is None
    note = _selection([0.2, 0.3, 0.4], ranks=[7, 8, 9]).range_note()
    assert "smallest rank tried (7)" in note and "below 7" in note
    note = _selection([0.5, 0.4, 0.3]).range_note()
    assert "largest rank tried (4)" in note and "above 4" in note
    assert "smallest" in _selection([0.3, 0.2, 0.4], ranks=[4, 3, 5]).range_note()  # order
    assert _selection([0.2, 0.3], ranks=[1, 2]).range_note() is None  # nothing below 1
    assert _selection([0.2], ranks=[3]).range_note() is None
    # select_rank warns with it: ranks 2-3 below a planted rank 4
    with pytest.warns(UserWarning, match="largest rank tried .3."):
        select_rank(planted_low_rank(seed=0, rank=4, noise=0.3), [2, 3], n_repeats=1,
                    random_state=0, max_iter=100)


def test_consensus_stability_and_combined_rules():
    from fastnmf.rank import _before_drop

    assert _before_drop(np.array([0.9, 0.95, 1.0, 0.8, 0.85])) == 2
    assert _before_drop(np.array([0.9, 1.0, 1.0, 1.0, 1.0])) == 1  # no drop: smallest best
    assert _before_drop(np.array([1.0, 0.7, 1.0, 0.7])) == 0  # equal drops: the first
    assert _before_drop(np.array([np.nan, 0.9, 0.99])) == 2
    # consensus: on the dispersion; combined: cv's candidates, the highest silhouette
    sel = _selection([0.5, 0.2, 0.101, 0.100, 0.1005], coph=[1.0, 0.9, 0.95, 1.0, 0.8])
    assert sel.default_method() == "cv"  # consensus alone does not join cv
    assert sel.suggested("consensus") == 2  # the highest dispersion, smallest of equals
    assert "dispersion" in sel.rule("consensus")
    for row, sil in zip(sel.table, [0.99, 0.9, 0.7, 0.95, 0.6], strict=True):
        row["silhouette"] = sil
    sel.methods = ("cv", "stability")
    assert sel.default_method() == "combined"
    assert sel.suggested("cv") == 4 and sel.suggested() == 5
    assert sel.suggested("stability") == 5  # before the largest drop, 0.95 -> 0.6
    assert "silhouette" in sel.rule()
    import matplotlib

    matplotlib.use("Agg")
    fig = sel.plot()
    assert fig._suptitle.get_text().endswith(": 5")
    assert "suggested: 5" in fig.axes[1].get_legend_handles_labels()[1]
    with pytest.raises(ValueError, match="was not run"):
        _selection([0.5, 0.2]).suggested("combined")


def test_console_rank_defaults_rows_as_samples():
    args = cli.build_parser().parse_args(["rank", "X.npy"])
    assert args.samples == "rows"
    assert cli.build_parser().parse_args(["rank", "X.npy", "--samples", "columns"]).samples == (
        "columns")


def test_ranks_parser():
    assert cli._parse_ranks("2-5") == [2, 3, 4, 5]
    assert cli._parse_ranks("2-10:4") == [2, 6, 10]
    assert cli._parse_ranks("2,3,7-8") == [2, 3, 7, 8]
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        cli._parse_ranks("two")


@pytest.mark.parametrize("fmt", ["npy", "npz", "mtx"])
def test_console_command(tmp_path, capsys, fmt):
    import scipy.io

    X = planted_low_rank(seed=3, rank=3, m=40, n=30, noise=0.05)
    path = tmp_path / f"X.{fmt}"
    if fmt == "npy":
        np.save(path, X)
    elif fmt == "npz":
        sp.save_npz(path, sp.csr_matrix(X))
    else:
        scipy.io.mmwrite(path, sp.coo_matrix(X))
    out_png, out_npy = tmp_path / "curves.png", tmp_path / "table.npy"
    rc = cli.main(["rank", str(path), "--ranks", "2-4", "--method", "cv", "--repeats", "1",
                   "--max-iter", "100", "--quiet", "--plot", str(out_png),
                   "--save", str(out_npy)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "test_error" in text and "suggested rank (cv): 3" in text
    assert out_png.stat().st_size > 0
    np.testing.assert_array_equal(np.load(out_npy, allow_pickle=False)["rank"], [2, 3, 4])
    assert "note" not in text
    if fmt == "npy":  # ranks that stop at the planted one: the note, as a line of output
        cli.main(["rank", str(path), "--ranks", "2-3", "--method", "cv", "--repeats", "1",
                  "--max-iter", "100", "--quiet"])
        out, err = capsys.readouterr()
        assert "note     the held-out error is lowest at the largest rank tried (3)" in out
        assert "Warning" not in err


def test_docstring_examples():
    import doctest

    import fastnmf.rank

    assert doctest.testmod(fastnmf.rank).failed == 0
