"""One knob for all threads: Numba's and BLAS's together."""

from __future__ import annotations

import functools
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

import numba
import numpy as np
from threadpoolctl import ThreadpoolController

from ._chunks import row_bounds

# Below this much work per iteration (m·n·r for dense X, nnz·r for sparse, plus
# (m + n)·r² for the sweeps) a fit's default (n_threads=None) is one thread: waking
# the others costs ~0.4 ms per iteration.  Measured 2 threads ÷ 1 thread, ms per
# HALS iteration (2-core AMD EPYC, quiet): dense 300×120 r6 4.35×, 600×300 r8 2.08×,
# 1000×500 r10 0.92×, 2000×1000 r10 0.58×; sparse nnz 2·10⁴ r8 3.06×, 10⁵ r10 0.95×,
# 10⁶ r20 0.54× (docs/threads.md).
ONE_THREAD_BELOW = 4e6


def default_threads(X, rank: int) -> int | None:
    """The threads a fit of ``X`` at ``rank`` uses when the caller gives none: one for
    small problems (:data:`ONE_THREAD_BELOW`), else None (all of Numba's)."""
    m, n = X.shape
    stored = X.nnz if hasattr(X, "nnz") else m * n
    return 1 if stored * rank + (m + n) * rank * rank < ONE_THREAD_BELOW else None


def resolve_n_threads(n_threads: int | None) -> int:
    """``None`` → all threads Numba was started with; negative counts from the end like joblib."""
    max_threads = numba.config.NUMBA_NUM_THREADS
    if n_threads is None:
        return numba.get_num_threads()
    if isinstance(n_threads, bool) or (not isinstance(n_threads, (int,)) and not hasattr(
        n_threads, "__index__"
    )):
        raise TypeError(f"n_threads must be an int or None, got {n_threads!r}")
    n = int(n_threads)
    if n == 0:
        raise ValueError("n_threads must not be 0 (use None for all cores)")
    if n < 0:
        n = max(1, (os.cpu_count() or 1) + 1 + n)
    return min(n, max_threads)


class _BlasLimit:
    """The BLAS thread limit, shared by all fits running at once in this process.

    Numba's thread count is per Python thread, but BLAS's is global to the
    process.  Nested ``threadpool_limits`` from concurrent fits would restore
    in the wrong order (fit A saves 2 and sets 1, fit B saves A's 1, A
    restores 2, B restores 1: BLAS stays at 1 after both), so the first fit to
    enter saves the user's setting, each Python thread's request is its
    innermost one (a fit inside the user's ``thread_limits`` block gets what
    the fit asked for), the limit is the largest request of any thread, and
    the last one to leave restores the saved setting.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._stacks: dict[int, list[int]] = {}  # per thread: its nested requests
        self._saved = None  # threadpoolctl limiter holding the user's settings
        self._current = None
        self._found = None  # (len(sys.modules) then, ThreadpoolController)

    def _controller(self) -> ThreadpoolController:
        """threadpoolctl's handle on the loaded BLAS libraries, found again only when a
        module was imported since (a library comes with the extension that loads it).
        Finding them costs ~1 ms (``threadpool_limits`` did it at every fit: as much as
        ten iterations of a small fit); limiting through the handle ~6 µs."""
        if self._found is None or self._found[0] != len(sys.modules):
            self._found = (len(sys.modules), ThreadpoolController())
        return self._found[1]

    def _apply(self) -> None:
        limit = max(stack[-1] for stack in self._stacks.values())
        if self._saved is None:
            self._saved = self._controller().limit(limits=limit, user_api="blas")
        elif limit != self._current:
            self._controller().limit(limits=limit, user_api="blas")
        self._current = limit

    def enter(self, n: int) -> None:
        with self._lock:
            self._stacks.setdefault(threading.get_ident(), []).append(n)
            self._apply()

    def leave(self, n: int) -> None:
        with self._lock:
            me = threading.get_ident()
            stack = self._stacks[me]
            stack.pop()
            if not stack:
                del self._stacks[me]
            if self._stacks:
                self._apply()
            else:
                saved, self._saved, self._current = self._saved, None, None
                saved.restore_original_limits()


_BLAS = _BlasLimit()

# Numba's "workqueue" layer aborts the interpreter when two threads run parallel
# kernels at once; fastnmf selects a thread-safe layer (see _jit.py), and where
# only workqueue exists, fits from different Python threads take turns.
_WORKQUEUE_LOCK = threading.RLock()


def _needs_serializing() -> bool:
    try:
        return numba.threading_layer() == "workqueue"
    except ValueError:  # layer not launched yet (set_num_threads launches it)
        return False


# Where fastnmf runs BLAS single-threaded and splits the large products itself
# (see thread_limits), the number of parts, per Python thread.
_LOCAL = threading.local()


def product_parts() -> int:
    """Into how many row ranges this thread's large BLAS products are split (1: not split)."""
    return getattr(_LOCAL, "parts", 1)


