"""A fitted NMF survives pickle and joblib and transforms identically."""

from __future__ import annotations

import io
import pickle

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_array_equal

from fastnmf import NMF


def _X(m=30, n=20, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.random((m, 3)) @ rng.random((3, n))).astype(dtype)


def _round_trips(model):
    yield pickle.loads(pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    buf = io.BytesIO()
    joblib.dump(model, buf)
    buf.seek(0)
    yield joblib.load(buf)


@pytest.mark.parametrize("solver", ["cd", "mu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sparse", [False, True])
def test_pickle_and_joblib_give_identical_transform(solver, dtype, sparse, tmp_path):
    X = _X(dtype=dtype)
    X_new = _X(12, 20, seed=5, dtype=dtype)
    if sparse:
        X, X_new = sp.csr_matrix(X), sp.csr_matrix(X_new)
    model = NMF(3, solver=solver, random_state=0, max_iter=30, tol=0, n_threads=1).fit(X)
    expected = model.transform(X_new)
    clones = list(_round_trips(model))
    path = tmp_path / "model.joblib"
    joblib.dump(model, path, compress=3)
    clones.append(joblib.load(path))
    for clone in clones:
        assert clone.get_params() == model.get_params()
        assert_array_equal(clone.components_, model.components_)
        assert clone.components_.dtype == dtype
        assert clone.n_iter_ == model.n_iter_
        assert_array_equal(clone.transform(X_new), expected)
        assert_array_equal(clone.inverse_transform(expected), model.inverse_transform(expected))


def test_unfitted_model_pickles():
    model = pickle.loads(pickle.dumps(NMF(4, solver="mu", max_iter=1000, n_threads=1)))
    assert model.get_params()["solver"] == "mu"
    assert model.fit(_X()).components_.shape == (4, 20)
