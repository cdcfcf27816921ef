"""Initial factors: ``random``, ``nndsvd``, ``nndsvda``, ``nndsvdar``, ``spa``.

The formulas, and the order in which random numbers are drawn, are those of
scikit-learn, so the same ``random_state`` starts both packages from the same
point.  NNDSVD uses a randomized truncated SVD, which only multiplies by ``X``
and so never densifies a sparse matrix.

``spa`` is the successive projection algorithm for near-separable data: W is
``rank`` columns of X itself (Gillis 2020, ch. 7; Araújo et al. 2001).

References
----------
C. Boutsidis, E. Gallopoulos (2008). SVD based initialization: a head start for
nonnegative matrix factorization. Pattern Recognition 41(4), 1350–1362.

N. Gillis (2020). Nonnegative Matrix Factorization. SIAM, ch. 7 (separable NMF).
"""

from __future__ import annotations

import numbers

import numba
import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ._threads import thread_limits

INIT_METHODS = ("random", "nndsvd", "nndsvda", "nndsvdar", "spa")
# HALS sweeps for H once SPA has chosen W (a convex NNLS: the sweeps stop early once
# a sweep changes H by under SPA_DELTA of the first sweep's change)
SPA_SWEEPS = 100
SPA_DELTA = 1e-4


def check_random_state(seed) -> np.random.RandomState:
    """scikit-learn's ``check_random_state``, without importing scikit-learn (~0.5 s).

    ``None`` (or ``np.random``) is NumPy's global RandomState, an int seeds a new
    one, a RandomState is used as is.
    """
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, numbers.Integral):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"{seed!r} cannot be used to seed a numpy.random.RandomState instance")


def _flip_signs(Ut, Vt, u_based_decision):
    """scikit-learn's ``svd_flip`` on ``U`` given by its rows ``Ut = Uᵀ``: the
    largest-magnitude loading of each singular pair (in U, or in ``Vt``) is made positive.
    Both are C-ordered with one singular vector a row, so every pass is along rows."""
    F = Ut if u_based_decision else Vt
    signs = np.sign(F[np.arange(F.shape[0]), np.argmax(np.abs(F), axis=1)])
    Ut *= signs[:, np.newaxis]
    Vt *= signs[:, np.newaxis]
    return Ut, Vt


def default_init(rank: int, shape) -> str:
    """scikit-learn's default: ``nndsvda`` when the rank allows an SVD, else ``random``."""
    return "nndsvda" if rank <= min(shape) else "random"


def check_init(init, rank: int, shape) -> str:
    """The method to run (``None`` resolved), or a clear error for a bad name or rank."""
    if init is None:
        return default_init(rank, shape)
    if init not in INIT_METHODS:
        raise ValueError(f"init must be one of {(*INIT_METHODS, 'custom')} or None, "
                         f"got {init!r}.")
    if init != "random" and rank > min(shape):
        # scikit-learn's wording first: code written for it matches on it
        raise ValueError(
            f"init = {init!r} can only be used when n_components <= min(n_samples, "
            f"n_features); got n_components (rank) = {rank} > {min(shape)}. Use "
            f"init='random'.")
    return init


def mean_of(X) -> float:
    """Mean of all m·n entries, in float64, never modifying X.

    Sums the stored values directly: scipy's ``X.sum()`` merges duplicate
    entries of a non-canonical CSR/CSC *in place*, rewriting the caller's arrays.
    """
    if sp.issparse(X):
        return float(X.data.sum(dtype=np.float64)) / (X.shape[0] * X.shape[1])
    return float(X.mean(dtype=np.float64))


