"""Hostile input: every invalid argument gets a clear error before any work.

The cases below are also the source of docs/errors.md: the test renders the
table from the messages actually raised and compares it with the file.
Regenerate it with ``FASTNMF_WRITE_DOCS=1 pytest tests/test_hostile.py``.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

import fastnmf
from fastnmf import NMF, non_negative_factorization

DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


def _X(dtype=np.float64):
    return np.random.default_rng(0).random((8, 6)).astype(dtype)


def _with(value, dtype=np.float64, sparse=False):
    X = _X(dtype)
    X[1, 2] = value
    return sp.csr_matrix(X) if sparse else X


def _WH(W=None, H=None):
    rng = np.random.default_rng(1)
    W0, H0 = rng.random((8, 2)), rng.random((2, 6))
    return {"W": W0 if W is None else W(W0), "H": H0 if H is None else H(H0)}


def _neg(F):
    F = F.copy()
    F[0, 0] = -1.0
    return F


def _nan(F):
    F = F.copy()
    F[0, 0] = np.nan
    return F


# (argument, problem, call, exception); call() must raise exception.
# "nmf" cases call fastnmf.nmf(X, 2, **kwargs); "NMF" cases fit the estimator.
NMF_CASES = [
    ("X", "NaN", {"X": _with(np.nan)}, ValueError),
    ("X", "+inf", {"X": _with(np.inf)}, ValueError),
    ("X", "negative entry", {"X": _with(-1.0)}, ValueError),
    ("X", "NaN in sparse X", {"X": _with(np.nan, sparse=True)}, ValueError),
    ("X", "negative in float32 sparse X", {"X": _with(-2.0, np.float32, True)}, ValueError),
    ("X", "1-D", {"X": np.ones(5)}, ValueError),
    ("X", "3-D", {"X": np.ones((2, 3, 4))}, ValueError),
    ("X", "no rows", {"X": np.zeros((0, 5))}, ValueError),
    ("X", "empty sparse", {"X": sp.csr_matrix((4, 0))}, ValueError),
    ("X", "complex dtype", {"X": _X().astype(complex)}, TypeError),
    ("X", "strings", {"X": np.array([["a", "b"]])}, TypeError),
    ("X", "None", {"X": None}, TypeError),
    ("X", "a dict", {"X": {"a": 1}}, TypeError),
    ("rank", "0", {"rank": 0}, ValueError),
    ("rank", "float", {"rank": 2.5}, TypeError),
    ("rank", "bool", {"rank": True}, TypeError),
    ("rank", "> min(shape) with init='nndsvda'", {"rank": 7, "init": "nndsvda"},
     ValueError),
    ("solver", "unknown", {"solver": "lbfgs"}, ValueError),
    ("init", "unknown", {"init": "svd"}, ValueError),
    ("init", "'custom' without H", {"init": "custom", "W": _WH()["W"]}, ValueError),
    ("backend", "unknown", {"backend": "gpu"}, ValueError),
    ("max_iter", "0", {"max_iter": 0}, ValueError),
    ("max_iter", "float", {"max_iter": 10.5}, TypeError),
    ("tol", "negative", {"tol": -1e-4}, ValueError),
    ("tol", "NaN", {"tol": float("nan")}, ValueError),
    ("alpha_W", "negative", {"alpha_W": -0.1}, ValueError),
    ("alpha_H", "unknown string", {"alpha_H": "other"}, TypeError),
    ("l1_ratio", "> 1", {"l1_ratio": 1.5}, ValueError),
    ("max_time", "negative", {"max_time": -1.0}, ValueError),
    ("max_time", "string", {"max_time": "1s"}, TypeError),
    ("max_time", "inf", {"max_time": float("inf")}, ValueError),
    ("callback", "not callable", {"callback": 3}, TypeError),
    ("n_threads", "0", {"n_threads": 0}, ValueError),
    ("n_threads", "float", {"n_threads": 1.5}, TypeError),
    ("n_threads", "string", {"n_threads": "2"}, TypeError),
    ("W", "wrong shape", _WH(W=lambda W: W[:, :1]), ValueError),
    ("W", "transposed", _WH(W=lambda W: W.T), ValueError),
    ("W", "negative entry", _WH(W=_neg), ValueError),
    ("W", "NaN", _WH(W=_nan), ValueError),
    ("W", "all zeros", _WH(W=np.zeros_like), ValueError),
    ("W", "complex dtype", _WH(W=lambda W: W.astype(complex)), TypeError),
    ("W", "string dtype", _WH(W=lambda W: W.astype(str)), TypeError),
    ("W", "sparse", _WH(W=sp.csr_matrix), TypeError),
    ("H", "wrong shape", _WH(H=lambda H: H[:, :4]), ValueError),
    ("H", "negative entry", _WH(H=_neg), ValueError),
    ("H", "+inf", _WH(H=lambda H: H + np.inf), ValueError),
    ("H", "missing with update_H=False", {"update_H": False}, ValueError),
    ("H", "wrong shape with update_H=False", {"update_H": False, **_WH(H=lambda H: H.T)},
     ValueError),
]

EST_CASES = [
    ("n_components", "0", {"n_components": 0}, ValueError),
    ("solver", "unknown", {"solver": "lbfgs"}, ValueError),
    ("beta_loss", "unknown name", {"beta_loss": "gaussian"}, ValueError),
    ("beta_loss", "β-divergence with solver='cd'", {"beta_loss": "itakura-saito"}, ValueError),
    ("shuffle", "True", {"shuffle": True}, ValueError),
    ("n_threads", "0", {"n_threads": 0}, ValueError),
    ("l1_ratio", "> 1", {"l1_ratio": 2.0}, ValueError),
]

def _call_nmf(kwargs):
    kwargs = dict(kwargs)
    X = kwargs.pop("X", _X())
    rank = kwargs.pop("rank", 2)
    return fastnmf.nmf(X, rank, **kwargs)


def _message(fn, exc):
    with pytest.raises(exc) as info:
        fn()
    return str(info.value)


def _ids(cases):
    return [f"{c[0]}-{c[1]}" for c in cases]


@pytest.mark.parametrize(("arg", "problem", "kwargs", "exc"), NMF_CASES, ids=_ids(NMF_CASES))
def test_nmf_rejects(arg, problem, kwargs, exc):
    msg = _message(lambda: _call_nmf(kwargs), exc)
    named = arg if arg != "rank" or "init" not in kwargs else "rank"
    assert re.search(rf"\b{named}\b", msg), f"{msg!r} does not name {arg}"


@pytest.mark.parametrize(("arg", "problem", "kwargs", "exc"), EST_CASES, ids=_ids(EST_CASES))
def test_estimator_rejects(arg, problem, kwargs, exc):
    params = {"n_components": 2, "max_iter": 5, **kwargs}
    for fit in (lambda: NMF(**params).fit(_X()),
                lambda: non_negative_factorization(_X(), **params)):
        msg = _message(fit, exc)
        assert arg in msg


class _WorkStarted(Exception):
    pass


def _before_work_cases():
    return [pytest.param(*case, id=f"{case[0]}-{case[1]}") for case in NMF_CASES]


@pytest.mark.parametrize(("arg", "problem", "kwargs", "exc"), _before_work_cases())
def test_rejected_before_any_work(monkeypatch, arg, problem, kwargs, exc):
    def no_work(*args, **kw):
        raise _WorkStarted

    monkeypatch.setattr(fastnmf._fit, "make_data", no_work)
    with pytest.raises(exc):
        _call_nmf(kwargs)


# ------------------------------------------------------------------ docs/errors.md


def _render():
    lines = [
        "# Errors: what fastnmf refuses, and what it says",
        "",
        "Generated from the cases in `tests/test_hostile.py`, which checks every row",
        "against the message actually raised (`FASTNMF_WRITE_DOCS=1 pytest",
        "tests/test_hostile.py` rewrites this file).  Every row is raised before any",
        "work is done (before X is converted or the data products are prepared).",
        "",
        "## `fastnmf.nmf(X, rank, ...)`",
        "",
        "| argument | problem | exception | message |",
        "|---|---|---|---|",
    ]

    def row(arg, problem, fn, exc):
        msg = _message(fn, exc).replace("|", "\\|").replace("\n", " ")
        # scikit-learn prints sets of options in hash order: sort them
        msg = re.sub(r"\{([^{}]*)\}",
                     lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", msg)
        lines.append(f"| `{arg}` | {problem} | `{exc.__name__}` | {msg} |")

    for arg, problem, kwargs, exc in NMF_CASES:
        row(arg, problem, lambda kw=kwargs: _call_nmf(kw), exc)
    lines += ["", "## `fastnmf.NMF(...).fit(X)` and `non_negative_factorization`", "",
              "Parameters are checked by scikit-learn's parameter validation first, so",
              "the messages are scikit-learn's.", "",
              "| argument | problem | exception | message |", "|---|---|---|---|"]
    for arg, problem, kwargs, exc in EST_CASES:
        params = {"n_components": 2, "max_iter": 5, **kwargs}
        row(arg, problem, lambda p=params: NMF(**p).fit(_X()), exc)
    return "\n".join(lines) + "\n"


def test_errors_doc_is_current():
    text = _render()
    if os.environ.get("FASTNMF_WRITE_DOCS"):
        DOC.write_text(text, encoding="utf-8")
    assert DOC.read_text(encoding="utf-8") == text, (
        "docs/errors.md is stale: run FASTNMF_WRITE_DOCS=1 pytest tests/test_hostile.py")


# ------------------------------------------------------------------ warnings


def _fits():
    X = _X()
    Xs = sp.csr_matrix(np.where(X > 0.5, X, 0))
    W0, H0 = _WH()["W"], _WH()["H"]
    yield lambda: fastnmf.nmf(X, 2, max_iter=20)
    yield lambda: fastnmf.nmf(X, 2, solver="mu", max_iter=20, tol=0)
    yield lambda: fastnmf.nmf(Xs, 2, max_iter=20, init="nndsvd")
    yield lambda: fastnmf.nmf(X.astype(np.float32), 3, max_iter=20, init="nndsvdar",
                              random_state=0)
    yield lambda: fastnmf.nmf(X, 9, init="random", random_state=0, max_iter=10)
    yield lambda: fastnmf.nmf(np.zeros((5, 4)), 2, init="random", max_iter=5)
    yield lambda: fastnmf.nmf(X, 2, W=W0, H=H0, alpha_W=0.1, l1_ratio=0.5, max_iter=10)
    yield lambda: fastnmf.nmf(X, 2, H=H0, update_H=False, max_iter=10)
    yield lambda: NMF(2, max_iter=500, tol=1e-3, random_state=0).fit(X).transform(X)
    yield lambda: NMF(2, solver="mu", max_iter=10, tol=0).fit(Xs)
    yield lambda: non_negative_factorization(X, n_components=2, max_iter=10, tol=0)


def test_no_stray_warnings():
    for fit in _fits():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fit()


def test_convergence_warning_only_at_max_iter_with_tol():
    X = _X()
    with pytest.warns(ConvergenceWarning, match="Maximum number of iterations 3"):
        NMF(2, max_iter=3, tol=1e-4, random_state=0).fit(X)
    with warnings.catch_warnings():  # fastnmf.nmf reports it in the result instead
        warnings.simplefilter("error")
        res = fastnmf.nmf(X, 2, max_iter=3, tol=1e-4)
    assert res.converged is False and res.stop_reason == "max_iter"
