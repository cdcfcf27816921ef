"""fastnmf.MiniBatchNMF: scikit-learn's online MU, online HALS, streaming partial_fit."""

from __future__ import annotations

import itertools
import re
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from numpy.testing import assert_allclose
from reference import online_hals, online_mu_step
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastnmf
from fastnmf._chunks import row_bounds
from fastnmf.kernels.beta import online_mu_apply, online_mu_gram

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _data(m=120, n=30, seed=0, sparse=False, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = np.abs(rng.normal(size=(m, n)))
    if sparse:
        X[X < 0.8] = 0
        return sp.csr_matrix(X.astype(dtype))
    return X.astype(dtype)


def _planted(m=600, n=80, r=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((m, r)) @ rng.random((r, n))


# -- the kernel against its NumPy twin ------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gamma, rho, clip", [(1.0, 0.0, 0.0), (1.0, 0.7, 0.0),
                                              (0.5, 0.3, 1e-3), (1 / 1.5, 0.9, 0.0)])
def test_online_mu_apply_matches_reference(dtype, gamma, rho, clip):
    rng = np.random.default_rng(1)
    n, r = 70, 4
    F, num, den, A, B = (rng.random((n, r)).astype(dtype) for _ in range(5))
    den[0, 0] = 0  # a zero denominator: eps
    F[1, 1] = 0
    l1, l2 = 0.1, 0.2
    expected = online_mu_step(F, num, den, A, B, l1, l2, gamma=gamma, rho=rho, clip=clip)
    t = np.dtype(dtype).type
    F0 = F.copy()
    online_mu_apply(F, num, den, A, B, t(l1), t(l2), t(np.finfo(np.float32).eps), t(gamma),
                    t(rho), t(clip), row_bounds(n, 3))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for got, want in zip((F, A, B), expected, strict=True):
        assert_allclose(got, want, rtol=rtol, atol=1e-30)
    assert not np.array_equal(F, F0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, bounds", [(70, [0, 64, 70]), (200, [0, 128, 200]), (1, [0, 1]),
                                       (130, [0, 0, 64, 130, 130])])
@pytest.mark.parametrize("rho, l1, l2", [(0.0, 0.0, 0.0), (0.7, 0.1, 0.2)])
def test_online_mu_gram_matches_reference(dtype, n, bounds, rho, l1, l2):
    """The Frobenius step with the denominator ``F·WᵀW`` formed in the kernel, against
    the reference's step on that denominator (chunks of whole row groups, a partial
    last group, empty chunks), and the updated F's Gram it writes."""
    rng = np.random.default_rng(2)
    r = 5
    F, num, A, B = (rng.random((n, r)).astype(dtype) for _ in range(4))
    W = rng.random((9, r)).astype(dtype)
    WtW = W.T @ W
    F[0, :] = 0  # a zero row: denominator l1 (or eps)
    expected = online_mu_step(F, num, F.astype(np.float64) @ WtW.astype(np.float64), A, B,
                              l1, l2, rho=rho)
    t = np.dtype(dtype).type
    G = np.full((r, r), np.nan, dtype=dtype)  # overwritten, not added to
    online_mu_gram(F, num, WtW, A, B, t(l1), t(l2), t(np.finfo(np.float32).eps), t(rho),
                   np.array(bounds, dtype=np.int64), G)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for got, want in zip((F, A, B), expected, strict=True):
        assert_allclose(got, want, rtol=rtol, atol=1e-30)
    F64 = expected[0].astype(np.float64)
    assert_allclose(G, F64.T @ F64, rtol=rtol)
    assert np.array_equal(G, G.T)


# -- scikit-learn's semantics ---------------------------------------------------------

