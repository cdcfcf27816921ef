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

import contextlib
import functools

import numpy as np

from .. import _validation as v
from .._chunks import nnz_bounds
from .._data import SparseData, _canonical_csr, _sqnorm_f64, make_data

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
    """One prepared row block of X (its ``DenseData``/``SparseData``), sized for Dask.

    Dask's scheduler places a task next to the largest inputs it knows of;
    the size of an arbitrary object defaults to its shallow ``sys.getsizeof``
    (tens of bytes), which let the scheduler copy X's blocks between workers
    to sit next to a W block.  Reporting the arrays' bytes keeps every task on
    the worker that holds its block of X.
    """

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data

    def __sizeof__(self):
        if self.data.is_sparse:
            return sum(a.nbytes for arrays in self.data._arrays if arrays for a in arrays)
        return self.data.X.nbytes


class _StreamedSparse(SparseData):
    """A sparse block read for one iteration only (``persist=False``): CSR of Xᵦ, no Xᵦᵀ.

    ``SparseData`` builds the CSR of Xᵀ too, and times gather against scatter
    on its first product of each side; both pay off over a fit, not over the
    one iteration a streamed block lives.  Measured on a 50000×100000 block
    with 5·10⁶ nonzeros (float32, r=10, 2 threads): building the transpose
    0.56 s and the timing 0.35 s, against 0.05 s per product.  So ``X Hᵀ`` is
    gathered from the CSR and ``Xᵀ W`` scattered from it (one private n×r
    copy per thread).
    """

    def __init__(self, X):
        csr = _canonical_csr(X)
        self.shape, self.dtype, self.nnz = csr.shape, csr.dtype, csr.nnz
        self._arrays = ((csr.indptr, csr.indices, csr.data), None)
        self._bounds = (nnz_bounds(csr.indptr), None)
        self._method = {}
        self._scratch = [None, None]

    @functools.cached_property
    def sqnorm(self):  # asked once per fit (the first pass), not at every iteration
        return _sqnorm_f64(self._arrays[0][2])

    def product(self, F, side, out, method=None):
        return super().product(F, side, out, "gather" if side == 0 else "scatter")


def _prepare_block(block, dtype, backend, streamed=False):
    """Validate one row block and build its data products (CSR and CSR of Xᵀ, or dense).

    ``streamed``: the block is read again at every iteration (only the
    Frobenius products are needed): sparse blocks skip the CSR of Xᵀ.
    """
    X, is_sparse = v.check_X(block, "X (a block of the dask array)")
    if X.dtype != dtype:
        X = X.astype(dtype)
    if streamed and backend != "dense" and is_sparse:
        return _Block(_StreamedSparse(X))
    return _Block(make_data(X, is_sparse, backend))


def _block_stats(block):
    """Sum (for the mean of X), ‖X‖², nonzeros and backend of one prepared block."""
    data = block.data
    if data.is_sparse:
        total = float(data._arrays[0][2].sum(dtype=np.float64))
    else:
        total = float(data.X.sum(dtype=np.float64))
    nonzeros = data.nonzeros if hasattr(data, "nonzeros") else data.nnz  # accelerated HALS cost
    return {"sum": total, "sqnorm": data.sqnorm, "nnz": nonzeros,
            "backend": {data.backend}}


def _scale_columns(W, s):
    return W * s


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
    """The row blocks of X as prepared data objects, and how Dask runs tasks on them."""

    def __init__(self, X, dtype, backend, persist, scheduler, n_threads, streamed=False):
        dask, _ = _import_dask()
        self.dask = dask
        self.scheduler = scheduler
        self.client = _client_of(dask, scheduler)
        self.n_threads = n_threads
        rows = [int(c) for c in X.chunks[0]]
        keep = [i for i, c in enumerate(rows) if c > 0]  # empty blocks: nothing to do
        blocks = X.to_delayed()[:, 0]
        self.rows = [rows[i] for i in keep]
        self.offsets = np.concatenate([[0], np.cumsum(self.rows)]).astype(np.int64)
        prepare = dask.delayed(_prepare_block, pure=True)
        self.data = [prepare(blocks[i], dtype, backend, streamed) for i in keep]
        if persist:  # X is loaded and prepared once, then stays where it is
            self.data = list(dask.persist(*self.data, scheduler=scheduler))

    def _homes(self):
        """The worker holding each persisted block of X (None: not known, or no cluster)."""
        if self.client is None:
            return [None] * len(self.data)
        who = self.client.who_has([d.key for d in self.data])
        return [next(iter(who.get(d.key) or ()), None) for d in self.data]

    def _map(self, fn, args, nout=None):
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
        for b, d in enumerate(self.data):
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

    def reduce(self, fn, *args):
        """``Σ_b fn(data_b, *args_b)``, tree-summed by Dask, returned to the client."""
        total = self.tree_sum(self._map(fn, args))
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

    def scale(self, blocks, s):
        task = self.dask.delayed(_scale_columns, pure=False)
        return list(self.dask.persist(*[task(w, s) for w in blocks], scheduler=self.scheduler))

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


def _client_of(dask, scheduler):
    """The ``dask.distributed.Client`` that ``scheduler`` resolves to, or None."""
    get = dask.base.get_scheduler(scheduler=scheduler)
    owner = getattr(get, "__self__", None)
    return owner if type(owner).__name__ == "Client" else None
