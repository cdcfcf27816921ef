"""Choosing the rank: cross-validation, consensus clustering, component stability.

:func:`select_rank` fits X at every candidate rank, many times, through
:func:`fastnmf.fit_many` (one progress bar over the whole sweep) and scores
each rank by one or more methods:

* ``"cv"``: masked cross-validation with a *speckled* held-out set (a random
  ``holdout`` fraction of all entries, zeros included; Wold 1978, Owen & Perry
  2009).  Each rank is fitted on the other entries only (missing values,
  :func:`fastnmf.nmf` ``missing=``) and scored by its relative error on the
  held-out entries, ``‖P∘(X − WH)‖ / ‖P∘X‖`` (with the KL loss, by their
  KL divergence).  Training error keeps falling with the rank; test error
  falls while the rank adds signal and is flat within noise, or rises, once
  it fits noise: the smallest rank as good as the best suggests the rank.
* ``"consensus"`` (Brunet et al., PNAS 2004): each run clusters the samples
  by their largest coefficient; the consensus matrix ``C[i, j]`` is the
  fraction of runs that put samples ``i`` and ``j`` together.  Scores: the
  cophenetic correlation of ``1 − C`` under average linkage (1 for a
  perfectly stable clustering), and the dispersion
  ``mean(4 (C − ½)²)`` (Kim & Park 2007; 1 when every entry is 0 or 1).
* ``"stability"`` (as cNMF, Kotliar et al. 2019): the components of all
  runs, each normalized to unit length, are clustered into ``rank`` groups
  by k-means; the mean silhouette is near 1 when every run finds the same
  components.

Which axis holds the samples: as everywhere else in fastnmf (the estimator,
:mod:`fastnmf.cluster`) and in scikit-learn, the *rows* of X are the samples
by default (``samples="rows"``: labels from the argmax of each row of W;
components are the rows of H).  Brunet's X is genes × samples: pass
``samples="columns"`` for that layout (labels from the columns of H;
components are the columns of W).

Which rank each method suggests is a rule applied to the curves
(:data:`RULES`, :meth:`RankSelection.suggested`); the rules were chosen on
the planted panel of ``benchmarks/rank_recovery.py`` (docs/rank-selection.md
has the table).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from . import _validation as v
from ._masked import _pattern_from_coords, _union, check_data, masked_solver, values_at
from .init import check_random_state
from .many import ManyFits, _check_ranks, _progress, fit_many

METHODS = ("cv", "consensus", "stability")

# The consensus matrix is samples × samples (float64): 20000 samples take 3.2 GB.
MAX_CONSENSUS_SAMPLES = 20_000

# CV: a rank is as good as the best when its mean held-out error is within
# CV_TOLERANCE (relative) or one standard error of the best (see RULES).
CV_TOLERANCE = 0.02
# Consensus / stability: scores within SCORE_TOLERANCE count as equal, and a
# fall of more than that from one rank to the next is a drop.
SCORE_TOLERANCE = 0.02

RULES = {
    "cv": ("the smallest rank whose mean held-out error is within one standard error "
           "(over the repeats) of the lowest, or within {tol:.0%} of the curve's fall "
           "(highest minus lowest mean error)"),
    "consensus": ("the rank with the highest dispersion (the smallest of equal ones), "
                  "where the consensus is crispest before it falls"),
    "stability": ("the rank before the largest drop of the silhouette to the next rank "
                  "(the first of equal drops); without a drop over {stol}, the smallest "
                  "rank within {stol} of the highest silhouette"),
    "combined": ("among the ranks the cv rule finds as good as the best (by held-out "
                 "error), the one with the highest silhouette (ties to the smaller rank)"),
}


def speckled_holdout(shape, fraction, random_state=None):
    """A random held-out set: each entry of an ``shape`` matrix with probability ``fraction``.

    Returns a :class:`~fastnmf._masked.Pattern` (CSR structure, never a
    dense mask), so it also serves large sparse matrices.  Rows or columns
    may end up fully held out when they are short; their factors are then
    not fitted to data and their test error is the start's.
    """
    fraction = v.check_nonneg_float(fraction, "holdout")
    if not 0 < fraction < 1:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {fraction}.")
    rng = check_random_state(random_state)
    m, n = shape
    size = m * n
    k = max(1, int(rng.binomial(size, fraction)))
    picked = np.empty(0, dtype=np.int64)
    while picked.shape[0] < k:  # draw with replacement until k distinct positions
        extra = int(1.1 * (k - picked.shape[0])) + 16
        picked = np.union1d(picked, rng.randint(0, size, size=extra, dtype=np.int64))
    if picked.shape[0] > k:
        picked = np.sort(rng.choice(picked, size=k, replace=False))
    return _pattern_from_coords(picked // n, picked % n, (m, n), canonical=True)


def heldout_error(X, W, H, pattern) -> float:
    """Relative error on the held-out entries: ``‖P∘(X − WH)‖ / ‖P∘X‖``."""
    from . import kernels
    from ._chunks import nnz_bounds

    x = np.ascontiguousarray(values_at(X, pattern), dtype=W.dtype)
    Ht = np.ascontiguousarray(H.T)
    res, _, _, xx = kernels.sampled_moments(pattern.indptr, pattern.indices, x,
                                            np.ascontiguousarray(W), Ht,
                                            nnz_bounds(pattern.indptr)).sum(0)
    return float(np.sqrt(res / xx)) if xx > 0 else float(np.sqrt(res))


def heldout_kl(X, W, H, pattern, chunk=1 << 20) -> float:
    """Held-out error for the KL loss: ``sqrt(2 D / Σ x)`` over the pattern's entries,
    ``D = Σ x log(x / wh) − x + wh`` (scikit-learn's guards: ``wh`` at least float32's
    epsilon, ``x log x`` taken as 0 where ``x`` is)."""
    eps = float(np.finfo(np.float32).eps)
    x_all = np.asarray(values_at(X, pattern), dtype=np.float64)
    rows, cols = pattern.rows(), pattern.indices
    W = np.asarray(W, dtype=np.float64)
    Ht = np.asarray(H, dtype=np.float64).T
    div = 0.0
    for a in range(0, x_all.shape[0], chunk):  # (chunk × r) temporaries, not (nnz × r)
        x = x_all[a:a + chunk]
        wh = np.maximum(np.einsum("ij,ij->i", W[rows[a:a + chunk]], Ht[cols[a:a + chunk]]),
                        eps)
        pos = x > eps
        div += float(np.sum(x[pos] * np.log(x[pos] / wh[pos])) - x.sum() + wh.sum())
    total = float(x_all.sum())
    return float(np.sqrt(2.0 * max(div, 0.0) / total)) if total > 0 else float(
        np.sqrt(2.0 * max(div, 0.0)))


def consensus_matrix(labels: np.ndarray) -> np.ndarray:
    """``C[i, j]`` = fraction of runs (rows of ``labels``) that give ``i`` and ``j`` one label."""
    labels = np.asarray(labels)
    n_runs, n_samples = labels.shape
    C = np.zeros((n_samples, n_samples), dtype=np.float64)
    for run in labels:
        onehot = (run[:, None] == np.unique(run)[None, :]).astype(np.float64)
        C += onehot @ onehot.T
    return C / n_runs


def cophenetic(C: np.ndarray) -> float:
    """Cophenetic correlation of the distances ``1 − C`` under average linkage (Brunet 2004).

    NaN when all distances are equal (e.g. rank 1: one cluster).
    """
    from scipy.cluster.hierarchy import cophenet, linkage
    from scipy.spatial.distance import squareform

    D = 1.0 - C
    np.fill_diagonal(D, 0.0)
    d = squareform(D, checks=False)
    if d.size < 2 or np.ptp(d) == 0:
        return float("nan")
    coph, _ = cophenet(linkage(d, method="average"), d)
    return float(coph)


def dispersion(C: np.ndarray) -> float:
    """Kim & Park's dispersion ``mean(4 (C − ½)²)``: 1 for a crisp consensus, 0 for C = ½."""
    return float(np.mean(4.0 * (C - 0.5) ** 2))


