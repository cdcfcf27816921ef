"""fastnmf.cluster: memberships sum to 1, labels, top terms."""

import numpy as np
import pytest

import fastnmf
from fastnmf.cluster import hard_labels, memberships, top_terms


def test_memberships_rows_sum_to_one():
    rng = np.random.default_rng(0)
    W = rng.random((50, 4))
    W[3] = 0
    P = memberships(W)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert (P >= 0).all()
    np.testing.assert_allclose(P[3], 0.25)


def test_memberships_with_H_do_not_depend_on_scale():
    rng = np.random.default_rng(1)
    W, H = rng.random((20, 3)), rng.random((3, 8))
    d = np.array([0.1, 2.0, 7.0])
    np.testing.assert_allclose(memberships(W * d, H / d[:, None]), memberships(W, H))
    np.testing.assert_array_equal(hard_labels(W * d, H / d[:, None]), hard_labels(W, H))


def test_hard_labels_recover_planted_clusters():
    rng = np.random.default_rng(2)
    truth = np.repeat(np.arange(3), 20)
    H = np.zeros((3, 30))
    for k in range(3):
        H[k, 10 * k : 10 * k + 10] = 1.0
    X = H[truth] * rng.uniform(1, 2, (60, 1)) + 0.01 * rng.random((60, 30))
    res = fastnmf.nmf(X, 3, random_state=0)
    labels = hard_labels(res.W, res.H)
    # same partition up to renaming the clusters
    assert len({(a, b) for a, b in zip(truth, labels, strict=True)}) == 3
    P = memberships(res.W, res.H)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert (P.max(axis=1) > 0.9).all()


def test_top_terms_and_errors():
    H = np.array([[0.0, 3, 1, 2], [5, 0, 0, 1]])
    assert top_terms(H, ["a", "b", "c", "d"], n=3) == [["b", "d", "c"], ["a", "d", "b"]]
    assert top_terms(H, list("abcd"), n=10)[1][0] == "a"
    with pytest.raises(ValueError, match="vocabulary"):
        top_terms(H, ["a"])
    with pytest.raises(ValueError, match="nonnegative"):
        memberships([[-1.0, 1.0]])
    with pytest.raises(ValueError, match="H must have shape"):
        memberships(np.ones((2, 2)), np.ones((3, 2)))
