"""The public function ``fastnmf.nmf`` (and ``fastnmf.initialize``)."""

from __future__ import annotations

import warnings

import numba
import numpy as np
import pytest
import reference as ref
import scipy.sparse as sp
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import nnls
from sklearn.decomposition import NMF
from sklearn.decomposition._nmf import _initialize_nmf
from sklearn.exceptions import ConvergenceWarning

import fastnmf
from fastnmf import datasets
from fastnmf.solvers.frobenius import EXTRAPOLATE_BELOW

# scikit-learn warns when max_iter is reached, which these tests do on purpose
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

SOLVERS = ["hals", "mu"]
INITS = ["random", "nndsvd", "nndsvda", "nndsvdar"]
# scikit-learn's regularization parameters, as accepted by both packages
REGS = [
    {},
    {"alpha_W": 0.01, "l1_ratio": 0.0},
    {"alpha_W": 0.01, "l1_ratio": 1.0},
    {"alpha_W": 0.005, "alpha_H": 0.02, "l1_ratio": 0.5},
]
REG_IDS = ["none", "l2", "l1", "mixed"]


def _reg(shape, kw):
    alpha_H = kw.get("alpha_H")
    return ref.regularization(shape, kw.get("alpha_W", 0.0), alpha_H, kw.get("l1_ratio", 0.0))


def _to_format(Xd, fmt):
    if fmt == "dense":
        return Xd
    if fmt.endswith("_array"):
        return getattr(sp, fmt)(Xd)
    return sp.csr_matrix(Xd).asformat(fmt)


def _close_factors(a, b, rtol):
    scale = max(float(np.abs(b).max()), 1e-300)
    assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


@pytest.fixture
def problem(make_X, make_WH):
    """A 60×40 matrix with about 40 % nonzeros and a custom start of rank 5."""
    X = make_X(60, 40, seed=1, density=0.4, rank=5)
    W, H = make_WH(60, 40, 5, seed=1)
    return X, W, H


# ------------------------------------------------------------ input formats


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "bsr", "lil", "csr_array", "csc_array",
                                 "coo_array"])
def test_sparse_formats_give_dense_result(problem, solver, fmt):
    X, W, H = problem
    kw = {"solver": solver, "W": W, "H": H, "max_iter": 15, "tol": 0}
    dense = fastnmf.nmf(X, 5, **kw)
    res = fastnmf.nmf(_to_format(X, fmt), 5, **kw)
    assert dense.backend == "dense" and res.backend == "sparse"
    _close_factors(res.W, dense.W, 1e-9)
    _close_factors(res.H, dense.H, 1e-9)
    assert_allclose(res.history["loss"], dense.history["loss"], rtol=1e-9)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("sparse_input", [False, True])
def test_backends_agree(problem, solver, sparse_input):
    X, W, H = problem
    Xin = sp.csr_matrix(X) if sparse_input else X
    kw = {"solver": solver, "W": W, "H": H, "max_iter": 15, "tol": 0}
    d = fastnmf.nmf(Xin, 5, backend="dense", **kw)
    s = fastnmf.nmf(Xin, 5, backend="sparse", **kw)
    assert d.backend == "dense" and s.backend == "sparse"
    _close_factors(s.W, d.W, 1e-9)
    _close_factors(s.H, d.H, 1e-9)
    assert_allclose(s.history["loss"], d.history["loss"], rtol=1e-9)


def test_auto_backend_sends_very_sparse_arrays_to_sparse_kernels(make_X, make_WH):
    X = make_X(50, 40, seed=2, density=0.02)
    W, H = make_WH(50, 40, 3)
    auto = fastnmf.nmf(X, 3, W=W, H=H, max_iter=5, tol=0)
    dense = fastnmf.nmf(X, 3, W=W, H=H, max_iter=5, tol=0, backend="dense")
    assert auto.backend == "sparse"
    _close_factors(auto.W, dense.W, 1e-9)


# ---------------------------------------------------------- monotone objective


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("reg", REGS, ids=REG_IDS)
@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("init", ["nndsvda", "random"])
def test_objective_non_increasing(make_X, solver, reg, fmt, init):
    X = _to_format(make_X(70, 50, seed=3, density=0.5), fmt)
    # HALS's guarantee: without extrapolation (whose objective may rise where it overshot)
    res = fastnmf.nmf(X, 6, solver=solver, init=init, random_state=0, max_iter=60, tol=0,
                      accelerate="sweeps", **reg)
    loss = res.history["loss"]
    assert res.n_iter == 60 and len(loss) == 61
    assert np.all(np.isfinite(loss))
    increase = np.diff(loss)
    assert np.all(increase <= 1e-12 * loss[:-1]), (
        f"objective increased at iterations {np.flatnonzero(increase > 1e-12 * loss[:-1]) + 1}")


@pytest.mark.parametrize("solver", SOLVERS)
def test_objective_non_increasing_close_fit(make_X, solver):
    """Near-exact low-rank data: the cheap loss formula must not add round-off ups."""
    rng = np.random.default_rng(4)
    X = rng.random((80, 4)) @ rng.random((4, 60))
    res = fastnmf.nmf(X, 4, solver=solver, init="nndsvda", max_iter=150, tol=0, random_state=0,
                      accelerate="sweeps")
    loss = res.history["loss"]
    assert np.all(np.diff(loss) <= 1e-12 * loss[:-1] + 1e-300)


# ---------------------------------------------------------- vs scikit-learn


def _sklearn_fit(X, W, H, solver, n_iter, reg):
    est = NMF(n_components=W.shape[1], solver=solver, init="custom", max_iter=n_iter, tol=0,
              beta_loss="frobenius", **reg)
    Ws = est.fit_transform(X, W=W.copy(), H=H.copy())
    return Ws, est.components_


@pytest.mark.parametrize("reg", REGS, ids=REG_IDS)
@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("n_iter", [1, 25])
def test_hals_matches_sklearn_cd(problem, reg, fmt, n_iter):
    X, W, H = problem
    Xin = _to_format(X, fmt)
    Ws, Hs = _sklearn_fit(Xin, W, H, "cd", n_iter, reg)
    res = fastnmf.nmf(Xin, 5, solver="hals", W=W, H=H, max_iter=n_iter, tol=0,
                      accelerate=False, **reg)
    assert res.n_iter == n_iter
    r = _reg(X.shape, reg)
    ours, theirs = ref.objective(X, res.W, res.H, r), ref.objective(X, Ws, Hs, r)
    assert ours <= theirs * (1 + 1e-6)
    assert_allclose(res.loss, ours, rtol=1e-9)
    _close_factors(res.W, Ws, 1e-6)
    _close_factors(res.H, Hs, 1e-6)


