"""Kernels for missing values: products sampled at a sparse set of positions.

The missing (held-out) entries of X are a CSR *pattern* (``indptr``,
``indices``; no values).  A masked fit works on ``X̃ = X₀ + S`` where ``X₀``
is X with the missing entries zeroed and ``S = W Hᵀ`` sampled on the pattern
(an SDDMM), so each half-step needs ``S @ F`` added to ``X₀ @ F``.  The same
kernel serves both sides: rows of the pattern of X give ``S Ht``-type
products, rows of the pattern of Xᵀ give ``Sᵀ W``.

The sums over the pattern (loss corrections, held-out error) use
:func:`fastnmf.kernels.sparse.sampled_moments`.  As in
:mod:`fastnmf.kernels.sparse`, loops over a row run over slices that
start at 0 (no wraparound checks), chunks of rows write disjoint rows of
``out``, and sums across threads go through per-chunk partials reduced
serially by the caller.
"""

from __future__ import annotations

from numba import prange

from .._jit import kernel


@kernel
def sampled_matmul_add(indptr, indices, A, B, F, bounds, vals, out):
    """``out += S @ F`` with ``S = (A Bᵀ)`` sampled on the pattern; ``vals`` gets S.

    Row ``i`` of the pattern holds columns ``j``; ``S[i, j] = A[i]·B[j]`` is
    written to ``vals`` (in pattern order, for the loss) and
    ``S[i, j]·F[j]`` is added to ``out[i]``.  ``A`` (rows × r), ``B`` and
    ``F`` (cols × r) are C-contiguous.  Returns ``out``.
    """
    r = A.shape[1]
    for c in prange(bounds.shape[0] - 1):
        for i in range(bounds[c], bounds[c + 1]):
            lo, hi = indptr[i], indptr[i + 1]
            ix = indices[lo:hi]
            v = vals[lo:hi]
            a = A[i]
            o = out[i]
            for q in range(ix.shape[0]):
                b = B[ix[q]]
                s = a[0] * b[0]
                for k in range(1, r):
                    s += a[k] * b[k]
                v[q] = s
                f = F[ix[q]]
                for k in range(r):
                    o[k] += s * f[k]
    return out