def _randomized_svd_products(data, rank: int, random_state, n_oversamples: int = 10):
    """scikit-learn's randomized SVD, step for step, with fastnmf's products.

    Halko, Martinsson & Tropp (2011) with scikit-learn's defaults (7 or 4 LU-
    normalized power iterations, 10 oversamples, sign flip); every product
    with X goes through ``data.product``, so sparse X is multiplied by the
    Numba kernels instead of scipy's single-threaded ones, and dense X by BLAS
    in the layout measured fastest.  Same random numbers as scikit-learn, so
    the same ``random_state`` gives the same factors (to round-off).

    Returns ``(Ut, s, Vt)``: the leading ``rank`` left singular vectors as the rows
    of ``Ut`` (``Uᵀ``, rank×m), the singular values, and the right ones as the rows of
    ``Vt`` (rank×n), both C-ordered so each vector is contiguous.
    """
    m, n = data.shape
    k = rank + n_oversamples
    n_iter = 7 if rank < 0.1 * min(m, n) else 4
    transpose = m < n
    # Products with M (the possibly transposed X): side 0 is M @ F, side 1 is Mᵀ @ F.
    fwd, back = (1, 0) if transpose else (0, 1)
    rows, cols = (n, m) if transpose else (m, n)
    rng = check_random_state(random_state)
    Q = rng.normal(size=(cols, k)).astype(data.dtype, copy=False)

    def prod(F, side, n_rows):
        out = np.empty((n_rows, F.shape[1]), dtype=data.dtype)
        return data.product(np.ascontiguousarray(F, dtype=data.dtype), side, out)

    def lu(A):  # (A is a product made here: LU in place, no copy)
        return scipy.linalg.lu(A, permute_l=True, overwrite_a=True, check_finite=False)[0]

    normalize = lu if n_iter > 2 else (lambda A: A)
    for _ in range(n_iter):
        Q = normalize(prod(Q, fwd, rows))
        Q = normalize(prod(Q, back, cols))
    Q, _ = scipy.linalg.qr(prod(Q, fwd, rows), mode="economic", check_finite=False)
    # B = Qᵀ M, the small wide matrix whose SVD gives M's.  LAPACK's gesdd on its
    # transpose C = Mᵀ Q (tall, as the product comes) is ~2x faster than on B itself
    # (86567x60: 0.17 vs 0.32 s); C = P S Rt gives B = Rtᵀ S Pᵀ (to round-off: singular
    # values agree with B's own SVD to 1e-15 relative).
    P, s, Rt = scipy.linalg.svd(prod(Q, back, cols), full_matrices=False,
                                lapack_driver="gesdd", check_finite=False)
    Ut = Rt @ Q.T  # (Q Uhat)ᵀ with Uhat = Rtᵀ: M's left singular vectors as rows
    Ut, Vt = _flip_signs(Ut, P.T, u_based_decision=not transpose)
    if transpose:
        return np.ascontiguousarray(Vt[:rank]), s[:rank], Ut[:rank]
    return Ut[:rank], s[:rank], np.ascontiguousarray(Vt[:rank])


def _column_sqnorms(X) -> np.ndarray:
    """``‖X[:, j]‖²`` for every column, in float64."""
    if sp.issparse(X):
        Xc = sp.csr_matrix(X)  # a copy where needed: never touches the caller's arrays
        return np.asarray(Xc.multiply(Xc).sum(axis=0, dtype=np.float64)).ravel()
    return np.einsum("ij,ij->j", X, X, dtype=np.float64)


def spa(X, rank: int, *, data=None):
    """Successive projection algorithm: the indices of ``rank`` columns of X that span it.

    Pick the column of largest residual norm, project every column onto the
    orthogonal complement of it, repeat (Gillis 2020, ch. 7, Algorithm SPA).  On
    separable data ``X = W [I, H'] Π`` with the columns of ``H'`` summing to at most 1
    and W of full column rank, the columns picked are exactly those of W (robust to
    small noise).  The residual norms are updated from one product ``Xᵀ u`` per pick, so
    X is never copied or densified.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (m, n)
        Nonnegative data (already validated).
    rank : int
        Columns to pick (at most n).
    data : DenseData or SparseData, optional
        fastnmf's prepared X for the products (built here when not given).

    Returns
    -------
    indices : ndarray of int64, shape (rank,)
        The columns in the order picked.
    W : ndarray of shape (m, rank)
        Those columns, ``X[:, indices]``, in X's dtype.
    """
    m, n = X.shape
    if rank > n:
        raise ValueError(f"init='spa' picks rank columns of X: rank = {rank} > n_features = {n}.")
    if data is None:
        from ._data import make_data

        data = make_data(X, sp.issparse(X), "sparse" if sp.issparse(X) else "dense")
    residual = _column_sqnorms(X)
    floor = 1e-12 * max(float(residual.max(initial=0.0)), np.finfo(np.float64).tiny)
    Q = np.zeros((m, rank))
    W = np.empty((m, rank), dtype=data.dtype)
    picked = np.empty(rank, dtype=np.int64)
    e = np.zeros((n, 1), dtype=data.dtype)
    for k in range(rank):
        j = int(np.argmax(residual))
        picked[k] = j
        e[j] = 1
        x = data.product(e, 0, np.empty((m, 1), dtype=data.dtype))[:, 0]
        e[j] = 0
        W[:, k] = x
        u = x.astype(np.float64)
        for _ in range(2):  # Gram–Schmidt twice: orthogonal to round-off
            u -= Q[:, :k] @ (Q[:, :k].T @ u)
        norm = float(np.linalg.norm(u))
        if norm * norm <= floor:  # X's rank is below ``rank``: nothing left to project out
            residual[j] = -1.0
            continue
        Q[:, k] = u / norm
        p = data.product(np.ascontiguousarray(Q[:, k:k + 1], dtype=data.dtype), 1,
                         np.empty((n, 1), dtype=data.dtype))[:, 0].astype(np.float64)
        residual -= p * p
        residual[picked[: k + 1]] = -1.0  # a picked column is fully projected out
    return picked, W