@pytest.mark.parametrize("beta_loss", [2, 1, 0.5])
@pytest.mark.parametrize("sparse", [False, True])
def test_full_batch_reproduces_nmf_mu_iterates(beta_loss, sparse):
    """batch_size = n_samples and forget_factor = 0: NMF's MU, iterate for iterate."""
    X = _data(48, 6, sparse=sparse)
    kw = dict(n_components=4, beta_loss=beta_loss, random_state=0, tol=0, max_iter=50,
              init="random")
    W = fastnmf.NMF(solver="mu", **kw).fit_transform(X)
    mb = fastnmf.MiniBatchNMF(max_no_improvement=None, batch_size=X.shape[0],
                              forget_factor=0.0, **kw)
    assert_allclose(mb.fit_transform(X), W, rtol=1e-9)
    assert mb.n_steps_ == 50 and mb.n_iter_ == 50


@pytest.mark.parametrize("beta_loss", [2, 1, "itakura-saito"])
@pytest.mark.parametrize("sparse", [False, True])
def test_matches_sklearn_minibatchnmf(beta_loss, sparse):
    skd = pytest.importorskip("sklearn.decomposition")
    X = _data(150, 20, sparse=sparse)
    if beta_loss == "itakura-saito":
        X = (X.toarray() if sparse else X) + 0.1
    kw = dict(n_components=3, beta_loss=beta_loss, random_state=0, batch_size=32,
              max_iter=15, alpha_W=0.01, l1_ratio=0.5)
    ours = fastnmf.MiniBatchNMF(**kw)
    theirs = skd.MiniBatchNMF(**kw)
    W = ours.fit_transform(X)
    assert ours.n_steps_ == theirs.fit(X).n_steps_
    assert ours.n_iter_ == theirs.n_iter_
    assert_allclose(ours.components_, theirs.components_, rtol=1e-7, atol=1e-12)
    assert_allclose(ours.reconstruction_err_, theirs.reconstruction_err_, rtol=1e-9)
    assert_allclose(ours.transform(X), theirs.transform(X), rtol=1e-6, atol=1e-10)
    assert W.shape == (150, 3)


@pytest.mark.parametrize("solver", ["mu", "hals"])
@pytest.mark.parametrize("wide", [False, True])  # wide: batches leave columns empty
def test_dense_equals_sparse(solver, wide):
    X = (sp.random(130, 300, density=0.03, format="csr", random_state=1) if wide
         else _data(130, 25, sparse=True))
    kw = dict(n_components=3, random_state=0, batch_size=40, max_iter=20, solver=solver)
    Wd = fastnmf.MiniBatchNMF(**kw, backend="dense").fit_transform(X.toarray())
    dense = fastnmf.MiniBatchNMF(**kw, backend="dense").fit(X.toarray())
    sparse = fastnmf.MiniBatchNMF(**kw, backend="sparse").fit(X)
    assert dense.n_steps_ == sparse.n_steps_
    assert_allclose(sparse.components_, dense.components_, rtol=1e-8, atol=1e-12)
    assert_allclose(sparse.transform(X), dense.transform(X.toarray()), rtol=1e-6, atol=1e-9)
    assert Wd.shape == (130, 3)


@pytest.mark.parametrize("solver", ["mu", "hals"])
def test_float32_and_float64(solver):
    X = _planted(200, 30, 3)
    kw = dict(n_components=3, random_state=0, batch_size=50, max_iter=30, tol=0,
              max_no_improvement=None, solver=solver)
    m64 = fastnmf.MiniBatchNMF(**kw)
    m32 = fastnmf.MiniBatchNMF(**kw)
    W64 = m64.fit_transform(X)
    W32 = m32.fit_transform(X.astype(np.float32))
    assert W32.dtype == np.float32 and m32.components_.dtype == np.float32
    assert W64.dtype == np.float64 and m64.components_.dtype == np.float64
    assert m32.transform(X.astype(np.float32)).dtype == np.float32
    assert_allclose(m32.reconstruction_err_, m64.reconstruction_err_, rtol=1e-2, atol=1e-3)
    assert_allclose(W32 @ m32.components_, W64 @ m64.components_, atol=2e-2 * X.max())


