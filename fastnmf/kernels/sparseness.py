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
    ``free`` (1.0 for a free entry, 0.0 for one held at zero) are float64
    scratch of its length; the result is left in ``v``.  The loops are
    branch-free so they vectorize (a 10304-pixel basis image takes ~8 rounds).
    """
    n = s.shape[0]
    total = 0.0
    for j in range(n):
        total += s[j]
    shift = (k1 - total) / n
    for j in range(n):
        v[j] = s[j] + shift  # on the hyperplane Σv = k1
        free[j] = 1.0
    n_free = n
    # Each round zeroes at least one more entry, so at most n rounds.
    for _ in range(n):
        mid = k1 / n_free  # the centre of the simplex face the free entries span
        # On Σv = k1 the sphere Σv² = k2 is a circle of radius R about the centre.
        radius = math.sqrt(max(k2 - k1 * mid, 0.0))
        a = 0.0
        c = 0.0
        for j in range(n):  # held entries have v = 0 and w = 0
            w[j] = (v[j] - mid) * free[j]
            a += w[j] * w[j]
            c += v[j] * v[j]
        if a <= TIED * c:
            # Tied free entries sit at the centre: every direction in the face is
            # as close, so take the first free entry's (Σw = 0; the point R away
            # from the centre along it has no entry below 0).
            first = 0
            while free[first] == 0.0:
                first += 1
            for j in range(n):
                w[j] = -free[j] / n_free
            w[first] += 1.0
            a = 0.0
            for j in range(n):
                a += w[j] * w[j]
        # Hoyer's step v + αw with ‖v + αw‖² = k2, α the larger root, in closed form:
        # Σw = 0 makes it the point R away from the centre along w.  The quadratic
        # formula lost six digits on a vector 10⁵ times the target norm.
        scale = radius / math.sqrt(a) if a > 0.0 else 0.0
        lowest = 0.0
        for j in range(n):
            v[j] = (mid + scale * w[j]) * free[j]
            lowest = min(lowest, v[j])
        if lowest >= 0.0:
            break
        # Entries at or below zero leave the problem; the rest move back onto Σv = k1.
        total = 0.0
        count = 0.0
        for j in range(n):
            keep = 1.0 if v[j] > 0.0 else 0.0
            free[j] = keep
            v[j] *= keep
            total += v[j]
            count += keep
        n_free = count
        shift = (k1 - total) / n_free
        for j in range(n):
            v[j] += shift * free[j]
    for j in range(n):  # round-off can leave −0.0 or a hair below zero
        v[j] = v[j] if v[j] > 0.0 else 0.0


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
        if norm <= 0.0 or sparseness == 0.0:
            # sparseness 0 is the one point norm/√n·(1, …, 1), a double root of the
            # step's quadratic that Hoyer's algorithm finds only to ~√eps
            for j in range(n):
                out[i, j] = norm / math.sqrt(n)
            continue
        s = np.empty(n, dtype=np.float64)
        for j in range(n):
            s[j] = V[i, j]
        v = np.empty(n, dtype=np.float64)
        w = np.empty(n, dtype=np.float64)
        free = np.empty(n, dtype=np.float64)
        _project_one(s, scale * norm, norm * norm, v, w, free)
        for j in range(n):
            out[i, j] = v[j]
    return out
