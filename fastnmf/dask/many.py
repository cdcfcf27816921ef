"""Many independent fits of one in-memory matrix on a Dask cluster: :func:`map_fits`."""

from __future__ import annotations

from .._options import is_dask


def _fit_one(X, rank, seed, nmf_kwargs):
    """One fit, on a worker, through the public API (this package sits below ``nmf()``)."""
    import fastnmf

    return fastnmf.nmf(X, rank, random_state=seed, **nmf_kwargs)


def map_fits(client, X, tasks, nmf_kwargs=None):
    """Run independent fits ``fastnmf.nmf(X, rank, random_state=seed, **nmf_kwargs)`` on a cluster.

    X is sent to every worker once (``client.scatter(X, broadcast=True)``),
    then each fit is one task; Dask spreads them over the workers and runs a
    lost one again if a worker dies.

    Parameters
    ----------
    client : dask.distributed.Client
    X : ndarray or scipy sparse matrix
        The data, small enough for one worker's memory (for one matrix too
        large for a machine, pass a dask array to :func:`fastnmf.nmf`).
    tasks : sequence of (rank, run, seed)
        One fit per item, e.g. from ``fastnmf.many.run_seeds``; ``run`` only
        labels the fit.
    nmf_kwargs : dict, optional
        Keyword arguments for :func:`fastnmf.nmf`.  Without ``n_threads``, each
        fit runs on one thread: the workers' task slots are the parallelism
        (a fit on one thread gives the same result as with more, to round-off).

    Returns
    -------
    list of NMFResult
        In the order of ``tasks``.
    """
    kwargs = dict(nmf_kwargs or {})
    if "random_state" in kwargs:
        raise ValueError("map_fits takes each fit's seed from tasks; remove random_state "
                         "from nmf_kwargs.")
    if is_dask(X):
        raise TypeError("map_fits sends X whole to every worker: pass a numpy array or a "
                        "scipy sparse matrix (compute the dask array first).")
    kwargs.setdefault("n_threads", 1)
    tasks = [(int(rank), run, int(seed)) for rank, run, seed in tasks]
    if not tasks:
        return []
    X_remote = client.scatter(X, broadcast=True)
    futures = [client.submit(_fit_one, X_remote, rank, seed, kwargs, pure=False)
               for rank, _, seed in tasks]
    try:
        return client.gather(futures)
    finally:
        client.cancel([*futures, X_remote])
