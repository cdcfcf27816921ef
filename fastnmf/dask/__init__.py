"""fastnmf on Dask: one row-partitioned matrix larger than a machine, and many fits at once.

Two ways to use a cluster (or Dask's local scheduler), both on Dask's own
scheduler and transport:

* :func:`nmf_dask` (what :func:`fastnmf.nmf` and :class:`fastnmf.NMF` call
  for a ``dask.array.Array``): one fit of a matrix partitioned by rows.  Each
  row block of X keeps its rows of W next to it; per iteration each block
  computes its share of the data products with fastnmf's own kernels, the
  r×n partial sums are tree-summed by Dask, H (r×n) is updated once on the
  client and sent back to the blocks.  The W half-step is exact per block
  (rows of W are independent), so the iterates are those of the
  single-machine fit up to round-off.
* :func:`map_fits`: many independent fits (ranks × restarts), X sent to each
  worker once.

And loaders that build a row-partitioned dask array lazily from files, so X
can be larger than memory: :func:`from_npz_blocks`, :func:`from_zarr`,
:func:`from_hdf5`, plus :func:`write_sparse_blocks` for synthetic data.

The modules: :mod:`.data` (the row-partitioned data product), :mod:`.fit`
(the distributed fit), :mod:`.many` (many fits), :mod:`.io` (loaders).  Dask
is imported inside the functions: ``import fastnmf`` never imports it.
Design and cost model: docs/dask.md.
"""

from .fit import nmf_dask
from .io import from_hdf5, from_npz_blocks, from_zarr, write_sparse_blocks
from .many import map_fits

__all__ = [
    "from_hdf5",
    "from_npz_blocks",
    "from_zarr",
    "map_fits",
    "nmf_dask",
    "write_sparse_blocks",
]
