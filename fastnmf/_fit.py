"""``nmf()``: validate, choose the data products, initialize, run a solver, report."""

from __future__ import annotations

import functools
import time

import numpy as np

from . import _validation as v
from ._data import OriginalColumns, in_x_order, make_data, reorders
from ._masked import PreparedX, masked_solver
from ._options import (
    check_accelerate,
    check_loop_options,
    check_sparseness,
    is_dask,
    regularization,
)
from ._result import NMFResult, fit_result, frame_labels
from ._threads import default_threads, thread_limits
from .init import check_init, initialize, mean_of
from .solvers import Monitor, objective_for
from .solvers.sparseness import fit_sparse

# (NMFResult, regularization, check_loop_options: defined below this layer, so the
# Dask fit uses them without importing this module; their old names stay importable.)
_is_dask = is_dask
__all__ = ["NMFResult", "check_loop_options", "nmf", "regularization"]


def _check_start(X, rank, init, W, H, solver, update_H, dtype):
    """Validate the starting point before any work; build it when it needs no data products.

    Returns ``(init, W, H)``: W and H are ready (custom, or ``update_H=False``),
    or None with ``init`` naming the method to run once the data is prepared.
    """
    m, n = X.shape
    if not update_H:
        H = v.check_factor(H, (rank, n), "H", dtype)
        if solver != "hals":  # MU cannot leave zero; KL needs WH > 0: start at the mean level
            W = np.full((m, rank), np.sqrt(max(mean_of(X), 0.0) / rank), dtype=dtype)
        else:
            W = np.zeros((m, rank), dtype=dtype)
        return "custom", W, H
    if init is None and (W is not None or H is not None):
        init = "custom"
    if init == "custom":
        if W is None or H is None:
            raise ValueError("init='custom' needs both W and H.")
        return (init, v.check_factor(W, (m, rank), "W", dtype),
                v.check_factor(H, (rank, n), "H", dtype))
    return check_init(init, rank, X.shape), None, None


def _may_reorder(prepared, objective, rank: int) -> bool:
    """Whether sparse X may be held with its columns reordered for this fit
    (:func:`fastnmf._data.reorders`; never with missing values)."""
    return (prepared.is_sparse and not prepared.masked
            and reorders(prepared.X, objective.name, rank))


class _InColumnsOfX:
    """An :class:`~fastnmf.solvers.IterationInfo` whose H, held by the fit with its columns
    in ``order``, is put back in X's order when first read (a copy, not a view): a
    callback that only looks at the loss costs nothing."""

    def __init__(self, info, order):
        self._info, self._order = info, order

    def __getattr__(self, name):
        return getattr(self._info, name)

    def __repr__(self):
        return repr(self._info)

    @functools.cached_property
    def H(self) -> np.ndarray:
        return in_x_order(self._info.H.T, self._order).T


def _in_columns_of_X(callback, order):
    """``callback`` shown H with its columns in X's order while the fit holds them in
    ``order``."""
    def in_x_order(info):
        return callback(_InColumnsOfX(info, order))

    return in_x_order


