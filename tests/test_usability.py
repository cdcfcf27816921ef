"""A newcomer's friction (issue 21): hints, short reprs, unpacking, aliases, swap warnings."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import random_matrix

import fastnmf
from fastnmf import NMF
from fastnmf.solvers import objective_for

# ------------------------------------------------------------------ NaN: say how


@pytest.mark.parametrize("sparse", [False, True])
def test_nan_error_points_to_missing_nan(sparse):
    X = random_matrix(12, 8)
    X[3, 4] = np.nan
    Xk = sp.csr_matrix(X) if sparse else X
    with pytest.raises(ValueError, match=r"Input X contains NaN\..*missing='nan'"):
        fastnmf.nmf(Xk, 2, max_iter=5)
    res = fastnmf.nmf(Xk, 2, max_iter=5, missing="nan")  # and the hint works
    assert np.isfinite(res.W).all() and np.isfinite(res.loss)


def test_nan_in_custom_factors_has_no_missing_hint():
    X = random_matrix(12, 8)
    W, H = np.ones((12, 2)), np.ones((2, 8))
    W[0, 0] = np.nan
    with pytest.raises(ValueError, match="contains NaN") as info:
        fastnmf.nmf(X, 2, init="custom", W=W, H=H)
    assert "missing" not in str(info.value)


# ------------------------------------------------------------------ NMFResult


def test_result_repr_is_short_and_unpacks():
    X = random_matrix(200, 100)
    res = fastnmf.nmf(X, 5, max_iter=10)
    text = repr(res)
    assert len(text) < 300, text
    assert "200×5" in text and "5×100" in text and "n_iter=10" in text
    assert re.search(r"loss=[0-9.e+-]+", text)
    assert "[" not in text and "array" not in text  # no entries of W or H
    W, H = res
    assert W is res.W and H is res.H
    assert [F.shape for F in res] == [(200, 5), (5, 100)]


# ------------------------------------------------------------------ KL aliases


@pytest.mark.parametrize("alias", ["kl", "poisson"])
def test_kl_aliases(alias):
    assert objective_for(alias) is objective_for("kullback-leibler")
    X = random_matrix(30, 20, seed=2)
    kw = dict(solver="mu", max_iter=20, tol=0, random_state=0, init="nndsvda")
    ref = fastnmf.nmf(X, 3, beta_loss="kullback-leibler", **kw)
    res = fastnmf.nmf(X, 3, beta_loss=alias, **kw)
    assert res.beta_loss == "kullback-leibler"
    np.testing.assert_array_equal(res.W, ref.W)
    est = NMF(3, beta_loss=alias, **kw)
    W = est.fit_transform(X)
    assert est.get_params()["beta_loss"] == alias  # as given (scikit-learn's clone rule)
    np.testing.assert_array_equal(W, NMF(3, beta_loss="kullback-leibler", **kw).fit_transform(X))
    W2, _, _ = fastnmf.non_negative_factorization(X, n_components=3, beta_loss=alias, **kw)
    np.testing.assert_array_equal(W2, W)


def test_unknown_loss_names_the_aliases():
    with pytest.raises(ValueError, match="'kl' or 'poisson'"):
        fastnmf.nmf(random_matrix(10, 8), 2, beta_loss="gaussian")


# ------------------------------------------------------------------ mask / missing swapped


def _observed(shape, fraction, seed=0):
    return np.random.default_rng(seed).random(shape) < fraction


@pytest.mark.parametrize("fn", ["nmf", "fit_many"])
def test_swapped_mask_or_missing_warns(fn):
    X = random_matrix(30, 20)
    observed = _observed(X.shape, 0.85)  # the usual case: most entries observed

    def fit(**kw):
        if fn == "nmf":
            return fastnmf.nmf(X, 2, max_iter=3, **kw)
        return fastnmf.fit_many(X, [2], n_runs=1, max_iter=3, random_state=0, **kw)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the right way round: no warning
        fit(mask=observed)
        fit(missing=~observed)
        fit(missing=sp.csr_matrix(~observed))
    with pytest.warns(UserWarning, match=r"mask \(True = observed\) leaves 8\d% .*"
                                         r"pass it as missing= instead") as record:
        fit(mask=~observed)
    assert record[0].filename == __file__  # points at the caller
    with pytest.warns(UserWarning, match=r"missing \(True = missing\) leaves 8\d% .*"
                                         r"pass it as mask= instead"):
        fit(missing=observed)
    with pytest.warns(UserWarning, match="pass it as mask= instead"):
        fit(missing=sp.csr_matrix(observed))


def test_half_missing_does_not_warn_and_all_missing_only_raises():
    X = random_matrix(10, 10)
    half = np.zeros(X.shape, dtype=bool)
    half[:5] = True  # exactly half: not "more than half"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fastnmf.nmf(X, 2, max_iter=3, mask=half)
        with pytest.raises(ValueError, match="Every entry of X is missing"):
            fastnmf.nmf(X, 2, mask=np.zeros(X.shape, dtype=bool))


def test_select_rank_with_a_large_holdout_does_not_warn():
    X = random_matrix(30, 20, rank=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        fastnmf.select_rank(X, [1, 2], method="cv", n_runs=1, n_repeats=1, holdout=0.6,
                            max_iter=5, random_state=0)


class _FakeFrame:
    """The least of a pandas DataFrame: labels and ``__array__`` (pandas is optional)."""

    def __init__(self, array, index, columns):
        self._array, self.index, self.columns = array, index, columns
        self.shape = array.shape

    def __array__(self, dtype=None, copy=None):
        return self._array if dtype is None else self._array.astype(dtype)


class _FakePandas:
    """Records what W_frame/H_frame hand to ``pandas.DataFrame``."""

    @staticmethod
    def DataFrame(data, index=None, columns=None):
        return dict(data=data, index=index, columns=columns)


def test_frames_give_back_a_dataframes_labels(monkeypatch):
    """nmf(DataFrame) keeps X's row and column labels for W_frame() and H_frame() (issue 21)."""
    X = random_matrix(12, 7, seed=3)
    rows = [f"cell{i}" for i in range(12)]
    cols = [f"gene{j}" for j in range(7)]
    res = fastnmf.nmf(_FakeFrame(X, rows, cols), 3, random_state=0, max_iter=20)
    plain = fastnmf.nmf(X, 3, random_state=0, max_iter=20)
    np.testing.assert_array_equal(res.W, plain.W)  # the labels change nothing else
    assert res.row_names is rows and res.column_names is cols
    assert plain.row_names is None and plain.column_names is None
    monkeypatch.setitem(__import__("sys").modules, "pandas", _FakePandas)
    W = res.W_frame()
    assert W["data"] is res.W and W["index"] == rows and W["columns"] == ["nmf0", "nmf1", "nmf2"]
    H = res.H_frame(prefix="topic")
    assert H["data"] is res.H and H["index"] == ["topic0", "topic1", "topic2"]
    assert H["columns"] == cols
    assert plain.W_frame()["index"] is None  # an array's result: pandas numbers the rows
    assert "labels" not in repr(res) and "cell0" not in repr(res)


def test_frames_without_pandas_say_what_to_install(monkeypatch):
    res = fastnmf.nmf(random_matrix(6, 5, seed=1), 2, random_state=0, max_iter=5)
    monkeypatch.setitem(__import__("sys").modules, "pandas", None)  # import fails
    for frame in (res.W_frame, res.H_frame):
        with pytest.raises(ImportError, match="pip install pandas"):
            frame()


def test_frames_with_pandas():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(random_matrix(10, 6, seed=2), index=[f"r{i}" for i in range(10)],
                     columns=[f"c{j}" for j in range(6)])
    res = fastnmf.nmf(X, 2, random_state=0, max_iter=10)
    W, H = res.W_frame(), res.H_frame()
    assert list(W.index) == list(X.index) and list(W.columns) == ["nmf0", "nmf1"]
    assert list(H.columns) == list(X.columns) and list(H.index) == ["nmf0", "nmf1"]
    np.testing.assert_allclose((W @ H).to_numpy(), res.W @ res.H)
