"""Soft clustering with NMF: memberships, hard labels and top terms.

In ``X ≈ W H`` with rows of X as items (documents, cells, images), row ``i``
of ``W`` says how much of each component item ``i`` uses.  Normalized to sum
1 it is a *soft* assignment of the item to the components, and its largest
entry a hard cluster label.

NMF leaves the scale of each component free (``W D`` and ``D⁻¹ H`` fit
equally well for any positive diagonal ``D``), and the memberships depend on
that scale.  Pass ``H`` to fix it the natural way: each row of ``H`` is
rescaled to sum 1 (a distribution over features, e.g. a topic's word
distribution) and the columns of ``W`` take up the factor, so that for count
data ``memberships[i, k]`` is the share of item ``i``'s fitted total that
comes from component ``k``.
"""

from __future__ import annotations

import numpy as np


def _scaled_W(W, H):
    W = np.asarray(W, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError(f"W must be 2-D, got shape {W.shape}.")
    if np.any(W < 0):
        raise ValueError("W must be nonnegative.")
    if H is not None:
        H = np.asarray(H, dtype=np.float64)
        if H.ndim != 2 or H.shape[0] != W.shape[1]:
            raise ValueError(f"H must have shape ({W.shape[1]}, n_features), got {H.shape}.")
        W = W * H.sum(axis=1)
    return W


def memberships(W, H=None):
    """Soft cluster memberships: the rows of ``W`` normalized to sum 1.

    Parameters
    ----------
    W : array_like of shape (n_samples, rank)
        Nonnegative coefficients (``NMFResult.W``, or ``NMF.fit_transform``).
    H : array_like of shape (rank, n_features), optional
        When given, each component is first rescaled so that its row of ``H``
        sums to 1 (see the module notes): memberships then do not depend on
        how the fit happened to split the scale between ``W`` and ``H``.

    Returns
    -------
    ndarray of shape (n_samples, rank)
        Nonnegative rows summing to 1.  A row of ``W`` that is all zero (an
        item no component explains) gets uniform memberships ``1/rank``.

    Examples
    --------
    >>> memberships([[1.0, 3.0], [0.0, 0.0]]).tolist()
    [[0.25, 0.75], [0.5, 0.5]]
    >>> memberships([[1.0, 1.0]], H=[[2.0, 2.0], [1.0, 0.0]]).tolist()
    [[0.8, 0.2]]
    """
    W = _scaled_W(W, H)
    total = W.sum(axis=1, keepdims=True)
    out = np.full_like(W, 1.0 / max(W.shape[1], 1))
    np.divide(W, total, out=out, where=total > 0)
    return out


def hard_labels(W, H=None):
    """Hard cluster labels: the component with the largest membership of each row.

    Parameters
    ----------
    W, H : array_like
        As for :func:`memberships` (the argmax depends on the scaling, so
        pass ``H`` when the memberships are used with it).

    Returns
    -------
    ndarray of int64, shape (n_samples,)
        Ties go to the lowest component index; an all-zero row gets label 0.

    Examples
    --------
    >>> hard_labels([[1.0, 3.0], [5.0, 1.0]]).tolist()
    [1, 0]
    """
    return np.argmax(_scaled_W(W, H), axis=1).astype(np.int64)


def top_terms(H, vocabulary, n=10):
    """The ``n`` features with the largest weight in each component (e.g. top words).

    Parameters
    ----------
    H : array_like of shape (rank, n_features)
    vocabulary : sequence of str, length n_features
        Feature names in column order (``load_news_counts().vocabulary``,
        ``CountVectorizer.get_feature_names_out()``).
    n : int, default=10

    Returns
    -------
    list of lists of str
        For each component, its top features, heaviest first.

    Examples
    --------
    >>> top_terms([[0.1, 0.7, 0.2], [0.5, 0.0, 0.4]], ["a", "b", "c"], n=2)
    [['b', 'c'], ['a', 'c']]
    """
    H = np.asarray(H)
    vocabulary = np.asarray(vocabulary)
    if H.ndim != 2 or H.shape[1] != len(vocabulary):
        raise ValueError(f"H has {H.shape[-1]} columns but the vocabulary has "
                         f"{len(vocabulary)} entries.")
    n = min(int(n), H.shape[1])
    order = np.argsort(-H, axis=1, kind="stable")[:, :n]
    return [vocabulary[row].tolist() for row in order]
