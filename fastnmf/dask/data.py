"""The row-partitioned Dask data product: X's row blocks, prepared once, where they live.

Each row block of X is validated and turned into its own
:class:`~fastnmf._data.DenseData` or :class:`~fastnmf._data.SparseData` by a
task, and (``persist=True``) stays in a worker's memory.  :class:`_Blocks`
runs a plain function of one block (and of that block's rows of W) on every
block, each task placed where its block of X is, and tree-sums the small
partial results (dask.array's ``map_blocks`` + ``tree_reduce`` idea).

Block tasks are plain functions of plain arrays: picklable, and pure (they
never modify an argument, so Dask may run one again after losing a result).
Dask is imported inside the functions: ``import fastnmf`` never imports it.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools

import numpy as np

from .. import _validation as v
from .._data import SparseData, gram_f64, make_data
from .._masked import NAN_HINT, MaskedData, missing_set, missing_terms
from .._threads import thread_limits

# Partial sums are added this many at a time (the fan-in of the tree).
SPLIT_EVERY = 8


def _import_dask():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - exercised only without dask
        raise ImportError(
            "fastnmf.dask needs Dask: pip install 'fastnmf[dask]' "
            "(that is, 'dask[array,distributed]')."
        ) from exc
    return dask, da



# ---------------------------------------------------------------------------
# Block tasks: plain functions of plain arrays (picklable, pure: they never
# modify an argument, so Dask may run them again after losing a result).
# ---------------------------------------------------------------------------

class _Block:
    """One prepared row block of X (its ``DenseData``/``SparseData``), sized for Dask;
    with missing values, also the block's missing set (its pattern and the pattern's
    transpose) and the count of missing entries of each of the user's sets.

    Dask's scheduler places a task next to the largest inputs it knows of;
    the size of an arbitrary object defaults to its shallow ``sys.getsizeof``
    (tens of bytes), which let the scheduler copy X's blocks between workers
    to sit next to a W block.  Reporting the arrays' bytes keeps every task on
    the worker that holds its block of X.
    """

    __slots__ = ("data", "given", "missing")

    def __init__(self, data, missing=None, given=None):
        self.data = data
        self.missing = missing
        self.given = given or {}

    def view(self):
        """What a task computes with: the block's data, or, with missing values, a
        :class:`MaskedData` of it made for this task (its buffers and its binding to the
        task's factors are the task's own: the block itself never changes)."""
        if self.missing is None:
            return self.data
        return MaskedData(self.data, *self.missing)

    def __sizeof__(self):
        if self.data.is_sparse:
            held = sum(a.nbytes for arrays in self.data._arrays for a in arrays)
        else:
            held = self.data.X.nbytes
        if self.missing is not None:
            held += sum(p.indptr.nbytes + p.indices.nbytes for p in self.missing)
        return held


class _StreamedSparse(SparseData):
    """A sparse block read for one iteration only (``persist=False``): no timing of
    gather against scatter, which pays off over a fit, not over the one iteration a
    streamed block lives.

    Measured on a 50000×100000 block with 5·10⁶ nonzeros (float32, r=10, 2 threads):
    building the transpose 0.56 s and the timing 0.35 s, against 0.05 s per product.
    So ``X Hᵀ`` is gathered from the CSR and ``Xᵀ W`` scattered from it (one private
    n×r copy per thread): the CSR of Xᵀ, which :class:`SparseData` makes only for a
    product that reads it, is never made.
    """

    def product(self, F, side, out, method=None):
        return super().product(F, side, out, "gather" if side == 0 else "scatter")


def _prepare_block(block, dtype, backend, streamed=False, transpose=False, mask=None,
                   missing=None):
    """Validate one row block and build its data products (CSR and CSR of Xᵀ, or dense).

    ``streamed``: the block is read again at every iteration (only the
    Frobenius products are needed): sparse blocks skip the CSR of Xᵀ.
    ``transpose``: the block is a column block of X, prepared as a row block of
    Xᵀ (dense: a view of X's block; sparse: CSR of Xᵀ, X's own block dropped).
    ``mask``/``missing``: the block's rows of the user's sets, as :func:`fastnmf.nmf`
    takes them (``missing="nan"``: the block's NaN); the block then holds X with its
    missing entries zeroed and its missing set (:func:`fastnmf._masked.missing_set`;
    the checks of the whole set are made on the sums over the blocks).
    """
    name = "X (a block of the dask array)"
    missing_values = mask is not None or missing is not None
    X, is_sparse = v.check_X(block, name, values=not missing_values, nan_hint=NAN_HINT)
    pattern, given = None, None
    if missing_values:
        X, is_sparse, pattern, given = missing_set(X, is_sparse, mask, missing)
    if X.dtype != dtype:
        X = X.astype(dtype)
    if transpose:
        X = X.T.tocsr() if is_sparse else X.T
    if streamed and backend != "dense" and is_sparse:
        data = _StreamedSparse(X)
    else:
        data = make_data(X, is_sparse, backend)
    return _Block(data, None if pattern is None else (pattern, pattern.transpose()), given)


def _block_stats(block):
    """Sum (for the mean of X), ‖X‖², nonzeros and backend of one prepared block, and
    its count of missing entries (all, and of each of the user's sets)."""
    data = block.data
    if data.is_sparse:
        total = float(data._arrays[0][2].sum(dtype=np.float64))
    else:
        total = float(data.X.sum(dtype=np.float64))
    n_missing = 0 if block.missing is None else block.missing[0].nnz
    # accelerated HALS's cost model counts the missing entries too (MaskedData.nonzeros)
    nonzeros = data.nonzeros + n_missing
    # (a set: the blocks' parts are summed, and sets are united)
    return {"sum": total, "sqnorm": data.sqnorm, "nnz": nonzeros,
            "backend": {data.backend}, "max": {data.max()}, "missing": n_missing,
            "given": collections.Counter(block.given)}


def _add_parts(*parts):
    """Sum dicts of partial results key by key (sets are united: the backends used)."""
    out = dict(parts[0])
    for part in parts[1:]:
        for key, value in part.items():
            if isinstance(value, set):
                out[key] = out[key] | value
            else:
                out[key] = out[key] + value
    return out


class _Blocks:
    """The row blocks of X as prepared data objects, and how Dask runs tasks on them.

    ``transpose``: X has one row block, and its column blocks are taken as the row
    blocks of Xᵀ (the column copy of :class:`DaskData`)."""

    def __init__(self, X, dtype, backend, persist, scheduler, n_threads, streamed=False,
                 transpose=False, mask=None, missing=None):
        dask, _ = _import_dask()
        self.dask = dask
        self.scheduler = scheduler
        self.client = _client_of(dask, scheduler)
        self.n_threads = n_threads
        axis = 1 if transpose else 0
        rows = [int(c) for c in X.chunks[axis]]
        keep = [i for i, c in enumerate(rows) if c > 0]  # empty blocks: nothing to do
        blocks = X.to_delayed()[0, :] if transpose else X.to_delayed()[:, 0]
        self.rows = [rows[i] for i in keep]
        self.n_cols = int(X.shape[1 - axis])
        self.offsets = np.concatenate([[0], np.cumsum(self.rows)]).astype(np.int64)
        prepare = dask.delayed(_prepare_block, pure=True)
        masks, missings = _row_pieces(mask, X.chunks[axis]), _row_pieces(missing, X.chunks[axis])
        self.data = [prepare(blocks[i], dtype, backend, streamed, transpose, masks[i],
                             missings[i]) for i in keep]
        self._planned = None if persist else _plan_homes(self.client, self.rows)
        if self._planned is not None:  # each block read and prepared on its worker
            self.data = _placed(self.data, self._planned)
        if persist:  # X is loaded and prepared once, then stays where it is
            self.data = list(dask.persist(*self.data, scheduler=scheduler))
        self._persisted = persist
        self._missing_sets = None

    def missing_sets(self):
        """With missing values, what the Frobenius loss's correction reads
        (:func:`_missing_terms`): the blocks themselves where they are kept; streamed,
        their missing sets alone, persisted when first asked for (one more read of X),
        so that the correction does not read X again at every iteration."""
        if self._persisted:
            return self.data
        if self._missing_sets is None:
            of = self.dask.delayed(_missing_of, pure=True)
            self._missing_sets = list(self.dask.persist(*[of(d) for d in self.data],
                                                        scheduler=self.scheduler))
        return self._missing_sets

    def _homes(self):
        """The worker holding each persisted block of X (None: not known, or no cluster);
        for streamed blocks, the worker planned to read it."""
        if self.client is None:
            return [None] * len(self.data)
        if self._planned is not None:
            return list(self._planned)
        # (the persisted blocks themselves: who_has takes futures or collections, and
        # returned {} for their keys as strings, so no task was placed)
        who = self.client.who_has(self.data)
        return [next(iter(who.get(d.key) or ()), None) for d in self.data]

    def _map(self, fn, args, nout=None, over=None):
        """``fn(data_b, *args_b)`` for every block, each task placed where its block of X is.

        A list argument gives one item per block.  Without the placement,
        Dask's scheduler may treat these tasks, many of one name across
        iterations, as "root-ish" and spread them over the workers without
        regard to where X is (copying X's blocks around).  The restriction
        is loose: if that worker is gone, the task runs anywhere.
        """
        task = self.dask.delayed(fn, pure=False, nout=nout)
        homes = self._homes()
        outs = []
        for b, d in enumerate(self.data if over is None else over):
            where = (self.dask.annotate(workers=[homes[b]], allow_other_workers=True)
                     if homes[b] is not None else contextlib.nullcontext())
            with where:
                out = task(d, *[a[b] if isinstance(a, list) else a for a in args])
                outs.append(tuple(out[i] for i in range(nout)) if nout else out)
        return outs

    def constant(self, value):
        """A value shared by all block tasks: one key in the graph, not one copy per task."""
        return self.dask.delayed(value, pure=True)

    def tree_sum(self, parts):
        add = self.dask.delayed(_add_parts, pure=False)
        while len(parts) > 1:
            parts = [add(*parts[i : i + SPLIT_EVERY]) for i in range(0, len(parts), SPLIT_EVERY)]
        return parts[0]

    def reduce(self, fn, *args, over=None):
        """``Σ_b fn(data_b, *args_b)``, tree-summed by Dask, returned to the client
        (``over``: one item per block to pass instead of the block)."""
        total = self.tree_sum(self._map(fn, args, over=over))
        return self.dask.compute(total, scheduler=self.scheduler)[0]

    def step(self, fn, *args):
        """Run ``fn(data_b, *args_b) -> (new_block, parts)`` on every block.

        Returns the new blocks, persisted where they were computed, and the sum
        of the parts; one submission, so each block of X is read once.
        """
        outs = self._map(fn, args, nout=2)
        new = [o[0] for o in outs]
        total = self.tree_sum([o[1] for o in outs])
        new, total = self.dask.persist(new, total, scheduler=self.scheduler)
        return list(new), self.dask.compute(total, scheduler=self.scheduler)[0]

    def run(self, fn, *args):
        """:meth:`step`, with the new blocks brought to the client (one submission)."""
        outs = self._map(fn, args, nout=2)
        total = self.tree_sum([o[1] for o in outs])
        return self.dask.compute([o[0] for o in outs], total, scheduler=self.scheduler)

    def split(self, F):
        """Rows of a client-side m×r array as one constant per block."""
        return [self.constant(np.ascontiguousarray(F[a:b]))
                for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]

    def as_dask_array(self, blocks, r, dtype):
        _, da = _import_dask()
        return da.concatenate([da.from_delayed(w, shape=(rows, r), dtype=dtype)
                               for w, rows in zip(blocks, self.rows, strict=True)])

    def gather(self, blocks):
        return np.concatenate(self.dask.compute(*blocks, scheduler=self.scheduler))


def _row_pieces(A, chunks):
    """The rows of ``A`` (a user's ``mask`` or ``missing``, already checked against X's
    shape) for each row chunk of X: a dask array's rechunked to X's row chunks, a numpy
    array's or scipy matrix's sliced on the client (sent with their block's task);
    ``"nan"`` and None as they are."""
    if A is None or isinstance(A, str):
        return [A] * len(chunks)
    if hasattr(A, "to_delayed"):  # a dask array
        return list(A.rechunk({0: tuple(chunks), 1: -1}).to_delayed()[:, 0])
    A = A.tocsr() if hasattr(A, "tocsr") else A
    edges = np.cumsum((0, *chunks))
    return [A[a:b] for a, b in itertools.pairwise(edges)]


def _plan_homes(client, rows):
    """A worker for each streamed block (None without a cluster): blocks in order, each
    to the worker with the fewest rows so far (ties: the first in address order)."""
    if client is None:
        return None
    workers = sorted(client.scheduler_info()["workers"])
    if not workers:
        return None
    load = dict.fromkeys(workers, 0)
    homes = []
    for n_rows in rows:
        home = min(workers, key=load.__getitem__)
        load[home] += n_rows
        homes.append(home)
    return homes


def _placed(delayed, homes):
    """``delayed`` (one prepared block each) with the tasks only block b needs, its own
    reading from the source and its preparation, annotated to run on ``homes[b]``
    (loosely: elsewhere if that worker is gone); tasks that several blocks need are left
    to the scheduler.

    A streamed block (``persist=False``) is read again at every iteration.  Without the
    annotation the scheduler read and prepared each block on whichever worker it chose
    that time, and the block's task then pulled W's rows over from where the last one
    ran: the W states of a HALS fit crossed between the workers (8 blocks of 40000 ×
    4000 on 2 workers, 6 iterations: 23–28 MB moved, W's states and prepared blocks of X
    among them; placed, 11 MB and no block of X, as much as with ``persist=True``).
    """
    from dask.core import get_dependencies
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

    graph = {}
    for d in delayed:
        graph.update(d.__dask_graph__())
    owner = {}  # key -> the one block that needs it, or None (several do)
    for b, d in enumerate(delayed):
        seen, todo = set(), [d.key]
        while todo:
            key = todo.pop()
            if key in seen or key not in graph:  # (not in the graph: e.g. a future's)
                continue
            seen.add(key)
            todo.extend(get_dependencies(graph, task=graph[key]))
        for key in seen:
            owner[key] = b if owner.get(key, b) == b else None
    shared = "fastnmf-streamed-shared"
    layers = {shared: MaterializedLayer({k: graph[k] for k, o in owner.items() if o is None})}
    names = []
    for b, home in enumerate(homes):
        names.append(f"fastnmf-streamed-{b}")
        layers[names[-1]] = MaterializedLayer(
            {k: graph[k] for k, o in owner.items() if o == b},
            annotations={"workers": [home], "allow_other_workers": True})
    hlg = HighLevelGraph(layers, {name: {shared} for name in names} | {shared: set()})
    return [Delayed(d.key, hlg, layer=name) for d, name in zip(delayed, names, strict=True)]


def _client_of(dask, scheduler):
    """The ``dask.distributed.Client`` that ``scheduler`` resolves to, or None."""
    get = dask.base.get_scheduler(scheduler=scheduler)
    owner = getattr(get, "__self__", None)
    return owner if type(owner).__name__ == "Client" else None


# ---------------------------------------------------------------------------
# The data product the solver loops run over
# ---------------------------------------------------------------------------

def _sums(W):
    """``(Σ W, ‖W‖²)``: what the penalties need of a block of W's rows."""
    return np.array([W.sum(dtype=np.float64), np.vdot(W, W)], dtype=np.float64)


def _own_state(state, use):
    """A row state the method may change: the entries it writes in place copied, those
    it remakes dropped (it makes them anew), those it only reads shared (``use``: the
    class's ``STATE_USE[method]``; an entry not named there is copied)."""
    return {key: value if use.get(key) == "read" and value.flags.writeable else value.copy()
            for key, value in state.items() if use.get(key) != "remake"}


def _rows_call(block, state, cls, method, args, n_threads):
    """``cls(block's data, state).<method>(*args)`` on the block's row state, never
    modifying it (:func:`_own_state`); returns the new state and the results as float64
    partial sums, with the block's ``(Σ W, ‖W‖²)``.

    The copies are needed: the solver's classes update the state in place (W always;
    MU's numerator, HALS's last W), and ``state`` is an input this task shares with
    others.  Dask may run a task again on inputs still in memory (a result lost with a
    worker, a retry), which must find them as they were; the callback's ``info.W`` (a dask
    array over these states) must not change when the next step runs; and Dask's local
    schedulers pass the very objects, not copies.  Only what a method writes is copied
    (its class's ``STATE_USE``; all of the state where the class names nothing): per
    iteration W's size once for KL MU, β MU and CCD, and for HALS, which names nothing,
    its whole state (W; its last update once it extrapolates; X Hᵀ while H is fixed).
    """
    use = getattr(getattr(cls, "func", cls), "STATE_USE", {}).get(method, {})
    state = _own_state(state, use)
    data = block.view()
    with thread_limits(n_threads):
        out = getattr(cls(data, state), method)(*args)
    sample = data.last_sample() if block.missing is not None else None
    if sample is not None:  # missing values: the S of the last product, for the loss
        state["S_side"], state["S"] = np.array(sample[0]), sample[1]
    values = out if isinstance(out, tuple) else (out,)
    # (a set: the blocks' parts are summed, and sets are united)
    parts = {"sums": _sums(state["W"]), "form": {(isinstance(out, tuple), len(values))}}
    for i, value in enumerate(values):
        if value is not None:
            parts[i] = np.asarray(value, dtype=np.float64)
    return state, parts


def _block_sums(block, state):
    return {"sums": _sums(state["W"])}


def _direct_sqerr(block, state, Ht, HHt, n_threads):
    with thread_limits(n_threads):
        return {"sqerr": block.view().direct_sqerr(state["W"], Ht, HHt)}


def _missing_of(block):
    return block.missing


def _missing_terms(missing, state, Ht, n_threads):
    """A block's share of a masked loss's correction (:func:`fastnmf._masked.missing_terms`)
    for the S its last product was made with (kept in its row state by :func:`_rows_call`);
    ``missing``: the block, or its missing set alone (streamed blocks: X not read again)."""
    if isinstance(missing, _Block):
        missing = missing.missing
    if missing is None or "S" not in state:  # (no missing entry in this block)
        return {"terms": 0.0}
    with thread_limits(n_threads):
        return {"terms": missing_terms(missing, int(state["S_side"]), state["S"], state["W"],
                                       Ht)}


class BlockRows:
    """The handle of W's rows: one row state per row block of X, each where that block is.

    What a solver loop passes for W over :class:`DaskData`.  A row state is a
    dict of arrays with as many rows as the block: ``"W"``, and what the
    solver keeps per row between steps (e.g. MU's numerator of W).  The handle
    remembers ``(Σ W, ‖W‖²)`` from the last step, for the penalties.
    """

    def __init__(self, data, parts):
        self.data = data
        self.parts = parts
        self.shape = (data.shape[0], data.rank)
        self.dtype = data.dtype
        self.sums = None

    def penalty(self, l1, l2) -> float:
        """``l1‖W‖₁ + ½l2‖W‖²`` (see :func:`fastnmf.solvers._penalty.factor_penalty`)."""
        if self.sums is None:
            self.sums = self.data.blocks.reduce(_block_sums, self.parts)["sums"]
        return l1 * float(self.sums[0]) + 0.5 * l2 * float(self.sums[1])

    def _factors(self):
        return [self.data.blocks.dask.delayed(_get_W, pure=True)(p) for p in self.parts]

    def to_dask(self):
        """W as a dask array whose row chunks are X's (persisted where they were made)."""
        return self.data.blocks.as_dask_array(self._factors(), self.shape[1], self.dtype)

    def gather(self) -> np.ndarray:
        return self.data.blocks.gather(self._factors())

    def whole(self):
        """All of W (m×r) as one task's result, assembled on the cluster (not the client)
        from the row states: what a column block's task needs of W."""
        return self.data.blocks.dask.delayed(_whole_W, pure=False)(self.parts)


def _get_W(state):
    return state["W"]


def _whole_W(states):
    return np.concatenate([state["W"] for state in states])


def _state_of(W):
    return {"W": W}


class _BlockSide:
    """A solver's side (``cls``, e.g. :class:`fastnmf.solvers.kl.MURows`) run on every
    block with that block's row state: ``side.<method>(*args)`` runs
    ``cls(block_data, state_block).<method>(*args)`` in one task per block, placed where
    the block is, and returns what the tasks return, tree-summed (float64)."""

    def __init__(self, data, cls):
        self.data, self.cls = data, cls

    def __getattr__(self, method):
        if method.startswith("_"):
            raise AttributeError(method)
        return functools.partial(self._call, method)

    def _args(self, blocks, args):
        """Client arrays as one constant each (copied: the client changes its arrays
        afterwards); the handle of W's rows as all of W, assembled on the cluster."""
        return tuple(blocks.constant(a.copy()) if isinstance(a, np.ndarray)
                     else a.whole() if isinstance(a, BlockRows) else a for a in args)

    @staticmethod
    def _results(total):
        (is_tuple, n), = total["form"]
        out = tuple(total.get(i) for i in range(n))
        return out if is_tuple else out[0]


class BlockRowSide(_BlockSide):
    """W's side on the row blocks of X (:func:`fastnmf.solvers._rows.row_side`): the W
    half-step is the solver's own code, on each block, and the new row states stay where
    they were made (``X Hᵀ`` and the like never leave the workers)."""

    def __init__(self, data, W, cls):
        super().__init__(data, cls)
        self.W = W

    def _call(self, method, *args):
        blocks = self.data.blocks
        parts, tot = blocks.step(_rows_call, self.W.parts, self.cls, method,
                                 self._args(blocks, args), blocks.n_threads)
        self.W.parts, self.W.sums = parts, tot["sums"]
        return self._results(tot)

    def view(self):
        """W as the callback sees it: a dask array."""
        return self.W.to_dask()


class BlockColumnSide(_BlockSide):
    """H's side on the column blocks of X (:func:`fastnmf.solvers._rows.column_side`),
    held as row blocks of Xᵀ: ``cls`` runs on each with that block's rows of Ht as its
    row state (``{"W": Ht_block}``) and, for the handle of W's rows in the arguments,
    all of W, assembled once per call on the cluster and sent to each worker that holds
    column blocks.  The new rows of Ht come back to the client and are written into
    ``Ht`` (in place, as the in-memory side does)."""

    def __init__(self, data, Ht, cls):
        super().__init__(data, cls)
        self.Ht = Ht

    def _call(self, method, *args):
        blocks = self.data.columns
        states = [blocks.constant({"W": np.ascontiguousarray(self.Ht[a:b])})
                  for a, b in zip(blocks.offsets[:-1], blocks.offsets[1:], strict=True)]
        new, tot = blocks.run(_rows_call, states, self.cls, method,
                              self._args(blocks, args), blocks.n_threads)
        self.Ht[...] = np.concatenate([state["W"] for state in new])
        return self._results(tot)


class DaskData:
    """Row-partitioned X on Dask as a data product: what the solver loops ask of X.

    The W half-steps run where W's rows are (:meth:`row_side`); H's half-steps that
    need whole columns of X (KL coordinate descent) run where X's column blocks are
    (:meth:`column_side`), on ``columns``: a second copy of X, partitioned by columns,
    made only for those; ``sqnorm``, ``nonzeros`` and the backend come from one pass
    over the row blocks when X is prepared; ``‖X − WH‖²`` is summed from the blocks.
    """

    is_sparse = False

    def __init__(self, blocks, dtype, rank, columns=None):
        self.blocks = blocks
        self.columns = columns
        self.shape = (int(blocks.offsets[-1]), blocks.n_cols)
        self.dtype = np.dtype(dtype)
        self.rank = rank
        self.stats = blocks.reduce(_block_stats)
        self.sqnorm = self.stats["sqnorm"]
        self.nonzeros = self.stats["nnz"]
        backends = sorted(self.stats["backend"])
        self.backend = backends[0] if len(backends) == 1 else "mixed"

    def mean(self) -> float:
        return self.stats["sum"] / (self.shape[0] * self.shape[1])

    def max(self) -> float:
        return max(self.stats["max"])

    def rows(self, W: np.ndarray) -> BlockRows:
        """W (m×r, on the client) sent out as one block of rows per block of X."""
        task = self.blocks.dask.delayed(_state_of, pure=True)
        return BlockRows(self, [task(w) for w in self.blocks.split(W)])

    def row_side(self, W: BlockRows, cls) -> BlockRowSide:
        return BlockRowSide(self, W, cls)

    def column_side(self, Ht: np.ndarray, cls) -> BlockColumnSide:
        if self.columns is None:
            raise ValueError("this DaskData was prepared without X's column blocks "
                             "(nmf_dask makes them for KL coordinate descent only).")
        return BlockColumnSide(self, Ht, cls)

    def direct_sqerr(self, W: BlockRows, Ht) -> float:
        """‖X − W Htᵀ‖², summed over the row blocks.  Ht's float64 Gram (the n·r² part of
        a sparse block's error, :meth:`fastnmf._data.SparseData.direct_sqerr`) is made
        once here and shared by the blocks, not made again in each."""
        constant = self.blocks.constant
        return self.blocks.reduce(_direct_sqerr, W.parts, constant(Ht.copy()),
                                  constant(gram_f64(Ht)), self.blocks.n_threads)["sqerr"]


class MaskedDaskData(DaskData):
    """:class:`DaskData` of X with missing values: each row block holds X with its
    missing entries zeroed and its missing set, and its tasks compute with a
    :class:`~fastnmf._masked.MaskedData` of it, so the solver loops are those of the
    in-memory masked fit (the row side binds it to the block's W and the Ht it is given).
    ``sqnorm`` is the observed entries'."""

    masked = True

    def correct_sqerr(self, err: float, A, W: BlockRows, Ht) -> float:
        """:meth:`fastnmf._masked.MaskedData.correct_sqerr` summed over the blocks: each
        corrects for the S its last product was made with (``A``, that product summed, is
        not needed: the blocks kept their S)."""
        blocks = self.blocks
        terms = blocks.reduce(_missing_terms, W.parts, blocks.constant(Ht.copy()),
                              blocks.n_threads, over=blocks.missing_sets())["terms"]
        return float(err + terms)