def nmf(X, rank, *, beta_loss="frobenius", solver=None, init=None, max_iter=200, tol=1e-4,
        random_state=None, alpha_W=0.0, alpha_H="same", l1_ratio=0.0, W=None, H=None,
        update_H=True, n_threads=None, backend="auto", max_time=None, callback=None,
        progress=False, verbose=0, accelerate=True, mask=None, missing=None,
        sparseness_W=None, sparseness_H=None) -> NMFResult:
    """Nonnegative matrix factorization ``X ≈ W H``.

    Minimizes ``D(X, WH) + l1_W‖W‖₁ + ½l2_W‖W‖²_F + l1_H‖H‖₁ + ½l2_H‖H‖²_F``
    over ``W ≥ 0``, ``H ≥ 0``, where ``D`` is ``½‖X − WH‖²_F`` (Frobenius) or
    the generalized Kullback–Leibler divergence ``Σ x log(x/WH) − x + WH``
    (Poisson likelihood, for counts), with the penalties scaled as in
    scikit-learn (see ``alpha_W``).

    Parameters
    ----------
    X : array-like or scipy sparse matrix/array of shape (n_samples, n_features)
        Nonnegative data.  float32 stays float32; integer and boolean data
        become float64.  Any sparse format; sparse X is never densified unless
        ``backend="dense"``.  X is never modified.  A row-partitioned
        ``dask.array.Array`` is fitted on Dask by :func:`fastnmf.dask.nmf_dask`
        (``init`` "random" or "custom"; KL's default solver there is ``"mu"``).
    rank : int
        Number of components ``r``.
    beta_loss : {"frobenius", "kullback-leibler", "itakura-saito"} or float, default="frobenius"
        The objective, named as in scikit-learn: the β-divergence with β = 2
        (Frobenius), 1 (Kullback–Leibler, also ``"kl"`` or ``"poisson"``), 0
        (Itakura–Saito) or any other finite float.  β ∉ {1, 2} runs
        scikit-learn's multiplicative updates (same iterates); for β ≤ 0, X
        must not contain zeros.
    solver : {"hals", "mu", "ccd"} or None
        Frobenius: ``"hals"`` (default; alias ``"cd"``), hierarchical
        alternating least squares, i.e. exact cyclic coordinate descent, as
        scikit-learn's ``cd``; or ``"mu"``, Lee & Seung's multiplicative
        updates.  Kullback–Leibler: ``"ccd"`` (default; alias ``"cd"``),
        cyclic coordinate descent with Newton steps (Hsieh & Dhillon 2011)
        after one MU iteration; or ``"mu"``, scikit-learn's multiplicative
        updates.  Other β: ``"mu"`` only (the default).
    init : {None, "random", "nndsvd", "nndsvda", "nndsvdar", "spa", "custom"}
        ``None`` is ``"custom"`` when W or H is given, else ``"nndsvda"`` when
        ``rank <= min(X.shape)``, else ``"random"`` (scikit-learn's rule).
        ``"spa"``: W is ``rank`` columns of X picked by the successive
        projection algorithm (for near-separable data; :func:`fastnmf.init.spa`).
    max_iter : int, default=200
        Most iterations (one iteration updates W, then H).
    tol : float, default=1e-4
        Tolerance of the stopping rule, with scikit-learn's meaning for each
        solver.  HALS: stop when the projected-gradient violation of an
        iteration (the sum over all entries of W and H of the gradient's
        component that the nonnegativity constraint does not block, measured
        during the sweep) falls to ``tol`` times that of the first iteration.
        MU: every 10 iterations, stop when ``‖X − WH‖_F`` decreased by less
        than ``tol`` times its initial value since the last check.  HALS that
        may extrapolate (``accelerate`` True/"auto" without penalties,
        "extrapolate", "both"; H updated) stops at the first of the two: HALS's
        rule, or MU's met at two checks in a row (the violation, measured at
        extrapolated points, falls slowly while the error has long stopped
        moving; docs/algorithms.md).  ``tol=0`` runs
        ``max_iter`` iterations.
    random_state : int, RandomState instance or None
        Seed for the initialization.  A fixed seed gives the same result.
    alpha_W, alpha_H, l1_ratio : float
        Regularization as in scikit-learn: ``l1_W = alpha_W·l1_ratio·n_features``,
        ``l2_W = alpha_W·(1 − l1_ratio)·n_features``, and likewise for H with
        ``n_samples``.  ``alpha_H="same"`` uses ``alpha_W``.
    W, H : ndarray, optional
        Custom initial factors (copied, never modified).  With
        ``update_H=False``, H is kept fixed and only W is solved for.
    update_H : bool, default=True
    n_threads : int or None
        Threads for the Numba kernels and BLAS together (restored afterwards).
        ``None``: all of Numba's threads, except for small problems (below
        ~4·10⁶ of m·n·r, or nnz·r for sparse X), which run on one: there a
        second thread costs more than it saves (docs/threads.md).
    backend : {"auto", "dense", "sparse"}
        Which data products to use; ``auto`` keeps sparse input sparse and
        sends dense arrays with under 20 % nonzeros (15 % for float32) to
        the sparse kernels (the measured crossover).
    max_time : float, optional
        Stop after this many seconds of iterations.
    callback : callable, optional
        ``callback(info)`` after each iteration with an :class:`IterationInfo`;
        return True to stop (the result is then marked not converged).
    progress : bool
        Show a progress bar (tqdm) with the iteration and loss.
    verbose : int
        Print the loss at every iteration.
    accelerate : bool or {"auto", "sweeps", "extrapolate", "both"}, default=True
        HALS only.  ``"sweeps"``: after each data product, repeat the cheap
        coordinate sweeps while they still pay (accelerated HALS, Gillis &
        Glineur 2012): fewer products to the same error.  ``"extrapolate"``:
        push each update on along its last step (Ang & Gillis 2019, with
        restarts); ``"both"``: the two together.  ``"auto"`` (True, the
        default): sweeps, and extrapolation too from the first iteration that
        lowers the objective by less than 3 %
        (``solvers.frobenius.EXTRAPOLATE_BELOW``), and not with penalties
        (``alpha_W``, ``alpha_H``): sweeps alone while each iteration still
        buys a lot, extrapolation in the slow tail.  On the
        WordNet text matrix (r=50) it reaches scikit-learn ``cd``'s
        50-iteration error in 23 iterations against 58 with sweeps
        alone; on quickly converging data it is sweeps' iterate for iterate.
        Once extrapolating, the recorded objective may rise at an iteration
        that overshot, and on non-identifiable data runs may end at other
        points of equal error (docs/algorithms.md; pass ``"sweeps"`` where
        that matters, e.g. consensus clustering).  ``False`` runs one sweep
        per product, which reproduces scikit-learn's ``cd`` iterate for
        iterate.  Extrapolation holds one more copy of each factor (on Dask,
        W's stays with W's rows on the workers).
    mask : array-like of bool, shape (n_samples, n_features), optional
        Missing values: True marks an *observed* entry, False a missing one.
        Only observed entries enter the loss, ``½‖M ∘ (X − WH)‖²``
        (Frobenius loss, HALS or MU; or the KL divergence over the observed
        entries, MU only, the default there; dense or sparse X).  ``loss``,
        ``reconstruction_err`` and ``relative_error`` of the result are then
        over the observed entries.  Values of X at missing positions are never
        read (they may be NaN or negative), and X is not modified.  Rows or
        columns with no observed entry are allowed: they do not enter the loss,
        and their rows of W (or columns of H) keep their initial values.
    missing : "nan", scipy sparse matrix or array-like of bool, optional
        Missing values given the other way round, the form to use for sparse
        X (no dense mask is ever formed): the stored nonzero entries of a
        sparse matrix (or the True entries of a boolean array) mark the
        *missing* positions, e.g. a held-out test set.  ``"nan"``: the NaN
        entries of X are missing (without it, NaN in X is an error).  With
        both ``mask`` and ``missing``, an entry is missing if either says so.
        A ``mask`` or ``missing`` that leaves more than half of X missing
        gives a warning: the two are easily swapped.  For a dask X either may
        also be a boolean dask array, read block by block with X
        (:func:`fastnmf.dask.nmf_dask`).
        Masked fits need ``update_H=True``; other β-divergences do not
        support missing values yet.  The missing entries are imputed by the current
        ``WH`` before every data product (a majorize–minimize step for the
        masked loss, which therefore never increases; for KL the EM step).

    sparseness_W, sparseness_H : float in [0, 1] or None, default=None
        Sparseness constraints (Hoyer 2004): every column of W
        (``sparseness_W``) and/or every row of H (``sparseness_H``) is held at
        exactly this Hoyer sparseness ``(√n − ‖v‖₁/‖v‖₂)/(√n − 1)`` (0: all
        entries equal, 1: a single nonzero; :func:`fastnmf.demo.hoyer_sparseness`).
        A constrained factor is updated by Hoyer's projected gradient steps
        (a gradient step, then each vector projected onto the sparseness, the
        step halved until the objective does not rise); the other one by
        ``solver``'s update.  Rows of H are kept at unit L2 norm.  Frobenius
        loss only, without penalties (``alpha_W = alpha_H = 0``), missing
        values or extrapolation; the stopping rule is MU's (``tol`` on the
        decrease of the error every 10 iterations).  With ``update_H=False``
        H is fixed and ``sparseness_H`` is not used (docs/algorithms.md).

    Returns
    -------
    NMFResult

    Examples
    --------
    >>> import numpy as np
    >>> import fastnmf
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((60, 5)) @ rng.random((5, 40))
    >>> res = fastnmf.nmf(X, 5, random_state=0, max_iter=500, tol=1e-10)
    >>> res.W.shape, res.H.shape
    ((60, 5), (5, 40))
    >>> bool(res.relative_error < 1e-2)
    True
    """
    if is_dask(X):  # a row-partitioned dask array: the distributed fit (fastnmf/dask/)
        if sparseness_W is not None or sparseness_H is not None:
            raise ValueError("sparseness_W/sparseness_H are not supported for dask arrays.")
        from .dask.fit import nmf_dask

        return nmf_dask(X, rank, beta_loss=beta_loss, solver=solver, init=init,
                        max_iter=max_iter, tol=tol, random_state=random_state, alpha_W=alpha_W,
                        alpha_H=alpha_H, l1_ratio=l1_ratio, W=W, H=H, update_H=update_H,
                        n_threads=n_threads, backend=backend, max_time=max_time,
                        callback=callback, progress=progress, verbose=verbose,
                        accelerate=accelerate, mask=mask, missing=missing)
    t0 = time.perf_counter()
    row_names, column_names = frame_labels(X)  # a DataFrame's labels, for W_frame/H_frame
    if isinstance(X, PreparedX):  # from fit_many: validated once for many fits
        if mask is not None or missing is not None:
            raise ValueError("give mask/missing when preparing X, not again to nmf().")
        prepared = X
    else:
        prepared = PreparedX(X, mask=mask, missing=missing)
    X = prepared.X
    rank = v.check_rank(rank)
    objective = objective_for(beta_loss)
    if prepared.masked:
        solver = masked_solver(objective, solver, update_H)
    solver = objective.resolve_solver(solver)
    max_iter, tol, max_time = check_loop_options(backend, max_iter, tol, max_time, callback)
    accelerate = check_accelerate(accelerate)
    reg = regularization(X.shape, alpha_W, alpha_H, l1_ratio)
    sparseness_W, sparseness_H = check_sparseness(
        sparseness_W, sparseness_H, objective=objective.name, masked=prepared.masked, reg=reg,
        accelerate=accelerate)
    sparse_fit = sparseness_W is not None or (sparseness_H is not None and update_H)
    dtype = X.dtype
    init, W0, H0 = _check_start(X, rank, init, W, H, solver, update_H, dtype)

    if n_threads is None:  # small problems: one thread (see _threads.ONE_THREAD_BELOW)
        n_threads = default_threads(X, rank)
    # the Frobenius and KL loops: BLAS on one thread, products split by fastnmf (thread_limits)
    with thread_limits(n_threads, split_blas=objective.split_blas):
        data = prepared.data(backend, make_data, _may_reorder(prepared, objective, rank))
        order = data.order  # sparse X's columns as held (None: as given; _data.column_order)
        if W0 is None:  # masked: initialized from X with the missing entries zeroed
            base = getattr(data, "base", data)
            W0, H0 = initialize(X, rank, init, random_state,
                                data=base if order is None else OriginalColumns(base))
        W0 = np.ascontiguousarray(W0)
        Ht = np.ascontiguousarray(H0.T) if order is None else H0.T[order]
        if order is not None and callback is not None:
            callback = _in_columns_of_X(callback, order)
        rule = "error" if sparse_fit else objective.stop_rule(
            solver, accelerate, update_H, reg.active)
        monitor = Monitor(max_iter=max_iter, tol=tol, rule=rule,
                          max_time=max_time, callback=callback, progress=progress,
                          verbose=verbose, loss_name=objective.loss_name)
        try:
            if sparse_fit:  # Hoyer's nmfsc (solvers/sparseness.py)
                final = fit_sparse(data, W0, Ht, solver=solver, monitor=monitor,
                                   sparseness_W=sparseness_W, sparseness_H=sparseness_H,
                                   update_H=update_H, accelerate=accelerate)
            else:
                options = {"accelerate": accelerate} if objective.name == "frobenius" else {}
                final = objective.fit(data, W0, Ht, solver=solver, monitor=monitor, reg=reg,
                                      update_H=update_H, **options)
        finally:
            history = monitor.close()
        # the Frobenius error too, so relative_error means one thing
        sqerr = final if objective.name == "frobenius" else max(data.direct_sqerr(W0, Ht), 0.0)
        if order is not None:
            Ht = in_x_order(Ht, order)

    return fit_result(W0, Ht, final, sqerr, data=data, monitor=monitor, history=history,
                      solver=solver, beta_loss=objective.name, t0=t0, row_names=row_names,
                      column_names=column_names)