def _spa_factors(X, rank, data):
    """SPA's W (columns of X), and H from HALS sweeps on ``min ‖X − WH‖, H ≥ 0``."""
    from . import kernels
    from ._data import factor_bounds, make_data

    if data is None:
        data = make_data(X, sp.issparse(X), "sparse" if sp.issparse(X) else "dense")
    _, W = spa(X, rank, data=data)
    n = X.shape[1]
    XtW = data.product(W, 1, np.empty((n, rank), dtype=W.dtype))
    WtW = W.T @ W
    Ht = np.zeros((n, rank), dtype=W.dtype)
    kernels.hals_update(Ht, XtW, WtW, W.dtype.type(0), W.dtype.type(0), factor_bounds(n),
                        np.empty((0, 0), dtype=W.dtype), SPA_SWEEPS, SPA_DELTA)
    return np.ascontiguousarray(W), np.ascontiguousarray(Ht.T)


def initialize(X, rank: int, init: str | None = None, random_state=None, eps: float = 1e-6,
               *, data=None):
    """Initial ``(W, H)`` for ``X ≈ W H``, in the dtype of ``X``.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (m, n)
        Nonnegative data (already validated).
    rank : int
        Number of components.
    init : {"random", "nndsvd", "nndsvda", "nndsvdar", "spa"} or None
        ``None`` picks :func:`default_init`.  ``"spa"``: W is the ``rank``
        columns of X that :func:`spa` picks, H the nonnegative least-squares
        fit to them (HALS sweeps); for near-separable data (deterministic).
    random_state : int, RandomState instance or None
        Seed for ``random``, ``nndsvdar`` and the randomized SVD.
    eps : float
        NNDSVD entries below ``eps`` are set to zero.
    data : DenseData or SparseData, optional
        fastnmf's prepared X (built here when not given); the randomized SVD
        runs on its parallel products (same algorithm and random numbers as
        scikit-learn).

    Returns
    -------
    W : ndarray of shape (m, rank), C-contiguous
    H : ndarray of shape (rank, n), C-contiguous
    """
    m, n = X.shape
    dtype = X.dtype
    init = check_init(init, rank, X.shape)

    if init == "random":
        avg = np.sqrt(mean_of(X) / rank)
        rng = check_random_state(random_state)
        H = avg * rng.standard_normal(size=(rank, n)).astype(dtype, copy=False)
        W = avg * rng.standard_normal(size=(m, rank)).astype(dtype, copy=False)
        np.abs(H, out=H)
        np.abs(W, out=W)
        return np.ascontiguousarray(W, dtype=dtype), np.ascontiguousarray(H, dtype=dtype)

    if init == "spa":
        return _spa_factors(X, rank, data)

    if data is None:  # called on its own: BLAS and Numba as a fit runs them
        from ._data import make_data

        with thread_limits(numba.get_num_threads(), split_blas=True):
            data = make_data(X, sp.issparse(X), "sparse" if sp.issparse(X) else "dense")
            Ut, S, V = _randomized_svd_products(data, rank, random_state)
    else:
        Ut, S, V = _randomized_svd_products(data, rank, random_state)
    # W is built by rows of Wᵀ (each column of W contiguous), then transposed once.
    Wt = np.zeros_like(Ut)
    H = np.zeros_like(V)
    # The leading singular pair of a nonnegative matrix is nonnegative.
    Wt[0] = np.sqrt(S[0]) * np.abs(Ut[0])
    H[0] = np.sqrt(S[0]) * np.abs(V[0])
    for j in range(1, rank):
        x, y = Ut[j], V[j]
        x_p, y_p = np.maximum(x, 0), np.maximum(y, 0)
        x_n, y_n = np.abs(np.minimum(x, 0)), np.abs(np.minimum(y, 0))
        x_p_nrm, y_p_nrm = np.sqrt(x_p @ x_p), np.sqrt(y_p @ y_p)
        x_n_nrm, y_n_nrm = np.sqrt(x_n @ x_n), np.sqrt(y_n @ y_n)
        m_p, m_n = x_p_nrm * y_p_nrm, x_n_nrm * y_n_nrm
        # Keep the sign pattern carrying more of the singular pair.
        if m_p > m_n:
            u, v, sigma = x_p / x_p_nrm, y_p / y_p_nrm, m_p
        elif m_n > 0:
            u, v, sigma = x_n / x_n_nrm, y_n / y_n_nrm, m_n
        else:  # a singular pair with no mass on either sign pattern: leave it zero
            continue
        lbd = np.sqrt(S[j] * sigma)
        Wt[j] = lbd * u
        H[j] = lbd * v
    W = Wt.T.copy()
    W[W < eps] = 0
    H[H < eps] = 0

    if init == "nndsvda":
        avg = mean_of(X)
        W[W == 0] = avg
        H[H == 0] = avg
    elif init == "nndsvdar":
        rng = check_random_state(random_state)
        avg = mean_of(X)
        W[W == 0] = abs(avg * rng.standard_normal(size=len(W[W == 0])) / 100)
        H[H == 0] = abs(avg * rng.standard_normal(size=len(H[H == 0])) / 100)
    return np.ascontiguousarray(W, dtype=dtype), np.ascontiguousarray(H, dtype=dtype)
