"""Hoyer's projection onto a target sparseness (Hoyer 2004, JMLR 5, 1457–1469).

Hoyer's sparseness of a vector ``v`` of length ``n`` is
``(√n − ‖v‖₁/‖v‖₂) / (√n − 1)``: 0 when all entries are equal, 1 for a single
nonzero.  Fixing ``‖v‖₂`` and the sparseness fixes ``‖v‖₁``; the projection
moves a vector to the nonnegative vector closest to it with those two norms.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from .._jit import kernel


# Free entries whose spread from their mean is below this fraction of their norm
# (squared) are taken as tied: the ray from the centre through them has no direction.
TIED = 1e-24


@kernel(parallel=False)
def _project_one(s, k1, k2, v, w, free):
    """Hoyer's ``projfunc`` with ``nn = 1``: ``v`` ← nonnegative, ``Σv = k1``, ``Σv² = k2``.

    ``s`` is the vector to project (float64, not modified); ``v``, ``w`` and
    ``free`` are scratch of its length; the result is left in ``v``.
    """
    n = s.shape[0]
    total = 0.0
    for j in range(n):
        total += s[j]
        free[j] = True
    shift = (k1 - total) / n
    for j in range(n):
        v[j] = s[j] + shift  # on the hyperplane Σv = k1
    n_free = n
    # Each round zeroes at least one more entry, so at most n rounds.
    for _ in range(n):
        mid = k1 / n_free  # the centre of the simplex face the free entries span
        a = 0.0
        c = 0.0
        first = -1
        for j in range(n):
            w[j] = 0.0
            if free[j]:
                w[j] = v[j] - mid
                a += w[j] * w[j]
                c += v[j] * v[j]
                if first < 0:
                    first = j
        if a <= TIED * c and c < k2:
            # Tied free entries sit at the centre (which has the least norm on the
            # face): every direction in the face is as close, so take the first
            # free entry's (Σw = 0, and α ≤ k1 reaches k2 with no entry below 0).
            a = 0.0
            for j in range(n):
                if free[j]:
                    w[j] = (1.0 if j == first else 0.0) - 1.0 / n_free
                    a += w[j] * w[j]
        b = 0.0
        for j in range(n):
            b += w[j] * v[j]
        # v + αw with ‖v + αw‖² = k2, α ≥ 0: outward from the centre through v
        if a > 0.0:
            disc = max(4.0 * b * b - 4.0 * a * (c - k2), 0.0)
            alpha = (-2.0 * b + math.sqrt(disc)) / (2.0 * a)
            for j in range(n):
                v[j] += alpha * w[j]
        done = True
        for j in range(n):
            if free[j] and v[j] < 0.0:
                done = False
        if done:
            break
        # Negative entries leave the problem at zero; the rest move back onto Σv = k1.
        total = 0.0
        for j in range(n):
            if free[j] and v[j] <= 0.0:
                free[j] = False
                v[j] = 0.0
                n_free -= 1
            elif free[j]:
                total += v[j]
        shift = (k1 - total) / n_free
        for j in range(n):
            if free[j]:
                v[j] += shift
    for j in range(n):  # the last round can leave −0.0 or round-off below zero
        if v[j] < 0.0:
            v[j] = 0.0


@kernel
def project_sparseness(V, sparseness, norms, out):
    """Project each row of ``V`` (k × n) onto Hoyer sparseness ``sparseness``, in parallel.

    Row ``i`` becomes the nonnegative vector with ``‖·‖₂ = norms[i]`` and
    ``‖·‖₁ = (√n − (√n − 1)·sparseness)·norms[i]`` found by Hoyer's
    algorithm, written into row ``i`` of ``out`` (``V``'s shape and dtype;
    may be ``V`` itself).  A row with ``norms[i] == 0`` becomes zero.  The
    arithmetic is float64 whatever the dtype.
    """
    k, n = V.shape
    scale = math.sqrt(n) - (math.sqrt(n) - 1.0) * sparseness
    for i in prange(k):
        norm = float(norms[i])
        if norm <= 0.0:
            for j in range(n):
                out[i, j] = 0.0
            continue
        s = np.empty(n, dtype=np.float64)
        for j in range(n):
            s[j] = V[i, j]
        v = np.empty(n, dtype=np.float64)
        w = np.empty(n, dtype=np.float64)
        free = np.empty(n, dtype=np.bool_)
        _project_one(s, scale * norm, norm * norm, v, w, free)
        for j in range(n):
            out[i, j] = v[j]
    return out
