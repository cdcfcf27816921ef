"""fastnmf.NMF / non_negative_factorization against scikit-learn's NMF (1.9)."""

import pickle
import re
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from sklearn import decomposition as skd
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastnmf
from fastnmf import NMF, non_negative_factorization

RTOL = 1e-6  # HALS and MU are the same algorithms as scikit-learn's: agreement to round-off

# scikit-learn's own NMF fails these two checks with the same parameters and the
# same numbers (the fit at max_iter has not converged, so the W of fit_transform and
# the W of transform differ by more than atol=1e-2); scikit-learn's test suite runs
# its NMF with max_iter=500 (instance_generator.PER_ESTIMATOR_CHECK_PARAMS), under
# which fastnmf's "cd" passes every check.  fastnmf's default (accelerated HALS, which
# also stops once the error stalls) passes them at max_iter=200 too; its "mu" does not.
_UNCONVERGED = (
    "scikit-learn's NMF with the same parameters fails this check identically: after "
    "max_iter iterations the fit is unconverged and fit_transform's W differs from "
    "transform's W by more than atol=1e-2"
)


def _expected_failed_checks(est):
    if est.solver == "mu":
        return {
            "check_transformer_general": _UNCONVERGED,
            "check_transformer_data_not_an_array": _UNCONVERGED,
        }
    return {}


