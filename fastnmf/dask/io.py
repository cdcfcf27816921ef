"""Row-partitioned dask arrays read lazily from files, so X may be larger than memory.

:func:`from_npz_blocks` (one ``scipy.sparse.save_npz`` file per row block),
:func:`from_zarr`, :func:`from_hdf5`, and :func:`write_sparse_blocks` to write
a synthetic sparse matrix one block at a time.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import scipy.sparse as sp

from .data import _import_dask


def _load_npz(path, dtype):
    X = sp.load_npz(path).tocsr()
    return X.astype(dtype) if X.dtype != dtype else X


def _npz_header(path):
    """Shape, format and dtype of a ``scipy.sparse.save_npz`` file, read without its arrays."""
    with zipfile.ZipFile(path) as zf:
        with zf.open("shape.npy") as f:
            shape = tuple(int(s) for s in np.lib.format.read_array(f))
        with zf.open("format.npy") as f:
            fmt = np.lib.format.read_array(f).item()
            fmt = fmt.decode() if isinstance(fmt, bytes) else str(fmt)
        with zf.open("data.npy") as f:
            version = np.lib.format.read_magic(f)
            reader = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                      else np.lib.format.read_array_header_2_0)
            _, _, dtype = reader(f)
    return shape, fmt, np.dtype(dtype)


def from_npz_blocks(paths, dtype=None):
    """A row-partitioned dask array from ``scipy.sparse.save_npz`` files, one per row block.

    Only the headers are read now; each block is loaded (as CSR) when a task
    needs it, so the matrix may be larger than memory (see ``persist=False``
    in :func:`nmf_dask`).

    Parameters
    ----------
    paths : sequence of str or path-like
        The blocks, top to bottom; all must have the same number of columns.
    dtype : dtype, optional
        Convert each block on load (default: the dtype stored in the files).

    Returns
    -------
    dask.array.Array
        Chunks of rows × all columns, each chunk a ``scipy.sparse.csr_matrix``.
    """
    dask, da = _import_dask()
    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise ValueError("from_npz_blocks needs at least one file.")
    headers = [_npz_header(p) for p in paths]
    n_cols = {h[0][1] for h in headers}
    if len(n_cols) != 1:
        raise ValueError(f"the blocks have different numbers of columns: {sorted(n_cols)}.")
    if dtype is None:
        dtype = np.result_type(*[h[2] for h in headers])
    dtype = np.dtype(dtype)
    load = dask.delayed(_load_npz, pure=True)
    meta = sp.csr_matrix((0, 0), dtype=dtype)
    parts = [da.from_delayed(load(p, dtype), shape=h[0], dtype=dtype, meta=meta)
             for p, h in zip(paths, headers, strict=True)]
    return da.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]


def from_zarr(url, rows_per_block=None, component=None, **kwargs):
    """A row-partitioned dask array from a 2-D dense Zarr array (``dask.array.from_zarr``).

    ``rows_per_block`` (default: the store's row chunk) sets the row blocks;
    each block holds all columns.  Extra keyword arguments go to
    ``dask.array.from_zarr``.
    """
    _, da = _import_dask()
    X = da.from_zarr(url, component=component, **kwargs)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D Zarr array, got shape {X.shape}.")
    rows = rows_per_block or X.chunks[0][0]
    return X.rechunk((rows, -1))


class _HDF5Rows:
    """A lazily opened HDF5 dataset: picklable, opened on the worker that reads it."""

    def __init__(self, path, dataset):
        import h5py

        self.path, self.dataset = os.fspath(path), dataset
        with h5py.File(self.path, "r") as f:
            ds = f[dataset]
            self.shape, self.dtype = ds.shape, ds.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        import h5py

        with h5py.File(self.path, "r") as f:
            return f[self.dataset][key]


def from_hdf5(path, dataset, rows_per_block):
    """A row-partitioned dask array from a 2-D dense HDF5 dataset (needs ``h5py``).

    Each block of ``rows_per_block`` rows is read when a task needs it (the
    file is opened by the task, so this works on any scheduler).
    """
    _, da = _import_dask()
    source = _HDF5Rows(path, dataset)
    if source.ndim != 2:
        raise ValueError(f"expected a 2-D dataset, got shape {source.shape}.")
    stamp = os.stat(source.path)
    dask, _ = _import_dask()
    name = "hdf5-" + dask.base.tokenize(source.path, dataset, stamp.st_mtime_ns, stamp.st_size)
    return da.from_array(source, chunks=(int(rows_per_block), -1), asarray=True, name=name,
                         lock=False)


def write_sparse_blocks(path, shape, nnz, n_blocks, seed=0, rank=10, dtype=np.float32):
    """Write a synthetic nonnegative sparse matrix as ``n_blocks`` ``.npz`` row blocks.

    Each block is generated on its own from ``seed`` (so a matrix larger than
    memory is written one block at a time): about ``nnz·rows/m`` positions
    drawn uniformly, values ``(W H)_ij`` from random nonnegative factors of
    rank ``rank`` (so NMF finds structure).  Duplicate positions are merged,
    so the stored nonzeros are slightly fewer than ``nnz`` when dense-ish.

    Returns
    -------
    list of str
        The block files, top to bottom (pass them to :func:`from_npz_blocks`).
    """
    m, n = (int(s) for s in shape)
    if n_blocks < 1 or n_blocks > m:
        raise ValueError(f"n_blocks must be in [1, {m}], got {n_blocks}.")
    os.makedirs(path, exist_ok=True)
    root = np.random.SeedSequence(seed)
    H_rng, *block_seeds = (np.random.default_rng(s) for s in root.spawn(n_blocks + 1))
    H = H_rng.random((rank, n), dtype=np.float32)
    edges = np.linspace(0, m, n_blocks + 1).round().astype(np.int64)
    paths = []
    for b, rng in enumerate(block_seeds):
        rows = int(edges[b + 1] - edges[b])
        k = round(nnz * rows / m)
        W = rng.random((rows, rank), dtype=np.float32)
        i = rng.integers(0, rows, size=k, dtype=np.int32)
        j = rng.integers(0, n, size=k, dtype=np.int32)
        values = np.einsum("kr,rk->k", W[i], H[:, j]).astype(dtype)
        block = sp.csr_matrix((values, (i, j)), shape=(rows, n))
        block.sum_duplicates()
        file = os.path.join(path, f"block_{b:05d}.npz")
        sp.save_npz(file, block, compressed=False)
        paths.append(file)
    return paths
