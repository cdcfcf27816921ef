"""One knob for all threads: Numba's and BLAS's together."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager, nullcontext

import numba
from threadpoolctl import threadpool_limits


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
    enter saves the user's setting, the limit is the largest that any running
    fit asked for, and the last one to leave restores the saved setting.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._active: list[int] = []
        self._saved = None  # threadpoolctl limiter holding the user's settings
        self._current = None

    def enter(self, n: int) -> None:
        with self._lock:
            limit = max(n, self._current or 0)
            if self._saved is None:
                self._saved = threadpool_limits(limits=limit, user_api="blas")
            elif limit != self._current:
                threadpool_limits(limits=limit, user_api="blas")
            self._active.append(n)
            self._current = limit

    def leave(self, n: int) -> None:
        with self._lock:
            self._active.remove(n)
            if not self._active:
                saved, self._saved, self._current = self._saved, None, None
                saved.restore_original_limits()
            elif max(self._active) != self._current:
                self._current = max(self._active)
                threadpool_limits(limits=self._current, user_api="blas")


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


@contextmanager
def thread_limits(n_threads: int | None):
    """Run the body with ``n_threads`` Numba threads and at most as many BLAS threads.

    Both settings are restored on exit, also after an exception or Ctrl-C.
    Numba's thread count is thread-local, so concurrent fits in different
    Python threads do not disturb each other; BLAS's is global to the process,
    so while fits overlap it is the largest any of them asked for, and the
    last fit to finish restores the setting from before the first began.
    """
    n = resolve_n_threads(n_threads)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    serial = _WORKQUEUE_LOCK if _needs_serializing() else nullcontext()
    try:
        with serial:
            _BLAS.enter(n)
            try:
                yield n
            finally:
                _BLAS.leave(n)
    finally:
        numba.set_num_threads(previous)
