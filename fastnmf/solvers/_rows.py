"""Where W's half-step runs: here, or where the data keeps W's rows (Dask row blocks)."""

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


def callback_view(monitor, rows):
    """W as a callback sees it (the row side's ``view()``: W itself here, a dask array
    over W's row blocks on Dask), made only when there is a callback to see it."""
    return rows.view() if monitor.callback is not None else None