def split_bounds(n_rows: int, split: bool = True, align: int = 1) -> tuple[int, ...]:
    """Row ranges for :func:`run_parts`: one per part where this thread splits its products
    (and ``split`` and there are at least ``max(8, align)`` rows a part), else the whole
    range.  Inner bounds are multiples of ``align``."""
    parts = product_parts()
    if not split or parts == 1 or n_rows < max(8, align) * parts:
        return (0, n_rows)
    return even_cuts(n_rows, parts, align)


@functools.lru_cache(maxsize=4096)
def even_cuts(n_rows: int, parts: int, align: int = 1) -> tuple[int, ...]:
    """:func:`fastnmf._chunks.row_bounds` as a tuple of ints, inner bounds rounded to
    multiples of ``align``; made once per ``(n_rows, parts, align)``: the loops and the
    chunked kernels ask for it at every call, and ``np.linspace`` alone cost ~12 µs a
    call (a small dense fit's iteration is ~100 µs)."""
    b = row_bounds(n_rows, parts)
    if align > 1:
        b[1:-1] = np.round(b[1:-1] / align) * align
    return tuple(int(x) for x in b)


@contextmanager
def numba_threads(n: int | None):
    """Run the body with ``n`` Numba threads in this Python thread (None: leave as is)."""
    if n is None:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 1) - 1),
                                       thread_name_prefix="fastnmf")
        return _POOL


def run_parts(fn, bounds) -> list:
    """``fn(a, b)`` for each range ``bounds[i]:bounds[i+1]``, the first in this thread and the
    others in a pool of idle-waiting threads (single-threaded BLAS calls and Numba kernels:
    both release the GIL); returns their results in range order once all are done, raising
    the first error.  With more than one range, each runs with one Numba thread."""
    if len(bounds) == 2:  # one range: in this thread, as it is (no pool, no thread change)
        return [fn(bounds[0], bounds[1])]

    def part(a, b):
        with numba_threads(1):
            return fn(a, b)

    pool = _pool()
    futures = [pool.submit(part, bounds[i], bounds[i + 1]) for i in range(1, len(bounds) - 1)]
    try:
        first = part(bounds[0], bounds[1])
    finally:
        rest = [f.result() for f in futures]
    return [first, *rest]


@contextmanager
def thread_limits(n_threads: int | None, *, split_blas: bool = False):
    """Run the body with ``n_threads`` Numba threads and at most as many BLAS threads.

    Both settings are restored on exit, also after an exception or Ctrl-C.
    Numba's thread count is thread-local, so concurrent fits in different
    Python threads do not disturb each other; BLAS's is global to the process,
    so while fits overlap it is the largest any of them asked for, and the
    last fit to finish restores the setting from before the first began.

    ``split_blas=True`` (the fits' loops) asks for *one* BLAS thread instead, and
    the large dense products are split into ``n_threads`` row ranges run side by
    side (:func:`product_parts`, :func:`run_parts`).  A multi-threaded OpenBLAS call
    leaves its workers spinning for a while after it returns, on the very cores
    the next Numba kernel needs: measured on D1 (5000×2000, 2 threads), the HALS
    sweeps after each product ran no faster on 2 threads than on 1 (17 ms), and
    accelerated HALS took 39.6 ms per iteration against 28.1 ms with the
    spinning switched off; threads that sleep while idle give the cores back.
    """
    n = resolve_n_threads(n_threads)
    previous = numba.get_num_threads()
    previous_parts = product_parts()
    numba.set_num_threads(n)
    _LOCAL.parts = n if split_blas else 1
    blas = 1 if split_blas else n
    serial = _WORKQUEUE_LOCK if _needs_serializing() else nullcontext()
    try:
        with serial:
            _BLAS.enter(blas)
            try:
                yield n
            except SystemError as error:
                # Ctrl-C while a compiled kernel's wrapper is calling back into Python
                # (Numba unpickling a global it needs) comes out of the call as
                # "returned a result with an exception set", caused by the
                # KeyboardInterrupt: the user pressed Ctrl-C, so that is what is raised.
                if isinstance(error.__cause__, KeyboardInterrupt):
                    raise error.__cause__ from None
                raise
            finally:
                _BLAS.leave(blas)
    finally:
        numba.set_num_threads(previous)
        _LOCAL.parts = previous_parts
