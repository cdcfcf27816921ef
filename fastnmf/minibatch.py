"""``MiniBatchNMF``: online NMF over blocks of rows, a drop-in for scikit-learn's.

The default (``solver="mu"``) is scikit-learn's algorithm (``MiniBatchNMF`` of
``sklearn/decomposition/_nmf.py``, after Lefèvre, Bach & Févotte 2011): for each
mini-batch of rows ``X_b``, one multiplicative update of the batch's ``W_b`` (or,
with ``fresh_restarts``, W_b solved afresh), then H from running sums of the MU
numerators and denominators, each older batch's weight multiplied by ``ρ``
(``forget_factor ** (batch_size / n_samples)``); the same early stopping (the
change of H, and an exponentially weighted batch cost that stops improving).  The
steps are fastnmf's: the batch is turned into fastnmf's data products (dense BLAS
or sparse Numba kernels) and the updates are its Numba kernels, for every β.

``solver="hals"`` (Frobenius only) is online dictionary learning in the manner of
Mairal, Bach, Ponce & Sapiro (JMLR 2010) with HALS: each batch's ``W_b`` by HALS
sweeps, then the sufficient statistics ``A ← ρA + X_bᵀ W_b``, ``B ← ρB + W_bᵀ W_b``
and HALS sweeps of H on ``(A, B)``: H minimizes the ρ-weighted sum of the batches'
squared errors at the W each batch had.  The sweeps take the rows of H whose row of
``A`` the batch changed (the columns of X_b with a nonzero): on sparse data a batch
reaches few columns, and sweeping only those is still block coordinate descent on
that objective.

``partial_fit`` takes one block of rows at a time, so a stream of blocks (a
generator over files, a memory-mapped array) is fitted without ever holding X.
"""

from __future__ import annotations

import functools
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
from sklearn._config import config_context, get_config
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import gen_batches
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    assert_all_finite,
    check_is_fitted,
    check_non_negative,
    validate_data,
)

from . import _validation as v
from . import kernels
from ._beta_products import BetaProducts
from ._data import BACKENDS, factor_bounds, gram, gram_f64, make_data
from ._fit import nmf
from ._kl_products import kl_products
from ._options import regularization
from ._threads import thread_limits
from .estimator import _ACCEPT_SPARSE, _FLOAT_DTYPES, NMF, _FactorizationBase
from .init import initialize, mean_of
from .kernels import beta as bk
from .kernels import kl as klk
from .kernels.factor_updates import ROW_GROUP
from .solvers import beta as beta_solver
from .solvers import objective_for
from .solvers.frobenius import INNER_DELTA, MU_EPS, _Loss, inner_sweeps

# scikit-learn's guard on model values and MU denominators (float32 epsilon), and
# the clipping of small entries (float64 epsilon): W when β < 1, H when β ≤ 1.
EPS = MU_EPS
CLIP = float(np.finfo(np.float64).eps)
# Rows of H copied out, swept and written back at a time where a batch changed only
# some of them (whole row groups of the sweep kernel: the same sweeps as in one call).
H_ROWS_AT_ONCE = 64 * ROW_GROUP
# HALS from a fresh (zero) W_b: sweep until a sweep moves a group of rows by
# less than this fraction of the first sweep's move (or fresh_restarts_max_iter).
FRESH_DELTA = 1e-2


