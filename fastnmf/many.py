"""Many fits of one matrix: restarts and rank sweeps in one call.

:func:`fit_many` validates X (and resolves its missing values) once, then
runs one :func:`fastnmf.nmf` per ``(rank, run)`` with seeds from
:func:`run_seeds`.  Fits run either one after another, each on all cores, or
several at once in Python threads, one core each (the kernels release the
GIL, and :func:`fastnmf.thread_limits` keeps the BLAS and Numba settings of
overlapping fits apart); ``n_jobs=None`` chooses by the size of X (see
``CONCURRENT_MAX_ENTRIES`` and ``CONCURRENT_MAX_NNZ``).  With a Dask
``client`` the fits are spread over a cluster by
:func:`fastnmf.dask.map_fits` with the same seeds.

A fit's result does not depend on how it was scheduled: the same seed gives
the same factors sequentially or concurrently (to round-off when the thread
count of a fit differs, since partial sums are then split differently).
"""

from __future__ import annotations

import numbers
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace

import numba
import numpy as np
from tqdm.auto import tqdm

from . import _validation as v
from ._fit import NMFResult, nmf
from ._masked import PreparedX
from .init import check_random_state

# Fits run concurrently (one thread each) when dense X has at most
# CONCURRENT_MAX_ENTRIES entries or sparse X at most CONCURRENT_MAX_NNZ stored
# entries, else one at a time on all cores.  Measured on the development
# machine (2 cores, OpenBLAS, shared with other jobs, so noisy): 40 HALS fits
# (ranks 2-5 x 10 runs, init="random", tol=1e-4), wall time one at a time on
# 2 threads / two at a time on 1 thread each: dense 200x100 5.4 / 1.3 s,
# 1000x500 41.9 / 10.5 s, 2000x1000 134.9 / 49.2 s, 5000x2000 580 / 211 s;
# sparse 20000x5000 with 2.4e5 nonzeros 13.7 / 9.0 s, with 1.1e6 nonzeros
# 26.9 / 27.2 s.  Small fits cannot keep two cores busy (Python and thread
# start-up per half-step), and on a busy machine a 2-thread parallel region
# waits for its slower thread.  Dense X is shared by the threads (no copy), so
# the dense limit is simply the largest size measured; each thread holds its
# own CSR copy of sparse Xᵀ, and at 1e6 nonzeros the two were equal.
# Script: benchmarks/rank_sweep.py --crossover.
CONCURRENT_MAX_ENTRIES = 10_000_000
CONCURRENT_MAX_NNZ = 1_000_000

def _check_ranks(ranks) -> tuple[int, ...]:
    if isinstance(ranks, numbers.Integral) and not isinstance(ranks, (bool, np.bool_)):
        ranks = (ranks,)
    try:
        ranks = tuple(ranks)
    except TypeError:
        raise TypeError(f"ranks must be an int or a sequence of ints, got {ranks!r}.") from None
    if not ranks:
        raise ValueError("ranks is empty: give at least one rank.")
    ranks = tuple(v.check_rank(r) for r in ranks)
    if len(set(ranks)) != len(ranks):
        raise ValueError(f"ranks has duplicates: {list(ranks)}.")
    return ranks


def run_seeds(random_state, ranks, n_runs) -> list[tuple[int, int, int]]:
    """The fits of a sweep: ``(rank, run, seed)`` for every rank and run, rank-major.

    The seeds are ``check_random_state(random_state).randint(2**31 - 1,
    size=len(ranks) * n_runs)`` (scikit-learn's ``check_random_state``; fastnmf
    has a copy that does not import scikit-learn), so a
    fixed ``random_state`` gives the same fits wherever they run (threads,
    one after another, or a Dask cluster).

    Parameters
    ----------
    random_state : int, RandomState instance or None
    ranks : int or sequence of int
        Distinct ranks, in the order to run them.
    n_runs : int
        Fits per rank.

    Returns
    -------
    list of (int, int, int)
        ``(rank, run, seed)``; item ``i * n_runs + run`` is run ``run`` of
        ``ranks[i]``.

    Examples
    --------
    >>> tasks = run_seeds(0, [2, 3], 2)
    >>> [(rank, run) for rank, run, _ in tasks]
    [(2, 0), (2, 1), (3, 0), (3, 1)]
    >>> tasks == run_seeds(0, [2, 3], 2)
    True
    """
    ranks = _check_ranks(ranks)
    n_runs = v.check_positive_int(n_runs, "n_runs")
    seeds = check_random_state(random_state).randint(np.iinfo(np.int32).max,
                                                     size=len(ranks) * n_runs)
    return [(rank, run, int(seeds[i * n_runs + run]))
            for i, rank in enumerate(ranks) for run in range(n_runs)]


_TABLE_FIELDS = (("rank", np.int64), ("run", np.int64), ("seed", np.int64),
                 ("loss", np.float64), ("relative_error", np.float64),
                 ("n_iter", np.int64), ("converged", np.bool_), ("time", np.float64))