@pytest.mark.parametrize("reg", REGS, ids=REG_IDS)
@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("n_iter", [1, 25])
def test_mu_matches_sklearn_mu(problem, reg, fmt, n_iter):
    X, W, H = problem
    Xin = _to_format(X, fmt)
    Ws, Hs = _sklearn_fit(Xin, W, H, "mu", n_iter, reg)
    res = fastnmf.nmf(Xin, 5, solver="mu", W=W, H=H, max_iter=n_iter, tol=0, **reg)
    assert res.n_iter == n_iter
    _close_factors(res.W, Ws, 1e-6)
    _close_factors(res.H, Hs, 1e-6)
    r = _reg(X.shape, reg)
    assert_allclose(res.loss, ref.objective(X, Ws, Hs, r), rtol=1e-6)


@pytest.mark.parametrize("init", [*INITS, None])
@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(50, 35), (35, 50)])  # tall; wide: the SVD of Xᵀ
def test_initialize_matches_sklearn(make_X, init, fmt, dtype, shape):
    X = _to_format(make_X(*shape, seed=5, density=0.6, dtype=dtype), fmt)
    W, H = fastnmf.initialize(X, 6, init, random_state=7)
    Ws, Hs = _initialize_nmf(X, 6, init=init, random_state=7)
    assert W.dtype == dtype and H.dtype == dtype
    assert W.shape == (shape[0], 6) and H.shape == (6, shape[1])
    assert W.flags.c_contiguous and H.flags.c_contiguous
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    _close_factors(W, Ws, rtol)
    _close_factors(H, Hs, rtol)


def test_initialize_on_its_own_runs_as_a_fit_and_restores_threads(make_X):
    """Called on its own, the randomized SVD runs under a fit's thread limits (BLAS on
    one thread, products split by fastnmf: 2.7 -> 1.5 s on Fashion-MNIST r=50) and
    leaves Numba's thread count as it found it; the start is the one a fit makes."""
    from threadpoolctl import threadpool_info

    X = make_X(300, 200, seed=9)
    before = numba.get_num_threads(), [p["num_threads"] for p in threadpool_info()]
    W, H = fastnmf.initialize(X, 5, "nndsvda", random_state=2)
    assert (numba.get_num_threads(), [p["num_threads"] for p in threadpool_info()]) == before
    res = fastnmf.nmf(X, 5, init="nndsvda", random_state=2, max_iter=1, tol=0)
    assert_allclose(res.history["loss"][0], ref.objective(X, W, H), rtol=1e-12)


@pytest.mark.parametrize("init", INITS)
def test_nmf_starts_from_initialize(make_X, init):
    X = make_X(40, 30, seed=6)
    W0, H0 = fastnmf.initialize(X, 4, init, random_state=3)
    res = fastnmf.nmf(X, 4, init=init, random_state=3, max_iter=1, tol=0)
    assert_allclose(res.history["loss"][0], ref.objective(X, W0, H0), rtol=1e-9)


def test_default_init_is_nndsvda_or_random(make_X):
    X = make_X(40, 30, seed=6)
    a = fastnmf.nmf(X, 4, random_state=3, max_iter=3, tol=0)
    b = fastnmf.nmf(X, 4, init="nndsvda", random_state=3, max_iter=3, tol=0)
    assert_array_equal(a.W, b.W)
    c = fastnmf.nmf(X[:3], 5, random_state=3, max_iter=3, tol=0)  # rank > min(shape)
    d = fastnmf.nmf(X[:3], 5, init="random", random_state=3, max_iter=3, tol=0)
    assert_array_equal(c.W, d.W)


# ---------------------------------------------------------- vs the naive loop


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("reg", REGS, ids=REG_IDS)
@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_matches_reference_loop(problem, solver, reg, fmt):
    X, W, H = problem
    Wr, Hr, losses = ref.nmf(X, W, H, 20, solver=solver, reg=_reg(X.shape, reg),
                             accelerate=True, extrapolate=EXTRAPOLATE_BELOW)  # the default
    res = fastnmf.nmf(_to_format(X, fmt), 5, solver=solver, W=W, H=H, max_iter=20, tol=0,
                      **reg)
    _close_factors(res.W, Wr, 1e-9)
    _close_factors(res.H, Hr, 1e-9)
    assert_allclose(res.history["loss"], losses, rtol=1e-9)


# how each accelerate option extrapolates, in the reference loop's terms
_EXTRAPOLATE = {False: False, "sweeps": False, "extrapolate": True, "both": True,
                "auto": EXTRAPOLATE_BELOW}


@pytest.mark.parametrize("accelerate", [False, "sweeps", "extrapolate", "both", "auto"])
@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_each_acceleration_matches_reference_loop(problem, accelerate, fmt):
    X, W, H = problem
    reg = {"alpha_W": 0.01, "l1_ratio": 0.5}
    Wr, Hr, losses = ref.nmf(X, W, H, 30, reg=_reg(X.shape, reg),
                             accelerate=accelerate in ("sweeps", "both", "auto"),
                             extrapolate=_EXTRAPOLATE[accelerate])
    res = fastnmf.nmf(_to_format(X, fmt), 5, W=W, H=H, max_iter=30, tol=0,
                      accelerate=accelerate, **reg)
    _close_factors(res.W, Wr, 1e-9)
    _close_factors(res.H, Hr, 1e-9)
    assert_allclose(res.history["loss"], losses, rtol=1e-9)


def test_extrapolation_restarts_when_the_objective_rises():
    """HER's objective may rise at an iteration that overshot; the next one restarts (H not
    pushed, β smaller) and the fit goes on down.  The reference loop restarts at the same
    iterations, and the fit ends far below plain HALS."""
    X, _, _ = datasets.make_low_rank(300, 200, 10, noise=0.02, random_state=1)
    W0, H0 = fastnmf.init.initialize(X, 10, "random", 0)
    res = fastnmf.nmf(X, 10, W=W0, H=H0, max_iter=80, tol=0, accelerate="both")
    _, _, losses = ref.nmf(X, W0, H0, 80, accelerate=True, extrapolate=True)
    assert_allclose(res.history["loss"], losses, rtol=1e-8)
    rises = np.flatnonzero(np.diff(losses) > 0)
    assert rises.size > 0  # the test exercises the restart
    assert np.all(np.diff(losses)[rises + 1] < 0)  # a restart is followed by a decrease
    sweeps = fastnmf.nmf(X, 10, W=W0, H=H0, max_iter=80, tol=0, accelerate="sweeps")
    assert res.loss < 0.5 * sweeps.loss