@pytest.mark.parametrize("solver", ["mu", "hals"])
@pytest.mark.parametrize("sparse", [False, True])
def test_fixed_random_state_is_deterministic(solver, sparse):
    X = _data(100, 20, sparse=sparse)
    X_before = X.copy()
    kw = dict(n_components=3, random_state=7, init="random", batch_size=30, solver=solver)
    a = fastnmf.MiniBatchNMF(**kw).fit(X)
    b = fastnmf.MiniBatchNMF(**kw).fit(X)
    assert np.array_equal(a.components_, b.components_)
    assert np.array_equal(a.transform(X), b.transform(X))
    assert a.n_steps_ == b.n_steps_
    same = (X != X_before).nnz == 0 if sparse else np.array_equal(X, X_before)
    assert same  # X never modified


def test_custom_init_arrays_are_not_modified():
    X = _data()
    W0 = np.full((X.shape[0], 3), 0.5)
    H0 = np.full((3, X.shape[1]), 0.5)
    W_copy, H_copy = W0.copy(), H0.copy()
    model = fastnmf.MiniBatchNMF(3, init="custom", batch_size=40, max_iter=5)
    model.fit(X, W=W0, H=H0)
    fastnmf.MiniBatchNMF(3, init="custom").partial_fit(X[:40], W=W0[:40], H=H0)
    assert np.array_equal(W0, W_copy) and np.array_equal(H0, H_copy)
    assert model.components_ is not H0


# -- the online HALS variant ----------------------------------------------------------

@pytest.mark.parametrize("sparse", [False, True])
def test_hals_loss_decreases_over_epochs_on_planted_data(sparse):
    X = _planted(600, 80, 5)
    if sparse:
        X[X < np.quantile(X, 0.3)] = 0
        X = sp.csr_matrix(X)
    kw = dict(n_components=5, random_state=0, batch_size=100, tol=0,
              max_no_improvement=None)
    errors = [fastnmf.MiniBatchNMF(max_iter=k, solver="hals", **kw).fit(X).reconstruction_err_
              for k in (1, 2, 4, 8, 16)]
    assert all(b <= a * (1 + 1e-6) for a, b in itertools.pairwise(errors)), errors
    assert errors[-1] < (0.9 if sparse else 0.5) * errors[0]
    # the same passes of scikit-learn's online MU get less far on this workload
    mu = fastnmf.MiniBatchNMF(max_iter=16, **kw).fit(X).reconstruction_err_
    assert errors[-1] < (0.9 if sparse else 0.6) * mu, (errors, mu)
    if not sparse:  # an exact rank-5 matrix (measured: 3.4 % after 16 passes)
        assert errors[-1] / np.linalg.norm(X) < 0.05, errors


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("forget", [0.5, 1e-4])  # 1e-4: the held scale is multiplied out
@pytest.mark.parametrize("n_cols, zeros", [(14, 0.3), (120, 0.9)])
def test_online_hals_matches_reference(sparse, dtype, forget, n_cols, zeros):
    # fit, and the same batches through partial_fit, against the plain NumPy loop (the
    # statistics are held scaled by ρ's running product: the same iterates to round-off).
    # 120 columns, 90 % zeros: batches leave columns empty, whose rows of H are not swept
    X = _planted(90, n_cols, 3, seed=3)
    X[X < np.quantile(X, zeros)] = 0
    if zeros > 0.5:
        empty = [(~X[a:a + 20].any(axis=0)).sum() for a in range(0, 90, 20)]
        assert 0 < min(empty) and max(empty) < n_cols, empty
    if sparse:
        X = sp.csr_matrix(X)
    X = X.astype(dtype)
    rng = np.random.default_rng(0)
    W0, H0 = rng.random((90, 3)), rng.random((3, n_cols))
    batch, passes = 20, 4
    rho = forget ** (batch / 90)
    W_ref, H_ref = online_hals(X, W0, H0, batch, rho, passes)
    model = fastnmf.MiniBatchNMF(3, solver="hals", init="custom", batch_size=batch,
                                 max_iter=passes, tol=0, max_no_improvement=None,
                                 forget_factor=forget)
    W = model.fit_transform(X, W=W0.astype(dtype), H=H0.astype(dtype))
    rtol = 1e-3 if dtype == np.float32 else 1e-9
    assert_allclose(model.components_, H_ref, rtol=rtol, atol=rtol * H_ref.max())
    assert_allclose(W, W_ref, rtol=rtol, atol=rtol * W_ref.max())
    # partial_fit solves each block's W_b afresh (from zero) before H's step; its ρ is
    # forget_factor ** (batch_size / rows) of the first block (scikit-learn's): forget
    _, H_fresh = online_hals(X, W0, H0, batch, forget, 1, fresh=True)
    online = fastnmf.MiniBatchNMF(3, solver="hals", init="custom", batch_size=batch,
                                  forget_factor=forget)
    for start in range(0, 90, batch):
        online.partial_fit(X[start:start + batch], W=W0[start:start + batch].astype(dtype),
                           H=H0.astype(dtype))
    assert online.n_steps_ == 5
    assert_allclose(online.components_, H_fresh, rtol=rtol, atol=rtol * H_fresh.max())