@dataclass
class ManyFits:
    """The outcome of :func:`fit_many`.

    Attributes
    ----------
    tasks : list of (rank, run, seed)
        One per fit, rank-major (:func:`run_seeds`).
    results : list of NMFResult
        In the order of ``tasks``.
    ranks : tuple of int
    n_runs : int
    schedule : {"sequential", "threads", "dask"}
        How the fits ran.
    n_jobs : int
        Fits that ran at once (0 on Dask, where the cluster decides).
    elapsed : float
        Wall time of the whole call, in seconds.
    keep : {"all", "best"}
        ``"best"``: only the best fit of each rank holds its factors; the
        others have ``W = H = None`` (their loss, iterations, history and
        time are kept).
    """

    tasks: list
    results: list = field(repr=False)
    ranks: tuple
    n_runs: int
    schedule: str
    n_jobs: int
    elapsed: float
    keep: str = "all"

    def runs(self, rank: int) -> list[NMFResult]:
        """The fits of one rank, in run order."""
        rank = int(rank)
        if rank not in self.ranks:
            raise KeyError(f"rank {rank} was not fitted; ranks: {list(self.ranks)}.")
        return [res for (r, _, _), res in zip(self.tasks, self.results, strict=True)
                if r == rank]

    def best(self, rank: int) -> NMFResult:
        """The fit of ``rank`` with the lowest loss (the first of equals)."""
        runs = self.runs(rank)
        return runs[int(np.argmin([res.loss for res in runs]))]

    @property
    def best_per_rank(self) -> dict[int, NMFResult]:
        """``{rank: best fit}``."""
        return {rank: self.best(rank) for rank in self.ranks}

    def table(self) -> list[dict]:
        """One dict per fit: rank, run, seed, loss, relative_error, n_iter, converged, time.

        ``time`` is the fit's own wall time (``NMFResult.elapsed``).  A tidy
        table: ``pandas.DataFrame(fits.table())`` if pandas is at hand.
        """
        return [
            {"rank": rank, "run": run, "seed": seed, "loss": res.loss,
             "relative_error": res.relative_error, "n_iter": res.n_iter,
             "converged": res.converged, "time": res.elapsed}
            for (rank, run, seed), res in zip(self.tasks, self.results, strict=True)
        ]

    def to_records(self) -> np.recarray:
        """:meth:`table` as a NumPy record array (``rec.rank``, ``rec.loss``, ...)."""
        rows = [tuple(row.values()) for row in self.table()]
        return np.rec.fromrecords(rows, dtype=list(_TABLE_FIELDS))


def _progress(progress, total):
    """A tqdm bar for ``progress=True``, the caller's own bar as is, or a disabled one."""
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        return progress, False  # the caller's bar (e.g. select_rank's, over its whole sweep)
    return tqdm(total=total, disable=not progress, desc="fits", unit="fit"), True


def _auto_schedule(prepared: PreparedX) -> str:
    if prepared.is_sparse:
        small = prepared.X.nnz <= CONCURRENT_MAX_NNZ
    else:
        small = prepared.X.size <= CONCURRENT_MAX_ENTRIES
    return "threads" if small else "sequential"


class _Results:
    """The results of a sweep as they come in; with ``keep="best"`` a fit's factors are
    dropped as soon as another fit of its rank has a lower loss (the first of equals
    stays, as in :meth:`ManyFits.best`), so a sweep holds one W and H per rank plus
    the fits still running."""

    def __init__(self, tasks, keep):
        self.tasks = tasks
        self.keep = keep
        self.results = [None] * len(tasks)
        self.best = {}  # rank -> index of its best fit so far

    def add(self, i, res):
        self.results[i] = res
        if self.keep == "all":
            return
        rank = self.tasks[i][0]
        j = self.best.get(rank)
        if j is None or (res.loss, i) < (self.results[j].loss, j):
            self.best[rank], loser = i, j
        else:
            loser = i
        if loser is not None:
            self.results[loser] = replace(self.results[loser], W=None, H=None)


