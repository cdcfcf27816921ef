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

import numpy as np

from .. import _validation as v
from .._masked import check_missing_counts, check_missing_input, masked_solver
from .._options import check_accelerate, check_loop_options, regularization
from .._result import NMFResult, fit_result
from .._threads import numba_threads, resolve_n_threads
from ..init import INIT_METHODS, initialize
from ..kernels import ROW_GROUP
from ..solvers import Monitor, objective_for
from .data import DaskData, MaskedDaskData, _Blocks, _client_of, _import_dask

__all__ = ["nmf_dask"]


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


def _check_missing_input(A, name, shape):
    """A user's ``mask`` or ``missing`` for a dask X, checked before any work (its
    entries are read block by block, with X's): ``"nan"`` (``missing`` only), or what
    :func:`fastnmf._masked.check_missing_input` takes (a boolean dask array included)."""
    if A is None or (name == "missing" and isinstance(A, str) and A == "nan"):
        return A
    if isinstance(A, str) and name == "missing":
        raise ValueError(f"missing must be 'nan', a scipy sparse matrix or a boolean "
                         f"array, got {A!r}.")
    return check_missing_input(A, name, shape)


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


def _column_blocks(X, n_blocks, dtype, backend, persist, scheduler, n_threads):
    """X's column blocks (as many as its row blocks, of whole columns), prepared as the
    row blocks of Xᵀ: the copy of X that KL coordinate descent's H half-step sweeps
    (row j of Ht needs column j of X).  One rechunk of X, persisted like the row blocks
    (``persist=False``: made again at every iteration, unless :func:`_keep_column_copy`
    keeps it)."""
    n = X.shape[1]
    width = -(-n // max(n_blocks, 1))
    return _Blocks(X.rechunk({0: -1, 1: width}), dtype, backend, persist, scheduler,
                   n_threads, transpose=True)


def _memory_limits(scheduler) -> list:
    """The workers' memory limits in bytes: known only on a distributed cluster ([] else)."""
    client = _client_of(_import_dask()[0], scheduler)
    if client is None:
        return []
    limits = [w.get("memory_limit") or 0 for w in client.scheduler_info()["workers"].values()]
    return [limit for limit in limits if limit > 0]


def _check_W_fits(scheduler, m, rank, dtype):
    """KL coordinate descent sends all of W to each worker that sweeps column blocks; it
    is assembled there from the row blocks (two copies at once).  Refused where that is
    more than half of a worker's memory limit (known only on a distributed cluster)."""
    limits = _memory_limits(scheduler)
    need = 2 * m * rank * np.dtype(dtype).itemsize
    if limits and need > min(limits) / 2:
        raise ValueError(
            f"solver='ccd' on a dask array needs all of W ({m}×{rank}, {need // 2} bytes) "
            f"on each worker, twice while it is assembled, within half of a worker's "
            f"memory limit ({min(limits)} bytes): use solver='mu' (W's rows stay on the "
            "workers), a smaller rank, or workers with more memory.")


def _column_copy_bytes(data) -> int:
    """About what X's column copy holds: m·n numbers for dense blocks; for sparse ones a
    CSR of each column block's transpose: its nonzeros' values and indices (8 bytes
    each, the most they take) and its row pointers (8·(n + blocks))."""
    m, n = data.shape
    item = data.dtype.itemsize
    if data.backend != "sparse":  # (dense or mixed: a dense block holds every entry)
        return m * n * item
    return data.nonzeros * (item + 8) + 8 * (n + len(data.blocks.rows))


def _keep_column_copy(scheduler, data) -> bool:
    """``persist=False`` with KL coordinate descent: keep X's column copy on the workers,
    made once, where it fits; else make it again from X's source at every iteration.

    Streamed, the copy is a rechunk of all of X by columns per iteration: X read from
    its source once more and moved between the workers (measured in docs/dask.md: twice
    the worker-to-worker bytes per iteration of the kept copy).  It is kept when it is at most half
    of the workers' memory limits together (known only on a distributed cluster); the
    row blocks are still read at every iteration.  Either way a warning says which.
    """
    need = _column_copy_bytes(data)
    limits = _memory_limits(scheduler)
    keep = bool(limits) and need <= sum(limits) / 2
    if keep:
        v.warn(
            f"persist=False with solver='ccd': X's copy by columns (about {need} bytes) is "
            f"made once and kept on the workers, as it fits in half of their memory "
            f"({sum(limits)} bytes); X's row blocks are still read at every iteration. "
            "Use solver='mu' to keep nothing of X in memory.")
    else:
        where = (f"more than half of the workers' memory ({sum(limits)} bytes)" if limits
                 else "not known to fit: no distributed cluster")
        v.warn(
            f"persist=False with solver='ccd': X's copy by columns (about {need} bytes, "
            f"{where}) is made again from X's source at every iteration: all of X is read "
            "once more and moved between workers per iteration. solver='mu' streams X "
            "without it.")
    return keep


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
            v.warn(
                "init=None on a dask array runs init='random' (in memory it would be "
                "'nndsvda', which needs an SVD of the whole matrix). Pass init='random' to "
                "silence this, or init='custom' with W and H. Shown once per process.")
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


def nmf_dask(X, rank, *, beta_loss="frobenius", solver=None, init=None, max_iter=200,
             tol=1e-4, random_state=None, alpha_W=0.0, alpha_H="same", l1_ratio=0.0, W=None,
             H=None, update_H=True, n_threads=None, backend="auto", max_time=None,
             callback=None, progress=False, verbose=0, accelerate=True, persist=True,
             scheduler=None, return_dask=False, mask=None, missing=None) -> NMFResult:
    """:func:`fastnmf.nmf` for a row-partitioned ``dask.array.Array``.

    ``fastnmf.nmf(X, ...)`` calls this when X is a dask array; call it
    directly for the options below.  All other parameters mean what they mean
    for :func:`fastnmf.nmf`, with these differences:

    * ``init``: ``None`` means ``"random"`` (same draws as the single-machine
      fit for the same ``random_state``); ``"custom"`` takes numpy W and H.
      The NNDSVD methods raise (they need an SVD of the whole matrix).
    * ``beta_loss="kullback-leibler"``: ``solver="mu"`` is the default here
      (``"ccd"`` in memory); ``solver="ccd"`` runs coordinate descent with W's
      half-step on the row blocks and H's on a second copy of X partitioned by
      columns, made once (all of W, m×r, goes to each worker per iteration: it
      must fit in a worker's memory; docs/dask.md gives the costs).  Every other
      ``beta_loss`` runs its MU loop.
    * ``callback``: ``info.W`` is the current W as a dask array (compute it
      to look at it: that moves m·r numbers).
    * ``mask`` / ``missing``: as for :func:`fastnmf.nmf` (Frobenius, any solver; KL,
      MU), each block's rows read with the block: a boolean dask array (rechunked to
      X's row blocks), a numpy array or scipy sparse ``missing`` (sliced on the client
      and sent with each block's task), or ``missing="nan"`` (X's own NaN).  The
      Frobenius loss then takes one more small task per block per iteration (its
      correction at the missing entries, which reads the blocks' missing sets, not X).
    * ``accelerate`` (HALS): with ``persist=True`` the row-block edges are
      first moved down to multiples of ``ROW_GROUP`` (64) rows (accelerated HALS
      groups rows by 64), so the iterates equal the single-machine ones with
      ``accelerate`` (every value: the extrapolation keeps W's last update with W's
      rows, on the workers).

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
        the Frobenius loss, two for KL and β): the out-of-core mode, for X larger
        than the memory, e.g. from :func:`from_npz_blocks`.  KL ``solver="ccd"``
        keeps its copy of X by columns, made once, where that fits in half of the
        workers' memory, and makes it again at every iteration otherwise (a warning
        says which; docs/dask.md).
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
    X_in = X
    X, dtype = _check_dask_X(X)
    rank = v.check_rank(rank)
    objective = objective_for(beta_loss)
    mask = _check_missing_input(mask, "mask", X.shape)
    missing = _check_missing_input(missing, "missing", X.shape)
    masked = mask is not None or missing is not None
    if objective.name == "kullback-leibler" and solver is None:
        solver = "mu"  # (CCD keeps a second copy of X, by columns: asked for, not default)
    if masked:
        solver = masked_solver(objective, solver, update_H)
    solver = objective.resolve_solver(solver)
    max_iter, tol, max_time = check_loop_options(backend, max_iter, tol, max_time, callback)
    accelerate = check_accelerate(accelerate)
    m, n = X.shape
    reg = regularization(X.shape, alpha_W, alpha_H, l1_ratio)
    init = _resolve_init(init, W, H, update_H, rank, X.shape)
    if init == "custom":  # check the start before any work on the cluster
        if update_H and (W is None or H is None):
            raise ValueError("init='custom' needs both W and H.")
        H0 = v.check_factor(H, (rank, n), "H", dtype)
        W0 = v.check_factor(W, (m, rank), "W", dtype) if update_H else None

    by_columns = objective.name == "kullback-leibler" and solver == "ccd" and update_H
    if by_columns:
        _check_W_fits(scheduler, m, rank, dtype)
    if persist and accelerate and solver == "hals":
        X = _align_rows(X)
    blocks = _Blocks(X, dtype, backend, persist, scheduler, n_threads,
                     streamed=not persist and objective.name == "frobenius", mask=mask,
                     missing=missing)
    data = (MaskedDaskData if masked else DaskData)(blocks, dtype, rank)
    if masked:
        check_missing_counts(data.stats["missing"], X.shape, data.stats["given"])
    if by_columns:
        keep = persist or _keep_column_copy(scheduler, data)
        data.columns = _column_blocks(X_in, len(blocks.rows), dtype, backend, keep,
                                      scheduler, n_threads)
    mean = data.mean()
    if init == "random":
        W0, H0 = initialize(_Summary(X.shape, dtype, mean), rank, "random", random_state)
    elif W0 is None:  # update_H=False: W starts as nmf() starts it
        if solver != "hals":
            W0 = np.full((m, rank), np.sqrt(max(mean, 0.0) / rank), dtype=dtype)
        else:
            W0 = np.zeros((m, rank), dtype=dtype)
    Ht = np.ascontiguousarray(H0.T)

    rule = objective.stop_rule(solver, accelerate, update_H, reg.active)
    monitor = Monitor(max_iter=max_iter, tol=tol, rule=rule, max_time=max_time,
                      callback=callback, progress=progress, verbose=verbose,
                      loss_name=objective.loss_name)
    frobenius = objective.name == "frobenius"
    options = {"accelerate": accelerate} if frobenius else {}
    try:
        W_rows = data.rows(W0)  # from here on, W's rows live with X's row blocks
        del W0
        # Numba's threads for the client's own kernels (the H half-step); not
        # thread_limits, whose lock (workqueue layer) the block tasks of Dask's
        # local threads would wait on while the client waits for them.
        with numba_threads(resolve_n_threads(n_threads)):
            final = objective.fit(data, W_rows, Ht, solver=solver, monitor=monitor,
                                  reg=reg, update_H=update_H, **options)
        # the Frobenius error too, so relative_error means one thing
        sqerr = final if frobenius else max(data.direct_sqerr(W_rows, Ht), 0.0)
        W_out = W_rows.to_dask() if return_dask else W_rows.gather()
    finally:
        history = monitor.close()
    return fit_result(W_out, Ht, final, sqerr, data=data, monitor=monitor, history=history,
                      solver=solver, beta_loss=objective.name, t0=t0)