def component_silhouette(components: np.ndarray, rank: int, random_state=0) -> float:
    """Mean silhouette of the components of all runs clustered into ``rank`` groups.

    ``components`` holds one component per row (n_runs·rank of them); each is
    scaled to unit length (NMF leaves the scale free), clustered by k-means,
    and scored by :func:`sklearn.metrics.silhouette_score`.  NaN for rank 1.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    if rank < 2 or components.shape[0] <= rank:
        return float("nan")
    norms = np.linalg.norm(components, axis=1, keepdims=True)
    V = components / np.where(norms > 0, norms, 1.0)
    labels = KMeans(n_clusters=rank, n_init=10, random_state=random_state).fit_predict(V)
    if np.unique(labels).size < 2:
        return float("nan")
    return float(silhouette_score(V, labels))


@dataclass
class RankSelection:
    """The outcome of :func:`select_rank`.

    Attributes
    ----------
    ranks : tuple of int
    methods : tuple of str
    table : list of dict
        One row per rank.  ``"cv"``: ``train_error``, ``test_error`` (means
        over repeats of the relative errors on the training and held-out
        entries) and ``test_error_std``.  ``"consensus"``: ``cophenetic``,
        ``dispersion``.  ``"stability"``: ``silhouette``.  With consensus or
        stability also ``loss`` and ``relative_error`` of the best full fit.
    cv_folds : list of dict
        ``"cv"``: one row per (repeat, rank) with ``train_error`` and
        ``test_error``.
    consensus : dict of int to ndarray
        ``"consensus"``: the consensus matrix of each rank (samples × samples).
    fits : ManyFits or None
        The full-data fits behind consensus and stability.
    samples : {"columns", "rows"}
    """

    ranks: tuple
    methods: tuple
    table: list
    cv_folds: list = field(default_factory=list, repr=False)
    consensus: dict = field(default_factory=dict, repr=False)
    fits: ManyFits | None = field(default=None, repr=False)
    samples: str = "rows"
    cv_tol: float = CV_TOLERANCE

    def column(self, name: str) -> np.ndarray:
        """One column of :attr:`table` as an array (NaN where a rank has no value)."""
        if not any(name in row for row in self.table):
            raise KeyError(f"no column {name!r}; columns: {list(self.table[0])}.")
        return np.array([row.get(name, np.nan) for row in self.table], dtype=np.float64)

    def to_records(self) -> np.recarray:
        """:attr:`table` as a NumPy record array."""
        names = list(self.table[0])
        dtype = [("rank", np.int64)] + [(k, np.float64) for k in names if k != "rank"]
        return np.rec.fromrecords([tuple(row[k] for k in names) for row in self.table],
                                  dtype=dtype)

    def default_method(self) -> str:
        """The method :meth:`suggested` uses by default: ``"combined"`` when both
        ``"cv"`` and ``"stability"`` ran, else ``"cv"`` when it ran, else the first
        method (on the planted panel cv was right far more often than consensus or
        stability alone, and cv with stability as often as cv, closer when not)."""
        if "cv" in self.methods and "stability" in self.methods:
            return "combined"
        return "cv" if "cv" in self.methods else self.methods[0]

    def rule(self, method: str | None = None) -> str:
        """The rule behind :meth:`suggested` for ``method``, in words."""
        method = self._check_method(method)
        return RULES[method].format(tol=self.cv_tol, stol=SCORE_TOLERANCE)

    def _check_method(self, method):
        method = self.default_method() if method is None else method
        ran = self.methods + (("combined",) if self.default_method() == "combined" else ())
        if method not in ran:
            raise ValueError(f"method {method!r} was not run; methods: {list(ran)}.")
        return method

    def suggested(self, method: str | None = None) -> int:
        """The rank a method points to (a rule applied to the curves: look at them too).

        Rules (:data:`RULES`; :meth:`rule` says which one gave the answer):

        * ``"cv"``: the smallest rank whose mean held-out error is within one
          standard error (over the repeats) of the lowest, or within
          ``cv_tol`` (2 %) of the curve's fall (highest minus lowest mean
          error) above it.  The lowest error itself picks noise: past the
          true rank the curve is flat within noise, and its minimum wanders up.
        * ``"consensus"``: the rank with the highest dispersion (Kim & Park's
          score; the smallest of equal ones), where the consensus is crispest
          before it falls.  (The cophenetic correlation, Brunet et al.'s score,
          stays near 1 past the true rank on the panel and was right less
          often under every rule tried.)
        * ``"stability"``: the rank before the largest drop of the silhouette
          from one rank to the next (the first of equal drops); without a
          drop of more than 0.02, the smallest rank within 0.02 of the highest.
        * ``"combined"`` (the default when ``"cv"`` and ``"stability"`` both
          ran): among the ranks the cv rule finds as good as the best, the
          one with the highest silhouette (ties to the smaller rank).

        Measured on the planted panel of ``benchmarks/rank_recovery.py``
        (75 cases: Gaussian-noise mixtures at three noise levels, dense and
        sparse Poisson counts with KL, clustered and near-separable data,
        ranks 3–15, a third of them with the planted rank the smallest tried;
        docs/rank-selection.md has the table by kind), exact / within ±1:
        cv 96 % / 96 %, combined 96 % / 97 %, consensus 61 % / 75 %,
        stability 69 % / 87 %.  Every miss of cv was on sparse counts with
        0.15 counts per entry (ranks 6 and 10), where the held-out KL was
        flat from the smallest rank tried.  Consensus and
        stability measure how reproducible a clustering or the parts are,
        which a mixture often is at fewer components than planted.

        Parameters
        ----------
        method : {"cv", "consensus", "stability", "combined"} or None
            None: :meth:`default_method`.
        """
        method = self._check_method(method)
        ranks, order = self._sorted_ranks()
        if method in ("cv", "combined"):
            good = _cv_good(self.column("test_error")[order],
                            self.column("test_error_std")[order], self._n_repeats(),
                            self.cv_tol)
            if method == "cv":
                return int(ranks[good][0])
            sil = self.column("silhouette")[order]
            if np.all(np.isnan(sil[good])):
                return int(ranks[good][0])
            best = np.nanmax(sil[good])
            return int(ranks[good & (sil >= best - 1e-12)][0])
        score = self.column("dispersion" if method == "consensus" else "silhouette")[order]
        if np.all(np.isnan(score)):
            raise ValueError(f"no {method} score is defined (ranks {list(self.ranks)}).")
        if method == "consensus":
            return int(ranks[np.nanargmax(score)])
        return int(ranks[_before_drop(score)])

    def range_note(self) -> str | None:
        """A note when the ranks tried may not reach far enough for cross-validation: the
        lowest mean held-out error is at the smallest rank tried (a smaller rank may
        predict better still; on counts with few per entry the rank the data can
        estimate may lie below the one that made them, docs/rank-selection.md) or at
        the largest (the error may still fall past it).  None when the lowest error
        lies inside the range, or without cross-validation or a second rank;
        :func:`select_rank` warns with it."""
        if "cv" not in self.methods or len(self.ranks) < 2:
            return None
        ranks, order = self._sorted_ranks()
        err = self.column("test_error")[order]
        lowest = int(np.argmin(err))
        if lowest == 0 and ranks[0] > 1:
            return (f"the held-out error is lowest at the smallest rank tried ({ranks[0]}): "
                    f"a smaller rank may predict better; try ranks below {ranks[0]}.")
        if lowest == ranks.size - 1:
            return (f"the held-out error is lowest at the largest rank tried ({ranks[-1]}) "
                    f"and may still fall; try ranks above {ranks[-1]}.")
        return None

    def _sorted_ranks(self):
        """The ranks in increasing order, and the order that sorts :attr:`table`'s rows."""
        order = np.argsort(np.array(self.ranks))
        return np.array(self.ranks)[order], order

    def _n_repeats(self) -> int:
        return max(1, len({row["repeat"] for row in self.cv_folds}))

    def plot(self, fig=None):
        """Plot each method's curves against the rank (matplotlib; returns the figure)."""
        import matplotlib.pyplot as plt

        panels = []
        if "cv" in self.methods:
            panels.append(("cross-validation", [("train_error", "train"),
                                                ("test_error", "test (held out)")],
                           "relative error"))
        if "consensus" in self.methods:
            panels.append(("consensus", [("cophenetic", "cophenetic"),
                                         ("dispersion", "dispersion")], "score"))
        if "stability" in self.methods:
            panels.append(("stability", [("silhouette", "silhouette")], "mean silhouette"))
        if fig is None:
            fig = plt.figure(figsize=(4.2 * len(panels), 3.4))
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        ranks, order = self._sorted_ranks()
        for ax, (title, columns, ylabel) in zip(axes, panels, strict=True):
            for key, label in columns:
                ax.plot(ranks, self.column(key)[order], "o-", label=label)
            if title == "cross-validation":
                std = self.column("test_error_std")[order]
                mean = self.column("test_error")[order]
                ax.fill_between(ranks, mean - std, mean + std, alpha=0.2)
            method = {"cross-validation": "cv"}.get(title, title)
            chosen = self.suggested(method)
            ax.axvline(chosen, color="0.3", linestyle="--", linewidth=1,
                       label=f"suggested: {chosen}")
            ax.set_title(title)
            ax.set_xlabel("rank")
            ax.set_ylabel(ylabel)
            ax.set_xticks(ranks)
            ax.legend()
        if self.default_method() == "combined":
            fig.suptitle(f"suggested rank (cv and stability combined): "
                         f"{self.suggested('combined')}")
        fig.tight_layout()
        return fig


