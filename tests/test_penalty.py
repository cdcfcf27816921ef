"""The penalties of a fit as one type (fastnmf.solvers._penalty.Penalty): scaled as
scikit-learn scales them, and its value the reference objective's penalty terms."""

from __future__ import annotations

import numpy as np
import pytest
import reference as ref

from fastnmf._options import regularization
from fastnmf.solvers._penalty import NO_PENALTY, Penalty


@pytest.mark.parametrize("alpha_W, alpha_H, l1_ratio", [(0.0, "same", 0.0), (0.3, "same", 0.25),
                                                        (0.2, 0.05, 1.0), (0.0, 0.4, 0.0)])
def test_regularization_is_the_reference_scaling(alpha_W, alpha_H, l1_ratio):
    reg = regularization((30, 20), alpha_W, alpha_H, l1_ratio)
    want = ref.regularization((30, 20), alpha_W, None if alpha_H == "same" else alpha_H,
                              l1_ratio)
    assert isinstance(reg, Penalty)
    assert tuple(reg) == pytest.approx(want, rel=1e-15)
    assert reg.active == any(want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sides_value_and_conversion(dtype):
    rng = np.random.default_rng(0)
    X, W, H = rng.random((12, 9)), rng.random((12, 3)), rng.random((3, 9))
    reg = Penalty(0.5, 0.25, 2.0, 3.0)
    l1_W, l2_W = reg.for_W(dtype)
    l1_H, l2_H = reg.for_H(dtype)
    assert (l1_W, l2_W, l1_H, l2_H) == (0.5, 2.0, 0.25, 3.0)
    assert all(type(x) is dtype for x in (l1_W, l2_W, l1_H, l2_H))
    Wd, Htd = W.astype(dtype), np.ascontiguousarray(H.T, dtype=dtype)
    terms = ref.objective(X, Wd, Htd.T, tuple(reg)) - ref.objective(X, Wd, Htd.T)
    assert reg.value(Wd, Htd) == pytest.approx(terms, rel=1e-6 if dtype == np.float32 else 1e-12)
    # only the weighted side is touched: the other may be anything
    assert Penalty(l1_W=1.0).value(Wd, None) == pytest.approx(float(Wd.sum(dtype=np.float64)))
    assert NO_PENALTY.value(None, None) == 0.0 and not NO_PENALTY.active
    assert Penalty.of((1.0, 2.0, 3.0, 4.0)) == Penalty(1.0, 2.0, 3.0, 4.0)
    assert Penalty.of(reg) is reg
    with pytest.raises(TypeError):
        Penalty.of((1.0, 2.0, 3.0, 4.0, 5.0))


def test_a_factor_that_sums_its_own_terms():
    """W's rows elsewhere (Dask): the handle's own ``penalty(l1, l2)`` is asked."""
    class Handle:
        def penalty(self, l1, l2):
            return 10 * l1 + 100 * l2

    assert Penalty(0.5, 0.0, 0.25, 0.0).value(Handle(), None) == 30.0
