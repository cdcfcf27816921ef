"""Initial factors: ``random``, ``nndsvd``, ``nndsvda``, ``nndsvdar``.

The formulas, and the order in which random numbers are drawn, are those of
scikit-learn, so the same ``random_state`` starts both packages from the same
point.  NNDSVD uses a randomized truncated SVD, which only multiplies by ``X``
and so never densifies a sparse matrix.

References
----------
C. Boutsidis, E. Gallopoulos (2008). SVD based initialization: a head start for
nonnegative matrix factorization. Pattern Recognition 41(4), 1350–1362.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.linalg
import scipy.sparse as sp

INIT_METHODS = ("random", "nndsvd", "nndsvda", "nndsvdar")


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


def _svd_flip(U, Vt, u_based_decision):
    """scikit-learn's ``svd_flip``: the largest-magnitude loading of each pair is positive."""
    if u_based_decision:
        signs = np.sign(U[np.argmax(np.abs(U), axis=0), np.arange(U.shape[1])])
    else:
        signs = np.sign(Vt[np.arange(Vt.shape[0]), np.argmax(np.abs(Vt), axis=1)])
    U *= signs[np.newaxis, :]
    Vt *= signs[:, np.newaxis]
    return U, Vt


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

    def lu(A):
        return scipy.linalg.lu(A, permute_l=True, check_finite=False)[0]

    normalize = lu if n_iter > 2 else (lambda A: A)
    for _ in range(n_iter):
        Q = normalize(prod(Q, fwd, rows))
        Q = normalize(prod(Q, back, cols))
    Q, _ = scipy.linalg.qr(prod(Q, fwd, rows), mode="economic", check_finite=False)
    B = prod(Q, back, cols).T  # Qᵀ M
    Uhat, s, Vt = scipy.linalg.svd(B, full_matrices=False, lapack_driver="gesdd")
    U = Q @ Uhat
    U, Vt = _svd_flip(U, Vt, u_based_decision=not transpose)
    if transpose:
        return Vt[:rank].T, s[:rank], U[:, :rank].T
    return U[:, :rank], s[:rank], Vt[:rank]


def initialize(X, rank: int, init: str | None = None, random_state=None, eps: float = 1e-6,
               *, data=None):
    """Initial ``(W, H)`` for ``X ≈ W H``, in the dtype of ``X``.

    Parameters
    ----------
    X : ndarray or sparse matrix of shape (m, n)
        Nonnegative data (already validated).
    rank : int
        Number of components.
    init : {"random", "nndsvd", "nndsvda", "nndsvdar"} or None
        ``None`` picks :func:`default_init`.
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

    if data is None:
        from ._data import make_data

        data = make_data(X, sp.issparse(X), "sparse" if sp.issparse(X) else "dense")
    U, S, V = _randomized_svd_products(data, rank, random_state)
    W = np.zeros_like(U)
    H = np.zeros_like(V)
    # The leading singular pair of a nonnegative matrix is nonnegative.
    W[:, 0] = np.sqrt(S[0]) * np.abs(U[:, 0])
    H[0, :] = np.sqrt(S[0]) * np.abs(V[0, :])
    for j in range(1, rank):
        x, y = U[:, j], V[j, :]
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
        W[:, j] = lbd * u
        H[j, :] = lbd * v
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
