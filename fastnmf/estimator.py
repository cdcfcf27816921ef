"""``NMF``: a scikit-learn estimator over :func:`fastnmf.nmf`, a drop-in for
``sklearn.decomposition.NMF`` (Frobenius loss).

Parameter names, defaults, validation, warnings, attributes and dtype rules
follow scikit-learn 1.9 (``sklearn/decomposition/_nmf.py``); the fitting itself
is one call to :func:`fastnmf.nmf`, whose stopping rules give ``tol``
scikit-learn's meaning (so ``n_iter_`` matches too).  One documented
difference: ``shuffle=True`` is refused (the HALS kernel updates components in
one fixed cyclic order).
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real
from typing import ClassVar

import numpy as np
from sklearn._config import config_context
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

from ._data import BACKENDS
from ._fit import _is_dask, nmf
from ._options import ACCELERATIONS
from .solvers import objective_for

_FROBENIUS = ("frobenius", 2)
_ACCEPT_SPARSE = ("csr", "csc")
_FLOAT_DTYPES = [np.float64, np.float32]


def _check_init(A, shape, whom):
    """scikit-learn's check of a user W or H: finite, right shape, nonnegative, not zero."""
    A = check_array(A)
    for axis, (expected, got) in enumerate(zip(shape, A.shape, strict=True)):
        if expected != "auto" and got != expected:
            which = ("first", "second")[axis]
            raise ValueError(
                f"Array with wrong {which} dimension passed to {whom}. "
                f"Expected {expected}, but got {got}."
            )
    check_non_negative(A, whom)
    if np.max(A) == 0:
        raise ValueError(f"Array passed to {whom} is full of zeros.")
    return A


