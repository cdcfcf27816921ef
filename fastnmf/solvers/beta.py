"""Multiplicative updates for the general β-divergence (β ∉ {1, 2}).

scikit-learn's ``solver="mu"`` with ``beta_loss="itakura-saito"`` (β = 0) or
any other float: the same updates in the same order (W, then H), the same
``eps`` guards and clipping, the same exponent ``γ(β)`` (``1/(2−β)`` for
β < 1, ``1/(β−1)`` for β > 2, else 1: the majorize–minimize step of Févotte
& Idier 2011, under which the loss never increases), the same loss
(``_beta_divergence``) and stopping rule, so the iterates agree with
scikit-learn's to round-off from the same start.

What differs is the work: ``WH`` is formed by BLAS a block of rows at a time
(~2 MiB, never the whole m×n matrix), turned into the numerator and
denominator matrices (and the loss) by NumPy's SIMD ufuncs in place while
the block is in cache, and multiplied by the other factor by BLAS.  For
sparse X a Numba kernel forms the numerator at the nonzeros only; the
denominator ``(WH)^(β−1) Hᵀ`` is dense by nature (as in scikit-learn) and
costs a dense iteration.  β = 1 and β = 2 are the KL and
Frobenius objectives (:mod:`.kl`, :mod:`.frobenius`).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .._beta_products import BetaProducts
from .._data import factor_bounds
from ..kernels import beta as bk
from ._monitor import report_divergence as _report
from ._penalty import NO_PENALTY, Penalty
from ._rows import callback_view, row_side

# scikit-learn's guard on model values and denominators (float32 epsilon).
EPS = float(np.finfo(np.float32).eps)
# scikit-learn zeroes W entries below float64's epsilon after each update when
# β < 1, and H entries when β ≤ 1.
CLIP = float(np.finfo(np.float64).eps)
SOLVERS = ("mu",)
DEFAULT_SOLVER = "mu"
STOP_RULES = {"mu": "error"}

ZEROS_MESSAGE = ("When beta_loss <= 0 and X contains zeros, the solver may diverge. Please "
                 "add small values to X, or use a positive beta_loss.")


def gamma_for(beta: float) -> float:
    """The MM exponent of the updates (Févotte & Idier 2011), as scikit-learn."""
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


def _log10_largest(beta: float, x_max: float, q: int) -> float:
    """log10 of a bound on the numbers the MU half-steps form, for ``X``'s scale.

    The guards keep model values at or above eps where they meet a negative
    power, so with ``L = log10 max(x_max, eps)`` the largest are about
    ``x·eps^(β−2)`` (β < 2), ``eps^(β−1)`` (β < 1), ``eps^β`` (β < 0) and,
    for model values near X's scale, ``P^β``, ``P^(β−1)``, ``x·P^(β−2)``;
    times up to ``q`` terms in a product, and 10⁴ for the other factor's
    entries.
    """
    L = float(np.log10(max(x_max, EPS)))
    le = float(np.log10(EPS))
    terms = [beta * L, (beta - 1) * L, L + (beta - 2) * L]
    if beta < 2:
        terms.append(L + (beta - 2) * le)
    if beta < 1:
        terms.append((beta - 1) * le)
    if beta < 0:
        terms.append(beta * le)
    return max(terms) + float(np.log10(max(q, 1))) + 4.0


def work_dtype(data, beta: float) -> np.dtype:
    """The dtype of the numerator, denominator and ``WH`` blocks: X's, unless too narrow.

    float32 holds eps^(β−2) ≈ 10^(6.9·(2−β)) only down to β ≈ −3.5: below,
    (or for large X and β), the numerator became inf, its ratio to the
    denominator nan, and the fit failed (measured: β = −4, float32, X with
    entries 1e-9: nan at iteration 6).  Those blocks are then float64 (the
    factors stay float32).  Where even float64 cannot hold them, a clear error.
    """
    m, n = data.shape
    need = _log10_largest(beta, data.max(), max(m, n))
    if need < np.log10(np.finfo(data.dtype).max):
        return data.dtype
    if need < np.log10(np.finfo(np.float64).max):
        return np.dtype(np.float64)
    raise ValueError(f"beta_loss={beta!r} is out of range for this X: the multiplicative "
                     f"updates' powers of model values (about 1e{need:.0f}) overflow float64. "
                     f"Use a beta_loss closer to 1.")


def _has_zero(data) -> bool:
    """Whether X (≥ 0) has a zero entry."""
    m, n = data.shape
    return data.nonzeros < m * n


class MURows:
    """W's half of the β multiplicative updates, where W's rows are.

    ``state`` holds W (``"W"``, updated in place) and W's numerator and
    denominator (``"num_W"``, ``"den_W"``, of the work dtype), kept from the loss
    of one iteration to the W update of the next.  As :class:`fastnmf.solvers.kl.MURows`:
    a data product that keeps W's rows elsewhere (row blocks of a Dask array) runs
    this class on each block with that block's rows and sums what the methods return.
    Every method's results are sums over W's rows (the loss too: its constant part is
    a sum over X's entries).
    """

    # (as kl.MURows.STATE_USE)
    STATE_USE: ClassVar[dict] = {"numerator": {"W": "read", "num_W": "remake", "den_W": "remake"},
                 "update": {"W": "write", "num_W": "read", "den_W": "read"}}

    def __init__(self, data, state, beta, work):
        self.state = state
        self.W = state["W"]
        self.engine = BetaProducts(data, beta, work)
        self.bounds = factor_bounds(self.W.shape[0])
        self.num_H = self.den_H = None

    def numerator(self, Ht, eps):
        """W's numerator and denominator at the current factors (kept); returns the
        β-divergence there."""
        W, work = self.W, self.engine.dtype
        if "num_W" not in self.state:
            self.state["num_W"] = np.empty(W.shape, dtype=work)
            self.state["den_W"] = np.empty(W.shape, dtype=work)
        return self.engine.half(0, W, Ht, self.state["num_W"], self.state["den_W"], eps, True)

    def update(self, Ht, l1, l2, eps, gamma, clip, then_product):
        """W's MU step from the kept numerator and denominator, then (``then_product``)
        H's at the new W (else ``(None, None)``)."""
        bk.beta_mu_apply(self.W, self.state["num_W"], self.state["den_W"], l1, l2, eps,
                         gamma, clip, self.bounds)
        if not then_product:
            return None, None
        if self.num_H is None:
            self.num_H = np.empty(Ht.shape, dtype=self.engine.dtype)
            self.den_H = np.empty(Ht.shape, dtype=self.engine.dtype)
        self.engine.half(1, Ht, self.W, self.num_H, self.den_H, eps, False)
        return self.num_H, self.den_H

    def view(self):
        return self.W


def fit_beta(data, W, Ht, *, beta, solver, monitor, reg=NO_PENALTY,
             update_H=True):
    """Minimize ``d_β(X‖W Htᵀ)`` + penalties in place over ``W`` (and ``Ht``) by MU.

    Parameters
    ----------
    data : DenseData, SparseData, or a data product with its own ``row_side``
        (:class:`fastnmf.dask.data.DaskData`: W's rows on the workers)
    W, Ht : C-contiguous ndarrays (m×r, n×r) of ``data.dtype``; updated in place
        (W: or the handle of W's rows that ``data`` keeps).
    beta : float
        Not 1 or 2 (those are the KL and Frobenius objectives).
    solver : "mu"
    monitor : Monitor
        With ``rule="error"``: ``error`` is ``sqrt(2·d_β)`` as scikit-learn's
        ``_beta_divergence(..., square_root=True)``; the history holds the
        divergence plus the penalties.
    reg : Penalty (or its 4 weights in field order), already scaled.
    update_H : bool
        False solves for W with H fixed (``transform``).

    Returns
    -------
    loss : float
        The β-divergence at the returned factors, as scikit-learn computes it.

    Raises
    ------
    ValueError
        For β ≤ 0 when X has a zero (scikit-learn's rule), or another solver.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS} for beta_loss={beta!r}, "
                         f"got {solver!r}.")
    beta = float(beta)
    if beta in (1.0, 2.0):
        raise ValueError("beta=1 and beta=2 are the KL and Frobenius objectives.")
    if beta <= 0 and _has_zero(data):
        raise ValueError(ZEROS_MESSAGE)
    dtype = W.dtype.type
    reg = Penalty.of(reg)
    l1_W, l2_W = reg.for_W(dtype)
    l1_H, l2_H = reg.for_H(dtype)
    eps, gamma = dtype(EPS), dtype(gamma_for(beta))
    clip_W = dtype(CLIP) if beta < 1 else dtype(0)
    clip_H = dtype(CLIP) if beta <= 1 else dtype(0)
    bounds_H = factor_bounds(Ht.shape[0])
    work = work_dtype(data, beta)
    rows, _ = row_side(data, W, MURows, beta=beta, work=work)
    # As for KL MU: the W products at the current factors also give their
    # loss, so the stopping rule sees the loss of the iteration just finished.
    loss = float(rows.numerator(Ht, eps))
    _report(monitor, 0, loss, reg, W, Ht)
    for it in range(1, monitor.max_iter + 1):
        num_H, den_H = rows.update(Ht, l1_W, l2_W, eps, gamma, clip_W, update_H)
        if update_H:  # (W's rows elsewhere: sums in float64, here in the work dtype)
            bk.beta_mu_apply(Ht, np.asarray(num_H, dtype=work), np.asarray(den_H, dtype=work),
                             l1_H, l2_H, eps, gamma, clip_H, bounds_H)
        loss = float(rows.numerator(Ht, eps))
        if _report(monitor, it, loss, reg, W, Ht, callback_view(monitor, rows)):
            break
    return loss


__all__ = ["DEFAULT_SOLVER", "SOLVERS", "STOP_RULES", "fit_beta", "gamma_for"]
