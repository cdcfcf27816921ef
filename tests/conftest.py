"""Shared fixtures: small random nonnegative matrices by seed."""

from __future__ import annotations

import numpy as np
import pytest


def random_matrix(m, n, seed=0, density=1.0, dtype=np.float64, rank=None):
    """A nonnegative m×n matrix: low rank plus noise when ``rank`` is given,
    with about ``density`` of its entries kept nonzero."""
    rng = np.random.default_rng(seed)
    if rank is None:
        X = rng.random((m, n))
    else:
        X = rng.random((m, rank)) @ rng.random((rank, n)) + 0.1 * rng.random((m, n))
    if density < 1.0:
        X[rng.random((m, n)) >= density] = 0.0
    return X.astype(dtype)


def random_factors(m, n, r, seed=0, dtype=np.float64):
    """A positive custom starting point (W, H)."""
    rng = np.random.default_rng(seed + 1000)
    return (rng.random((m, r)) + 0.05).astype(dtype), (rng.random((r, n)) + 0.05).astype(dtype)


@pytest.fixture
def make_X():
    return random_matrix


@pytest.fixture
def make_WH():
    return random_factors