@parametrize_with_checks(
    [NMF(max_iter=500), NMF(), NMF(solver="mu", max_iter=500)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_sklearn_also_fails_the_marked_checks():
    """The marked checks fail for scikit-learn's NMF too: the mark is not hiding a bug."""
    from sklearn.utils.estimator_checks import check_transformer_general

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for params in [dict(), dict(solver="mu", max_iter=500)]:
            with pytest.raises(AssertionError, match="not consistent"):
                check_transformer_general("NMF", skd.NMF(random_state=0, **params))
        check_transformer_general("NMF", NMF(max_iter=500, random_state=0))


# --------------------------------------------------------------------------- data


def _X(m=30, n=20, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = rng.random((m, n))
    X[X < 0.3] = 0.0  # some exact zeros, as in count data
    return X.astype(dtype)


def _WH(m=30, n=20, r=4, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.random((m, r)).astype(dtype), rng.random((r, n)).astype(dtype)


def _pair(**params):
    """The same parameters for fastnmf (plain HALS, as scikit-learn's cd) and scikit-learn."""
    return NMF(accelerate=False, **params), skd.NMF(**params)


# ----------------------------------------------------------- agreement with sklearn


@pytest.mark.parametrize("solver", ["cd", "mu"])
def test_custom_init_matches_sklearn(solver):
    X = _X()
    W0, H0 = _WH()
    ours, ref = _pair(n_components=4, init="custom", solver=solver, tol=0, max_iter=30)
    W = ours.fit_transform(X, W=W0, H=H0)
    W_ref = ref.fit_transform(X, W=W0.copy(), H=H0.copy())
    assert_allclose(W, W_ref, rtol=RTOL, atol=1e-12)
    assert_allclose(ours.components_, ref.components_, rtol=RTOL, atol=1e-12)
    assert ours.reconstruction_err_ == pytest.approx(ref.reconstruction_err_, rel=RTOL)
    assert ours.n_iter_ == ref.n_iter_ == 30
    assert ours.n_components_ == ref.n_components_ == 4
    assert ours.n_features_in_ == 20
    # the user's W and H are not modified
    assert_array_equal(W0, _WH()[0])
    assert_array_equal(H0, _WH()[1])


def test_hals_is_cd():
    X = _X()
    W0, H0 = _WH()
    a = NMF(4, init="custom", solver="cd", tol=0, max_iter=10).fit(X, W=W0, H=H0)
    b = NMF(4, init="custom", solver="hals", tol=0, max_iter=10).fit(X, W=W0, H=H0)
    assert_array_equal(a.components_, b.components_)


@pytest.mark.parametrize("init", ["random", "nndsvd", "nndsvda", "nndsvdar", None])
def test_init_methods_match_sklearn(init):
    X = _X()
    ours, ref = _pair(n_components=4, init=init, random_state=0, tol=0, max_iter=15)
    assert_allclose(ours.fit_transform(X), ref.fit_transform(X), rtol=RTOL, atol=1e-12)
    assert_allclose(ours.components_, ref.components_, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("solver", ["cd", "mu"])
@pytest.mark.parametrize(
    "reg",
    [
        dict(alpha_W=0.01, l1_ratio=0.0),
        dict(alpha_W=0.01, l1_ratio=0.5),
        dict(alpha_W=0.005, alpha_H=0.05, l1_ratio=1.0),
        dict(alpha_W=0.0, alpha_H=0.02, l1_ratio=0.3),
    ],
)
def test_regularization_matches_sklearn(solver, reg):
    X = _X()
    W0, H0 = _WH()
    ours, ref = _pair(n_components=4, init="custom", solver=solver, tol=0, max_iter=25,
                      **reg)
    W = ours.fit_transform(X, W=W0, H=H0)
    W_ref = ref.fit_transform(X, W=W0.copy(), H=H0.copy())
    assert_allclose(W, W_ref, rtol=RTOL, atol=1e-12)
    assert_allclose(ours.components_, ref.components_, rtol=RTOL, atol=1e-12)
    assert ours.reconstruction_err_ == pytest.approx(ref.reconstruction_err_, rel=RTOL)
    # the penalty on W also applies in transform
    X_new = _X(7, 20, seed=5)
    assert_allclose(ours.transform(X_new), ref.transform(X_new), rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("solver", ["cd", "mu"])
@pytest.mark.parametrize("update_H", [True, False])
def test_function_matches_sklearn(solver, update_H):
    X = _X()
    W0, H0 = _WH()
    kw = dict(init="custom", update_H=update_H, solver=solver, tol=0, max_iter=20,
              alpha_W=0.01, l1_ratio=0.2)
    W_init = W0 if update_H else None
    W, H, n_iter = non_negative_factorization(X, W_init, H0, accelerate=False, **kw)
    W_ref, H_ref, n_ref = skd.non_negative_factorization(
        X, None if W_init is None else W0.copy(), H0.copy(), **kw)
    assert_allclose(W, W_ref, rtol=RTOL, atol=1e-12)
    assert_allclose(H, H_ref, rtol=RTOL, atol=1e-12)
    assert n_iter == n_ref == 20
    if not update_H:
        assert_array_equal(H, H0)


def test_function_random_init_matches_sklearn():
    X = _X()
    kw = dict(n_components=3, init="random", random_state=2, tol=0, max_iter=20)
    W, H, _ = non_negative_factorization(X, accelerate=False, **kw)
    W_ref, H_ref, _ = skd.non_negative_factorization(X, **kw)
    assert_allclose(W, W_ref, rtol=RTOL, atol=1e-12)
    assert_allclose(H, H_ref, rtol=RTOL, atol=1e-12)


def test_function_rejects_bad_input():
    with pytest.raises(InvalidParameterError):
        non_negative_factorization(_X(), update_H="yes")
    with pytest.raises(InvalidParameterError):
        non_negative_factorization(_X(), n_components=0)
    with pytest.raises(ValueError, match="Negative values"):
        non_negative_factorization(-_X(), n_components=2)


@pytest.mark.parametrize("solver", ["cd", "mu"])
def test_transform_new_data_matches_sklearn(solver):
    X, X_new = _X(), _X(9, 20, seed=3)
    ours, ref = _pair(n_components=4, init="nndsvda", solver=solver, random_state=0,
                      tol=0, max_iter=30)
    ours.fit(X)
    ref.fit(X)
    W_new = ours.transform(X_new)
    assert W_new.shape == (9, 4) and W_new.dtype == np.float64 and np.all(W_new >= 0)
    assert_allclose(W_new, ref.transform(X_new), rtol=RTOL, atol=1e-12)


def test_transform_recovers_exact_codes():
    rng = np.random.default_rng(4)
    H = rng.random((3, 15))
    W_true = rng.random((10, 3))
    model = NMF(3, init="custom", tol=0, max_iter=2).fit(W_true @ H, W=W_true, H=H)
    model.components_ = H  # a known dictionary
    model.set_params(max_iter=2000, tol=1e-14)
    assert_allclose(model.transform(W_true @ H), W_true, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------- dtypes


@pytest.mark.parametrize("solver", ["cd", "mu"])
def test_float32_preserved(solver):
    X = _X(dtype=np.float32)
    ours, ref = _pair(n_components=4, solver=solver, random_state=0, tol=0, max_iter=20)
    W = ours.fit_transform(X)
    W_ref = ref.fit_transform(X)
    assert W.dtype == ours.components_.dtype == np.float32
    assert ours.transform(X).dtype == np.float32
    assert ours.inverse_transform(W).dtype == np.float32
    assert_allclose(ours.components_, ref.components_, rtol=2e-3, atol=2e-4)
    assert_allclose(W, W_ref, rtol=2e-3, atol=2e-4)
    assert ours.reconstruction_err_ == pytest.approx(ref.reconstruction_err_, rel=1e-4)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, bool])
def test_integer_and_bool_become_float64(dtype):
    X = (_X() * 10).astype(dtype)
    model = NMF(3, random_state=0, max_iter=20, tol=0)
    assert model.fit_transform(X).dtype == np.float64
    assert model.components_.dtype == np.float64


def test_dtype_mismatch_raises_like_sklearn():
    X = _X()
    X32 = X.astype(np.float32)
    for est in _pair(n_components=3, max_iter=5, tol=0):
        est.fit(X)
        with pytest.raises(TypeError, match="H should have the same dtype as X"):
            est.transform(X32)
    W0, H0 = _WH(r=3)
    for est in _pair(n_components=3, init="custom", max_iter=5, tol=0):
        with pytest.raises(TypeError, match="H and W should have the same dtype as X"):
            est.fit(X32, W=W0, H=H0)


# --------------------------------------------------------------------- sparse


@pytest.mark.parametrize("solver", ["cd", "mu"])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_same_as_dense(solver, fmt):
    X = _X()
    Xs = sp.csr_matrix(X).asformat(fmt)
    dense = NMF(4, solver=solver, random_state=0, tol=0, max_iter=20)
    sparse = NMF(4, solver=solver, random_state=0, tol=0, max_iter=20)
    W = dense.fit_transform(X)
    Ws = sparse.fit_transform(Xs)
    assert_allclose(Ws, W, rtol=1e-9, atol=1e-12)
    assert_allclose(sparse.components_, dense.components_, rtol=1e-9, atol=1e-12)
    assert sparse.reconstruction_err_ == pytest.approx(dense.reconstruction_err_, rel=1e-9)
    assert_allclose(sparse.transform(Xs), dense.transform(X), rtol=1e-9, atol=1e-12)
    ours, ref = _pair(n_components=4, solver=solver, random_state=0, tol=0, max_iter=20)
    assert_allclose(ours.fit_transform(Xs), ref.fit_transform(Xs), rtol=RTOL, atol=1e-12)


def test_sparse_array_input():
    X = _X()
    W = NMF(3, random_state=0, tol=0, max_iter=10).fit_transform(X)
    Ws = NMF(3, random_state=0, tol=0, max_iter=10).fit_transform(sp.csr_array(X))
    assert_allclose(Ws, W, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("backend", ["dense", "sparse"])
def test_backend_and_threads_pass_through(backend):
    X = _X()
    ref = NMF(4, random_state=0, tol=0, max_iter=15).fit(X)
    model = NMF(4, random_state=0, tol=0, max_iter=15, backend=backend, n_threads=1).fit(X)
    assert_allclose(model.components_, ref.components_, rtol=1e-9, atol=1e-12)
    with pytest.raises(InvalidParameterError):
        NMF(backend="gpu").fit(X)
    with pytest.raises(InvalidParameterError):
        NMF(n_threads=0).fit(X)


# --------------------------------------------------------------- n_components


def test_n_components_auto_and_none():
    X = _X()
    assert NMF(max_iter=5, tol=0).fit(X).n_components_ == 20
    assert NMF(None, max_iter=5, tol=0).fit(X).n_components_ == 20
    W0, H0 = _WH(r=3)
    model = NMF(init="custom", max_iter=5, tol=0).fit(X, W=W0, H=H0)  # "auto" from H
    assert model.n_components_ == 3 and model.components_.shape == (3, 20)
    W, _, _ = non_negative_factorization(X, H=H0, update_H=False, max_iter=5, tol=0,
                                         accelerate=False)
    assert W.shape == (30, 3)
    W_ref, _, _ = skd.non_negative_factorization(X, H=H0, update_H=False, max_iter=5, tol=0)
    assert_allclose(W, W_ref, rtol=RTOL, atol=1e-12)


def test_custom_init_shape_errors():
    X = _X()
    W0, H0 = _WH(r=3)
    with pytest.raises(ValueError, match="wrong first dimension passed to NMF \\(input H\\)"):
        NMF(4, init="custom").fit(X, W=W0, H=H0)
    with pytest.raises(ValueError, match="wrong second dimension passed to NMF \\(input W\\)"):
        NMF(init="custom").fit(X, W=W0[:, :2], H=H0)
    with pytest.raises(ValueError, match="full of zeros"):
        NMF(init="custom").fit(X, W=np.zeros_like(W0), H=H0)
    with pytest.raises(ValueError, match="Negative values"):
        NMF(init="custom").fit(X, W=-W0, H=H0)


def test_init_needing_svd_with_too_many_components():
    with pytest.raises(ValueError, match="nndsvd"):
        NMF(25, init="nndsvd").fit(_X())
    # None picks "random" then, as in scikit-learn
    ours, ref = _pair(n_components=25, random_state=0, tol=0, max_iter=5)
    assert_allclose(ours.fit_transform(_X()), ref.fit_transform(_X()), rtol=RTOL, atol=1e-12)


# ------------------------------------------------------------------- warnings


def test_convergence_warning_when_sklearn_warns():
    X = _X()
    msg = "Maximum number of iterations 3 reached. Increase it to improve convergence."
    for est in _pair(n_components=4, random_state=0, max_iter=3, tol=1e-4):
        with pytest.warns(ConvergenceWarning, match=re.escape(msg)):
            est.fit(X)
    for est in _pair(n_components=4, random_state=0, max_iter=3, tol=0):  # tol=0: never
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            est.fit(X)
    with warnings.catch_warnings():  # converged before max_iter: no warning
        warnings.simplefilter("error")
        model = NMF(4, random_state=0, max_iter=1000, tol=1e-3).fit(X)
    assert model.n_iter_ < 1000


def test_runtime_warnings_like_sklearn():
    X = _X()
    W0, H0 = _WH(r=4)
    for est in _pair(n_components=4, init="random", random_state=0, max_iter=5, tol=0):
        with pytest.warns(RuntimeWarning, match="provided W or H are ignored"):
            est.fit(X, W=W0, H=H0)
    with pytest.warns(RuntimeWarning, match="provided initial W is not used"):
        non_negative_factorization(X, W0, H0, update_H=False, max_iter=5, tol=0)
    with pytest.warns(UserWarning, match="cannot update zeros"):
        NMF(4, solver="mu", init="nndsvd", max_iter=5, tol=0).fit(X)


# ------------------------------------------------------------------- parameters


@pytest.mark.parametrize("beta_loss", ["itakura-saito", 0, 0.5, 1.5, 3])
def test_other_beta_losses_need_mu(beta_loss):
    """Other β-divergences run through MU only (as in scikit-learn): cd is refused."""
    with pytest.raises(ValueError, match="solver must be one of"):
        NMF(beta_loss=beta_loss).fit(_X())  # solver="cd"
    with pytest.raises(ValueError, match="solver must be one of"):
        non_negative_factorization(_X(), beta_loss=beta_loss)
    model = NMF(2, beta_loss=beta_loss, solver="mu", max_iter=5, tol=0).fit(_X() + 0.1)
    assert model.components_.shape == (2, 20) and np.all(np.isfinite(model.components_))


@pytest.mark.parametrize("beta_loss", ["kullback-leibler", 1])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kl_mu_matches_sklearn(beta_loss, dtype):
    X = _X().astype(dtype)
    W0, H0 = fastnmf.initialize(X, 4, "nndsvda", random_state=0)
    kw = dict(n_components=4, init="custom", solver="mu", beta_loss=beta_loss, tol=0,
              max_iter=20)
    ours, ref = NMF(**kw), skd.NMF(**kw)
    W = ours.fit_transform(X, W=W0.copy(), H=H0.copy())
    W_ref = ref.fit_transform(X, W=W0.copy(), H=H0.copy())
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    assert W.dtype == dtype
    assert_allclose(W, W_ref, rtol=rtol, atol=1e-6 * W_ref.max())
    assert_allclose(ours.components_, ref.components_, rtol=rtol,
                    atol=1e-6 * ref.components_.max())
    assert_allclose(ours.reconstruction_err_, ref.reconstruction_err_, rtol=rtol)


def test_kl_cd_runs_coordinate_descent_and_beats_mu():
    X = _X()
    W0, H0 = fastnmf.initialize(X, 4, "nndsvda", random_state=0)
    kw = dict(n_components=4, init="custom", beta_loss="kullback-leibler", tol=0, max_iter=30)
    cd = NMF(solver="cd", **kw).fit(X, W=W0.copy(), H=H0.copy())
    mu = skd.NMF(solver="mu", **kw).fit(X, W=W0.copy(), H=H0.copy())
    assert cd.reconstruction_err_ <= mu.reconstruction_err_ * (1 + 1e-9)


@pytest.mark.parametrize("beta_loss", ["frobenius", 2, 2.0])
def test_frobenius_beta_loss_accepted(beta_loss):
    NMF(3, beta_loss=beta_loss, max_iter=3, tol=0).fit(_X())


def test_shuffle_raises():
    with pytest.raises(ValueError, match="shuffle=True is not supported"):
        NMF(shuffle=True).fit(_X())
    with pytest.raises(ValueError, match="shuffle=True is not supported"):
        non_negative_factorization(_X(), shuffle=True)


@pytest.mark.parametrize(
    "params",
    [dict(solver="als"), dict(init="nmf"), dict(tol=-1), dict(max_iter=0),
     dict(alpha_W=-1), dict(alpha_H="other"), dict(l1_ratio=2), dict(n_components=0),
     dict(beta_loss="gaussian"), dict(shuffle="yes")],
)
def test_invalid_params(params):
    with pytest.raises(InvalidParameterError):
        NMF(**params).fit(_X())


def test_params_match_sklearn():
    ours = NMF().get_params()
    ref = skd.NMF().get_params()
    assert {k: ours[k] for k in ref} == ref
    assert set(ours) - set(ref) == {"n_threads", "backend", "accelerate", "progress",
                                    "max_time", "callback", "sparseness_W", "sparseness_H"}


def test_verbose_prints(capsys):
    NMF(3, verbose=1, max_iter=3, tol=0).fit(_X())
    out = capsys.readouterr().out
    assert out.count("Iteration") == 3


# ---------------------------------------------------------- other methods


def test_inverse_transform():
    X = _X()
    model = NMF(4, random_state=0, max_iter=50, tol=0)
    W = model.fit_transform(X)
    assert_allclose(model.inverse_transform(W), W @ model.components_)
    assert model.inverse_transform(W).shape == X.shape
    assert_allclose(model.inverse_transform(sp.csr_matrix(W)), W @ model.components_)
    err = np.linalg.norm(X - model.inverse_transform(W))
    assert err == pytest.approx(model.reconstruction_err_, rel=1e-9)


def test_feature_names_out():
    model = NMF(3, max_iter=5, tol=0).fit(_X())
    assert_array_equal(model.get_feature_names_out(), ["nmf0", "nmf1", "nmf2"])
    assert not hasattr(model, "feature_names_in_")  # plain arrays carry no names
    assert_array_equal(model.get_feature_names_out([f"x{i}" for i in range(20)]),
                       ["nmf0", "nmf1", "nmf2"])
    with pytest.raises(ValueError, match="input_features"):
        model.get_feature_names_out(["a", "b"])


class _Frame:
    """The least of a dataframe that scikit-learn reads column names from (via
    narwhals' ``__narwhals_dataframe__`` protocol), so feature names are tested
    without pandas.  Leans on narwhals internals: the test skips if they change."""

    def __init__(self, array, columns):
        from narwhals._utils import Implementation

        self._implementation = Implementation.UNKNOWN
        self._array = array
        self.columns = list(columns)
        self.shape = array.shape

    def __narwhals_dataframe__(self):
        return self

    def _with_version(self, version):
        self._version = version
        return self

    def __array__(self, dtype=None, copy=None):
        return self._array if dtype is None else self._array.astype(dtype)

    def __len__(self):
        return len(self._array)


def _frame(array, columns):
    from sklearn.utils.validation import _get_feature_names

    try:
        frame = _Frame(array, columns)
        names = _get_feature_names(frame)
    except (ImportError, AttributeError, AssertionError, TypeError) as exc:
        pytest.skip(f"narwhals internals changed: {exc!r}")
    assert_array_equal(names, columns)
    return frame


def test_feature_names_in_without_pandas():
    columns = [f"f{i}" for i in range(20)]
    X = _frame(_X(), columns)
    model = NMF(3, max_iter=5, tol=0).fit(X)
    assert_array_equal(model.feature_names_in_, columns)
    assert_array_equal(model.get_feature_names_out(), ["nmf0", "nmf1", "nmf2"])
    assert_array_equal(model.get_feature_names_out(columns), ["nmf0", "nmf1", "nmf2"])
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        model.get_feature_names_out([f"g{i}" for i in range(20)])
    assert model.transform(X).shape == (30, 3)
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        model.transform(_X())
    with pytest.raises(ValueError, match="feature names should match"):
        model.transform(_frame(_X(), [f"g{i}" for i in range(20)]))


def test_feature_names_in_with_a_dataframe():
    pd = pytest.importorskip("pandas")
    X = pd.DataFrame(_X(), columns=[f"f{i}" for i in range(20)])
    model = NMF(3, max_iter=5, tol=0).fit(X)
    assert_array_equal(model.feature_names_in_, X.columns)
    model.transform(X)
    with pytest.warns(UserWarning, match="feature names"):
        model.transform(X.to_numpy())


def test_pickle_round_trip():
    X, X_new = _X(), _X(6, 20, seed=8)
    model = NMF(4, random_state=0, max_iter=30, tol=0).fit(X)
    clone = pickle.loads(pickle.dumps(model))
    assert_array_equal(clone.components_, model.components_)
    assert_array_equal(clone.transform(X_new), model.transform(X_new))
    assert clone.reconstruction_err_ == model.reconstruction_err_


def test_tags():
    tags = NMF().__sklearn_tags__()
    assert tags.input_tags.positive_only and tags.input_tags.sparse
    assert tags.transformer_tags.preserves_dtype == ["float64", "float32"]


def test_negative_input_message():
    with pytest.raises(ValueError, match="Negative values in data passed to X in NMF"):
        NMF().fit(-_X())
    model = NMF(3, max_iter=5, tol=0).fit(_X())
    with pytest.raises(ValueError, match="Negative values in data passed to X in NMF"):
        model.transform(-_X())


def test_public_names():
    assert fastnmf.NMF is NMF
    assert fastnmf.non_negative_factorization is non_negative_factorization
    assert {"NMF", "non_negative_factorization"} <= set(fastnmf.__all__)


# -- what nmf() offers, on the estimator too (issue 21, item 2) --


def test_missing_values_are_fit_parameters_as_in_nmf():
    X = _X(40, 25)
    rng = np.random.default_rng(3)
    observed = rng.random(X.shape) > 0.2
    X_nan = np.where(observed, X, np.nan)
    kw = dict(random_state=0, tol=0, max_iter=30)
    ref = fastnmf.nmf(X, 4, mask=observed, accelerate=True, init="nndsvda", **kw)
    by_mask = NMF(4, **kw).fit(np.where(observed, X, -1.0), mask=observed)
    by_nan = NMF(4, **kw)
    W = by_nan.fit_transform(X_nan, missing="nan")
    X_before = X_nan.copy()
    for model in (by_mask, by_nan):
        assert_allclose(model.components_, ref.H, rtol=1e-10, atol=1e-12)
        assert_allclose(model.loss_history_, ref.history["loss"], rtol=1e-10)
    assert_allclose(W, ref.W, rtol=1e-10, atol=1e-12)
    assert_array_equal(np.isnan(X_nan), np.isnan(X_before))  # the input is not modified
    by_sparse = NMF(4, **kw).fit(X, missing=sp.csr_matrix(~observed))
    assert_allclose(by_sparse.components_, ref.H, rtol=1e-10, atol=1e-12)


def test_nan_without_missing_says_how():
    X = _X()
    X[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"contains NaN(.|\n)*missing='nan'"):
        NMF(3).fit(X)
    with pytest.raises(ValueError, match="Negative values"):  # observed entries still checked
        NMF(3).fit(-_X(), missing=np.isnan(X))


def test_loss_history_progress_and_float32():
    X = _X(dtype=np.float32)
    # repeated sweeps alone never raise the loss (the default may extrapolate)
    model = NMF(3, random_state=0, tol=0, max_iter=12, progress=True,
                accelerate="sweeps").fit(X)
    assert model.loss_history_.shape == (model.n_iter_ + 1,) == (13,)
    assert np.all(np.diff(model.loss_history_) <= 1e-6 * model.loss_history_[0])
    assert model.components_.dtype == np.float32


def _estimator_fit(**kw):
    model = NMF(3, random_state=0, **kw).fit(_X())
    assert len(model.loss_history_) == model.n_iter_ + 1
    return model.components_, model.n_iter_


def _function_fit(**kw):
    _, H, n_iter = non_negative_factorization(_X(), n_components=3, random_state=0, **kw)
    return H, n_iter


@pytest.mark.parametrize("fit", [_estimator_fit, _function_fit])
def test_callback_and_max_time_stop_a_fit(fit):
    """NMF and non_negative_factorization (issue 21) take callback and max_time."""
    seen = []

    def stop_at_three(info):
        seen.append(info.iteration)
        return info.iteration >= 3

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a requested stop is no warning
        H, n_iter = fit(max_iter=100, callback=stop_at_three)
        assert n_iter == 3 and seen == [1, 2, 3]
        _, n_timed = fit(max_iter=10_000, tol=0, max_time=0.0)
    assert n_timed < 10_000
    ref = NMF(3, random_state=0, max_iter=3, tol=0).fit(_X())
    assert_allclose(H, ref.components_, rtol=1e-12)  # the stop is the only difference


@pytest.mark.parametrize("params", [dict(max_time=-1.0), dict(callback=3),
                                    dict(progress="yes")])
def test_new_parameters_are_validated(params):
    with pytest.raises(InvalidParameterError):
        NMF(3, **params).fit(_X())
    with pytest.raises(InvalidParameterError):
        non_negative_factorization(_X(), n_components=3, **params)


def test_function_takes_progress(capsys):
    """non_negative_factorization shows NMF's progress bar (issue 21)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        non_negative_factorization(_X(), n_components=3, random_state=0, max_iter=3,
                                   progress=True)
    assert "fastnmf:" in capsys.readouterr().err  # the bar, on stderr


def test_missing_values_through_a_pipeline():
    from sklearn.pipeline import make_pipeline

    X = _X()
    X[0, 0] = np.nan
    pipe = make_pipeline(NMF(3, random_state=0, max_iter=20, tol=0))
    W = pipe.fit_transform(X, nmf__missing="nan")
    assert W.shape == (30, 3) and np.isfinite(W).all()
