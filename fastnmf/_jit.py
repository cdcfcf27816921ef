"""Compile policy for every Numba kernel, in one place.

Kernels import :func:`kernel` and never call ``numba.njit`` themselves, so the
flags below are the only knobs:

* ``fastmath`` allows reassociation (vectorized dot products over the rank)
  and contraction to FMA, but never ``nnan``/``ninf``: the updates rely on
  comparisons against zero that must stay exact for ``inf``/``nan`` guards.
* ``error_model="numpy"``: division by zero gives inf instead of raising, so
  the compiler does not insert a branch per division; the kernels guard the
  denominators themselves.
* ``chunks``: the kernels that loop over chunks of rows (``bounds``) are
  compiled serially and run by the package's threads, a run of chunks each
  (:class:`ChunkedKernel`): no Numba parallel lowering to compile.  The few
  others use ``prange`` (``parallel``), and then for ``prange`` loops only
  (:func:`_prange_only`).
* ``cache=True``: compiled code is written next to the sources (or to
  ``NUMBA_CACHE_DIR``), so only the very first fit on a machine pays for
  compilation (``python -m fastnmf.warmup`` pays it ahead).  Set
  ``FASTNMF_NO_CACHE=1`` to switch caching off.

Compile time is kept down in the kernels themselves (docs/performance.md, *Cold
start*): no array-valued assignments (``G[:, :] = P``, ``G += S``: element
loops), one compiled form per helper (no transposed views where a C array is
compiled already), chunked kernels rather than ``prange``.
"""

from __future__ import annotations

import functools
import inspect
import os

# GNU OpenMP (Numba's "omp" threading layer) keeps idle workers spinning for
# ~300k iterations; OpenBLAS does the same.  When BLAS calls and Numba
# parallel regions alternate, the two spinning pools fight over the cores:
# measured on a 2-core machine, a small MU fit ran 50x slower (2.3 s instead of
# 0.045 s).  Workers that sleep at once cost ~60 µs per parallel region and
# remove the fight.  Respect a value the user set; it must be set before
# libgomp is first loaded (at Numba's first parallel call).
os.environ.setdefault("GOMP_SPINCOUNT", "0")

import numba
import numpy as np


def _threadsafe_layer_available() -> bool:
    """Whether TBB or OpenMP, Numba's layers that allow concurrent use, can load."""
    for module in ("tbbpool", "omppool"):
        try:
            __import__(f"numba.np.ufunc.{module}")
        except Exception:  # ImportError, or OSError from a missing libtbb/libgomp
            continue
        return True
    return False


# Fits run from several Python threads at once (notebooks, web servers, joblib's
# threading backend).  Numba's "workqueue" layer aborts the whole interpreter on
# concurrent use, so ask for a "threadsafe" layer (TBB, else OpenMP) unless the
# user chose a layer.  Where neither can load, Numba falls back to workqueue and
# ``thread_limits`` runs fits one at a time instead (docs/threads.md).
if (os.environ.get("NUMBA_THREADING_LAYER") is None
        and numba.config.THREADING_LAYER == "default"
        and _threadsafe_layer_available()):
    numba.config.THREADING_LAYER = "threadsafe"

FASTMATH = frozenset({"nsz", "arcp", "contract", "afn", "reassoc"})
CACHE = os.environ.get("FASTNMF_NO_CACHE", "") in ("", "0")


def _prange_only() -> dict:
    """Numba's parallel options: ``prange`` loops run in parallel, nothing else.

    With ``parallel=True`` Numba also turns every NumPy call in a kernel
    (``np.zeros`` of the per-chunk partials, ``partial.sum()``) into a parallel
    loop of its own, each compiled as one more multi-threaded function: on
    arrays of a few entries, all cost and no speed.  (A fresh dict each time:
    Numba empties the one it is given.)
    """
    return dict(comprehension=False, reduction=False, inplace_binop=False, setitem=False,
                numpy=False, stencil=False, fusion=True, prange=True)


COMBINE = ("rows", "partials", "sums")