def test_auto_extrapolates_once_the_sweeps_stall():
    """The default (True, "auto") runs sweeps alone up to the first iteration that lowers
    the objective by less than EXTRAPOLATE_BELOW, then extrapolates too: the same losses
    as "sweeps" up to there, the reference loop's after, and lower at the end."""
    X, _, _ = datasets.make_low_rank(300, 200, 10, noise=0.02, random_state=1)
    W0, H0 = fastnmf.init.initialize(X, 10, "random", 0)
    sweeps = fastnmf.nmf(X, 10, W=W0, H=H0, max_iter=150, tol=0, accelerate="sweeps")
    auto = fastnmf.nmf(X, 10, W=W0, H=H0, max_iter=150, tol=0)
    s = sweeps.history["loss"]
    stall = np.flatnonzero(s[1:] > (1.0 - EXTRAPOLATE_BELOW) * s[:-1])[0] + 1
    assert 1 < stall < 120  # the test sees both phases
    assert_allclose(auto.history["loss"][: stall + 1], s[: stall + 1], rtol=1e-12)
    assert not np.allclose(auto.history["loss"][stall + 1:], s[stall + 1:], rtol=1e-6)
    _, _, losses = ref.nmf(X, W0, H0, 150, accelerate=True, extrapolate=EXTRAPOLATE_BELOW)
    assert_allclose(auto.history["loss"], losses, rtol=1e-8)
    assert auto.loss < sweeps.loss


def test_accelerate_is_checked(problem):
    X = problem[0]
    with pytest.raises(ValueError, match="accelerate"):
        fastnmf.nmf(X, 3, accelerate="fast")
    with pytest.raises(TypeError, match="accelerate"):
        fastnmf.nmf(X, 3, accelerate=2)


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_accelerated_hals_beats_plain_hals(fmt):
    """Repeated sweeps per product reach a lower loss in the same number of iterations
    and never raise it, extrapolation on top lower still; plain HALS is the same solver
    with one sweep."""
    X, _, _ = datasets.make_low_rank(200, 120, 6, noise=0.05, random_state=3)
    X[X < np.quantile(X, 0.3)] = 0.0  # sparse enough for both backends to make sense
    Xin = _to_format(X, fmt)
    kw = {"init": "nndsvda", "random_state": 0, "max_iter": 15, "tol": 0}
    fast = fastnmf.nmf(Xin, 6, **{**kw, "accelerate": "sweeps"})
    plain = fastnmf.nmf(Xin, 6, accelerate=False, **kw)
    assert fast.history["loss"][0] == plain.history["loss"][0]
    both = fastnmf.nmf(Xin, 6, accelerate="both", **kw)
    assert both.loss < fast.loss < plain.loss
    assert np.all(np.diff(fast.history["loss"]) <= 1e-12 * fast.history["loss"][:-1])
    # the same tol (relative to the first iteration's violation, which is measured
    # before any repeated sweep) stops the accelerated solver sooner
    plain = fastnmf.nmf(Xin, 6, accelerate=False, **{**kw, "max_iter": 500, "tol": 1e-3})
    for accelerate in ("sweeps", True):
        fast = fastnmf.nmf(Xin, 6, **{**kw, "max_iter": 500, "tol": 1e-3,
                                      "accelerate": accelerate})
        assert fast.converged and plain.converged
        assert fast.n_iter < plain.n_iter


def test_cd_is_an_alias_of_hals(problem):
    X, W, H = problem
    a = fastnmf.nmf(X, 5, solver="cd", W=W, H=H, max_iter=5, tol=0)
    b = fastnmf.nmf(X, 5, solver="hals", W=W, H=H, max_iter=5, tol=0)
    assert a.solver == "hals"
    assert_array_equal(a.W, b.W)


# ---------------------------------------------------------- sparse never densified


@pytest.fixture
def no_densify(monkeypatch):
    """Make every way of densifying a scipy sparse matrix/array raise."""

    def densified(self, *args, **kwargs):
        raise AssertionError("sparse X was densified")

    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.bsr_matrix, sp.lil_matrix,
                sp.dok_matrix, sp.csr_array, sp.csc_array, sp.coo_array, sp.bsr_array):
        monkeypatch.setattr(cls, "toarray", densified)
        monkeypatch.setattr(cls, "todense", densified)
        if hasattr(cls, "A"):
            monkeypatch.setattr(cls, "A", property(densified))


def test_no_densify_fixture_works(no_densify):
    X = sp.random(5, 4, density=0.5, format="csr", random_state=0)
    with pytest.raises(AssertionError, match="densified"):
        X.toarray()
    with pytest.raises(AssertionError, match="densified"):
        X.T.tocsr().todense()
    with pytest.raises(AssertionError, match="densified"):  # the one documented densify
        fastnmf.nmf(X, 2, backend="dense", max_iter=2)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "csr_array", "coo_array"])
def test_sparse_is_never_densified(make_X, no_densify, solver, fmt):
    X = make_X(60, 45, seed=7, density=0.2)
    Xs = sp.csr_matrix(X).asformat(fmt) if not fmt.endswith("_array") else None
    if Xs is None:
        Xs = getattr(sp, fmt)(sp.csr_matrix(X))
    res = fastnmf.nmf(Xs, 4, solver=solver, random_state=0, max_iter=10)
    assert res.backend == "sparse"
    assert np.all(np.isfinite(res.W)) and np.all(np.isfinite(res.H))


@pytest.mark.parametrize("init", [*INITS, "custom"])
def test_sparse_init_never_densified(make_X, make_WH, no_densify, init):
    X = sp.csr_matrix(make_X(60, 45, seed=8, density=0.2))
    W, H = make_WH(60, 45, 4) if init == "custom" else (None, None)
    res = fastnmf.nmf(X, 4, init=init, W=W, H=H, random_state=0, max_iter=5)
    assert res.backend == "sparse"


@pytest.mark.parametrize("solver", SOLVERS)
def test_sparse_update_H_false_never_densified(make_X, make_WH, no_densify, solver):
    X = sp.csr_matrix(make_X(60, 45, seed=9, density=0.2))
    _, H = make_WH(60, 45, 4)
    res = fastnmf.nmf(X, 4, solver=solver, H=H, update_H=False, max_iter=5)
    assert res.backend == "sparse"


# ---------------------------------------------------------- inputs never modified


def _snapshot(X):
    if sp.issparse(X):
        parts = [X.data]
        parts += [X.row, X.col] if X.format == "coo" else [X.indices, X.indptr]
        return [p.copy() for p in parts], parts
    return [X.copy()], [X]


