"""The data products alone (the floor of one iteration) and the factor updates alone."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, SIZE, run_warm, workload

from fastnmf import kernels
from fastnmf._data import factor_bounds, make_data
from fastnmf.solvers.frobenius import MU_EPS


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("side", [0, 1], ids=["XHt", "XtW"])
def test_data_product(benchmark, kind, dtype, side):
    X, W0, H0, rank = workload(kind, dtype)
    data = make_data(X, kind == "sparse")
    F = np.ascontiguousarray(H0.T) if side == 0 else W0
    out = np.empty((X.shape[side], rank), dtype=X.dtype)
    run_warm(benchmark, lambda: data.product(F, side, out),
             group=f"{kind}-{SIZE} product r={rank} {dtype}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("solver", ["hals", "mu"])
def test_factor_update(benchmark, solver, dtype):
    X, W0, H0, rank = workload("dense", dtype)
    A = X @ np.ascontiguousarray(H0.T)
    B = H0 @ H0.T
    bounds = factor_bounds(W0.shape[0])
    zero = W0.dtype.type(0)
    G = np.empty((rank, rank), dtype=W0.dtype)  # the updated factor's Gram, written by both

    def update():
        W = W0.copy()
        if solver == "hals":
            kernels.hals_update(W, A, B, zero, zero, bounds, G)
        else:
            kernels.mu_update(W, A, B, zero, zero, W.dtype.type(MU_EPS), bounds, G)

    run_warm(benchmark, update, group=f"dense-{SIZE} factor update r={rank} {dtype}")
