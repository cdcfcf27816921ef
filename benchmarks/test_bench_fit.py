"""Ten iterations of each solver from the same start: fastnmf against scikit-learn."""

from __future__ import annotations

import pytest
from conftest import DTYPES, SIZE, run_warm, workload
from sklearn.decomposition._nmf import (
    _fit_coordinate_descent,
    _multiplicative_update_h,
    _multiplicative_update_w,
)

import fastnmf
from fastnmf.bench import baseline

ITERS = 10


def _sklearn_mu(X, W, H):
    for _ in range(ITERS):
        W, *_ = _multiplicative_update_w(X, W, H, beta_loss=2, l1_reg_W=0, l2_reg_W=0,
                                         gamma=1.0)
        H = _multiplicative_update_h(X, W, H, beta_loss=2, l1_reg_H=0, l2_reg_H=0, gamma=1.0)


def _baseline(step):
    def run(X, W, H):
        for _ in range(ITERS):
            step(X, W, H)
    return run


PEERS = {
    "fastnmf-hals": lambda X, W, H: fastnmf.nmf(X, W.shape[1], W=W, H=H, solver="hals",
                                                max_iter=ITERS, tol=0),
    "fastnmf-mu": lambda X, W, H: fastnmf.nmf(X, W.shape[1], W=W, H=H, solver="mu",
                                              max_iter=ITERS, tol=0),
    "sklearn-cd": lambda X, W, H: _fit_coordinate_descent(X, W, H, tol=0, max_iter=ITERS),
    "sklearn-mu": _sklearn_mu,
    "scipy-hals": _baseline(baseline.hals_iteration),
    "scipy-mu": _baseline(baseline.mu_iteration),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("method", list(PEERS))
def test_ten_iterations(benchmark, method, kind, dtype):
    X, W0, H0, rank = workload(kind, dtype)
    solver = "hals" if method.endswith(("hals", "cd")) else "mu"

    def fit():
        PEERS[method](X, W0.copy(), H0.copy())

    run_warm(benchmark, fit, group=f"{kind}-{SIZE} {solver} r={rank} {dtype}")