class _Batch:
    """One block of rows of X as fastnmf's data products, and the MU steps on it.

    ``beta`` is 2 (Frobenius), 1 (KL) or another float; the numerators and
    denominators come from the same engines as :func:`fastnmf.nmf`'s MU loops,
    so a full-batch fit reproduces them.
    """

    def __init__(self, Xb, beta, backend, figures=None):
        self.data = make_data(Xb, sp.issparse(Xb), backend, figures=figures)
        self.shape = self.data.shape
        self.beta = beta
        self.bounds = factor_bounds(self.shape[0])
        self._Xb = Xb
        if beta == 1:
            self.engine = kl_products(self.data)
            self.work = self.data.dtype
        elif beta != 2:
            self.work = beta_solver.work_dtype(self.data, beta)
            self.engine = BetaProducts(self.data, beta, self.work)
        else:
            self.work = self.data.dtype
        self._XHt = None  # X_b Hᵀ while H is fixed (solving W), Frobenius

    @functools.cached_property
    def x_sum(self) -> float:
        """Σ X_b, for a fresh W's level (:meth:`MiniBatchNMF._solve_W`): made when first
        needed, not a pass over every batch of every fit."""
        return mean_of(self._Xb) * self.shape[0] * self.shape[1]

    def has_zero(self) -> bool:
        return beta_solver._has_zero(self.data)

    def w_step(self, W, Ht, l1, l2, HHt=None, fixed_H=False):
        """One MU update of W (in place) with H fixed, as scikit-learn's
        ``_multiplicative_update_w`` (no clipping: the caller clips for β < 1)."""
        t = W.dtype.type
        if self.beta == 2:
            XHt = self._XHt if fixed_H else None
            if XHt is None:
                XHt = self.data.product(Ht, 0, np.empty(W.shape, dtype=W.dtype))
                self._XHt = XHt if fixed_H else None
            HHt = gram(Ht) if HHt is None else HHt
            kernels.mu_update(W, XHt, HHt, t(l1), t(l2), t(EPS), self.bounds,
                              np.empty((0, 0), dtype=W.dtype))
        elif self.beta == 1:
            num = np.empty_like(W)
            self.engine.numerator(0, W, Ht, t(EPS), False, num)
            klk.kl_mu_apply(W, num, Ht.sum(0), t(l1), t(l2), t(EPS), t(0), self.bounds)
        else:
            num = np.empty(W.shape, dtype=self.work)
            den = np.empty(W.shape, dtype=self.work)
            self.engine.half(0, W, Ht, num, den, t(EPS), False)
            bk.beta_mu_apply(W, num, den, t(l1), t(l2), t(EPS),
                             t(beta_solver.gamma_for(self.beta)), t(0), self.bounds)

    def loss(self, W, Ht, HHt=None):
        """scikit-learn's ``_beta_divergence(X_b, W, H, β)`` (½‖X_b − WH‖² for β = 2;
        ``HHt``: H's Gram in float64, shared by the batches)."""
        if self.beta == 2:
            return 0.5 * max(self.data.direct_sqerr(W, Ht, HHt), 0.0)
        if self.beta == 1:
            eps = W.dtype.type(EPS)
            return (self.engine.loss_nz(W, Ht, eps)
                    + float(W.sum(0, dtype=np.float64) @ Ht.sum(0, dtype=np.float64)))
        return self.h_products(W, Ht)[0]

    def h_products(self, W, Ht, scratch=None, HHt=None):
        """The loss at ``(W, H)`` and H's MU numerator and denominator (n×r, without
        the penalties), as scikit-learn's ``_multiplicative_update_h`` forms them;
        ``scratch``: a :class:`_Stats` whose n×r buffer the numerator may be written to.
        For β = 2 the denominator comes as ``WᵀW`` (r×r): H's is ``Ht·WᵀW``, which
        :func:`fastnmf.kernels.beta.online_mu_gram` forms row group by row group;
        ``HHt``: H's Gram where the caller has it (else made here)."""
        t = W.dtype.type
        if self.beta == 2:  # (n×r buffer kept: H-sized arrays are a batch's cost)
            XtW = np.empty_like(Ht) if scratch is None else scratch.buffer(Ht)
            if self.data.is_sparse:  # into the rows X_b reaches: no CSR of X_bᵀ kept
                XtW.fill(0)
                self.data.add_product(W, 1, XtW)
                cross = _inner_rows(XtW, Ht, self.data.reached(1))
            else:
                self.data.product(W, 1, XtW)
                cross = kernels.inner_f64(XtW, Ht, factor_bounds(Ht.shape[0]))
            WtW = gram(W)
            HHt = gram(Ht) if HHt is None else HHt
            sqerr = _Loss(self.data).sqerr(XtW, cross, WtW, HHt, W, Ht)
            return 0.5 * sqerr, XtW, WtW
        if self.beta == 1:
            num = np.empty_like(Ht)
            kl = self.engine.numerator(1, Ht, W, t(EPS), True, num)
            W_sum = W.sum(0, dtype=np.float64)
            kl += float(W_sum @ Ht.sum(0, dtype=np.float64))
            W_sum = W.sum(0)
            W_sum[W_sum == 0] = 1  # scikit-learn's guard
            return kl, num, np.broadcast_to(W_sum, Ht.shape)
        num = np.empty(Ht.shape, dtype=self.work)
        den = np.empty(Ht.shape, dtype=self.work)
        loss = self.engine.half(1, Ht, W, num, den, t(EPS), True)
        return loss, num, den

    def hals_w(self, W, Ht, HHt, l1, l2, n_inner, delta):
        """HALS sweeps of W (in place) with H fixed; returns ``(½‖X_b − WH‖², WᵀW)``."""
        t = W.dtype.type
        XHt = self.data.product(Ht, 0, np.empty(W.shape, dtype=W.dtype))
        WtW = np.empty((W.shape[1],) * 2, dtype=W.dtype)
        _, cross = kernels.hals_update(W, XHt, HHt, t(l1), t(l2), self.bounds, WtW,
                                       n_inner, delta)
        sqerr = _Loss(self.data).sqerr(XHt, cross, WtW, HHt, W, Ht)
        return 0.5 * sqerr, WtW


def _inner_rows(A, B, rows, step=4096):
    """``⟨A[rows], B[rows]⟩`` in float64, ``step`` rows at a time (copies that small)."""
    return sum(float(np.einsum("ij,ij->", A[idx], B[idx], dtype=np.float64))
               for idx in (rows[s:s + step] for s in range(0, len(rows), step)))


def _check_values(X, finite=True):
    """scikit-learn's checks of X's values, with its messages: NaN or inf (unless
    ``finite`` is False: the user's ``assume_finite``), then negatives."""
    if finite:
        with config_context(assume_finite=False):
            assert_all_finite(X, estimator_name="MiniBatchNMF", input_name="X")
    check_non_negative(X, "MiniBatchNMF (input X)")


def _regularization(shape, est):
    """scikit-learn's penalties for a batch of ``shape`` (H's scale with its rows)."""
    return regularization(shape, est.alpha_W, est.alpha_H, est.l1_ratio)