def _non_canonical(fmt, dtype=np.float64):
    """A 6×5 matrix with unsorted indices and duplicate entries."""
    rows = np.array([0, 0, 0, 2, 2, 4, 5, 5, 1, 3, 3])
    cols = np.array([4, 1, 4, 3, 0, 2, 1, 1, 0, 4, 2])
    vals = np.arange(1.0, 12.0).astype(dtype)
    if fmt == "coo":
        return sp.coo_matrix((vals, (rows, cols)), shape=(6, 5))
    major, minor, n_major = (rows, cols, 6) if fmt == "csr" else (cols, rows, 5)
    order = np.argsort(major, kind="stable")
    indptr = np.concatenate([[0], np.cumsum(np.bincount(major, minlength=n_major))])
    cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
    X = cls((vals[order], minor[order], indptr), shape=(6, 5))
    assert not X.has_canonical_format
    return X


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("case", ["dense-C", "dense-F", "dense-f32", "csr", "csr-f32",
                                  "csc", "noncanon-csr", "noncanon-csc", "noncanon-coo"])
@pytest.mark.parametrize("custom", [False, True])
def test_inputs_never_modified(make_X, make_WH, solver, case, custom):
    if case.startswith("noncanon"):
        X = _non_canonical(case.split("-")[1])
    else:
        dtype = np.float32 if case.endswith("f32") else np.float64
        Xd = make_X(30, 20, seed=10, density=0.5, dtype=dtype)
        X = {"C": Xd, "F": np.asfortranarray(Xd), "f3": Xd}.get(case[6:8], None)
        if case.startswith("csr"):
            X = sp.csr_matrix(Xd)
        elif case == "csc":
            X = sp.csc_matrix(Xd)
    Xdense_before = ref.dense(X)
    copies, originals = _snapshot(X)
    W, H = make_WH(*X.shape, 3) if custom else (None, None)
    W0, H0 = (W.copy(), H.copy()) if custom else (None, None)
    res = fastnmf.nmf(X, 3, solver=solver, W=W, H=H, random_state=0, max_iter=10)
    for before, after in zip(copies, originals, strict=True):
        assert_array_equal(after, before)
    assert_array_equal(ref.dense(X), Xdense_before)
    if custom:
        assert_array_equal(W, W0)
        assert_array_equal(H, H0)
        assert not np.shares_memory(res.W, W) and not np.shares_memory(res.H, H)


def test_non_canonical_sparse_gives_summed_result(make_WH):
    X = _non_canonical("csr")
    W, H = make_WH(6, 5, 2)
    a = fastnmf.nmf(X, 2, W=W, H=H, max_iter=10, tol=0)
    b = fastnmf.nmf(ref.dense(X), 2, W=W, H=H, max_iter=10, tol=0)
    _close_factors(a.W, b.W, 1e-9)


def test_update_H_false_does_not_modify_H(make_X, make_WH):
    X = make_X(30, 20, seed=11)
    _, H = make_WH(30, 20, 3)
    H0 = H.copy()
    res = fastnmf.nmf(X, 3, H=H, update_H=False, max_iter=10)
    assert_array_equal(H, H0)
    assert not np.shares_memory(res.H, H)


# ---------------------------------------------------------- determinism, threads


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("init", INITS)
def test_fixed_random_state_is_reproducible(make_X, solver, init):
    X = make_X(50, 40, seed=12)
    a = fastnmf.nmf(X, 5, solver=solver, init=init, random_state=42, max_iter=10)
    b = fastnmf.nmf(X, 5, solver=solver, init=init, random_state=42, max_iter=10)
    c, d = (fastnmf.nmf(X, 5, solver=solver, init=init, max_iter=10,
                        random_state=np.random.RandomState(42)) for _ in range(2))
    assert_array_equal(a.W, b.W)
    assert_array_equal(a.H, b.H)
    assert_array_equal(a.history["loss"], b.history["loss"])
    assert_array_equal(c.W, d.W)
    assert_array_equal(c.H, d.H)


_CROSS_PROCESS_FIT = """
import hashlib, sys, numpy as np, scipy.sparse as sp, fastnmf
from fastnmf import _data
_data._SCATTER_MIN_NNZ, _data._SCATTER_MIN_OPERAND_BYTES = 0, 0  # scatter a candidate
pad = np.ones(int(sys.argv[1]))  # shift where the fit's arrays land
digest = hashlib.sha256()
rng = np.random.default_rng(5)
X = rng.random((1100, 1000))  # above the sizes where products split and change layout
for data in (X, X.astype(np.float32), sp.csr_matrix(np.where(X > 0.9, X, 0.0)[:, :60])):
    for kw in ({}, {"beta_loss": "kullback-leibler"}):
        res = fastnmf.nmf(data, 4, random_state=0, max_iter=4, tol=0, n_threads=2, **kw)
        digest.update(res.W.tobytes() + res.H.tobytes())
print(digest.hexdigest())
"""