def fit_many(X, ranks, *, n_runs=1, random_state=None, n_jobs=None, client=None,
             progress=False, mask=None, missing=None, keep="all", **nmf_kwargs) -> ManyFits:
    """Fit ``X`` at every rank in ``ranks``, ``n_runs`` times each (restarts, rank sweeps).

    X is validated once (and its missing set resolved once); every fit is
    :func:`fastnmf.nmf` with the seed that :func:`run_seeds` gives it.

    Parameters
    ----------
    X : array-like or scipy sparse matrix of shape (n_samples, n_features)
    ranks : int or sequence of int
        Distinct ranks to fit.
    n_runs : int, default=1
        Fits per rank, each from its own seed.  Use ``init="random"`` (in
        ``nmf_kwargs``) for restarts that differ: the default NNDSVDa start
        barely depends on the seed.
    random_state : int, RandomState instance or None
        Seed of the seeds (:func:`run_seeds`).
    n_jobs : int or None
        Fits that run at once, in threads.  ``None``: automatic, i.e. as many
        as Numba has threads when X has at most 10⁷ entries (dense,
        ``CONCURRENT_MAX_ENTRIES``) or 10⁶ stored entries (sparse,
        ``CONCURRENT_MAX_NNZ``), else one at a time on all cores (the
        measured crossover, see the module source).  ``1``: one at a
        time.  Negative: counted from the number of cores, as in joblib.
        Concurrent fits use one thread each unless ``n_threads`` is given.
    client : dask.distributed.Client, optional
        Run the fits on a Dask cluster (:func:`fastnmf.dask.map_fits`) with
        the same seeds; ``n_jobs`` is then ignored.
    progress : bool or tqdm-like
        Show a progress bar over the fits (or update the given bar by one
        per fit).
    mask, missing
        Missing values, as in :func:`fastnmf.nmf` (resolved once).
    keep : {"all", "best"}, default="all"
        ``"best"``: keep the factors of the best fit of each rank only (the
        lowest loss, the first of equals); every other fit's ``W`` and ``H``
        are dropped as soon as a better fit of its rank has finished, so a
        sweep of many restarts holds one pair of factors per rank (plus the
        fits still running) instead of one per fit.  Every fit's loss,
        iterations, history and time stay in ``results`` and :meth:`ManyFits.table`.
    **nmf_kwargs
        Passed to every :func:`fastnmf.nmf` call (``solver``, ``init``,
        ``max_iter``, ``tol``, ``beta_loss``, ``n_threads``, ...).

    Returns
    -------
    ManyFits
        All results, the best per rank, and a tidy table.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnmf import fit_many
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((40, 3)) @ rng.random((3, 30))
    >>> fits = fit_many(X, [2, 3], n_runs=3, random_state=0, init="random", max_iter=50)
    >>> len(fits.results), sorted(fits.best_per_rank)
    (6, [2, 3])
    >>> [row["rank"] for row in fits.table()]
    [2, 2, 2, 3, 3, 3]
    >>> lean = fit_many(X, [2, 3], n_runs=3, random_state=0, init="random", max_iter=50,
    ...                 keep="best")
    >>> sum(res.W is not None for res in lean.results), lean.best(3).W.shape
    (2, (40, 3))
    """
    t0 = time.perf_counter()
    ranks = _check_ranks(ranks)
    n_runs = v.check_positive_int(n_runs, "n_runs")
    v.check_option(keep, "keep", ("all", "best"))
    tasks = run_seeds(random_state, ranks, n_runs)
    prepared = PreparedX(X, mask=mask, missing=missing)
    # Check the options once, before any fit runs (a bad option would otherwise
    # fail len(tasks) times, or on a remote worker).
    if "n_threads" in nmf_kwargs and nmf_kwargs["n_threads"] is not None:
        from ._threads import resolve_n_threads

        resolve_n_threads(nmf_kwargs["n_threads"])

    bar, own_bar = _progress(progress, len(tasks))
    try:
        if client is not None:
            from .dask import map_fits

            kwargs = dict(nmf_kwargs)
            if prepared.masked:
                kwargs["missing"] = prepared.pattern.tocsr()
            results = _Results(tasks, keep)
            for i, res in enumerate(map_fits(client, prepared.X, tasks, kwargs)):
                results.add(i, res)
            bar.update(len(tasks))
            schedule, jobs = "dask", 0
        else:
            jobs = _check_jobs(n_jobs, prepared, len(tasks))
            schedule = "sequential" if jobs == 1 else "threads"
            results = _run_local(prepared, tasks, nmf_kwargs, jobs, bar, _Results(tasks, keep))
    finally:
        if own_bar:
            bar.close()
    return ManyFits(tasks=tasks, results=results.results, ranks=ranks, n_runs=n_runs,
                    schedule=schedule, n_jobs=jobs, elapsed=time.perf_counter() - t0,
                    keep=keep)


def _check_jobs(n_jobs, prepared, n_tasks) -> int:
    cores = numba.config.NUMBA_NUM_THREADS
    if n_jobs is None:
        jobs = numba.get_num_threads() if _auto_schedule(prepared) == "threads" else 1
    else:
        if isinstance(n_jobs, (bool, np.bool_)) or not isinstance(n_jobs, numbers.Integral):
            raise TypeError(f"n_jobs must be an int or None, got {n_jobs!r}.")
        if n_jobs == 0:
            raise ValueError("n_jobs must not be 0 (None chooses automatically).")
        jobs = int(n_jobs) if n_jobs > 0 else max(1, cores + 1 + int(n_jobs))
    return max(1, min(jobs, n_tasks))


def _run_local(prepared, tasks, nmf_kwargs, jobs, bar, results: _Results) -> _Results:
    def one(task):
        rank, _, seed = task
        return nmf(prepared, rank, random_state=seed, **kwargs)

    kwargs = dict(nmf_kwargs)
    if jobs == 1:
        for i, task in enumerate(tasks):
            results.add(i, one(task))
            bar.update(1)
        return results
    if kwargs.get("n_threads") is None:  # concurrent fits: one core each unless told
        kwargs["n_threads"] = 1
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="fastnmf-fit") as pool:
        futures = {pool.submit(one, task): i for i, task in enumerate(tasks)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                if future.exception() is not None:
                    for other in pending:
                        other.cancel()
                    raise future.exception()
                results.add(futures[future], future.result())
                bar.update(1)
    return results
