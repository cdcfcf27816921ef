"""One knob for all threads: Numba's and BLAS's together."""

from __future__ import annotations

import os
from contextlib import contextmanager

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


@contextmanager
def thread_limits(n_threads: int | None):
    """Run the body with ``n_threads`` Numba threads and at most as many BLAS threads.

    Both settings are restored on exit, also after an exception or Ctrl-C.
    Numba's thread count is thread-local, so concurrent fits in different
    Python threads do not disturb each other.
    """
    n = resolve_n_threads(n_threads)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield n
    finally:
        numba.set_num_threads(previous)