def test_fixed_random_state_is_reproducible_across_processes():
    """One seed, one answer in every process: nothing the fit chooses (a product's
    layout, gather or scatter, the thread split) may depend on a timing or on where
    arrays land in memory (dense float64/float32 and a tall sparse X, Frobenius/KL)."""
    import subprocess
    import sys

    digests = set()
    for pad in ("1", "12345"):
        proc = subprocess.run([sys.executable, "-c", _CROSS_PROCESS_FIT, pad],
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        digests.add(proc.stdout.strip())
    assert len(digests) == 1


def test_different_random_state_differs(make_X):
    X = make_X(50, 40, seed=12)
    a = fastnmf.nmf(X, 5, init="random", random_state=1, max_iter=3)
    b = fastnmf.nmf(X, 5, init="random", random_state=2, max_iter=3)
    assert not np.allclose(a.W, b.W)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_n_threads_one_or_two_agree(make_X, solver, fmt):
    X = _to_format(make_X(120, 90, seed=13, density=0.3), fmt)
    before = numba.get_num_threads()
    a = fastnmf.nmf(X, 6, solver=solver, random_state=0, max_iter=20, tol=0, n_threads=1)
    assert numba.get_num_threads() == before
    b = fastnmf.nmf(X, 6, solver=solver, random_state=0, max_iter=20, tol=0, n_threads=2)
    assert numba.get_num_threads() == before
    _close_factors(a.W, b.W, 1e-10)
    _close_factors(a.H, b.H, 1e-10)
    assert_allclose(a.history["loss"], b.history["loss"], rtol=1e-10)


# ---------------------------------------------------------- zero rows / columns, dtypes


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("init", ["nndsvd", "nndsvda", "random"])
def test_zero_rows_and_columns(make_X, solver, fmt, init):
    Xd = make_X(40, 30, seed=14, density=0.5)
    Xd[[0, 5, 39]] = 0.0
    Xd[:, [0, 7, 29]] = 0.0
    res = fastnmf.nmf(_to_format(Xd, fmt), 5, solver=solver, init=init, random_state=0,
                      max_iter=30)
    for a in (res.W, res.H, res.history["loss"]):
        assert np.all(np.isfinite(a))
    assert np.all(res.W >= 0) and np.all(res.H >= 0)
    assert np.isfinite(res.loss) and np.isfinite(res.relative_error)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("init", ["nndsvd", "nndsvda", "random"])
def test_all_zero_matrix(solver, fmt, init):
    X = _to_format(np.zeros((10, 8)), fmt)
    res = fastnmf.nmf(X, 3, solver=solver, init=init, random_state=0, max_iter=10)
    assert np.all(np.isfinite(res.W)) and np.all(np.isfinite(res.H))
    assert res.loss == 0 and res.reconstruction_err == 0 and res.relative_error == 0


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("fmt", ["dense", "csr", "csc"])
@pytest.mark.parametrize("custom", [False, True])
def test_float32_stays_float32(make_X, make_WH, solver, fmt, custom):
    X = _to_format(make_X(40, 30, seed=15, density=0.5, dtype=np.float32), fmt)
    W, H = make_WH(40, 30, 4, dtype=np.float64) if custom else (None, None)
    res = fastnmf.nmf(X, 4, solver=solver, W=W, H=H, random_state=0, max_iter=20)
    assert res.W.dtype == np.float32 and res.H.dtype == np.float32
    assert np.all(np.isfinite(res.W)) and np.all(np.isfinite(res.H))
    assert_allclose(res.reconstruction_err, np.sqrt(ref.sqerr(X, res.W, res.H)), rtol=1e-5)


@pytest.mark.parametrize(
    ("dtype", "fmt"),
    [(d, f) for d in (np.int32, np.int64, np.uint8, np.bool_) for f in ("dense", "csr")]
    + [(np.float16, "dense")],  # scipy.sparse has no float16
)
def test_int_bool_half_become_float64(dtype, fmt):
    rng = np.random.default_rng(16)
    X = _to_format((rng.random((20, 15)) * 3).astype(dtype), fmt)
    res = fastnmf.nmf(X, 3, random_state=0, max_iter=10)
    assert res.W.dtype == np.float64 and res.H.dtype == np.float64
    assert np.all(np.isfinite(res.W))


def test_list_input(make_X):
    X = make_X(10, 8, seed=17)
    res = fastnmf.nmf(X.tolist(), 2, random_state=0, max_iter=5)
    assert res.W.dtype == np.float64 and res.W.shape == (10, 2)


# ---------------------------------------------------------- errors


def _X():
    return np.random.default_rng(0).random((8, 6))


def _with(i, j, value, dtype=np.float64):
    X = _X().astype(dtype)
    X[i, j] = value
    return X


BAD_X = [
    ("nan", _with(1, 2, np.nan), ValueError, "NaN"),
    ("inf", _with(0, 0, np.inf), ValueError, "[Ii]nf"),
    ("f32-nan", _with(3, 3, np.nan, np.float32), ValueError, "NaN"),
    ("negative", _with(2, 1, -1.0), ValueError, "[Nn]egative"),
    ("sparse-nan", sp.csr_matrix(_with(1, 2, np.nan)), ValueError, "NaN"),
    ("sparse-inf", sp.csr_matrix(_with(1, 2, np.inf)), ValueError, "[Ii]nf"),
    ("sparse-negative", sp.csc_matrix(_with(1, 2, -3.0)), ValueError, "[Nn]egative"),
    ("empty-rows", np.zeros((0, 5)), ValueError, "empty"),
    ("empty-cols", np.zeros((5, 0)), ValueError, "empty"),
    ("sparse-empty", sp.csr_matrix((0, 5)), ValueError, "empty"),
    ("1-D", np.ones(5), ValueError, "2-D"),
    ("3-D", np.ones((2, 3, 4)), ValueError, "2-D"),
    ("sparse-1-D", sp.coo_array(np.ones(5)), ValueError, "2-D"),
    ("complex", _X().astype(np.complex128), TypeError, "complex"),
    ("object-str", np.array([["a", "b"], ["c", "d"]], dtype=object), TypeError, "object"),
    ("str", np.array([["a", "b"], ["c", "d"]]), TypeError, "dtype"),
    ("None", None, TypeError, "None"),
    ("scalar-str", "abc", TypeError, "str"),
]


@pytest.mark.parametrize(("X", "exc", "match"), [c[1:] for c in BAD_X],
                         ids=[c[0] for c in BAD_X])
def test_bad_X(X, exc, match):
    with pytest.raises(exc, match=match):
        fastnmf.nmf(X, 2)


BAD_RANK = [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError),
            ("3", TypeError), (None, TypeError)]


@pytest.mark.parametrize(("rank", "exc"), BAD_RANK, ids=[repr(r) for r, _ in BAD_RANK])
def test_bad_rank(rank, exc):
    with pytest.raises(exc, match="rank"):
        fastnmf.nmf(_X(), rank)


def test_numpy_integer_rank_is_accepted():
    assert fastnmf.nmf(_X(), np.int64(2), max_iter=2).W.shape == (8, 2)


def _factors(W_change=None, H_change=None):
    rng = np.random.default_rng(1)
    W, H = rng.random((8, 2)), rng.random((2, 6))
    if W_change:
        W = W_change(W)
    if H_change:
        H = H_change(H)
    return {"W": W, "H": H}


def _set(i, j, value):
    def change(F):
        F = F.copy()
        F[i, j] = value
        return F
    return change


