"""One fit of a row-partitioned dask array: :func:`nmf_dask`.

Each row block of X keeps its rows of W next to it; per iteration each block
computes its share of the data products with fastnmf's own kernels, the r×n
partial sums are tree-summed by Dask, H (r×n) is updated once on the client
and sent back to the blocks.  The W half-step is exact per block (rows of W
are independent), so the iterates are those of the single-machine fit up to
round-off.  Design and cost model: docs/dask.md.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np

from .. import _validation as v
from .._data import factor_bounds
from .._options import check_accelerate, check_loop_options, regularization
from .._result import NMFResult
from .._threads import numba_threads, resolve_n_threads, thread_limits
from ..init import INIT_METHODS, initialize
from ..kernels import ROW_GROUP, inner_f64
from ..solvers import Monitor, objective_for
from ..solvers import frobenius as frob
from .data import DaskData, _Blocks, _import_dask

__all__ = ["nmf_dask"]


def _frob_start(block, W, Ht, n_threads):
    """The pieces of ‖X − WH‖² and the penalties at the initial factors, for one block."""
    data = block.data
    with thread_limits(n_threads):
        XHt = data.product(Ht, 0, out=np.empty(W.shape, dtype=W.dtype))
        cross = inner_f64(XHt, W, factor_bounds(W.shape[0]))
    return {"cross": cross, "WtW": (W.T @ W).astype(np.float64),
            "W_l1": float(W.sum(dtype=np.float64)), "W_sq": float(np.vdot(W, W))}


def _frob_step(block, W, Ht, HHt, solver, l1, l2, n_inner, update_H, n_threads):
    """One block's share of a Frobenius iteration.

    Updates the block's rows of W from ``Xᵦ Hᵀ`` and ``H Hᵀ`` (a copy: the
    input W block is never modified), then returns them with the partial sums
    the H half-step needs: ``Xᵦᵀ Wᵦ`` (n×r) and ``Wᵦᵀ Wᵦ`` (r×r).
    """
    data = block.data
    W = W.copy()
    parts = {}
    with thread_limits(n_threads):
        bounds = factor_bounds(W.shape[0])
        XHt = data.product(Ht, 0, out=np.empty(W.shape, dtype=W.dtype))
        WtW = np.empty((W.shape[1],) * 2, dtype=W.dtype)
        violation, cross = frob.UPDATES[solver](W, XHt, HHt, l1, l2, bounds, n_inner, WtW)
        if violation is not None:
            parts["violation"] = float(violation)
        if update_H:
            XtW = data.product(W, 1, out=np.empty(Ht.shape, dtype=W.dtype))
            parts["XtW"] = XtW.astype(np.float64)
        else:
            parts["cross"] = cross
    parts["WtW"] = WtW.astype(np.float64)
    parts["W_l1"] = float(W.sum(dtype=np.float64))
    parts["W_sq"] = float(np.vdot(W, W))
    return W, parts


def _direct_sqerr(block, W, Ht, n_threads):
    data = block.data
    with thread_limits(n_threads):
        return {"sqerr": data.direct_sqerr(W, Ht)}


class _Summary:
    """What :func:`fastnmf.init.initialize` needs of X for ``init="random"``: shape, dtype, mean."""

    def __init__(self, shape, dtype, mean):
        self.shape, self.dtype, self._mean = shape, dtype, mean

    def mean(self, dtype=None):
        return self._mean


def _check_dask_X(X):
    _, da = _import_dask()
    if not isinstance(X, da.Array):
        raise TypeError(
            f"fastnmf accepts a dask.array.Array, got {type(X).__module__}.{type(X).__name__}; "
            "convert a Dask DataFrame with .to_dask_array(lengths=True).")
    if X.ndim != 2:
        raise ValueError(f"Expected a 2-D dask array for X, got {X.ndim}-D with shape {X.shape}.")
    if any(math.isnan(c) for c in X.chunks[0]) or any(math.isnan(c) for c in X.chunks[1]):
        raise ValueError(
            "X has unknown chunk sizes (nan in X.chunks); call X.compute_chunk_sizes() "
            "first, or build X with known lengths (e.g. to_dask_array(lengths=True)).")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X is empty: shape {X.shape}.")
    dtype = v._float_dtype(np.dtype(X.dtype), "X")
    if X.numblocks[1] > 1:
        # The scheme partitions rows only: each task needs whole rows of X.
        X = X.rechunk({1: -1})
    return X, dtype


# Accelerated HALS sweeps rows in groups of ROW_GROUP (64) aligned to absolute
# row 64q and stops repeating a group's sweeps on the group's own change; a block
# whose first row is not a multiple of 64 would group rows differently from the
# whole matrix (and stop some groups at another sweep).
_ROW_GROUP = ROW_GROUP


def _align_rows(X):
    """X with every row-block boundary moved down to a multiple of ``_ROW_GROUP``.

    A one-time move of at most ``_ROW_GROUP − 1`` rows per boundary (before X is
    persisted), so accelerated HALS gives the single-machine iterates.
    """
    edges = np.cumsum((0, *X.chunks[0]))
    inner = edges[1:-1]
    if not np.any(inner % _ROW_GROUP):
        return X
    aligned = np.unique(np.concatenate([[0], inner - inner % _ROW_GROUP, [edges[-1]]]))
    return X.rechunk({0: tuple(int(c) for c in np.diff(aligned))})


_warned_random_init = False  # the switch to init="random" is told once per process


def _resolve_init(init, W, H, update_H, rank, shape):
    global _warned_random_init
    if not update_H:
        return "custom"
    if init is None:
        if W is not None or H is not None:
            return "custom"
        if rank <= min(shape) and not _warned_random_init:  # in memory: nndsvda
            _warned_random_init = True
            warnings.warn(
                "init=None on a dask array runs init='random' (in memory it would be "
                "'nndsvda', which needs an SVD of the whole matrix). Pass init='random' to "
                "silence this, or init='custom' with W and H. Shown once per process.",
                UserWarning, stacklevel=4)
        return "random"
    if init in ("nndsvd", "nndsvda", "nndsvdar"):
        raise ValueError(
            f"init={init!r} needs a truncated SVD of the whole matrix, which fastnmf does "
            "not run on dask arrays; use init='random' (the default for dask arrays, same "
            "draws as the single-machine fit) or init='custom' with W and H.")
    if init == "spa":
        raise ValueError("init='spa' is not supported for dask arrays yet; use init='random' "
                         "or init='custom' (fastnmf.init.spa on a sample of the columns).")
    if init not in (*INIT_METHODS, "custom"):
        raise ValueError(f"init must be one of ('random', 'custom') or None for a dask "
                         f"array, got {init!r}.")
    return init


def _penalty(reg, W_l1, W_sq, Ht):
    l1_W, l1_H, l2_W, l2_H = reg
    pen = l1_W * W_l1 + 0.5 * l2_W * W_sq
    if l1_H:
        pen += l1_H * float(Ht.sum(dtype=np.float64))
    if l2_H:
        pen += 0.5 * l2_H * float(np.vdot(Ht, Ht))
    return pen


def nmf_dask(X, rank, *, beta_loss="frobenius", solver=None, init=None, max_iter=200,
             tol=1e-4, random_state=None, alpha_W=0.0, alpha_H="same", l1_ratio=0.0, W=None,
             H=None, update_H=True, n_threads=None, backend="auto", max_time=None,
             callback=None, progress=False, verbose=0, accelerate=True, persist=True,
             scheduler=None, return_dask=False) -> NMFResult:
    """:func:`fastnmf.nmf` for a row-partitioned ``dask.array.Array``.

    ``fastnmf.nmf(X, ...)`` calls this when X is a dask array; call it
    directly for the options below.  All other parameters mean what they mean
    for :func:`fastnmf.nmf`, with these differences:

    * ``init``: ``None`` means ``"random"`` (same draws as the single-machine
      fit for the same ``random_state``); ``"custom"`` takes numpy W and H.
      The NNDSVD methods raise (they need an SVD of the whole matrix).
    * ``beta_loss="kullback-leibler"``: only ``solver="mu"`` (the default
      here); coordinate descent (``"ccd"``) updates each entry of H from a
      whole column of X, which no row block has.
    * ``callback``: ``info.W`` is the current W as a dask array (compute it
      to look at it: that moves m·r numbers).
    * ``accelerate`` (HALS): with ``persist=True`` the row-block edges are
      first moved down to multiples of ``ROW_GROUP`` (64) rows (accelerated HALS
      groups rows by 64), so the iterates equal the single-machine ones with
      ``accelerate="sweeps"``.  Extrapolation is not on Dask yet: ``True`` /
      ``"auto"`` run the sweeps alone here (where the in-memory fit extrapolates
      once they stall), ``"extrapolate"`` and ``"both"`` raise.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Nonnegative data whose chunks are numpy arrays or scipy.sparse
        matrices.  Chunks along the columns are merged (rechunked to one
        column block); the row chunks are the unit of work.  X is never
        modified.
    persist : bool, default=True
        Load and prepare X's blocks once and keep them in the workers'
        memory (``X`` never moves afterwards).  ``False`` reads every block
        from its source again at each iteration (one pass per iteration for
        the Frobenius loss, two for KL): the out-of-core mode, for X larger
        than the memory, e.g. from :func:`from_npz_blocks`.
    scheduler : dask.distributed.Client, str or None
        Where to run, as Dask's ``scheduler=`` argument; ``None`` uses the
        default (the active ``Client``, else Dask's local threads).
    return_dask : bool, default=False
        Return ``W`` as a dask array whose row chunks are X's (persisted on
        the cluster) instead of gathering it to a numpy array.

    Returns
    -------
    NMFResult
        As :func:`fastnmf.nmf`; ``W`` is numpy (or dask with ``return_dask``),
        ``H`` numpy.
    """
    t0 = time.perf_counter()
    X, dtype = _check_dask_X(X)
    rank = v.check_rank(rank)
    objective = objective_for(beta_loss)
    if objective.name not in ("frobenius", "kullback-leibler"):
        raise ValueError(
            f"beta_loss={beta_loss!r} is not available for dask arrays; use 'frobenius' "
            "or 'kullback-leibler'.")
    if objective.name == "kullback-leibler":
        if solver is None:
            solver = "mu"
        elif objective.aliases.get(solver, solver) == "ccd":
            raise ValueError(
                f"solver={solver!r} (coordinate descent for KL) is not available for dask "
                "arrays: it updates each entry of H from a whole column of X, which no row "
                "block holds. Use solver='mu'.")
    solver = objective.resolve_solver(solver)
    max_iter, tol, max_time = check_loop_options(backend, max_iter, tol, max_time, callback)
    accelerate = check_accelerate(accelerate)
    if accelerate in ("extrapolate", "both"):
        raise NotImplementedError(
            "accelerate='extrapolate'/'both' is not available on Dask yet (its Frobenius "
            "loop is still its own); use accelerate=True or 'sweeps' (repeated sweeps: "
            "'auto' runs them alone on Dask) or False.")
    m, n = X.shape
    reg = regularization(X.shape, alpha_W, alpha_H, l1_ratio)
    init = _resolve_init(init, W, H, update_H, rank, X.shape)
    if init == "custom":  # check the start before any work on the cluster
        if update_H and (W is None or H is None):
            raise ValueError("init='custom' needs both W and H.")
        H0 = v.check_factor(H, (rank, n), "H", dtype)
        W0 = v.check_factor(W, (m, rank), "W", dtype) if update_H else None

    if persist and accelerate and solver == "hals":
        X = _align_rows(X)
    blocks = _Blocks(X, dtype, backend, persist, scheduler, n_threads,
                     streamed=not persist and objective.name == "frobenius")
    data = DaskData(blocks, dtype, rank)
    mean = data.mean()
    if init == "random":
        W0, H0 = initialize(_Summary(X.shape, dtype, mean), rank, "random", random_state)
    elif W0 is None:  # update_H=False: W starts as nmf() starts it
        if solver != "hals":
            W0 = np.full((m, rank), np.sqrt(max(mean, 0.0) / rank), dtype=dtype)
        else:
            W0 = np.zeros((m, rank), dtype=dtype)
    Ht = np.ascontiguousarray(H0.T)

    monitor = Monitor(max_iter=max_iter, tol=tol, rule=objective.stop_rules[solver],
                      max_time=max_time, callback=callback, progress=progress,
                      verbose=verbose, loss_name=objective.loss_name)
    frobenius = objective.name == "frobenius"
    try:
        if frobenius:
            W_blocks = blocks.split(W0)
            del W0
            W_blocks, Ht, sqerr = _fit_frobenius(
                blocks, W_blocks, Ht, data.stats, solver=solver, monitor=monitor, reg=reg,
                update_H=update_H, accelerate=accelerate, dtype=dtype)
            final = sqerr
            W_out = (blocks.as_dask_array(W_blocks, rank, dtype) if return_dask
                     else blocks.gather(W_blocks))
        else:
            W_rows = data.rows(W0)  # from here on, W's rows live with X's row blocks
            del W0
            # Numba's threads for the client's own kernels (the H half-step); not
            # thread_limits, whose lock (workqueue layer) the block tasks of Dask's
            # local threads would wait on while the client waits for them.
            with numba_threads(resolve_n_threads(n_threads)):
                final = objective.fit(data, W_rows, Ht, solver=solver, monitor=monitor,
                                      reg=reg, update_H=update_H)
            # the Frobenius error too, so relative_error means one thing
            sqerr = max(data.direct_sqerr(W_rows, Ht), 0.0)
            W_out = W_rows.to_dask() if return_dask else W_rows.gather()
    finally:
        history = monitor.close()
    err = float(np.sqrt(final)) if frobenius else float(np.sqrt(2.0 * max(final, 0.0)))
    return NMFResult(
        W=W_out,
        H=np.ascontiguousarray(Ht.T),
        loss=float(history["loss"][-1]),
        reconstruction_err=err,
        relative_error=float(np.sqrt(sqerr / data.sqnorm)) if data.sqnorm > 0 else 0.0,
        n_iter=monitor.n_iter,
        converged=monitor.converged,
        stop_reason=monitor.stop_reason,
        history=history,
        solver=solver,
        backend=data.backend,
        beta_loss=objective.name,
        elapsed=time.perf_counter() - t0,
    )


def _callback_W(monitor, blocks, W_blocks, r, dtype):
    return blocks.as_dask_array(W_blocks, r, dtype) if monitor.callback is not None else None


def _fit_frobenius(blocks, W_blocks, Ht, stats, *, solver, monitor, reg, update_H, accelerate,
                   dtype):
    """:func:`fastnmf.solvers.frobenius.fit_frobenius`, step for step, over row blocks."""
    nt = blocks.n_threads
    m, n, r = int(blocks.offsets[-1]), Ht.shape[0], Ht.shape[1]
    t = dtype.type
    l1_W, l1_H, l2_W, l2_H = (t(x) for x in reg)
    reg_on = any(reg)
    sqnorm = stats["sqnorm"]
    cancel = frob.CANCEL[dtype] * sqnorm
    bounds_H = factor_bounds(n)
    inner_W = inner_H = 1
    if accelerate and solver == "hals" and hasattr(frob, "inner_sweeps"):
        inner_W = frob.inner_sweeps(stats["nnz"], m, n, r)
        inner_H = frob.inner_sweeps(stats["nnz"], n, m, r)

    def direct():
        return blocks.reduce(_direct_sqerr, W_blocks, blocks.constant(Ht.copy()), nt)["sqerr"]

    def sqerr_from(cross, WtW64, HHt):
        err = sqnorm - 2.0 * cross + float(np.vdot(WtW64, HHt.astype(np.float64)))
        if err < cancel:
            err = direct()
        return max(err, 0.0)

    HHt = Ht.T @ Ht
    start = blocks.reduce(_frob_start, W_blocks, blocks.constant(Ht.copy()), nt)
    sqerr = sqerr_from(start["cross"], start["WtW"], HHt)
    monitor.start(0.5 * sqerr + _penalty(reg, start["W_l1"], start["W_sq"], Ht),
                  np.sqrt(sqerr))

    for it in range(1, monitor.max_iter + 1):
        W_blocks, tot = blocks.step(_frob_step, W_blocks, blocks.constant(Ht.copy()),
                                    blocks.constant(HHt.copy()), solver, l1_W, l2_W, inner_W,
                                    update_H, nt)
        violation = tot.get("violation")
        WtW64 = tot["WtW"]
        WtW = WtW64.astype(dtype)
        W_l1, W_sq = tot["W_l1"], tot["W_sq"]
        if update_H:
            XtW = tot["XtW"].astype(dtype)
            # Only around the client's own kernels: with Dask's local threads the
            # block tasks enter thread_limits from other threads meanwhile.
            with thread_limits(nt):
                # (writes H Hᵀ into HHt; an overflow is caught just below)
                v_H, cross = frob.UPDATES[solver](Ht, XtW, WtW, l1_H, l2_H, bounds_H, inner_H,
                                                  HHt)
            if violation is not None:
                violation += v_H
            limit = frob.REBALANCE_AT[dtype]
            if not reg_on and not (WtW.diagonal().max() < limit
                                   and HHt.diagonal().max() < limit):
                s = _rebalance_scales(WtW64, Ht).astype(dtype)
                W_blocks = blocks.scale(W_blocks, s)
                Ht /= s
                XtW *= s
                WtW64 = WtW64 * np.outer(s, s)
                HHt = Ht.T @ Ht  # ⟨Xᵀ W, Hᵀ⟩ is unchanged by the scaling
        else:
            cross = tot["cross"]
        sqerr = sqerr_from(cross, WtW64, HHt)
        loss = 0.5 * sqerr + _penalty(reg, W_l1, W_sq, Ht)
        if monitor.step(it, loss, np.sqrt(sqerr), _callback_W(monitor, blocks, W_blocks, r, dtype),
                        Ht.T, violation):
            break
    if dtype == np.float32:  # report the final error to float64 accuracy
        sqerr = direct()
    return W_blocks, Ht, sqerr


def _rebalance_scales(WtW64, Ht):
    """:func:`fastnmf.solvers.frobenius._rebalance`'s scales, from the summed Gram of W."""
    nw = np.sqrt(np.maximum(WtW64.diagonal(), 0.0))
    nh = np.sqrt(np.einsum("ik,ik->k", Ht, Ht, dtype=np.float64))
    s = np.ones_like(nw)
    ok = (nw > 0) & (nh > 0)
    s[ok] = np.sqrt(nh[ok] / nw[ok])
    return s