@pytest.mark.parametrize("n_threads", [1, 2])
def test_online_hals_leaves_a_dead_component_alone(n_threads):
    # H0 constant: H's components 2 and 3 stay equal after the first batch (their Gram
    # diagonal is 0), so a fresh W_b gives one of them a round-off column (1e-16) and
    # dividing by its Gram diagonal sent that row of H to 1e15
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(230, 25)))
    X[X < 0.8] = 0
    X = sp.csr_matrix(X)
    model = fastnmf.MiniBatchNMF(3, init="custom", solver="hals", fresh_restarts=True,
                                 batch_size=50, max_iter=1, tol=0, max_no_improvement=None,
                                 forget_factor=0.6, n_threads=n_threads)
    model.fit(X, W=np.full((230, 3), 0.3), H=np.full((3, 25), 0.3))
    assert np.all(np.isfinite(model.components_))
    assert model.components_.max() < 10 * X.max()


def test_hals_needs_frobenius_and_partial_fit_continues():
    X = _data()
    with pytest.raises(ValueError, match="solver='hals' needs beta_loss='frobenius'"):
        fastnmf.MiniBatchNMF(solver="hals", beta_loss="kullback-leibler").fit(X)
    model = fastnmf.MiniBatchNMF(3, solver="hals", random_state=0, batch_size=40).fit(X)
    model.partial_fit(X[:30])
    assert model.components_.shape == (3, X.shape[1])
    assert np.all(model.components_ >= 0)
    mu = fastnmf.MiniBatchNMF(3, random_state=0).fit(X)
    with pytest.raises(ValueError, match="cannot continue a model fitted with solver='mu'"):
        mu.set_params(solver="hals").partial_fit(X[:30])


def test_fresh_restarts_fit_transform_equals_transform():
    X = _data(80, 12)
    for solver in ("mu", "hals"):
        m = fastnmf.MiniBatchNMF(3, random_state=0, fresh_restarts=True, solver=solver,
                                 batch_size=20, tol=1e-3)
        assert_allclose(m.fit_transform(X), m.transform(X), rtol=1e-10)


# -- errors leave the model as it was ---------------------------------------------------

def _snapshot(model):
    return {k: (v.copy() if isinstance(v, np.ndarray) else v)
            for k, v in vars(model).items() if k.endswith("_") or k.startswith("_stat")}


def _assert_unchanged(model, before):
    after = _snapshot(model)
    assert after.keys() == before.keys()
    for key, value in before.items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(after[key], value), key
        else:
            assert after[key] == value, key


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10"])
def test_bad_batch_size_is_a_clear_error(bad):
    X = _data()
    with pytest.raises(ValueError, match=r"The 'batch_size' parameter of MiniBatchNMF "
                                         r"must be an int in the range \[1, inf\)"):
        fastnmf.MiniBatchNMF(batch_size=bad).fit(X)
    model = fastnmf.MiniBatchNMF(3, random_state=0, batch_size=40).fit(X)
    before = _snapshot(model)
    for method in ("partial_fit", "fit"):
        with pytest.raises(ValueError, match="batch_size"):
            getattr(model.set_params(batch_size=bad), method)(X[:40])
        _assert_unchanged(model, before)


