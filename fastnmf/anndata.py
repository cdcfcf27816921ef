"""NMF of an AnnData object, the factors kept with it (single-cell users; scanpy's habits).

``fastnmf.anndata.nmf(adata, rank)`` fits :func:`fastnmf.nmf` to ``adata.X`` (or
a layer) and writes, as scanpy's ``tl.pca`` does for PCA:

* ``adata.obsm["X_nmf"]``: W, one row per cell (n_obs × rank), the usage of
  each program;
* ``adata.varm["nmf_components"]``: Hᵀ, one row per gene (n_vars × rank), the
  programs themselves;
* ``adata.uns["nmf"]``: the parameters and how the fit ended (loss, relative
  error, iterations, convergence, the loss history).

``nmf`` in the names is ``key_added``.  The ``anndata`` package itself is not
imported: any object with AnnData's ``X``, ``layers``, ``obsm``, ``varm`` and
``uns`` works.
"""

from __future__ import annotations

from ._fit import nmf as _nmf

_NEEDED = ("X", "layers", "obsm", "varm", "uns")


def nmf(adata, rank, *, layer=None, key_added="nmf", copy=False, **kwargs):
    """Factorize an AnnData's counts and store W, H and the fit's record in it.

    Parameters
    ----------
    adata : anndata.AnnData
        Cells × genes.  Never modified unless the fit succeeds (then only
        ``obsm``, ``varm`` and ``uns`` gain the keys below).
    rank : int
        Number of components (programs).
    layer : str or None, default=None
        Fit ``adata.layers[layer]`` instead of ``adata.X`` (e.g. raw counts
        kept in a layer while X holds normalized values).
    key_added : str, default="nmf"
        Names of what is written: ``obsm["X_" + key_added]`` (W),
        ``varm[key_added + "_components"]`` (Hᵀ), ``uns[key_added]``.
    copy : bool, default=False
        Work on a copy of ``adata`` and return it (``adata`` unchanged).
    **kwargs
        Passed to :func:`fastnmf.nmf` (``beta_loss="kullback-leibler"`` for
        counts, ``random_state``, ``max_iter``, ``n_threads``, ``missing``, ...).

    Returns
    -------
    AnnData or None
        The copy when ``copy=True``, else None (``adata`` was updated).

    Examples
    --------
    >>> import anndata, fastnmf.anndata                      # doctest: +SKIP
    >>> fastnmf.anndata.nmf(adata, 10, layer="counts",       # doctest: +SKIP
    ...                     beta_loss="kullback-leibler", random_state=0)
    >>> adata.obsm["X_nmf"].shape, adata.varm["nmf_components"].shape  # doctest: +SKIP
    ((n_obs, 10), (n_vars, 10))
    """
    missing = [name for name in _NEEDED if not hasattr(adata, name)]
    if missing:
        raise TypeError(f"adata must be an AnnData object (it has no {', '.join(missing)}), "
                        f"got {type(adata).__name__}; for an array use fastnmf.nmf(X, rank).")
    if not isinstance(key_added, str) or not key_added:
        raise TypeError(f"key_added must be a non-empty string, got {key_added!r}.")
    if copy:
        adata = adata.copy()
    if layer is None:
        X = adata.X
    elif layer in adata.layers:
        X = adata.layers[layer]
    else:
        raise KeyError(f"layer {layer!r} is not in adata.layers "
                       f"(it has: {', '.join(map(repr, adata.layers.keys())) or 'none'}).")
    res = _nmf(X, rank, **kwargs)
    params = {"rank": res.W.shape[1], "beta_loss": res.beta_loss, "solver": res.solver}
    if layer is not None:
        params["layer"] = layer
    # only plain values: uns is written to .h5ad, which takes no None, callables or masks
    params.update({k: v for k, v in kwargs.items() if isinstance(v, (bool, int, float, str))})
    adata.obsm[f"X_{key_added}"] = res.W
    adata.varm[f"{key_added}_components"] = res.H.T.copy()
    adata.uns[key_added] = {
        "params": params,
        "loss": res.loss,
        "reconstruction_err": res.reconstruction_err,
        "relative_error": res.relative_error,
        "n_iter": res.n_iter,
        "converged": res.converged,
        "stop_reason": res.stop_reason,
        "loss_history": res.history["loss"],
    }
    return adata if copy else None
