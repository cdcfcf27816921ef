"""Compile policy for every Numba kernel, in one place.

Kernels import :func:`kernel` and never call ``numba.njit`` themselves, so the
flags below are the only knobs:

* ``fastmath`` allows reassociation (vectorized dot products over the rank)
  and contraction to FMA, but never ``nnan``/``ninf``: the updates rely on
  comparisons against zero that must stay exact for ``inf``/``nan`` guards.
* ``error_model="numpy"``: division by zero gives inf instead of raising, so
  the compiler does not insert a branch per division; the kernels guard the
  denominators themselves.
* ``parallel``: ``prange`` loops only (:func:`_prange_only`).
* ``cache=True``: compiled code is written next to the sources (or to
  ``NUMBA_CACHE_DIR``), so only the very first fit on a machine pays for
  compilation (``python -m fastnmf.warmup`` pays it ahead).  Set
  ``FASTNMF_NO_CACHE=1`` to switch caching off.

Compile time is kept down in the kernels themselves (docs/performance.md, *Cold
start*): no array-valued assignments (``G[:, :] = P``, ``G += S``: element
loops), one compiled form per helper (no transposed views where a C array is
compiled already).
"""

from __future__ import annotations

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


def kernel(fn=None, *, parallel: bool = True):
    """Compile ``fn`` with the package's policy (usable as ``@kernel`` or ``@kernel(...)``)."""

    def wrap(f):
        return numba.njit(
            parallel=_prange_only() if parallel else False,
            cache=CACHE,
            fastmath=set(FASTMATH),
            nogil=True,
            error_model="numpy",
        )(f)

    return wrap if fn is None else wrap(fn)