BAD_KWARGS = [
    ("W-shape", _factors(W_change=lambda W: W[:, :1]), ValueError, "W.*shape|shape.*W"),
    ("W-transposed", _factors(W_change=lambda W: W.T), ValueError, "W.*shape|shape.*W"),
    ("H-shape", _factors(H_change=lambda H: H[:, :4]), ValueError, "H.*shape|shape.*H"),
    ("W-negative", _factors(W_change=_set(0, 0, -1.0)), ValueError, "[Nn]egative.*W"),
    ("H-negative", _factors(H_change=_set(1, 1, -0.5)), ValueError, "[Nn]egative.*H"),
    ("W-nan", _factors(W_change=_set(0, 1, np.nan)), ValueError, "W.*NaN|NaN.*W"),
    ("H-inf", _factors(H_change=_set(0, 1, np.inf)), ValueError, "H.*[Ii]nf"),
    ("W-zero", _factors(W_change=np.zeros_like), ValueError, "W.*zero"),
    ("H-zero", _factors(H_change=np.zeros_like), ValueError, "H.*zero"),
    ("W-complex", _factors(W_change=lambda W: W.astype(complex)), TypeError, "W"),
    ("W-only", {"W": _factors()["W"]}, ValueError, "H"),
    ("custom-no-H", {"init": "custom", "W": _factors()["W"]}, ValueError, "H"),
    ("solver", {"solver": "lbfgs"}, ValueError, "solver"),
    ("init", {"init": "svd"}, ValueError, "init"),
    ("backend", {"backend": "gpu"}, ValueError, "backend"),
    ("tol", {"tol": -1e-4}, ValueError, "tol"),
    ("alpha_W", {"alpha_W": -0.1}, ValueError, "alpha_W"),
    ("alpha_H", {"alpha_H": -0.1}, ValueError, "alpha_H"),
    ("alpha_H-str", {"alpha_H": "other"}, TypeError, "alpha_H"),
    ("l1_ratio>1", {"l1_ratio": 1.5}, ValueError, "l1_ratio"),
    ("l1_ratio<0", {"l1_ratio": -0.5}, ValueError, "l1_ratio"),
    ("max_iter-0", {"max_iter": 0}, ValueError, "max_iter"),
    ("max_iter-float", {"max_iter": 10.5}, TypeError, "max_iter"),
    ("max_time", {"max_time": -1.0}, ValueError, "max_time"),
    ("callback", {"callback": 3}, TypeError, "callback"),
    ("n_threads-0", {"n_threads": 0}, ValueError, "n_threads"),
    ("n_threads-str", {"n_threads": "2"}, TypeError, "n_threads"),
    ("update_H-no-H", {"update_H": False}, ValueError, "H"),
]


@pytest.mark.parametrize(("kwargs", "exc", "match"), [c[1:] for c in BAD_KWARGS],
                         ids=[c[0] for c in BAD_KWARGS])
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fastnmf.nmf(_X(), 2, **kwargs)


@pytest.mark.parametrize("init", ["nndsvd", "nndsvda", "nndsvdar"])
@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_nndsvd_rank_above_min_shape_errors(init, fmt):
    X = _to_format(_X(), fmt)  # 8×6
    with pytest.raises(ValueError, match="rank"):
        fastnmf.nmf(X, 7, init=init)
    with pytest.raises(ValueError, match="rank"):
        fastnmf.initialize(X, 7, init)


def test_random_init_allows_rank_above_min_shape():
    res = fastnmf.nmf(_X(), 9, init="random", random_state=0, max_iter=5)
    assert res.W.shape == (8, 9) and np.all(np.isfinite(res.W))


# ---------------------------------------------------------- stopping, callback, output


def test_max_time_stops_early(make_X):
    X = make_X(50, 40, seed=18)
    res = fastnmf.nmf(X, 4, random_state=0, max_iter=100, tol=0, max_time=0.0)
    assert res.stop_reason == "max_time"
    assert res.converged is False
    assert res.n_iter == 1 and len(res.history["loss"]) == 2


@pytest.mark.parametrize("solver", SOLVERS)
def test_callback_can_stop(make_X, solver):
    X = make_X(50, 40, seed=19)
    seen = []

    def callback(info):
        seen.append((info.iteration, info.loss, info.W.shape, info.H.shape))
        return info.iteration == 3

    res = fastnmf.nmf(X, 4, solver=solver, random_state=0, max_iter=50, tol=0,
                      callback=callback)
    assert res.stop_reason == "callback" and res.converged is False
    assert res.n_iter == 3
    assert [s[0] for s in seen] == [1, 2, 3]
    assert seen[0][2] == (50, 4) and seen[0][3] == (4, 40)
    assert_allclose([s[1] for s in seen], res.history["loss"][1:])


def test_callback_returning_none_does_not_stop(make_X):
    res = fastnmf.nmf(make_X(30, 20), 3, random_state=0, max_iter=7, tol=0,
                      callback=lambda info: None)
    assert res.n_iter == 7 and res.stop_reason == "max_iter" and res.converged is False


@pytest.mark.parametrize("solver", SOLVERS)
def test_converges_with_tol(make_X, solver):
    X = make_X(40, 30, seed=20, rank=3)
    res = fastnmf.nmf(X, 3, solver=solver, random_state=0, max_iter=2000, tol=1e-3)
    assert res.converged is True and res.stop_reason == "tol"
    assert res.n_iter < 2000


def _stopped_at(rule, violations, errors, tol=1e-3):
    from fastnmf.solvers import Monitor

    monitor = Monitor(max_iter=len(errors) - 1, tol=tol, rule=rule)
    monitor.start(errors[0] ** 2 / 2, errors[0])
    W, H = np.zeros((1, 1)), np.zeros((1, 1))
    for it in range(1, len(errors)):
        if monitor.step(it, errors[it] ** 2 / 2, errors[it], W, H, violations[it]):
            return it, monitor.stop_reason
    return None, monitor.stop_reason


def test_accelerated_stop_rule_is_violation_or_a_stalled_error():
    """The accelerated HALS rule: the violation rule, or the error rule (scikit-learn's
    MU rule) met at two checks in a row; "error" alone stops at the first."""
    from fastnmf.solvers._monitor import STALLED_CHECKS

    n = 60
    flat = np.full(n + 1, 1.0)  # the violation never falls
    errors = 10.0 - 1e-2 * np.minimum(np.arange(n + 1), 8)  # stalls from iteration 8 on
    # checks every 10 iterations: at 10 the error still fell by 8e-3 of its start
    assert _stopped_at("error", flat, errors) == (20, "tol")
    assert STALLED_CHECKS == 2
    assert _stopped_at("violation|error", flat, errors) == (30, "tol")
    assert _stopped_at("violation", flat, errors) == (None, "max_iter")
    # progress between two stalled checks starts the count again
    bumpy = errors.copy()
    bumpy[15:] -= 0.5
    assert _stopped_at("violation|error", flat, bumpy) == (40, "tol")
    # the violation rule alone still stops it, at any iteration
    falling = flat.copy()
    falling[7:] = 1e-4
    assert _stopped_at("violation|error", falling, errors) == (7, "tol")


def test_stop_rules_of_the_solvers():
    from fastnmf.solvers import objective_for

    frob, kl = objective_for("frobenius"), objective_for("kullback-leibler")
    for accelerate in ("auto", "extrapolate", "both"):  # the violation at extrapolated points
        assert frob.stop_rule("hals", accelerate) == "violation|error"
    assert frob.stop_rule("hals", False) == "violation"  # scikit-learn cd's iterates, its rule
    assert frob.stop_rule("hals", "sweeps") == "violation"
    # fits that never extrapolate: H fixed, or "auto" with penalties
    assert frob.stop_rule("hals", "auto", update_H=False) == "violation"
    assert frob.stop_rule("hals", "auto", penalized=True) == "violation"
    assert frob.stop_rule("hals", "both", penalized=True) == "violation|error"
    assert frob.stop_rule("mu", "auto") == "error"
    assert kl.stop_rule("ccd", "auto") == kl.stop_rule("mu", False) == "error"