def _batch_cost(loss, W, Ht, W_terms, H_terms):
    """scikit-learn's mean batch cost (its L2 terms without the ½ of the objective);
    ``W_terms``, ``H_terms``: each side's ``(l1, l2)`` (:meth:`Penalty.for_W`)."""
    (l1_W, l2_W), (l1_H, l2_H) = W_terms, H_terms
    cost = loss  # each term only when weighted: a pass over H per batch otherwise
    if l1_W:
        cost += l1_W * W.sum()
    if l1_H:
        cost += l1_H * Ht.sum()
    if l2_W:
        cost += l2_W * np.vdot(W, W)
    if l2_H:
        cost += l2_H * np.vdot(Ht, Ht)
    return float(cost / W.shape[0])


class _Stats:
    """The running statistics of a minibatch fit: MU's ``(A, B)`` numerator and
    denominator sums, or HALS's ``A = scale·A_s`` (n×r), ``B = scale·B_s`` (r×r) with
    ``rows``, the ρ-weighted rows they hold; ``HHt``, the Gram of H as it is (None:
    not at hand; ``HHt64``, the same in float64 where HALS updates it row by row), and
    n×r scratch arrays reused from batch to batch."""

    __slots__ = ("A", "B", "HHt", "HHt64", "_buffers", "rows", "scale")

    def __init__(self, A, B, rows=0.0, scale=1.0):
        self.A, self.B, self.rows, self.scale = A, B, rows, scale
        self.HHt = None
        self.HHt64 = None  # HALS: H's Gram in float64 while H is updated a few rows at a time
        self._buffers = {}

    def buffer(self, like: np.ndarray, i: int = 0) -> np.ndarray:
        """Scratch array ``i`` shaped as ``like`` (n×r), kept for the next batch."""
        b = self._buffers.get(i)
        if b is None or b.shape != like.shape or b.dtype != like.dtype:
            b = self._buffers[i] = np.empty_like(like)
        return b


def _change(Ht, Ht_buffer, bounds):
    """scikit-learn's ``‖H − H_prev‖ / ‖H‖`` over a step, and ``H_prev ← H`` for the next
    (one pass: :func:`fastnmf.kernels.change_f64`); None without a ``Ht_buffer``."""
    if Ht_buffer is None:
        return None
    diff, size = kernels.change_f64(Ht, Ht_buffer, bounds)
    with np.errstate(divide="ignore", invalid="ignore"):  # H = 0: nan, as scikit-learn's
        return float(np.sqrt(np.float64(diff)) / np.sqrt(np.float64(size)))


def _live(B: np.ndarray) -> np.ndarray:
    """The Gram ``B`` with its dead components' rows and columns zeroed: those whose
    diagonal is at most machine epsilon times the largest (HALS then leaves them as they
    are).  A component that has all but died (a column of W at 1e-16 where two
    components of H were equal) would otherwise be divided by its round-off and
    come back at 1e15; an online fit has no rebalancing to undo that."""
    d = np.diagonal(B)
    dead = d <= np.finfo(B.dtype).eps * d.max() if d.size else d.astype(bool)
    if not dead.any() or dead.all():
        return B
    B = B.copy()
    B[dead, :] = 0
    B[:, dead] = 0
    return B


# Below this scale, HALS's running statistics are multiplied out (A_s, B_s ← scale·…):
# 1/scale stays far from float32's range (ρ per batch is forget_factor^(batch/n_samples)).
RESCALE_BELOW = 1e-6


