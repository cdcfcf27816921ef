"""The "scipy baseline": HALS and MU written the obvious way a NumPy/SciPy user would.

No tricks: NumPy ``@`` (BLAS) for dense X, scipy.sparse ``@`` for sparse X,
a Python loop over the components for HALS.  This is what fastnmf has to beat
to be worth installing.  One call = one iteration (update W, then H), in place.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-10


def hals_iteration(X, W, H):
    """One HALS (cyclic coordinate descent) iteration: columns of W, then rows of H."""
    XHt = X @ H.T
    HHt = H @ H.T
    for k in range(W.shape[1]):
        W[:, k] = np.maximum(W[:, k] + (XHt[:, k] - W @ HHt[:, k]) / max(HHt[k, k], EPS), 0)
    WtX = (X.T @ W).T
    WtW = W.T @ W
    for k in range(H.shape[0]):
        H[k] = np.maximum(H[k] + (WtX[k] - WtW[k] @ H) / max(WtW[k, k], EPS), 0)


def mu_iteration(X, W, H):
    """One Lee–Seung multiplicative update of W, then of H (Frobenius loss)."""
    W *= (X @ H.T) / (W @ (H @ H.T) + EPS)
    H *= (X.T @ W).T / ((W.T @ W) @ H + EPS)


ITERATIONS = {"hals": hals_iteration, "mu": mu_iteration}