def test_default_stops_once_the_error_stalls_no_worse_than_sklearn():
    """On a noisy mixture the violation of the accelerated default falls slowly (it ran
    61 iterations); the stalled error stops it sooner, at an error no worse than the one
    scikit-learn's default reaches (160 iterations)."""
    rng = np.random.default_rng(0)
    X = rng.gamma(0.5, size=(200, 8)) @ rng.gamma(0.5, size=(8, 300))
    X += 0.5 * rng.random((200, 300))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = NMF(12, random_state=0).fit(X)
    res = fastnmf.nmf(X, 12, random_state=0)
    assert res.converged and res.stop_reason == "tol" and res.n_iter % 10 == 0
    assert res.n_iter < sk.n_iter_ / 2
    assert res.reconstruction_err <= sk.reconstruction_err_
    # scikit-learn's iterates keep scikit-learn's rule: the same stop as its cd
    plain = fastnmf.nmf(X, 12, random_state=0, accelerate=False)
    assert plain.n_iter == sk.n_iter_


def test_progress_and_verbose_run(make_X, capsys):
    X = make_X(30, 20, seed=21)
    res = fastnmf.nmf(X, 3, random_state=0, max_iter=4, tol=0, progress=True)
    assert res.n_iter == 4
    res = fastnmf.nmf(X, 3, random_state=0, max_iter=4, tol=0, verbose=1)
    out = capsys.readouterr().out
    assert out.count("Iteration") >= 4


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("reg", REGS, ids=REG_IDS)
@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_result_attributes(make_X, solver, reg, fmt, dtype):
    Xd = make_X(50, 40, seed=22, density=0.5, dtype=dtype)
    res = fastnmf.nmf(_to_format(Xd, fmt), 4, solver=solver, random_state=0, max_iter=12,
                      **reg)
    sq = ref.sqerr(Xd, res.W, res.H)
    rtol = 1e-9 if dtype == np.float64 else 1e-4
    assert isinstance(res, fastnmf.NMFResult)
    assert res.W.shape == (50, 4) and res.H.shape == (4, 40)
    assert res.W.flags.c_contiguous and res.H.flags.c_contiguous
    assert_allclose(res.reconstruction_err, np.sqrt(sq), rtol=rtol)
    assert_allclose(res.relative_error, np.sqrt(sq / np.sum(Xd.astype(np.float64) ** 2)),
                    rtol=rtol)
    assert_allclose(res.loss, ref.objective(Xd, res.W, res.H, _reg(Xd.shape, reg)), rtol=rtol)
    h = res.history
    assert set(h) >= {"iteration", "time", "loss"}
    assert len(h["loss"]) == len(h["time"]) == len(h["iteration"]) == res.n_iter + 1
    assert_array_equal(h["iteration"], np.arange(res.n_iter + 1))
    assert h["loss"][-1] == res.loss
    assert np.all(np.diff(h["time"]) >= 0) and h["time"][0] == 0
    assert res.solver == solver and res.backend == ("dense" if fmt == "dense" else "sparse")
    assert 1 <= res.n_iter <= 12 and res.elapsed >= 0
    assert res.stop_reason in ("tol", "max_iter")
    assert res.converged == (res.stop_reason == "tol")


# ---------------------------------------------------------- update_H=False


@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_update_H_false_solves_nnls_for_W(make_X, make_WH, fmt):
    rng = np.random.default_rng(23)
    H = rng.random((3, 30)) + 0.1
    Xd = make_X(25, 30, seed=23, density=0.6)
    res = fastnmf.nmf(_to_format(Xd, fmt), 3, solver="hals", H=H, update_H=False,
                      max_iter=500, tol=1e-12)
    assert_array_equal(res.H, H)
    expected = np.array([nnls(H.T, x)[0] for x in Xd])
    assert_allclose(res.W, expected, atol=1e-6)
    assert np.all(np.diff(res.history["loss"]) <= 1e-12 * res.history["loss"][:-1])


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("reg", REGS, ids=REG_IDS)
def test_update_H_false_matches_sklearn_transform_solver(make_X, solver, reg):
    """H fixed: W from the same solver in scikit-learn's non_negative_factorization."""
    from sklearn.decomposition import non_negative_factorization

    rng = np.random.default_rng(24)
    H = rng.random((3, 30)) + 0.1
    X = make_X(25, 30, seed=24)
    Ws, _, _ = non_negative_factorization(
        X, H=H.copy(), n_components=3, init="custom", update_H=False,
        solver="cd" if solver == "hals" else "mu", max_iter=20, tol=0, **reg)
    res = fastnmf.nmf(X, 3, solver=solver, H=H, update_H=False, max_iter=20, tol=0,
                      accelerate=False, **reg)
    assert res.n_iter == 20
    _close_factors(res.W, Ws, 1e-6)
    assert_array_equal(res.H, H)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("case", ["noncanon-csr", "noncanon-csc", "noncanon-coo", "csr"])
def test_update_H_false_never_modifies_X(make_WH, solver, case):
    X = _non_canonical(case.split("-")[-1]) if case.startswith("noncanon") else (
        sp.csr_matrix(ref.dense(_non_canonical("csr"))))
    copies, originals = _snapshot(X)
    _, H = make_WH(6, 5, 2)
    fastnmf.nmf(X, 2, solver=solver, H=H, update_H=False, max_iter=5)
    for before, after in zip(copies, originals, strict=True):
        assert_array_equal(after, before)


def test_read_only_inputs(make_X, make_WH):
    X = make_X(30, 20, seed=25, density=0.5)
    W, H = make_WH(30, 20, 3)
    for a in (X, W, H):
        a.setflags(write=False)
    res = fastnmf.nmf(X, 3, W=W, H=H, max_iter=5)
    Xs = sp.csr_matrix(X)
    Xs.data.setflags(write=False)
    res_s = fastnmf.nmf(Xs, 3, W=W, H=H, max_iter=5)
    _close_factors(res_s.W, res.W, 1e-9)


