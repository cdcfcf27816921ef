"""fastnmf.anndata.nmf: factors written where scanpy's tools write theirs (issue 21, item 7)."""

import copy as copy_module

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal

import fastnmf
import fastnmf.anndata as fad


class _AnnDataLike:
    """The attributes the helper uses, for runs without the anndata package."""

    def __init__(self, X, layers=None):
        self.X = X
        self.layers = dict(layers or {})
        self.obsm, self.varm, self.uns = {}, {}, {}

    def copy(self):
        return copy_module.deepcopy(self)


def _counts(seed=0):
    rng = np.random.default_rng(seed)
    return sp.csr_matrix(rng.poisson(rng.random((60, 8)) @ rng.random((8, 40)) * 0.5)
                         .astype(np.float64))


def _check_written(adata, X, key, **kwargs):
    ref = fastnmf.nmf(X, 4, **kwargs)
    assert_allclose(adata.obsm[f"X_{key}"], ref.W, rtol=1e-12)
    assert_allclose(adata.varm[f"{key}_components"], ref.H.T, rtol=1e-12)
    record = adata.uns[key]
    assert record["n_iter"] == ref.n_iter and record["loss"] == pytest.approx(ref.loss)
    assert_allclose(record["loss_history"], ref.history["loss"])
    assert record["params"]["rank"] == 4 and record["params"]["random_state"] == 0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_round_trip_on_a_stand_in(dtype):
    X = _counts().astype(dtype)
    counts_before = X.copy()
    adata = _AnnDataLike(X)
    kw = dict(random_state=0, max_iter=20, tol=0)
    assert fad.nmf(adata, 4, **kw) is None
    _check_written(adata, X, "nmf", **kw)
    assert adata.obsm["X_nmf"].dtype == dtype
    assert_array_equal(adata.X.toarray(), counts_before.toarray())  # X untouched


def test_layer_key_and_copy():
    X = _counts()
    adata = _AnnDataLike(np.log1p(X.toarray()), layers={"counts": X})
    kw = dict(random_state=0, max_iter=15, tol=0, beta_loss="kullback-leibler")
    out = fad.nmf(adata, 4, layer="counts", key_added="programs", copy=True, **kw)
    assert adata.obsm == {} and adata.uns == {}  # the original is unchanged
    _check_written(out, X, "programs", **kw)
    assert out.uns["programs"]["params"]["layer"] == "counts"
    assert out.uns["programs"]["params"]["beta_loss"] == "kullback-leibler"


def test_clear_errors():
    with pytest.raises(TypeError, match="AnnData"):
        fad.nmf(np.ones((3, 3)), 2)
    with pytest.raises(KeyError, match=r"'raw'.*'counts'"):
        fad.nmf(_AnnDataLike(_counts(), layers={"counts": _counts()}), 2, layer="raw")
    adata = _AnnDataLike(-_counts())
    with pytest.raises(ValueError, match="Negative"):
        fad.nmf(adata, 2)
    assert adata.obsm == {} and adata.uns == {}  # nothing written by a failed fit


def test_nmf_of_an_anndata_points_to_the_helper():
    class AnnData:  # the name is what the hint looks at
        pass

    with pytest.raises(TypeError, match=r"fastnmf\.anndata\.nmf"):
        fastnmf.nmf(AnnData(), 2)
    assert fastnmf.anndata is fad


def test_with_anndata():
    anndata = pytest.importorskip("anndata")
    X = _counts()
    adata = anndata.AnnData(X=X.copy(), layers={"counts": X.copy()})
    kw = dict(random_state=0, max_iter=10, tol=0)
    fad.nmf(adata, 4, layer="counts", **kw)
    _check_written(adata, X, "nmf", **kw)
    again = adata.copy()  # what scanpy users do next: subset, copy, write
    assert again.obsm["X_nmf"].shape == (60, 4)