def _cv_good(mean, std, n_repeats, tol) -> np.ndarray:
    """Ranks (in order) whose mean held-out error is within one standard error of the
    lowest, or within ``tol`` of the curve's fall (highest minus lowest) above it.

    The fall, not the lowest error, sets the scale: at low noise the errors past
    the true rank are tiny and differ by several percent of themselves (0.0082,
    0.0080, 0.0078), a negligible part of the fall from 0.42."""
    best = int(np.nanargmin(mean))
    se = std[best] / np.sqrt(n_repeats) if n_repeats > 1 else 0.0
    fall = np.nanmax(mean) - mean[best]
    return mean <= mean[best] + max(se, tol * fall)


def _before_drop(score) -> int:
    """Index of the rank before the largest drop of ``score`` to the next rank (the
    first of equal drops); without a drop over SCORE_TOLERANCE, the first index
    within SCORE_TOLERANCE of the highest.  NaN scores (rank 1) count as 0."""
    s = np.nan_to_num(score, nan=0.0)
    drops = s[:-1] - s[1:]
    if drops.size and drops.max() > SCORE_TOLERANCE:
        return int(np.argmax(drops))
    return int(np.flatnonzero(s >= s.max() - SCORE_TOLERANCE)[0])


def _check_methods(method) -> tuple[str, ...]:
    methods = (method,) if isinstance(method, str) else tuple(method)
    if not methods:
        raise ValueError(f"method is empty: give one or more of {list(METHODS)}.")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)} (or a list of them), "
                             f"got {m!r}.")
    return tuple(dict.fromkeys(methods))


