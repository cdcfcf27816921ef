"""Factor updates for the Frobenius objective: they never see ``X``.

Both kernels update a factor ``F`` (``W``, or ``Hᵀ``) in place from
``A = X Hᵀ`` (or ``Xᵀ W``) and the Gram matrix ``B = H Hᵀ`` (or ``Wᵀ W``).
Row ``i`` of ``F`` depends only on row ``i`` of ``A`` and on ``B``, so rows
are updated in parallel with no approximation: the loop over components
inside a row stays sequential, which is exactly HALS.

Regularization enters as in scikit-learn: the objective is
``½‖X − WH‖² + l1·ΣF + ½·l2·‖F‖²`` for the factor being updated.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from .._jit import kernel


@kernel
def hals_update(F, A, B, l1, l2, bounds):
    """One HALS (coordinate descent) sweep over the columns of ``F``.

    For each row ``i`` and component ``k`` in order::

        g = F[i] · B[:, k] + l2·F[i, k] + l1 − A[i, k]
        F[i, k] ← max(0, F[i, k] − g / (B[k, k] + l2))

    A component whose Gram diagonal is zero (an all-zero row of the other
    factor) is left unchanged rather than divided by zero.

    Returns the projected-gradient violation met during the sweep,
    ``Σ |g|`` over entries with ``F > 0`` or ``g < 0`` (scikit-learn's ``cd``
    stopping quantity), accumulated in float64 per chunk.
    """
    r = F.shape[1]
    n_chunks = bounds.shape[0] - 1
    partial = np.zeros(n_chunks, dtype=np.float64)
    for c in prange(n_chunks):
        violation = 0.0
        for i in range(bounds[c], bounds[c + 1]):
            f = F[i]
            for k in range(r):
                b = B[k]  # B is symmetric: row k == column k, and contiguous
                grad = f[k] * l2 + l1 - A[i, k]
                for j in range(r):
                    grad += f[j] * b[j]
                if f[k] > 0:
                    violation += abs(grad)
                elif grad < 0:
                    violation -= grad
                hess = B[k, k] + l2
                if hess <= 0:
                    continue
                v = f[k] - grad / hess
                f[k] = v if v > 0 else 0
        partial[c] = violation
    return partial.sum()


@kernel
def mu_update(F, A, B, l1, l2, eps, bounds):
    """One multiplicative update ``F ← F ∘ A ⊘ (F B + l1 + l2·F)``.

    A zero denominator is replaced by ``eps`` (scikit-learn uses float32's
    machine epsilon).  The whole row's denominators are formed from the old
    row before any entry changes, so this is exactly Lee & Seung's update.
    """
    r = F.shape[1]
    for c in prange(bounds.shape[0] - 1):
        ratio = np.empty(r, dtype=F.dtype)
        for i in range(bounds[c], bounds[c + 1]):
            f = F[i]
            for k in range(r):
                b = B[k]
                den = f[k] * l2 + l1
                for j in range(r):
                    den += f[j] * b[j]
                if den == 0:
                    den = eps
                ratio[k] = A[i, k] / den
            for k in range(r):
                f[k] *= ratio[k]