def kernel(fn=None, *, parallel: bool = True, chunks: str | None = None, private=()):
    """Compile ``fn`` with the package's policy (usable as ``@kernel`` or ``@kernel(...)``).

    ``chunks``: compile ``fn`` serially and run it over its ``bounds`` argument's
    chunks in the package's threads (:class:`ChunkedKernel`), instead of Numba's
    ``prange``; ``private``: names of arguments each thread gets its own copy of.
    """

    def wrap(f):
        dispatcher = numba.njit(
            parallel=_prange_only() if parallel and chunks is None else False,
            cache=CACHE,
            fastmath=set(FASTMATH),
            nogil=True,
            error_model="numpy",
        )(f)
        return dispatcher if chunks is None else ChunkedKernel(dispatcher, chunks, private)

    return wrap if fn is None else wrap(fn)


class ChunkedKernel:
    """A serial ``nogil`` kernel whose loop over chunks of rows (``bounds[c]:bounds[c + 1]``)
    runs in the package's threads (:func:`fastnmf._threads.run_parts`), one contiguous run
    of chunks per Numba thread of the calling thread (``numba.get_num_threads()``).

    Why not ``prange``: Numba's parallel lowering (the parfor, its gufunc, the
    scheduler's glue) made up two thirds of a kernel's compile time, and the very
    first fit on a machine waits for it (``hals_update`` 2.3 s CPU parallel, 0.9 s
    serial; docs/performance.md, *Cold start*).  A serial kernel is one function, so
    each fit also compiles exactly one signature of it.

    ``combine`` says how the runs' results make the whole call's:

    * ``"rows"``: each chunk writes its own rows of the outputs; the first run's
      result is returned (``out``, or None);
    * ``"partials"``: the kernel returns per-chunk partials (first axis: chunks),
      concatenated in chunk order: the same array as one call over all chunks;
    * ``"sums"``: the kernel returns a float or a tuple of floats, added up in run
      order; each argument named in ``private`` (an array the kernel overwrites with
      a sum over its chunks, e.g. a Gram) is given to the first run, the others get
      fresh copies that are added into it in run order.

    The split depends on the thread count only, so a given thread count gives the
    same result every time.  Attributes of the compiled kernel (``signatures``,
    ``py_func``, ...) are the dispatcher's; ``serial`` is the dispatcher itself.
    """

    def __init__(self, dispatcher, combine: str, private=()):
        if combine not in COMBINE:
            raise ValueError(f"combine must be one of {COMBINE}, got {combine!r}")
        self.serial = dispatcher
        self.combine = combine
        self._signature = inspect.signature(dispatcher.py_func)
        params = list(self._signature.parameters)
        self._bounds = params.index("bounds")
        self._private = tuple(params.index(name) for name in private)
        functools.update_wrapper(self, dispatcher.py_func)

    def __getattr__(self, name):
        return getattr(self.serial, name)

    def __call__(self, *args, **kwargs):
        if kwargs:  # as positional arguments (the dispatcher's split needs them so)
            bound = self._signature.bind(*args, **kwargs)
            bound.apply_defaults()
            args = bound.args
        args = list(args)
        bounds = args[self._bounds]
        n_chunks = len(bounds) - 1
        parts = min(numba.get_num_threads(), n_chunks)
        if parts <= 1:
            return self.serial(*args)
        from ._threads import even_cuts, run_parts

        cuts = even_cuts(n_chunks, parts)

        def run(a, b):
            mine = list(args)
            mine[self._bounds] = bounds[a : b + 1]
            if a > 0:
                for i in self._private:
                    mine[i] = np.empty_like(args[i])
            return self.serial(*mine), [mine[i] for i in self._private]

        results = run_parts(run, cuts)
        if self.combine == "rows":
            return results[0][0]
        if self.combine == "partials":
            return np.concatenate([res for res, _ in results])
        for k, first in enumerate(results[0][1]):
            for _, copies in results[1:]:
                first += copies[k]
        values = [res for res, _ in results]
        if values[0] is None:
            return None
        if isinstance(values[0], tuple):
            return tuple(sum(v) for v in zip(*values, strict=True))
        return sum(values)