def select_rank(X, ranks, method="cv", *, n_runs=10, n_repeats=3, holdout=0.1,
                cv_runs=1, samples="rows", cv_tol=CV_TOLERANCE, mask=None, missing=None,
                random_state=None, n_jobs=None, client=None, progress=False,
                **nmf_kwargs) -> RankSelection:
    """Score candidate ranks of ``X ≈ WH`` by cross-validation, consensus or stability.

    Parameters
    ----------
    X : array-like or scipy sparse matrix of shape (n_samples, n_features)
    ranks : int or sequence of int
        Candidate ranks, e.g. ``range(2, 11)``; each at most ``min(X.shape)``.
    method : {"cv", "consensus", "stability"} or a list of them
        See the module notes.  Consensus and stability share their fits.
    n_runs : int, default=10
        Consensus and stability: fits per rank on all of X.
    n_repeats : int, default=3
        Cross-validation: held-out sets (a fresh speckled set each).
    holdout : float, default=0.1
        Cross-validation: fraction of the entries held out, in (0, 1).
    cv_runs : int, default=1
        Cross-validation: fits per rank and repeat; the one with the lowest
        training loss is scored.
    samples : {"rows", "columns"}, default="rows"
        Consensus and stability: which axis of X holds the samples to
        cluster.  Rows, as in scikit-learn, :class:`fastnmf.NMF` and
        :mod:`fastnmf.cluster`; columns for Brunet et al.'s genes × samples.
    cv_tol : float, default=0.02
        Cross-validation: the relative tolerance of the suggestion rule
        (:meth:`RankSelection.suggested`).
    mask, missing
        X's own missing values, as in :func:`fastnmf.nmf`: left out of every
        fit, never held out or scored.  Every row and column needs an
        observed entry.
    random_state : int, RandomState instance or None
        Seed of the held-out sets and of every fit.
    n_jobs, client
        How the fits run (:func:`fastnmf.fit_many`).
    progress : bool
        One progress bar over all fits of the sweep.
    **nmf_kwargs
        Passed to every fit (``beta_loss``, ``solver``, ``max_iter``, ``tol``,
        ``init``, ...).  Consensus and stability default to ``init="random"``
        so that runs differ (NNDSVD starts are nearly the same every time).
        Every fit defaults to ``accelerate="sweeps"`` (not the package's
        ``"auto"``): extrapolation sends runs on non-identifiable data to other
        points of equal error, which blurs consensus (docs/algorithms.md), and
        the rules' accuracies were measured with the sweeps.
        With ``beta_loss="kullback-leibler"`` cross-validation fits with the
        masked multiplicative updates and scores the held-out entries by
        their KL divergence (``test_error`` is ``sqrt(2·KL / Σx)`` over the
        held-out entries; ``train_error`` stays the relative Frobenius error).

    Returns
    -------
    RankSelection
        ``.table`` (one dict per rank), ``.suggested()``, ``.rule()``, ``.plot()``.

    Raises
    ------
    ValueError
        Before any fit, for a rank out of range or above ``min(X.shape)``,
        ``holdout`` outside (0, 1), ``n_runs``/``n_repeats``/``cv_runs`` < 1,
        a row or column of X with no observed entry, or too many samples for
        a consensus matrix.

    Warns
    -----
    UserWarning
        When cross-validation's lowest mean held-out error is at the smallest or
        the largest rank tried (:meth:`RankSelection.range_note`): the range may
        not reach the best rank.

    Examples
    --------
    >>> import numpy as np
    >>> from fastnmf import select_rank
    >>> rng = np.random.default_rng(0)
    >>> X = rng.random((60, 3)) @ rng.random((3, 50)) + 0.05 * rng.random((60, 50))
    >>> sel = select_rank(X, [2, 3, 4, 5], method="cv", random_state=0, max_iter=300)
    >>> sel.suggested()
    3
    """
    methods = _check_methods(method)
    ranks = _check_ranks(ranks)
    n_runs = v.check_positive_int(n_runs, "n_runs")
    n_repeats = v.check_positive_int(n_repeats, "n_repeats")
    cv_runs = v.check_positive_int(cv_runs, "cv_runs")
    cv_tol = v.check_nonneg_float(cv_tol, "cv_tol")
    v.check_option(samples, "samples", ("columns", "rows"))
    if "cv" in methods:
        holdout = v.check_nonneg_float(holdout, "holdout")
        if not 0 < holdout < 1:
            raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout}.")
    if "cv" in methods or mask is not None or missing is not None:
        _check_masked_options(nmf_kwargs)
    nmf_kwargs = {"accelerate": "sweeps", **nmf_kwargs}  # see **nmf_kwargs above
    rng = check_random_state(random_state)
    X, _, own = check_data(X, mask, missing)
    m, n = X.shape
    too_big = [r for r in ranks if r > min(m, n)]
    if too_big:
        raise ValueError(f"ranks {too_big} exceed min(X.shape) = {min(m, n)} (X is {m}×{n}): "
                         "a rank above the smaller side cannot be identified.")
    if own is not None:
        _check_observed(own)
    n_samples = n if samples == "columns" else m
    clustered = [m for m in methods if m != "cv"]
    if "consensus" in clustered and n_samples > MAX_CONSENSUS_SAMPLES:
        raise ValueError(
            f"consensus needs a {n_samples}×{n_samples} matrix; at most "
            f"{MAX_CONSENSUS_SAMPLES} samples are supported (check samples={samples!r}, or "
            "subsample).")

    total = (len(ranks) * n_repeats * cv_runs if "cv" in methods else 0) + (
        len(ranks) * n_runs if clustered else 0)
    bar, own_bar = _progress(progress, total)
    common = {"n_jobs": n_jobs, "client": client, "progress": bar}
    rows = {rank: {"rank": rank} for rank in ranks}
    result = RankSelection(ranks=ranks, methods=methods, table=[], samples=samples,
                           cv_tol=cv_tol)
    try:
        if "cv" in methods:
            _cross_validate(X, own, ranks, n_repeats, holdout, cv_runs, rng, rows, result,
                            common, nmf_kwargs)
        if clustered:
            kwargs = {"init": "random", **nmf_kwargs}
            fits = fit_many(X, ranks, n_runs=n_runs, random_state=rng.randint(2**31 - 1),
                            missing=own, **common, **kwargs)
            result.fits = fits
            for rank in ranks:
                best = fits.best(rank)
                rows[rank].update(loss=best.loss, relative_error=best.relative_error)
                runs = fits.runs(rank)
                if "consensus" in methods:
                    labels = np.array([np.argmax(res.H, axis=0) if samples == "columns"
                                       else np.argmax(res.W, axis=1) for res in runs])
                    C = consensus_matrix(labels)
                    result.consensus[rank] = C
                    rows[rank].update(cophenetic=cophenetic(C), dispersion=dispersion(C))
                if "stability" in methods:
                    comps = np.concatenate([res.W.T if samples == "columns" else res.H
                                            for res in runs]).astype(np.float64)
                    rows[rank]["silhouette"] = component_silhouette(comps, rank)
    finally:
        if own_bar:
            bar.close()
    result.table = [rows[rank] for rank in ranks]
    note = result.range_note()
    if note is not None:
        warnings.warn(f"select_rank: {note}", UserWarning, stacklevel=2)
    return result