@pytest.mark.parametrize("solver", ["mu", "hals"])
def test_bad_later_batch_leaves_the_model_unchanged(solver):
    X = _data()
    model = fastnmf.MiniBatchNMF(3, random_state=0, solver=solver)
    for start in range(0, 80, 40):
        model.partial_fit(X[start:start + 40])
    before = _snapshot(model)
    cases = [
        (X[:10, :-1], "X has 29 features, but MiniBatchNMF is expecting 30 features"),
        (-X[:10], re.escape("Negative values in data passed to MiniBatchNMF (input X)")),
        (np.where(np.eye(10, 30) > 0, np.nan, X[:10]), "Input X contains NaN"),
        (sp.csr_matrix(-X[:10]), "Negative values in data passed to MiniBatchNMF"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            model.partial_fit(bad)
        _assert_unchanged(model, before)
    assert model.n_steps_ == 2
    model.partial_fit(X[80:])  # and it goes on
    assert model.n_steps_ == 3


@pytest.mark.parametrize("order", ["C", "F"])
def test_fit_checks_values_with_scikit_learns_messages(order):
    """fit reads dense X's values once, with its batches' figures: NaN, inf and negative
    values in any batch raise scikit-learn's errors (C- and F-ordered X), and the
    batches' ‖X_b‖² are the ones NumPy gives."""
    X = np.asarray(_data(), order=order)
    model = fastnmf.MiniBatchNMF(3, random_state=0, batch_size=16, max_iter=2)
    for value, message in [(np.nan, "Input X contains NaN"), (np.inf, "Input X contains inf"),
                           (-1.0, re.escape("Negative values in data passed to MiniBatchNMF"))]:
        bad = X.copy(order=order)
        bad[-1, -1] = value  # in the last batch
        with pytest.raises(ValueError, match=message):
            model.fit(bad)
    model._check_params(X)
    batches = model._batches(X, 16)
    assert [b.data.sqnorm for b in batches] == pytest.approx(
        [float(np.sum(X[s:s + 16] ** 2)) for s in range(0, X.shape[0], 16)], rel=1e-12)
    assert [b.data.nonzeros for b in batches] == [
        np.count_nonzero(X[s:s + 16]) for s in range(0, X.shape[0], 16)]


def test_zeros_with_nonpositive_beta_in_a_later_batch():
    X = _data() + 0.1
    model = fastnmf.MiniBatchNMF(3, beta_loss="itakura-saito", random_state=0)
    model.partial_fit(X[:40])
    before = _snapshot(model)
    bad = X[40:80].copy()
    bad[3, 4] = 0
    with pytest.raises(ValueError, match="When beta_loss <= 0 and X contains zeros"):
        model.partial_fit(bad)
    _assert_unchanged(model, before)


# -- streaming ------------------------------------------------------------------------

def _blocks(X, size):
    """A generator of row blocks: the consumer never sees X."""
    for start in range(0, X.shape[0], size):
        yield X[start:start + size]


@pytest.mark.parametrize("kind", ["dense", "memmap", "sparse"])
@pytest.mark.parametrize("solver", ["mu", "hals"])
def test_partial_fit_over_a_stream_equals_fit_in_the_same_batches(kind, solver, tmp_path):
    X = _data(230, 25, sparse=kind == "sparse")
    if kind == "memmap":
        path = tmp_path / "X.npy"
        np.save(path, X)
        X = np.load(path, mmap_mode="r")
    size, r, ff = 50, 3, 0.6
    H0 = np.full((r, X.shape[1]), 0.3)
    W0 = np.full((X.shape[0], r), 0.3)
    common = dict(n_components=r, init="custom", solver=solver, fresh_restarts=True)
    whole = fastnmf.MiniBatchNMF(batch_size=size, max_iter=1, tol=0, max_no_improvement=None,
                                 forget_factor=ff, **common).fit(X, W=W0, H=H0)
    # fit's forgetting is per step, forget_factor ** (batch_size / n_samples)
    stream = fastnmf.MiniBatchNMF(forget_factor=ff ** (size / X.shape[0]), **common)
    for i, block in enumerate(_blocks(X, size)):
        stream.partial_fit(block, W=W0[:size] if i == 0 else None, H=H0)
    assert stream.n_steps_ == whole.n_steps_ == 5
    assert_allclose(stream.components_, whole.components_, rtol=1e-10)


def test_streaming_does_not_hold_the_matrix(tmp_path):
    """A 16 MB memory-mapped matrix fitted in 500-row blocks: traced peak far below X."""
    m, n = 8000, 250
    path = tmp_path / "big.npy"
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(m, n))
    rng = np.random.default_rng(0)
    for start in range(0, m, 1000):
        X[start:start + 1000] = rng.random((1000, 4)) @ rng.random((4, n))
    X.flush()
    del X
    X = np.load(path, mmap_mode="r")
    model = fastnmf.MiniBatchNMF(4, random_state=0)
    model.partial_fit(X[:500])  # compile and initialize outside the trace
    tracemalloc.start()
    try:
        for block in _blocks(X[500:], 500):
            model.partial_fit(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert model.n_steps_ == 16
    assert peak < 0.25 * m * n * 8, peak


# H-sized arrays a later partial_fit on wide sparse blocks adds to what the model holds
# (H, and the statistics), at most: mu, H's C copy and the numerator (the denominator
# is formed from WᵀW in the kernel); hals, H's copy (X_bᵀW_b goes into the touched rows
# of the statistics, no n×r product).  With 0.5 of an H for the block, the small arrays
# and the allocator.
STREAM_EXTRA_H = {"mu": 2.5, "hals": 1.5}


@pytest.mark.parametrize("solver", ["mu", "hals"])
def test_streaming_wide_blocks_memory(solver):
    """On wide data H's n×r arrays are a stream's memory: a block's peak stays within
    STREAM_EXTRA_H copies of H above what the model holds, H is written back into
    ``components_`` in place, and dropped blocks are freed at once (with the garbage
    collector off: no reference cycle keeps a block's data products alive)."""
    import gc

    m, n, r, rows = 2000, 40000, 8, 200
    X = sp.random(m, n, density=0.002, format="csr", random_state=0)
    h_bytes = n * r * 8
    model = fastnmf.MiniBatchNMF(r, random_state=0, solver=solver)
    model.partial_fit(X[:rows]).partial_fit(X[rows:2 * rows])  # compile, initialize
    components = model.components_
    blocks = [X[a:a + rows] for a in range(2 * rows, m, rows)]
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        held = []
        for block in blocks:
            tracemalloc.reset_peak()
            start = tracemalloc.get_traced_memory()[0]
            model.partial_fit(block)
            now, peak = tracemalloc.get_traced_memory()
            held.append(now)
            assert peak - start < STREAM_EXTRA_H[solver] * h_bytes, (peak - start) / h_bytes
    finally:
        tracemalloc.stop()
        gc.enable()
    assert model.components_ is components
    assert max(held) - min(held) < 0.05 * h_bytes, np.diff(held)


def test_convergence_warning_and_attributes():
    X = _data()
    with pytest.warns(ConvergenceWarning, match="Maximum number of iterations 2 reached"):
        model = fastnmf.MiniBatchNMF(3, max_iter=2, batch_size=40, random_state=0,
                                     tol=1e-12).fit(X)
    assert model.n_iter_ == 2 and model.n_steps_ == 6
    assert model.get_feature_names_out().tolist() == ["minibatchnmf0", "minibatchnmf1",
                                                      "minibatchnmf2"]
    W = model.transform(X)
    assert_allclose(model.inverse_transform(W), W @ model.components_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert model.get_params()["solver"] == "mu"


# -- scikit-learn's estimator checks, with the parameters its own suite uses ----------

@parametrize_with_checks(
    [fastnmf.MiniBatchNMF(batch_size=10, max_iter=20, fresh_restarts=True),
     fastnmf.MiniBatchNMF(batch_size=10, max_iter=20, fresh_restarts=True, solver="hals")],
)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