class _FactorizationBase(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """What NMF and MiniBatchNMF share as scikit-learn estimators: ``inverse_transform``,
    the output feature names and the tags."""

    def inverse_transform(self, X):
        """Transform data back to its original space: ``X @ components_``.

        Parameters
        ----------
        X : {ndarray, sparse matrix} of shape (n_samples, n_components)
            Transformed data.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
            Data in the original space.
        """
        check_is_fitted(self)
        return X @ self.components_

    @property
    def _n_features_out(self):
        """Number of transformed output features."""
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class NMF(_FactorizationBase):
    """Non-negative matrix factorization ``X ≈ W H`` (Frobenius loss), scikit-learn API.

    A drop-in for :class:`sklearn.decomposition.NMF` with ``beta_loss="frobenius"``,
    fitted by :func:`fastnmf.nmf` (Numba-parallel kernels; sparse input stays
    sparse).  The objective is::

        0.5 * ||X - WH||_Fro^2
        + alpha_W * l1_ratio * n_features * ||vec(W)||_1
        + alpha_H * l1_ratio * n_samples * ||vec(H)||_1
        + 0.5 * alpha_W * (1 - l1_ratio) * n_features * ||W||_Fro^2
        + 0.5 * alpha_H * (1 - l1_ratio) * n_samples * ||H||_Fro^2

    ``W`` is the transformed data and ``H`` is ``components_``.

    Missing values are fit parameters, as :func:`fastnmf.nmf` has them:
    ``fit(X, mask=M)`` (True = observed) or ``fit(X, missing="nan")`` (or a
    boolean/sparse matrix of missing positions); only the observed entries
    enter the loss.  ``transform`` takes complete data only.

    Parameters
    ----------
    n_components : int, None or "auto", default="auto"
        Number of components.  ``None``: ``n_features``.  ``"auto"``: inferred
        from the shape of a custom ``H`` (``init="custom"``, or ``transform``),
        else ``n_features``.
    init : {"random", "nndsvd", "nndsvda", "nndsvdar", "spa", "custom"} or None, default=None
        Initialization, as in scikit-learn and with the same random draws.
        ``None``: ``"nndsvda"`` if ``n_components <= min(n_samples, n_features)``,
        else ``"random"``.  ``"custom"``: use the ``W`` and ``H`` passed to
        :meth:`fit_transform`.
    solver : {"cd", "mu", "hals", "ccd"}, default="cd"
        ``"cd"`` (same as ``"hals"``): cyclic coordinate descent, i.e. HALS,
        scikit-learn's algorithm.  ``"mu"``: multiplicative updates.
    beta_loss : {"frobenius", "kullback-leibler", "itakura-saito"} or float, default="frobenius"
        The objective (``"kl"`` and ``"poisson"`` are accepted for
        ``"kullback-leibler"``; ``get_params`` returns the name given).
        With ``"kullback-leibler"``, ``solver="cd"`` runs
        fastnmf's coordinate descent for KL (``"ccd"``, where scikit-learn
        raises) and ``"mu"`` scikit-learn's multiplicative updates.  Other
        β-divergences (``"itakura-saito"`` = 0, any other float) need
        ``solver="mu"`` and follow scikit-learn's updates iterate for
        iterate; for β ≤ 0, X must not contain zeros.
    tol : float, default=1e-4
        Tolerance of the stopping rule, as in scikit-learn: ``cd`` stops when
        the projected-gradient violation of an iteration falls to ``tol``
        times that of the first; ``mu`` checks every 10 iterations whether
        ``‖X − WH‖_F`` fell by less than ``tol`` times its initial value.
        The default ``cd`` (accelerated, extrapolating) stops at the first of
        the two (``mu``'s met at two checks in a row); ``accelerate=False``
        (scikit-learn's iterates), ``"sweeps"`` and fits that never extrapolate
        (``transform``; penalties with the default ``accelerate``) keep ``cd``'s
        rule alone.
        ``tol=0`` runs ``max_iter`` iterations.
    max_iter : int, default=200
        Maximum number of iterations.
    random_state : int, RandomState instance or None, default=None
        Seed for ``init`` in ``{"random", "nndsvdar"}`` and the randomized SVD of
        the NNDSVD methods.
    alpha_W : float, default=0.0
        Regularization strength on ``W`` (scaled by ``n_features``, see above).
    alpha_H : float or "same", default="same"
        Regularization strength on ``H`` (scaled by ``n_samples``); ``"same"``
        uses ``alpha_W``.
    l1_ratio : float, default=0.0
        Mix of the L1 (``1``) and squared L2 (``0``) penalties.
    verbose : int, default=0
        Print the objective at every iteration.
    shuffle : bool, default=False
        Must be False: a shuffled coordinate order is not supported.
    n_threads : int or None, default=None
        Threads for the Numba kernels and BLAS together (restored after the
        call); ``None`` uses all of Numba's threads.
    backend : {"auto", "dense", "sparse"}, default="auto"
        Data products to use; ``"auto"`` keeps sparse input sparse and sends
        very sparse dense arrays to the sparse kernels.
    accelerate : bool or {"auto", "sweeps", "extrapolate", "both"}, default=True
        HALS (``solver="cd"``) only: repeat the cheap coordinate sweeps after
        each data product while they pay (accelerated HALS, Gillis & Glineur
        2012), and once they stall extrapolate too (Ang & Gillis 2019): a given
        error in far fewer iterations.  True is ``"auto"``, which does both;
        ``"sweeps"``, ``"extrapolate"`` and ``"both"`` choose (see
        :func:`fastnmf.nmf`).  ``False`` reproduces scikit-learn's ``cd``
        iterate for iterate.
    progress : bool, default=False
        Show a progress bar (tqdm) with the iteration and the loss.
    max_time : float or None, default=None
        Stop a fit after this many seconds of iterations (``n_iter_`` says how
        many ran; no ``ConvergenceWarning`` is given for a stop on time).
    callback : callable or None, default=None
        ``callback(info)`` after each iteration with a
        :class:`fastnmf.IterationInfo`; return True to stop.
    sparseness_W, sparseness_H : float in [0, 1] or None, default=None
        Hoyer's sparseness constraints: every column of ``W`` / row of
        ``components_`` held at exactly this Hoyer sparseness (0: all entries
        equal, 1: one nonzero), by Hoyer's projected gradient algorithm
        (Frobenius loss, no ``alpha_W``/``alpha_H``; see :func:`fastnmf.nmf`).
        ``transform`` keeps H fixed and applies ``sparseness_W`` to the new W.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The factor ``H``.
    n_components_ : int
        Number of components.
    reconstruction_err_ : float
        ``||X - WH||_Fro`` on the training data at the end of the fit.
    n_iter_ : int
        Iterations run.
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names seen during fit, when ``X`` has string column names.
    loss_history_ : ndarray of shape (n_iter_ + 1,)
        The objective of the last fit after each iteration, starting with
        the initial factors (iteration 0); with missing values, over the
        observed entries.

    See Also
    --------
    fastnmf.nmf : The functional interface, with history, callbacks and timing.
    non_negative_factorization : The same fit as a function returning ``(W, H, n_iter)``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnmf import NMF
    >>> X = np.array([[1, 1], [2, 1], [3, 1.2], [4, 1], [5, 0.8], [6, 1]])
    >>> model = NMF(n_components=2, init="random", random_state=0, max_iter=1000)
    >>> W = model.fit_transform(X)
    >>> H = model.components_
    >>> W.shape, H.shape
    ((6, 2), (2, 2))
    >>> bool(model.reconstruction_err_ < 1e-2)
    True
    >>> model.get_feature_names_out().tolist()
    ['nmf0', 'nmf1']
    """

    _parameter_constraints: ClassVar[dict] = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None,
                         StrOptions({"auto"})],
        "init": [StrOptions({"random", "nndsvd", "nndsvda", "nndsvdar", "spa", "custom"}),
                 None],
        "solver": [StrOptions({"cd", "mu", "hals", "ccd"})],
        "beta_loss": [StrOptions({"frobenius", "kullback-leibler", "kl", "poisson",
                                  "itakura-saito"}),
                      Real],
        "tol": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "alpha_W": [Interval(Real, 0, None, closed="left")],
        "alpha_H": [Interval(Real, 0, None, closed="left"), StrOptions({"same"})],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "verbose": ["verbose"],
        "shuffle": ["boolean"],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "backend": [StrOptions(set(BACKENDS))],
        "accelerate": ["boolean", StrOptions(set(ACCELERATIONS))],
        "progress": ["boolean"],
        "max_time": [Interval(Real, 0, None, closed="left"), None],
        "callback": [callable, None],
        "sparseness_W": [Interval(Real, 0, 1, closed="both"), None],
        "sparseness_H": [Interval(Real, 0, 1, closed="both"), None],
    }

    def __init__(self, n_components="auto", *, init=None, solver="cd",
                 beta_loss="frobenius", tol=1e-4, max_iter=200, random_state=None,
                 alpha_W=0.0, alpha_H="same", l1_ratio=0.0, verbose=0, shuffle=False,
                 n_threads=None, backend="auto", accelerate=True, progress=False,
                 max_time=None, callback=None, sparseness_W=None, sparseness_H=None):
        self.n_components = n_components
        self.init = init
        self.solver = solver
        self.beta_loss = beta_loss
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio
        self.verbose = verbose
        self.shuffle = shuffle
        self.n_threads = n_threads
        self.backend = backend
        self.accelerate = accelerate
        self.progress = progress
        self.max_time = max_time
        self.callback = callback
        self.sparseness_W = sparseness_W
        self.sparseness_H = sparseness_H

    # -- checks that need X (the parameter types are checked by _fit_context) --

    def _check_params(self, X):
        objective_for(self.beta_loss)  # a clear error for the β it does not implement
        if self.shuffle:
            raise ValueError(
                "shuffle=True is not supported: fastnmf's coordinate descent (HALS) "
                "updates the components in a fixed cyclic order. Use shuffle=False."
            )
        if self.solver == "mu" and self.init == "nndsvd":
            warnings.warn(
                "The multiplicative update ('mu') solver cannot update zeros present in "
                "the initialization, and so leads to poorer results when used jointly "
                "with init='nndsvd'. You may try init='nndsvda' or init='nndsvdar' "
                "instead.",
                UserWarning,
                stacklevel=3,
            )
        self._n_components = X.shape[1] if self.n_components is None else self.n_components

    def _check_w_h(self, X, W, H, update_H):
        """scikit-learn's rules for W and H; returns ``(rank, init, W, H)`` for nmf()."""
        n_samples, n_features = X.shape
        if self.init == "custom" and update_H:
            H = _check_init(H, (self._n_components, n_features), "NMF (input H)")
            if self._n_components == "auto":
                self._n_components = H.shape[0]
            W = _check_init(W, (n_samples, self._n_components), "NMF (input W)")
            if H.dtype != X.dtype or W.dtype != X.dtype:
                raise TypeError(
                    "H and W should have the same dtype as X. Got "
                    f"H.dtype = {H.dtype} and W.dtype = {W.dtype}."
                )
            return self._n_components, "custom", W, H
        if not update_H:
            if W is not None:
                warnings.warn("When update_H=False, the provided initial W is not used.",
                              RuntimeWarning, stacklevel=3)
            H = _check_init(H, (self._n_components, n_features), "NMF (input H)")
            if self._n_components == "auto":
                self._n_components = H.shape[0]
            if H.dtype != X.dtype:
                raise TypeError(
                    f"H should have the same dtype as X. Got H.dtype = {H.dtype} "
                    f"and X.dtype = {X.dtype}."
                )
            return self._n_components, None, None, H
        if W is not None or H is not None:
            warnings.warn(
                "When init!='custom', provided W or H are ignored. Set "
                " init='custom' to use them as initialization.",
                RuntimeWarning,
                stacklevel=3,
            )
        if self._n_components == "auto":
            self._n_components = n_features
        return self._n_components, self.init, None, None

    def _fit_transform(self, X, W=None, H=None, update_H=True, mask=None, missing=None):
        """Run :func:`fastnmf.nmf` on validated X; returns its ``NMFResult``."""
        self._check_params(X)
        rank, init, W, H = self._check_w_h(X, W, H, update_H)
        # getattr: a model pickled before these parameters existed has no such attribute
        result = nmf(
            X, rank, beta_loss=self.beta_loss, solver=self.solver, init=init,
            max_iter=self.max_iter, tol=self.tol,
            random_state=self.random_state, alpha_W=self.alpha_W, alpha_H=self.alpha_H,
            l1_ratio=self.l1_ratio, W=W, H=H, update_H=update_H,
            n_threads=self.n_threads, backend=self.backend, verbose=self.verbose,
            accelerate=self.accelerate, progress=self.progress, max_time=self.max_time,
            callback=self.callback, mask=mask, missing=missing,
            sparseness_W=getattr(self, "sparseness_W", None),
            sparseness_H=getattr(self, "sparseness_H", None),
        )
        if result.n_iter == self.max_iter and self.tol > 0:
            warnings.warn(
                f"Maximum number of iterations {self.max_iter} reached. Increase "
                "it to improve convergence.",
                ConvergenceWarning,
                stacklevel=3,
            )
        return result

    # -- public API --

    def fit(self, X, y=None, **params):
        """Learn an NMF model for the data X.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Nonnegative training data.
        y : Ignored
            Not used, present for API consistency by convention.
        **params : kwargs
            ``W``, ``H``, ``mask`` and ``missing`` passed on to :meth:`fit_transform`.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self.fit_transform(X, **params)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None, W=None, H=None, mask=None, missing=None):
        """Learn an NMF model for the data X and return the transformed data.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Nonnegative training data.  float32 stays float32; other dtypes
            become float64.
        y : Ignored
            Not used, present for API consistency by convention.
        W : array-like of shape (n_samples, n_components), default=None
            Initial W when ``init="custom"``; ignored (with a warning) otherwise.
        H : array-like of shape (n_components, n_features), default=None
            Initial H when ``init="custom"``; ignored (with a warning) otherwise.
        mask : array-like of bool of shape (n_samples, n_features), default=None
            True marks an observed entry, False a missing one (see
            :func:`fastnmf.nmf`); values of X at missing positions are not read.
        missing : "nan", sparse matrix or array-like of bool, default=None
            The missing positions the other way round: ``"nan"`` (the NaN
            entries of X), or True/stored entries mark missing values.

        Returns
        -------
        W : ndarray of shape (n_samples, n_components)
            Transformed data.
        """
        masked = mask is not None or missing is not None
        if _is_dask(X):  # fitted on Dask (fastnmf/dask.py); never pulled into memory here
            self.n_features_in_ = X.shape[1]
            if hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            result = self._fit_transform(X, W=W, H=H, mask=mask, missing=missing)
        else:
            # entries at missing positions may be NaN or negative: nmf() checks the rest
            try:
                X = validate_data(self, X, accept_sparse=_ACCEPT_SPARSE, dtype=_FLOAT_DTYPES,
                                  ensure_non_negative=not masked,
                                  ensure_all_finite=not masked)
            except ValueError as e:
                if "NaN" not in str(e):
                    raise
                raise ValueError(f"{e}\nTo fit X with missing values, pass "
                                 "fit(X, missing='nan'): the NaN entries are then left "
                                 "out of the fit.") from None
            with config_context(assume_finite=True):
                result = self._fit_transform(X, W=W, H=H, mask=mask, missing=missing)
        self.reconstruction_err_ = result.reconstruction_err
        self.n_components_ = result.H.shape[0]
        self.components_ = result.H
        self.n_iter_ = result.n_iter
        self.loss_history_ = result.history["loss"]
        return result.W

    def transform(self, X):
        """Transform X with the fitted model: solve for W with ``H = components_`` fixed.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Nonnegative data, of the dtype the model was fitted on (as in
            scikit-learn, a float32 model does not transform float64 data).

        Returns
        -------
        W : ndarray of shape (n_samples, n_components)
            Transformed data.
        """
        check_is_fitted(self)
        if _is_dask(X):
            if X.ndim != 2 or X.shape[1] != self.n_features_in_:
                raise ValueError(f"X has shape {X.shape}, but NMF is expecting "
                                 f"{self.n_features_in_} features as input.")
            return self._fit_transform(X, H=self.components_, update_H=False).W
        X = validate_data(self, X, accept_sparse=_ACCEPT_SPARSE, dtype=_FLOAT_DTYPES,
                          reset=False, ensure_non_negative=True)
        with config_context(assume_finite=True):
            return self._fit_transform(X, H=self.components_, update_H=False).W


@validate_params(
    {
        "X": ["array-like", "sparse matrix"],
        "W": ["array-like", None],
        "H": ["array-like", None],
        "update_H": ["boolean"],
    },
    prefer_skip_nested_validation=False,
)
def non_negative_factorization(X, W=None, H=None, n_components="auto", *, init=None,
                               update_H=True, solver="cd", beta_loss="frobenius", tol=1e-4,
                               max_iter=200, alpha_W=0.0, alpha_H="same", l1_ratio=0.0,
                               random_state=None, verbose=0, shuffle=False, n_threads=None,
                               backend="auto", accelerate=True, progress=False, max_time=None,
                               callback=None, sparseness_W=None, sparseness_H=None):
    """Non-negative matrix factorization with scikit-learn's signature and return values.

    A drop-in for :func:`sklearn.decomposition.non_negative_factorization` with
    the Frobenius loss; see :class:`NMF` for the objective and the parameters.

    Parameters
    ----------
    X : {array-like, sparse matrix} of shape (n_samples, n_features)
        Nonnegative data.
    W : array-like of shape (n_samples, n_components), default=None
        Initial W when ``init="custom"``; not used when ``update_H=False``.
    H : array-like of shape (n_components, n_features), default=None
        Initial H when ``init="custom"``; the fixed H when ``update_H=False``.
    n_components : int, None or "auto", default="auto"
        Number of components (``"auto"``: from ``H``'s shape when given, else
        ``n_features``).
    init : {"random", "nndsvd", "nndsvda", "nndsvdar", "spa", "custom"} or None, default=None
        Initialization method.
    update_H : bool, default=True
        False solves for W only, with H fixed.
    solver : {"cd", "mu", "hals", "ccd"}, default="cd"
    beta_loss : str or float, default="frobenius"
        As for :class:`NMF`: ``"frobenius"``, ``"kullback-leibler"`` (or ``"kl"``,
        ``"poisson"``), ``"itakura-saito"`` or a float β.
    tol : float, default=1e-4
    max_iter : int, default=200
    alpha_W : float, default=0.0
    alpha_H : float or "same", default="same"
    l1_ratio : float, default=0.0
    random_state : int, RandomState instance or None, default=None
    verbose : int, default=0
    shuffle : bool, default=False
        Must be False.
    n_threads : int or None, default=None
    backend : {"auto", "dense", "sparse"}, default="auto"
    accelerate : bool or {"auto", "sweeps", "extrapolate", "both"}, default=True
        Accelerated HALS (see :class:`NMF`); False reproduces scikit-learn's ``cd``.
    progress : bool, default=False
    max_time : float or None, default=None
    callback : callable or None, default=None
        A progress bar, a time limit and a per-iteration callback, as for
        :class:`NMF` (the same parameters, checked the same way).
    sparseness_W, sparseness_H : float in [0, 1] or None, default=None
        Hoyer's sparseness constraints, as in :class:`NMF` (with
        ``update_H=False``, H is fixed and ``sparseness_H`` is not used).

    Returns
    -------
    W : ndarray of shape (n_samples, n_components)
    H : ndarray of shape (n_components, n_features)
    n_iter : int
        Iterations run.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnmf import non_negative_factorization
    >>> X = np.array([[1, 1], [2, 1], [3, 1.2], [4, 1], [5, 0.8], [6, 1]])
    >>> W, H, n_iter = non_negative_factorization(
    ...     X, n_components=2, init="random", random_state=0, max_iter=1000)
    >>> W.shape, H.shape
    ((6, 2), (2, 2))
    """
    est = NMF(n_components=n_components, init=init, solver=solver, beta_loss=beta_loss,
              tol=tol, max_iter=max_iter, random_state=random_state, alpha_W=alpha_W,
              alpha_H=alpha_H, l1_ratio=l1_ratio, verbose=verbose, shuffle=shuffle,
              n_threads=n_threads, backend=backend, accelerate=accelerate, progress=progress,
              max_time=max_time, callback=callback, sparseness_W=sparseness_W,
              sparseness_H=sparseness_H)
    est._validate_params()
    X = check_array(X, accept_sparse=_ACCEPT_SPARSE, dtype=_FLOAT_DTYPES)
    check_non_negative(X, "non_negative_factorization (input X)")
    with config_context(assume_finite=True):
        result = est._fit_transform(X, W=W, H=H, update_H=update_H)
    return result.W, result.H, result.n_iter