def _check_masked_options(nmf_kwargs) -> None:
    """Masked fits (cross-validation, X's own missing values): a loss and solver that take
    missing values, checked before any fit (nmf() checks the same, fit by fit)."""
    from .solvers import objective_for

    objective = objective_for(nmf_kwargs.get("beta_loss", "frobenius"))
    if objective.name == "kullback-leibler":
        masked_solver(objective, nmf_kwargs.get("solver"))
    elif objective.name != "frobenius":
        raise ValueError("cross-validation and missing values need beta_loss 'frobenius' or "
                         f"'kullback-leibler', got beta_loss={nmf_kwargs['beta_loss']!r}.")


def _check_observed(pattern) -> None:
    """Refuse a missing set that leaves a row or a column of X with no observed entry."""
    m, n = pattern.shape
    for axis, counts, size in (("row", np.diff(pattern.indptr), n),
                               ("column", np.bincount(pattern.indices, minlength=n), m)):
        empty = np.flatnonzero(counts == size)
        if empty.size:
            raise ValueError(
                f"{axis}s {empty[:5].tolist()}{' ...' if empty.size > 5 else ''} of X have no "
                f"observed entry: their factors cannot be cross-validated or clustered; "
                f"drop them first.")


def _minus(pattern, other):
    """The positions of ``pattern`` that are not in ``other`` (both canonical)."""
    if other is None:
        return pattern
    n = pattern.shape[1]
    lin = pattern.rows() * n + pattern.indices
    keep = ~np.isin(lin, other.rows() * n + other.indices, assume_unique=True)
    return _pattern_from_coords(lin[keep] // n, lin[keep] % n, pattern.shape, canonical=True)


def _cross_validate(X, own, ranks, n_repeats, holdout, cv_runs, rng, rows, result, common,
                    nmf_kwargs):
    from .solvers import objective_for

    kl = objective_for(nmf_kwargs.get("beta_loss", "frobenius")).name == "kullback-leibler"
    train = {rank: [] for rank in ranks}
    test = {rank: [] for rank in ranks}
    for repeat in range(n_repeats):
        scored = _minus(speckled_holdout(X.shape, holdout, rng.randint(2**31 - 1)), own)
        pattern = scored if own is None else _union([scored, own], X.shape)
        fits = fit_many(X, ranks, n_runs=cv_runs, random_state=rng.randint(2**31 - 1),
                        missing=pattern, **common, **nmf_kwargs)
        for rank in ranks:
            best = fits.best(rank)
            err = (heldout_kl if kl else heldout_error)(X, best.W, best.H, scored)
            train[rank].append(best.relative_error)
            test[rank].append(err)
            result.cv_folds.append({"repeat": repeat, "rank": rank,
                                    "train_error": best.relative_error, "test_error": err})
    for rank in ranks:
        rows[rank].update(train_error=float(np.mean(train[rank])),
                          test_error=float(np.mean(test[rank])),
                          test_error_std=float(np.std(test[rank])))
