"""Where a half-step runs: here, or where the data keeps the rows (Dask blocks).

W's half-step runs where W's rows are (:func:`row_side`); a half-step of H that
needs whole columns of X and all of W (KL coordinate descent) runs where X's
columns are (:func:`column_side`).
"""

from __future__ import annotations

import functools


def row_side(data, W, cls, **options):
    """``cls(data, {"W": W}, **options)``, W's side of a loop run on all its rows here;
    or, where ``data`` keeps W's rows elsewhere (:class:`fastnmf.dask.data.DaskData`, W
    the handle of its rows), the data's own row side, which runs ``cls`` on each row
    block with that block's rows and sums what its methods return.  Returns the row side
    and whether W's rows are elsewhere."""
    own = getattr(data, "row_side", None)
    if own is None:
        return cls(data, {"W": W}, **options), False
    return own(W, functools.partial(cls, **options) if options else cls), True


def column_side(data, Ht, cls, **options):
    """H's side of a loop whose H half-step is W's half-step of ``Xᵀ ≈ Ht Wᵀ`` (row j
    of Ht needs column j of X and all of W): ``cls(data, {"W": Ht}, side=1)``, run on
    all of Ht here; or, where ``data`` has its own (:class:`fastnmf.dask.data.DaskData`:
    X's column blocks, held as row blocks of Xᵀ), that, which runs ``cls`` on each
    column block with that block's rows of Ht and all of W, writes the new rows into
    ``Ht`` and sums what its methods return."""
    own = getattr(data, "column_side", None)
    if own is None:
        return cls(data, {"W": Ht}, side=1, **options)
    return own(Ht, functools.partial(cls, **options) if options else cls)


def callback_view(monitor, rows):
    """W as a callback sees it (the row side's ``view()``: W itself here, a dask array
    over W's row blocks on Dask), made only when there is a callback to see it."""
    return rows.view() if monitor.callback is not None else None