class MiniBatchNMF(_FactorizationBase):
    """Mini-batch non-negative matrix factorization ``X ≈ W H``, scikit-learn API.

    A drop-in for :class:`sklearn.decomposition.MiniBatchNMF`: the same
    parameters, defaults, attributes and, with ``solver="mu"`` (the default),
    the same algorithm, run on fastnmf's data products and kernels (dense or
    sparse X, float32 or float64, all cores).  The objective is::

        d_β(X, WH)
        + alpha_W * l1_ratio * n_features * ||vec(W)||_1
        + alpha_H * l1_ratio * n_samples * ||vec(H)||_1
        + 0.5 * alpha_W * (1 - l1_ratio) * n_features * ||W||_Fro^2
        + 0.5 * alpha_H * (1 - l1_ratio) * n_samples * ||H||_Fro^2

    with ``n_samples`` the rows of the batch at each step.

    Parameters
    ----------
    n_components : int, None or "auto", default="auto"
        Number of components.  ``None``: ``n_features``; ``"auto"``: from a
        custom H's shape, else ``n_features``.
    init : {"random", "nndsvd", "nndsvda", "nndsvdar", "custom"} or None, default=None
        Initialization of H (and of W for ``fit``), as in :class:`fastnmf.NMF`;
        with :meth:`partial_fit`, computed from the first batch.
    batch_size : int, default=1024
        Rows per mini-batch (:meth:`fit`).
    beta_loss : {"frobenius", "kullback-leibler", "itakura-saito"} or float, default="frobenius"
        The β-divergence minimized (``solver="mu"``); for β ≤ 0, X must not
        contain zeros.
    tol : float, default=1e-4
        Stop when the relative change of H over a step falls to ``tol``
        (0 disables).  Also the tolerance of the W solves (``transform``,
        ``fresh_restarts``).
    max_no_improvement : int or None, default=10
        Stop after this many consecutive batches without improvement of the
        smoothed batch cost (None disables).
    max_iter : int, default=200
        Most passes over the data (:meth:`fit`).
    alpha_W, alpha_H, l1_ratio : float
        Regularization, as in :class:`fastnmf.NMF` (``alpha_H="same"``: ``alpha_W``).
    forget_factor : float, default=0.7
        Weight of past information: older batches' contributions to H are
        scaled by ``forget_factor ** (batch_size / n_samples)`` at each step.
    fresh_restarts : bool, default=False
        Solve each batch's W completely (slower per step) instead of one update
        from its previous value.
    fresh_restarts_max_iter : int, default=30
        Most iterations of each such solve (and HALS sweeps of a fresh W).
    transform_max_iter : int or None, default=None
        Most iterations when solving for W in :meth:`transform`; None: ``max_iter``.
    random_state : int, RandomState instance or None, default=None
        Seed for ``init`` in ``{"random", "nndsvdar"}`` and the NNDSVD SVD.
    verbose : int, default=0
        Print the batch costs.
    solver : {"mu", "hals"}, default="mu"
        ``"mu"``: scikit-learn's online multiplicative updates (any β).
        ``"hals"`` (Frobenius only): HALS on each batch's W and on H from the
        running sufficient statistics (see the module docstring); reaches a
        given error in fewer passes on the workloads in docs/guide.md.
    n_threads : int or None, default=None
        Threads for the Numba kernels and BLAS together; None: all of Numba's.
    backend : {"auto", "dense", "sparse"}, default="auto"
        Data products for each batch, as in :class:`fastnmf.NMF`.
    sparseness_W, sparseness_H : None
        Not supported: any other value raises ``ValueError`` at :meth:`fit` /
        :meth:`partial_fit` (accepted as parameters so that the error can say
        why).  Hoyer's constraint on a column of W spans every row of X, which
        no batch holds (and a stream never ends); on the rows of H, Hoyer's
        projected gradient needs the objective on all of X to choose its step,
        which the running statistics do not give.  Use :class:`fastnmf.NMF`
        or :func:`fastnmf.nmf` with ``sparseness_W`` / ``sparseness_H``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The factor H.
    n_components_ : int
    reconstruction_err_ : float
        ``sqrt(2 d_β(X, WH))`` (``‖X − WH‖_F`` for Frobenius) on the training
        data at the end of :meth:`fit`.
    n_iter_ : int
        Passes over the data started (:meth:`fit`).
    n_steps_ : int
        Mini-batches processed.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        When X has string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnmf import MiniBatchNMF
    >>> X = np.array([[1, 1], [2, 1], [3, 1.2], [4, 1], [5, 0.8], [6, 1]])
    >>> model = MiniBatchNMF(n_components=2, init="random", random_state=0)
    >>> W = model.fit_transform(X)
    >>> W.shape, model.components_.shape
    ((6, 2), (2, 2))

    Streaming: one block of rows at a time, never the whole matrix.

    >>> blocks = (np.abs(np.random.default_rng(i).normal(size=(100, 20))) for i in range(5))
    >>> model = MiniBatchNMF(n_components=3, random_state=0)
    >>> for block in blocks:
    ...     model = model.partial_fit(block)
    >>> model.n_steps_
    5
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None,
                         StrOptions({"auto"})],
        "init": [StrOptions({"random", "nndsvd", "nndsvda", "nndsvdar", "custom"}), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "beta_loss": [StrOptions({"frobenius", "kullback-leibler", "kl", "poisson",
                                  "itakura-saito"}),
                      Real],
        "tol": [Interval(Real, 0, None, closed="left")],
        "max_no_improvement": [Interval(Integral, 1, None, closed="left"), None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "alpha_W": [Interval(Real, 0, None, closed="left")],
        "alpha_H": [Interval(Real, 0, None, closed="left"), StrOptions({"same"})],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "forget_factor": [Interval(Real, 0, 1, closed="both")],
        "fresh_restarts": ["boolean"],
        "fresh_restarts_max_iter": [Interval(Integral, 1, None, closed="left")],
        "transform_max_iter": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "solver": [StrOptions({"mu", "hals"})],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "backend": [StrOptions(set(BACKENDS))],
        "sparseness_W": [Interval(Real, 0, 1, closed="both"), None],
        "sparseness_H": [Interval(Real, 0, 1, closed="both"), None],
    }

    def __init__(self, n_components="auto", *, init=None, batch_size=1024,
                 beta_loss="frobenius", tol=1e-4, max_no_improvement=10, max_iter=200,
                 alpha_W=0.0, alpha_H="same", l1_ratio=0.0, forget_factor=0.7,
                 fresh_restarts=False, fresh_restarts_max_iter=30, transform_max_iter=None,
                 random_state=None, verbose=0, solver="mu", n_threads=None,
                 backend="auto", sparseness_W=None, sparseness_H=None):
        self.n_components = n_components
        self.init = init
        self.batch_size = batch_size
        self.beta_loss = beta_loss
        self.tol = tol
        self.max_no_improvement = max_no_improvement
        self.max_iter = max_iter
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio
        self.forget_factor = forget_factor
        self.fresh_restarts = fresh_restarts
        self.fresh_restarts_max_iter = fresh_restarts_max_iter
        self.transform_max_iter = transform_max_iter
        self.random_state = random_state
        self.verbose = verbose
        self.solver = solver
        self.n_threads = n_threads
        self.backend = backend
        self.sparseness_W = sparseness_W
        self.sparseness_H = sparseness_H

    # -- checks ------------------------------------------------------------

    def _check_no_sparseness(self):
        """Hoyer's sparseness constraints cannot be honoured online (see the parameters)."""
        given = [name for name in ("sparseness_W", "sparseness_H")
                 if getattr(self, name, None) is not None]
        if given:
            raise ValueError(
                f"MiniBatchNMF does not support {' and '.join(given)}: Hoyer's constraint "
                "on a column of W spans every row of X, which no batch holds, and on the "
                "rows of H its projected gradient needs the objective on all of X; use "
                f"fastnmf.NMF or fastnmf.nmf with {given[0]}.")

    def _check_params(self, X):
        """scikit-learn's derived settings for X (a batch for :meth:`partial_fit`)."""
        objective = objective_for(self.beta_loss)
        self._beta = {"frobenius": 2.0, "kullback-leibler": 1.0}.get(objective.name)
        if self._beta is None:
            self._beta = float(0.0 if self.beta_loss == "itakura-saito" else self.beta_loss)
        self._split_blas = objective.split_blas
        if self.solver == "hals" and self._beta != 2:
            raise ValueError("solver='hals' needs beta_loss='frobenius'; use solver='mu' "
                             f"for beta_loss={self.beta_loss!r}.")
        self._n_components = X.shape[1] if self.n_components is None else self.n_components
        self._batch_size = min(self.batch_size, X.shape[0])
        self._rho = self.forget_factor ** (self._batch_size / X.shape[0])
        self._gamma = beta_solver.gamma_for(self._beta)
        self._transform_max_iter = (self.max_iter if self.transform_max_iter is None
                                    else self.transform_max_iter)

    def _check_zeros(self, batches):
        if self._beta <= 0 and any(b.has_zero() for b in batches):
            raise ValueError(beta_solver.ZEROS_MESSAGE)

    def _start(self, X, W, H, batches):
        """Initial (W, Ht) for X, by scikit-learn's rules (``_check_w_h``)."""
        rank, init, W, H = NMF._check_w_h(self, X, W, H, True)
        if init != "custom":
            data = batches[0].data if len(batches) == 1 else None
            W, H = initialize(X, rank, init, self.random_state, data=data)
        return np.array(W, dtype=X.dtype, order="C"), np.array(H.T, dtype=X.dtype, order="C")

    def _reset_stats(self, Ht):
        """The running statistics of H: MU's numerator and denominator (scikit-learn
        starts them at H and 1), or HALS's ``A = Σ ρ·X_bᵀW_b``, ``B = Σ ρ·W_bᵀW_b``
        (held as ``scale·(A, B)``: see :class:`_Stats`)."""
        if self.solver == "hals":
            r = Ht.shape[1]
            self._stat_A = np.zeros_like(Ht)
            self._stat_B = np.zeros((r, r), dtype=Ht.dtype)
            self._stat_rows = 0.0
            self._stat_scale = 1.0
        else:
            self._stat_A = Ht.copy()
            self._stat_B = np.ones_like(Ht)

    # -- one step --------------------------------------------------------

    def _solve_W(self, batches, Ht, max_iter, HHt=None):
        """W for the rows of ``batches`` with H fixed: scikit-learn's ``_solve_W``
        (MU from ``sqrt(mean(X)/r)`` until the relative change of W is ≤ tol)."""
        m = sum(b.shape[0] for b in batches)
        n = Ht.shape[0]
        total = sum(b.x_sum for b in batches)
        avg = np.sqrt(total / (m * n) / Ht.shape[1])
        W = np.full((m, Ht.shape[1]), avg, dtype=Ht.dtype)
        W_buffer = W.copy()
        l1, l2 = _regularization((m, n), self).for_W()
        if HHt is None and self._beta == 2:
            HHt = gram(Ht)
        rows = np.cumsum([0] + [b.shape[0] for b in batches])
        for _ in range(max_iter):
            for b, a, e in zip(batches, rows[:-1], rows[1:], strict=True):
                b.w_step(W[a:e], Ht, l1, l2, HHt, fixed_H=True)
            W_diff = np.linalg.norm(W - W_buffer) / np.linalg.norm(W)
            if self.tol > 0 and W_diff <= self.tol:
                break
            W_buffer[:] = W
        for b in batches:
            b._XHt = None
        return W

    def _mu_step(self, batch, W, Ht, stats):
        """scikit-learn's ``_minibatch_step``: W's update, the batch cost, H's update.
        ``stats`` = (A, B) is updated in place with Ht; returns ``(batch_cost, W)``."""
        reg = _regularization(batch.shape, self)
        if self._beta == 2 and stats.HHt is None:  # then kept: the H step writes it
            stats.HHt = gram(Ht)
        if self.fresh_restarts or W is None:
            W = self._solve_W([batch], Ht, self.fresh_restarts_max_iter, stats.HHt)
        else:
            batch.w_step(W, Ht, *reg.for_W(), HHt=stats.HHt)
        if self._beta < 1:
            W[W < CLIP] = 0
        loss, num, den = batch.h_products(W, Ht, stats, stats.HHt)
        cost = _batch_cost(loss, W, Ht, reg.for_W(), reg.for_H())
        t = num.dtype.type
        bounds = factor_bounds(Ht.shape[0])
        if self._beta == 2:  # den is WᵀW: no n×r denominator (one array, one pass less)
            G = np.empty_like(stats.HHt)
            bk.online_mu_gram(Ht, num, den, stats.A, stats.B, *reg.for_H(t), t(EPS),
                              t(self._rho), bounds, G)
            stats.HHt = G
            return cost, W
        clip = t(CLIP) if self._beta <= 1 else t(0)
        bk.online_mu_apply(Ht, num, den, stats.A, stats.B, *reg.for_H(t), t(EPS),
                           t(self._gamma), t(self._rho), clip, bounds)
        return cost, W

    def _hals_step(self, batch, W, Ht, stats):
        """Online HALS: W_b by HALS sweeps, then H by HALS on the running statistics.

        H-sized (n×r) work per batch is what a batch costs on wide data (147306×86567
        counts, batches of 1024 rows: H has 80 times the entries of W_b), so each
        batch passes over H's arrays as few times as it can: ``ρ`` is not applied to
        ``A`` but to the scale the statistics are held at (``A = scale·A_s``; W_b is
        divided by the scale before ``X_bᵀ W_b``, so ``A_s`` takes one in-place add),
        the H update solves the same subproblem on ``(A_s, B_s)`` with the penalties
        divided by the scale, on the rows whose ``A`` row the batch changed
        (:meth:`_update_H`), and it also keeps ``H Hᵀ``, the Gram the next batch's W step
        needs.
        """
        m, n = batch.shape
        r = Ht.shape[1]
        W_terms = _regularization(batch.shape, self).for_W()
        if stats.HHt is None:
            stats.HHt = gram(Ht)
        if self.fresh_restarts or W is None:
            W = np.zeros((m, r), dtype=Ht.dtype)
            n_inner, delta = self.fresh_restarts_max_iter, FRESH_DELTA
        else:
            n_inner, delta = inner_sweeps(batch.data.nonzeros, m, n, r), INNER_DELTA
        loss, WtW = batch.hals_w(W, Ht, _live(stats.HHt), *W_terms, n_inner, delta)
        rows = self._rho * stats.rows + m  # the rows the statistics hold, weighted
        l1_H, l2_H = _regularization((rows, n), self).for_H()
        cost = _batch_cost(loss, W, Ht, W_terms, (l1_H, l2_H))
        stats.scale *= self._rho
        if stats.scale < RESCALE_BELOW:  # fold the scale in before 1/scale grows large
            stats.A *= Ht.dtype.type(stats.scale)
            stats.B *= Ht.dtype.type(stats.scale)
            stats.scale = 1.0
        t = Ht.dtype.type
        inv = t(1.0 / stats.scale)
        stats.B += WtW * inv
        # A_s += X_bᵀ W_b (sparse batches: into the rows of A_s the batch touches, no n×r
        # product); the rows of H whose row of A_s it changed are updated
        changed = batch.data.add_product(W * inv, 1, stats.A, lambda: stats.buffer(Ht),
                                         changed=True)
        if changed.size:  # (H's inner sweeps: the cap for the rows swept)
            self._update_H(Ht, stats, changed, t(l1_H * inv), t(l2_H * inv),
                           inner_sweeps(batch.data.nonzeros, changed.size, m, r))
        stats.rows = rows
        return cost, W

    @staticmethod
    def _update_H(Ht, stats, changed, l1, l2, n_inner):
        """HALS sweeps of the rows ``changed`` of H (held as ``Ht``) on ``(A_s, B_s)``,
        keeping H's Gram ``stats.HHt`` up to date.

        Row j of H solves ``min ½hᵀB h − a_jᵀh`` (+ penalties); a batch changes every
        row's B but only the A rows of the columns it reaches.  Sweeping just those rows
        is block coordinate descent on the same objective (each sweep still lowers it),
        and a sparse batch reaches few columns (WordNet, 1024 rows: ~5500 of 86567): a
        pass costs 0.43 s instead of 0.97 s with no higher loss after 1 or 2 passes
        (docs/performance.md).  The Gram is then corrected by the rows' old and new
        shares in float64 (``stats.HHt64``) rather than made again.
        """
        n = Ht.shape[0]
        if changed.size == n:  # every row: in place, the kernel writes the Gram
            kernels.hals_update(Ht, stats.A, _live(stats.B), l1, l2, factor_bounds(n),
                                stats.HHt, n_inner, INNER_DELTA)
            stats.HHt64 = None
            return
        if stats.HHt64 is None:  # from the Gram at hand (no pass over H)
            stats.HHt64 = stats.HHt.astype(np.float64)
        B = _live(stats.B)
        G = np.empty((0, 0), dtype=Ht.dtype)  # 0×0: the kernel makes no Gram (the rows'
        # shares are taken off and added back in float64 below)
        # H's rows are independent subproblems: taken a run of rows at a time (whole row
        # groups of the kernel), the copies stay small and the sweeps are the same
        for a in range(0, changed.size, H_ROWS_AT_ONCE):
            rows = changed[a:a + H_ROWS_AT_ONCE]
            Hs = Ht[rows]
            stats.HHt64 -= gram_f64(Hs)
            kernels.hals_update(Hs, stats.A[rows], B, l1, l2, factor_bounds(rows.size), G,
                                n_inner, INNER_DELTA)
            Ht[rows] = Hs
            stats.HHt64 += gram_f64(Hs)
        stats.HHt = stats.HHt64.astype(Ht.dtype)

    def _step(self, batch, W, Ht, stats):
        step = self._hals_step if self.solver == "hals" else self._mu_step
        return step(batch, W, Ht, stats)

    def _stats(self) -> _Stats:
        return _Stats(self._stat_A, self._stat_B, getattr(self, "_stat_rows", 0.0),
                      getattr(self, "_stat_scale", 1.0))

    def _keep_stats(self, stats: _Stats) -> None:
        self._stat_A, self._stat_B = stats.A, stats.B
        if self.solver == "hals":
            self._stat_rows, self._stat_scale = stats.rows, stats.scale

    def _minibatch_convergence(self, batch_size, batch_cost, H_change, n_samples,
                               step, n_steps):
        """scikit-learn's early stopping: small change of H (``H_change``, the relative
        change over the step; None when ``tol`` is 0), or no improvement of the
        exponentially weighted batch cost for ``max_no_improvement`` batches."""
        step = step + 1
        if step == 1:
            if self.verbose:
                print(f"Minibatch step {step}/{n_steps}: mean batch cost: {batch_cost}")
            return False
        if self._ewa_cost is None:
            self._ewa_cost = batch_cost
        else:
            alpha = min(batch_size / (n_samples + 1), 1)
            self._ewa_cost = self._ewa_cost * (1 - alpha) + batch_cost * alpha
        if self.verbose:
            print(f"Minibatch step {step}/{n_steps}: mean batch cost: "
                  f"{batch_cost}, ewa cost: {self._ewa_cost}")
        if H_change is not None and H_change <= self.tol:
            if self.verbose:
                print(f"Converged (small H change) at step {step}/{n_steps}")
            return True
        if self._ewa_cost_min is None or self._ewa_cost < self._ewa_cost_min:
            self._no_improvement = 0
            self._ewa_cost_min = self._ewa_cost
        else:
            self._no_improvement += 1
        if (self.max_no_improvement is not None
                and self._no_improvement >= self.max_no_improvement):
            if self.verbose:
                print("Converged (lack of improvement in objective function) "
                      f"at step {step}/{n_steps}")
            return True
        return False

    # -- fitting ---------------------------------------------------------

    def _batches(self, X, size, finite=True):
        """X's batches of ``size`` rows, once X's values are checked (scikit-learn's
        checks and messages: finite unless ``finite`` is False, nonnegative).
        C-contiguous dense X is read once for the checks and every batch's figures
        (:func:`fastnmf.kernels.dense_stats`), where the checks and the batches' data
        objects would read it four times."""
        slices = list(gen_batches(X.shape[0], size))
        if sp.issparse(X) or not X.flags.c_contiguous:  # (F order: NumPy's passes)
            _check_values(X, finite)
            X = X.tocsr() if sp.issparse(X) else X
            return [_Batch(X[s], self._beta, self.backend) for s in slices]
        bounds = np.array([0] + [s.stop for s in slices], dtype=np.int64)
        figures = kernels.dense_stats(X, bounds)
        if figures[:, 2].any() or not np.isfinite(figures[:, 1]).all():
            _check_values(X, finite)  # raises (else X is finite and ‖X_b‖² overflowed)
        return [_Batch(X[s], self._beta, self.backend, f)
                for s, f in zip(slices, figures, strict=True)]

    def _fit_transform(self, X, W=None, H=None, finite=True):
        """The fit; X is validated but for its values (:meth:`_batches` checks them;
        ``finite``: whether NaN and inf are looked for)."""
        self._check_no_sparseness()
        self._check_params(X)
        n_samples = X.shape[0]
        with thread_limits(self.n_threads, split_blas=self._split_blas):
            batches = self._batches(X, self._batch_size, finite)
            self._check_zeros(batches)
            W, Ht = self._start(X, W, H, batches)
            self._reset_stats(Ht)
            stats = self._stats()
            # (H's change only counts with tol > 0: no copy of H, nor pass over it, without)
            Ht_buffer = Ht.copy() if self.tol > 0 else None
            H_bounds = factor_bounds(Ht.shape[0])
            self._ewa_cost = self._ewa_cost_min = None
            self._no_improvement = 0
            rows = np.cumsum([0] + [b.shape[0] for b in batches])
            n_steps_per_iter = len(batches)
            n_steps = self.max_iter * n_steps_per_iter
            for i in range(n_steps):
                j = i % n_steps_per_iter  # the batches in turn, pass after pass
                batch = batches[j]
                Wb = W[rows[j]:rows[j + 1]]
                cost, Wb_new = self._step(batch, Wb, Ht, stats)
                if Wb_new is not Wb:
                    Wb[...] = Wb_new
                if self._minibatch_convergence(batch.shape[0], cost,
                                               _change(Ht, Ht_buffer, H_bounds), n_samples,
                                               i, n_steps):
                    break
            self._keep_stats(stats)
            if self.fresh_restarts:
                W = self._transform_batches(X, batches, Ht)
            HHt = gram_f64(Ht) if self._beta == 2 else None
            loss = sum(b.loss(W[a:e], Ht, HHt)
                       for b, a, e in zip(batches, rows[:-1], rows[1:], strict=True))
        n_steps = i + 1
        n_iter = int(np.ceil(n_steps / n_steps_per_iter))
        if n_iter == self.max_iter and self.tol > 0:
            v.warn(f"Maximum number of iterations {self.max_iter} reached. "
                   "Increase it to improve convergence.", ConvergenceWarning)
        return W, Ht, n_iter, n_steps, float(np.sqrt(2.0 * max(loss, 0.0)))

    def _transform_batches(self, X, batches, Ht):
        """W for X with H fixed: scikit-learn's MU solve, or (``solver="hals"``) HALS."""
        if self.solver == "hals":
            return nmf(X, Ht.shape[1], H=np.ascontiguousarray(Ht.T), update_H=False,
                       solver="hals", max_iter=self._transform_max_iter, tol=self.tol,
                       alpha_W=self.alpha_W, alpha_H=self.alpha_H, l1_ratio=self.l1_ratio,
                       n_threads=self.n_threads, backend=self.backend).W
        return self._solve_W(batches, Ht, self._transform_max_iter)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None, W=None, H=None):
        """Learn the model from X in mini-batches and return the transformed data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Nonnegative data.  float32 stays float32; other dtypes become float64.
        y : Ignored
        W : array-like of shape (n_samples, n_components), default=None
            Initial W when ``init="custom"``.
        H : array-like of shape (n_components, n_features), default=None
            Initial H when ``init="custom"``.

        Returns
        -------
        W : ndarray of shape (n_samples, n_components)
        """
        finite = not get_config()["assume_finite"]  # X's values: checked with its batches
        with config_context(assume_finite=True):
            X = validate_data(self, X, accept_sparse=_ACCEPT_SPARSE, dtype=_FLOAT_DTYPES)
            W, Ht, n_iter, n_steps, err = self._fit_transform(X, W=W, H=H, finite=finite)
        if self.solver != "hals":  # a later partial_fit with "hals" must refuse
            self.__dict__.pop("_stat_rows", None)
            self.__dict__.pop("_stat_scale", None)
        self.reconstruction_err_ = err
        self.n_components_ = Ht.shape[1]
        self.components_ = np.ascontiguousarray(Ht.T)
        self.n_iter_ = n_iter
        self.n_steps_ = n_steps
        return W

    def fit(self, X, y=None, **params):
        """Learn the model from X in mini-batches; ``W``, ``H`` as for :meth:`fit_transform`.

        Returns
        -------
        self : object
        """
        self.fit_transform(X, **params)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, W=None, H=None):
        """Update the model with one mini-batch X (a block of rows).

        Call it once per block of a stream (a generator over files, the row
        blocks of a memory-mapped array): only the block and the model's
        small matrices are held.  The first call initializes H from its block
        (or from ``W``, ``H`` with ``init="custom"``); later calls ignore W and H.
        A block with the wrong number of features, negative values, NaN, or
        (β ≤ 0) zeros raises ``ValueError`` and leaves the model unchanged.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : Ignored
        W : array-like of shape (n_samples, n_components), default=None
        H : array-like of shape (n_components, n_features), default=None

        Returns
        -------
        self : object
        """
        has_components = hasattr(self, "components_")
        if has_components:  # (scikit-learn's _fit_context skips this on a fitted model)
            self._validate_params()
        self._check_no_sparseness()
        X = validate_data(self, X, accept_sparse=_ACCEPT_SPARSE, dtype=_FLOAT_DTYPES,
                          reset=not has_components)
        check_non_negative(X, "MiniBatchNMF (input X)")
        if has_components and X.dtype != self.components_.dtype:
            X = X.astype(self.components_.dtype)
        with config_context(assume_finite=True):
            if not has_components:
                self._check_params(X)
            elif self.solver == "hals" and not hasattr(self, "_stat_rows"):
                raise ValueError("solver='hals' cannot continue a model fitted with "
                                 "solver='mu'; fit it again.")
            with thread_limits(self.n_threads, split_blas=self._split_blas):
                batch = _Batch(X.tocsr() if sp.issparse(X) else X, self._beta, self.backend)
                self._check_zeros([batch])
                if not has_components:
                    _, Ht = self._start(X, W, H, [batch])
                    self._reset_stats(Ht)
                    self.n_steps_ = 0
                else:
                    Ht = np.ascontiguousarray(self.components_.T)
                # every check is above: from here on nothing raises on the user's input,
                # so the statistics are updated in place (no n×r copies per block)
                stats = self._stats()
                self._step(batch, None, Ht, stats)
        self._keep_stats(stats)
        # A stream holds H, its statistics and one block; a step's n×r scratch and the
        # block's data products go before H is written back, and H is written into
        # components_ in place (as scikit-learn's partial_fit does), not copied beside
        # it: WordNet in 4096-row blocks peaked at 7 H-sized arrays, now 6 (docs/guide.md).
        del stats, batch
        self.n_components_ = Ht.shape[1]
        held = getattr(self, "components_", None)
        if (held is not None and held.shape == Ht.T.shape and held.dtype == Ht.dtype
                and held.flags.writeable):
            held[...] = Ht.T
        else:
            self.components_ = np.ascontiguousarray(Ht.T)
        self.n_steps_ += 1
        return self

    def transform(self, X):
        """W for X with ``components_`` fixed.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Nonnegative data.

        Returns
        -------
        W : ndarray of shape (n_samples, n_components)
        """
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=_ACCEPT_SPARSE, dtype=_FLOAT_DTYPES,
                          reset=False)
        check_non_negative(X, "MiniBatchNMF (input X)")
        Ht = np.ascontiguousarray(self.components_.T)
        with config_context(assume_finite=True), \
                thread_limits(self.n_threads, split_blas=self._split_blas):
            if self.solver == "hals":
                return self._transform_batches(X, None, Ht)
            return self._solve_W([_Batch(X, self._beta, self.backend)],
                                 Ht.astype(X.dtype, copy=False), self._transform_max_iter)