def test_fortran_and_strided_custom_factors(problem):
    X, W, H = problem
    a = fastnmf.nmf(X, 5, W=W, H=H, max_iter=5, tol=0)
    b = fastnmf.nmf(np.asfortranarray(X), 5, W=np.asfortranarray(W), H=np.asfortranarray(H),
                    max_iter=5, tol=0)
    c = fastnmf.nmf(np.repeat(X, 2, axis=1)[:, ::2], 5, W=np.repeat(W, 2, axis=1)[:, ::2],
                    H=np.repeat(H, 2, axis=0)[::2], max_iter=5, tol=0)
    _close_factors(b.W, a.W, 1e-9)
    _close_factors(c.W, a.W, 1e-9)
    _close_factors(c.H, a.H, 1e-9)


@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_sparse_index_dtypes_through_nmf(problem, index_dtype):
    X, W, H = problem
    Xs = sp.csr_matrix(X)
    Xs.indices = Xs.indices.astype(index_dtype)
    Xs.indptr = Xs.indptr.astype(index_dtype)
    a = fastnmf.nmf(Xs, 5, W=W, H=H, max_iter=5, tol=0)
    b = fastnmf.nmf(X, 5, W=W, H=H, max_iter=5, tol=0)
    _close_factors(a.W, b.W, 1e-9)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize(("shape", "rank"), [((1, 1), 1), ((1, 7), 1), ((7, 1), 1),
                                             ((1, 7), 3), ((6, 4), 5), ((20, 15), 1)])
def test_odd_shapes(solver, fmt, shape, rank):
    rng = np.random.default_rng(sum(shape) + rank)
    Xd = rng.random(shape) + 0.1
    res = fastnmf.nmf(_to_format(Xd, fmt), rank, solver=solver, init="random",
                      random_state=0, max_iter=30, tol=0, accelerate="sweeps")
    assert res.W.shape == (shape[0], rank) and res.H.shape == (rank, shape[1])
    assert np.all(np.isfinite(res.W)) and np.all(np.isfinite(res.H))
    # these fits are (nearly) exact: allow the √eps·‖X‖ of a Gram-based error
    # (the exact-fit accuracy itself is tested in test_exact_low_rank_backends_agree)
    assert_allclose(res.reconstruction_err, np.sqrt(ref.sqerr(Xd, res.W, res.H)),
                    rtol=1e-6, atol=1e-7 * np.linalg.norm(Xd))
    loss = res.history["loss"]
    assert np.all(np.diff(loss) <= 1e-12 * loss[:-1] + 1e-15 * np.sum(Xd**2))


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("fmt", ["dense", "csr"])
@pytest.mark.parametrize("tol", [1e-2, 1e-4])
def test_tol_stops_where_sklearn_stops(problem, solver, fmt, tol):
    """``tol`` has scikit-learn's meaning: the same start stops at the same iteration."""
    X, W, H = problem
    Xin = _to_format(X, fmt)
    est = NMF(n_components=5, solver="cd" if solver == "hals" else "mu", init="custom",
              max_iter=400, tol=tol)
    est.fit_transform(Xin, W=W.copy(), H=H.copy())
    res = fastnmf.nmf(Xin, 5, solver=solver, W=W, H=H, max_iter=400, tol=tol, accelerate=False)
    assert res.n_iter == est.n_iter_
    assert res.converged == (est.n_iter_ < 400)


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("fmt", ["dense", "csr"])
def test_reported_error_accurate_for_close_fit(solver, fmt):
    """An almost exact fit: the reported error must not be round-off of ‖X‖²."""
    rng = np.random.default_rng(26)
    Xd = rng.random((60, 3)) @ rng.random((3, 40)) + 1e-5 * rng.random((60, 40))
    res = fastnmf.nmf(_to_format(Xd, fmt), 3, solver=solver, init="nndsvda", max_iter=300,
                      tol=0)
    direct = np.sqrt(ref.sqerr(Xd, res.W, res.H))
    assert_allclose(res.reconstruction_err, direct, rtol=1e-4)
    assert_allclose(res.loss, 0.5 * direct**2, rtol=2e-4)


@pytest.mark.parametrize("solver", SOLVERS)
def test_exact_low_rank_backends_agree(solver):
    """Exactly low-rank data with every entry stored: dense and sparse backends must
    run the same iterations and report the true error, not round-off of ‖X‖²."""
    rng = np.random.default_rng(1)
    Xd = (rng.random((30, 2)) + 0.1) @ (rng.random((2, 20)) + 0.1)
    kw = {"solver": solver, "init": "random", "random_state": 0, "max_iter": 120, "tol": 0}
    d = fastnmf.nmf(Xd, 2, backend="dense", **kw)
    s = fastnmf.nmf(Xd, 2, backend="sparse", **kw)
    assert s.n_iter == d.n_iter and s.stop_reason == d.stop_reason
    _close_factors(s.W, d.W, 1e-6)
    for res in (d, s):
        direct = np.sqrt(ref.sqerr(Xd, res.W, res.H))
        # a close fit (≤ 1e-6 relative): the cheap formula alone would be round-off
        assert_allclose(res.reconstruction_err, direct, rtol=1e-3,
                        atol=1e-12 * np.linalg.norm(Xd))


def test_fit_does_not_import_sklearn():
    """scikit-learn takes ~0.5 s to import: the functional API must not need it."""
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, scipy.sparse as sp, fastnmf\n"
        "X = np.random.default_rng(0).random((40, 30))\n"
        "for init in ('nndsvda', 'nndsvd', 'nndsvdar', 'random'):\n"
        "    fastnmf.nmf(X, 3, init=init, random_state=0, max_iter=3)\n"
        "    fastnmf.nmf(sp.csr_matrix(X), 3, init=init, random_state=0, max_iter=3)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn')\n"
        "sys.exit(f'scikit-learn imported: {loaded}' if loaded else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_small_problems_default_to_one_thread():
    """n_threads=None runs small problems on one thread (a second costs more than it
    saves there: docs/threads.md): the same bits as n_threads=1; large ones get all."""
    from fastnmf._threads import ONE_THREAD_BELOW, default_threads

    assert default_threads(np.ones((300, 120)), 6) == 1
    assert default_threads(np.ones((5000, 2000)), 20) is None
    big = sp.random(20000, 5000, density=1e-2, format="csr", random_state=0)
    assert big.nnz * 20 > ONE_THREAD_BELOW and default_threads(big, 20) is None
    assert default_threads(big[:100], 20) == 1
    X, _, _ = datasets.make_low_rank(300, 120, 6, random_state=0)
    a = fastnmf.nmf(X, 6, random_state=0, max_iter=30, tol=0)
    b = fastnmf.nmf(X, 6, random_state=0, max_iter=30, tol=0, n_threads=1)
    assert_array_equal(a.W, b.W)
    assert_array_equal(a.H, b.H)
