import numpy as np

import fastnmf


def test_fit_runs():
    rng = np.random.default_rng(0)
    X = rng.random((30, 4)) @ rng.random((4, 20))
    res = fastnmf.nmf(X, 4, random_state=0, max_iter=50)
    assert res.W.shape == (30, 4) and res.H.shape == (4, 20)
    assert np.all(res.W >= 0) and np.all(res.H >= 0)
