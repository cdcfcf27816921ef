"""What is measured: memory, the floor and the machine's limit, the loss, time to target,
and the machine."""

from __future__ import annotations

import os
import platform
import resource
import time

import numpy as np

# Loss comparisons against the target allow this much relative slack: the
# losses of different methods are computed by different (equally exact)
# formulas, whose round-off differs by about this much.
TARGET_RTOL = {"float64": 1e-9, "float32": 1e-5}

OPENBLAS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


# --- memory ---------------------------------------------------------------------------

def proc_status_kib(field: str, pid: int | str = "self") -> int | None:
    """A field of ``/proc/PID/status`` in KiB (None where there is none)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> int:
    """Resident memory now."""
    kib = proc_status_kib("VmRSS")
    if kib is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return kib * 1024


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux ≥ 4.0); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    """Peak resident memory since the last :func:`reset_peak` (or since start)."""
    kib = proc_status_kib("VmHWM")
    if kib is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return kib * 1024


# --- timing helpers -------------------------------------------------------------------

def best_time(fn, min_total: float = 0.2, max_reps: int = 20, reduce=np.median) -> float:
    """Median time of ``fn()`` over at least 3 calls (more while under ``min_total`` s);
    ``reduce=np.min`` for the fastest (a machine's capability: noise only adds time)."""
    fn()  # warm-up: first-touch of outputs, BLAS thread start
    times = []
    while len(times) < 3 or (sum(times) < min_total and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(reduce(times))


# --- the floor ------------------------------------------------------------------------

def dense_floor(X: np.ndarray, W: np.ndarray, H: np.ndarray) -> dict:
    """The two skinny GEMMs of one iteration, each at its fastest layout."""
    Ht = np.ascontiguousarray(H.T)
    XHt = {
        "X@Ht": lambda: X @ Ht,
        "(Ht.T@X.T).T": lambda: (Ht.T @ X.T).T,
    }
    XtW = {
        "X.T@W": lambda: X.T @ W,
        "(W.T@X).T": lambda: (W.T @ X).T,
    }
    t1 = {k: best_time(f) for k, f in XHt.items()}
    t2 = {k: best_time(f) for k, f in XtW.items()}
    b1, b2 = min(t1, key=t1.get), min(t2, key=t2.get)
    return dict(floor_s=t1[b1] + t2[b2], products_s=t1[b1] + t2[b2], layouts={**t1, **t2},
                best_layouts=[b1, b2])


def memory_bandwidth(nbytes: int = 256 << 20) -> float:
    """Read bandwidth in bytes/s: a Numba-parallel float64 reduction over ``nbytes``."""
    from .._chunks import row_bounds
    from ..kernels import inner_f64

    A = np.ones((nbytes // 64, 8))
    bounds = row_bounds(A.shape[0])
    t = best_time(lambda: inner_f64(A, A, bounds), reduce=np.min)
    return A.nbytes / t


def sparse_floor(X, W: np.ndarray, H: np.ndarray, bandwidth: float,
                 loss: str = "frobenius") -> dict:
    """fastnmf's own sparse-dense products as a fit of ``loss`` runs them (each side's
    kernel by the fixed rule, X's columns reordered where such a fit reorders them:
    :func:`fastnmf._data.reorders`), and X's bytes streamed twice at ``bandwidth``."""
    from .._data import make_data, reorders

    m, n = X.shape
    data = make_data(X, True, "sparse", reorder=reorders(X, loss, W.shape[1]))
    Ht = np.ascontiguousarray(H.T if data.order is None else H.T[data.order])
    out0 = np.empty((m, W.shape[1]), dtype=W.dtype)
    out1 = np.empty((n, W.shape[1]), dtype=W.dtype)
    t0 = best_time(lambda: data.product(Ht, 0, out0))
    t1 = best_time(lambda: data.product(W, 1, out1))
    nbytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    stream = 2 * nbytes / bandwidth
    held = ", columns by count" if data.order is not None else ""
    side0 = ("scatter from the CSR of X.T" if data._choose(Ht, 0, out0) == "scatter"
             else "CSR")
    side1 = ("scatter from the CSR of X" if data._choose(W, 1, out1) == "scatter"
             else "gather from the CSR of X.T")
    return dict(floor_s=t0 + t1, products_s=t0 + t1, stream_s=stream,
                layouts={f"X@Ht ({side0}{held})": t0, f"X.T@W ({side1}{held})": t1},
                bandwidth_GBs=bandwidth / 1e9)


# --- the machine's limit --------------------------------------------------------------
#
# The floor above is fastnmf's own cost of the data products.  The machine's limit is
# what no implementation can beat: one iteration must read X once per product (at the
# stream bandwidth) and the factors at least once each, and do the flops of the two
# products, the two HALS sweeps and the two Grams (at the rate of a well-shaped GEMM).

def gemm_rate(flops: float, dtype) -> dict:
    """The GEMM rate (flop/s) of NumPy's ``@`` on square ``N×N`` matrices in ``dtype``,
    ``N`` chosen so one product has about ``flops`` flops (clamped to 384..1536: the
    rate of a BLAS on a well-shaped problem, not of a tiny or a skinny one)."""
    n = int(min(max(round((flops / 2) ** (1 / 3)), 384), 1536))
    rng = np.random.default_rng(0)
    A = rng.random((n, n)).astype(dtype)
    B = rng.random((n, n)).astype(dtype)
    C = np.empty_like(A)
    t = best_time(lambda: np.matmul(A, B, out=C), reduce=np.min)
    return dict(rate=2.0 * n**3 / t, n=n)


def iteration_work(shape, nnz: int | None, x_bytes: int, rank: int, itemsize: int) -> dict:
    """The bytes and flops one Frobenius HALS iteration cannot avoid.

    Bytes: X read once per product (twice), and W and H each read and written
    once: ``2·x_bytes + 2·(m+n)·r·itemsize`` (gathered factor rows counted once:
    a lower bound).  Flops: the two products (``2·2·nnz·r``, ``nnz = m·n`` for
    dense X), one sweep over each factor (``2·(m+n)·r²``: a multiply-add per row,
    component and component) and the two Grams (``(m+n)·r²``, symmetric).
    """
    m, n = shape
    nnz = m * n if nnz is None else nnz
    products = 4.0 * nnz * rank
    sweeps = 2.0 * (m + n) * rank**2
    grams = 1.0 * (m + n) * rank**2
    return dict(x_read_bytes=2 * x_bytes, factor_bytes=2 * (m + n) * rank * itemsize,
                product_flops=products, sweep_flops=sweeps, gram_flops=grams)


def machine_limit(X, rank: int, bandwidth: float, gemm: dict) -> dict:
    """The time of a machine-bound iteration: bytes at ``bandwidth``, flops at ``gemm``'s
    rate, overlapped (``max`` of the two, the roofline: a product that streams X can do its
    flops meanwhile).  Their sum is no limit: on dense D1 float64 (2 cores, 12 GB/s, GEMM
    81 GFLOP/s) it is 13.5 + 10.0 = 23.5 ms, and fastnmf's one-sweep iteration takes
    15.7 ms.  Both parts and their sum are kept in the JSON."""
    if hasattr(X, "tocsr"):
        nnz, x_bytes = int(X.nnz), X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    else:
        nnz, x_bytes = None, X.nbytes
    work = iteration_work(X.shape, nnz, x_bytes, rank, X.dtype.itemsize)
    bytes_s = (work["x_read_bytes"] + work["factor_bytes"]) / bandwidth
    flops_s = (work["product_flops"] + work["sweep_flops"] + work["gram_flops"]) / gemm["rate"]
    return dict(limit_s=max(bytes_s, flops_s), bytes_s=bytes_s, flops_s=flops_s,
                sum_s=bytes_s + flops_s, bound="bytes" if bytes_s >= flops_s else "flops",
                bandwidth_GBs=bandwidth / 1e9, gemm_GFs=gemm["rate"] / 1e9, gemm_n=gemm["n"],
                **work)


def sweep_vs_gemm(rows: int, rank: int, dtype) -> dict | None:
    """One HALS sweep (``kernels.hals_update``, no Gram) over a ``rows×rank`` factor against
    ``F @ B`` (``F`` rows×rank, ``B`` rank×rank): the same ``2·rows·rank²`` flops.

    ``fraction`` = GEMM time ÷ sweep time, the sweep's rate as a fraction of the
    same-flops GEMM's.  ``repeat_s``: each further sweep on the same product (five sweeps
    less one, over four), what accelerated HALS repeats; the first sweep also loads the
    factor and the product in the kernel's transposed layout, writes the factor back and
    sums the projected-gradient violation.  None if the kernel cannot be called (its
    signature changed).
    """
    from .. import kernels
    from .._chunks import row_bounds

    try:
        from .._data import factor_bounds

        bounds = factor_bounds(rows)
    except ImportError:
        bounds = row_bounds(rows)
    rng = np.random.default_rng(0)
    dtype = np.dtype(dtype)
    F0 = rng.random((rows, rank)).astype(dtype)
    Q = rng.random((2 * rank, rank))
    B = (Q.T @ Q).astype(dtype)
    A = (0.5 * (F0 @ B)).astype(dtype)  # F0 is not the solution: every sweep moves F
    F = F0.copy()
    G = np.empty((0, 0), dtype=dtype)
    zero = dtype.type(0)

    def sweeps(n):  # from F0 each time; the copy is timed apart and taken off
        np.copyto(F, F0)
        kernels.hals_update(F, A, B, zero, zero, bounds, G, n, 0.0)

    copy = best_time(lambda: np.copyto(F, F0), reduce=np.min)
    try:
        sweep = max(best_time(lambda: sweeps(1), reduce=np.min) - copy, 1e-9)
    except Exception:  # a changed kernel must not lose the benchmark run
        return None
    # accelerated HALS's repeated sweeps on the same product (no reload, no violation)
    five = best_time(lambda: sweeps(5), reduce=np.min) - copy
    repeat = max(five - sweep, 0.0) / 4 or None
    gemm = best_time(lambda: np.matmul(F, B, out=A), reduce=np.min)  # A: written, not read
    flops = 2.0 * rows * rank**2
    return dict(rows=rows, rank=rank, sweep_s=sweep, gemm_s=gemm, fraction=gemm / sweep,
                sweep_GFs=flops / sweep / 1e9, gemm_GFs=flops / gemm / 1e9, repeat_s=repeat,
                repeat_fraction=None if repeat is None else gemm / repeat)


# --- the loss, evaluated the same way for every peer ----------------------------------

class LossEvaluator:
    """½‖X − WH‖² = ½(‖X‖² − 2⟨XHᵀ, W⟩ + ⟨WᵀW, HHᵀ⟩), products in X's dtype, sums in float64.

    The formula fastnmf's solvers use; one data product per call, run outside
    the timed region of the peers.
    """

    def __init__(self, X):
        from .._chunks import nnz_bounds
        from .._data import DenseData, _canonical_csr, _sqnorm_f64

        self.dtype = X.dtype
        if hasattr(X, "tocsr"):  # only X Hᵀ is needed: no CSR copy of Xᵀ (it would count
            csr = _canonical_csr(X)  # as the peer's memory)
            self.csr = (csr.indptr, csr.indices, csr.data, nnz_bounds(csr.indptr))
            self.sqnorm = _sqnorm_f64(csr.data)
        else:
            self.dense = DenseData(X)
            self.csr, self.sqnorm = None, self.dense.sqnorm
        self.out = None

    def __call__(self, W: np.ndarray, H: np.ndarray) -> float:
        from ..kernels import csr_matmul

        W = np.ascontiguousarray(W, dtype=self.dtype)
        Ht = np.ascontiguousarray(H.T, dtype=self.dtype)
        if self.out is None or self.out.shape != W.shape:
            self.out = np.empty_like(W)
        if self.csr is None:
            XHt = self.dense.product(Ht, 0, self.out)
        else:
            XHt = csr_matmul(*self.csr[:3], Ht, self.csr[3], self.out)
        cross = float(np.einsum("ij,ij->", XHt, W, dtype=np.float64))
        W64, H64 = W.astype(np.float64), Ht.astype(np.float64)
        gram = float(np.vdot(W64.T @ W64, H64.T @ H64))
        return 0.5 * max(self.sqnorm - 2.0 * cross + gram, 0.0)


class KLLossEvaluator:
    """The generalized KL divergence ``D(X‖WH)`` exactly as scikit-learn's
    ``_beta_divergence(X, W, H, 1)`` defines it, without its temporaries.

    scikit-learn's guards: entries ``x ≤ eps`` are treated as zeros (left out
    of ``Σ x log(x/wh) − x``), model values ``wh < eps`` are raised to ``eps``
    (``eps`` = float32's machine epsilon), and ``Σ WH`` is
    ``(column sums of W)·(row sums of H)``.  scikit-learn forms the dense
    ``W H`` (m×n) for dense X; here it is formed a block of rows at a time in
    float64, and for sparse X the model is evaluated only at the nonzeros
    (row-chunked, parallel, the CSR of X only), so the evaluator, which runs
    in the measured process outside the timer, adds little to the peak memory.
    Sums in float64.
    """

    EPS = float(np.finfo(np.float32).eps)
    BLOCK_ELEMENTS = 1 << 18

    def __init__(self, X):
        from .._chunks import nnz_bounds
        from .._data import _canonical_csr

        self.dtype = X.dtype
        if hasattr(X, "tocsr"):
            csr = _canonical_csr(X)
            self.csr = (csr.indptr, csr.indices, csr.data, nnz_bounds(csr.indptr))
            self.X = None
            data = csr.data
        else:
            self.csr, self.X = None, X
            data = X
        self.sum_x = 0.0  # Σ x over x > eps, in blocks for dense X (no boolean m×n copy)
        flat = data.reshape(-1)
        for a in range(0, flat.size, self.BLOCK_ELEMENTS):
            b = flat[a:a + self.BLOCK_ELEMENTS].astype(np.float64)
            self.sum_x += float(b[b > self.EPS].sum())

    def __call__(self, W: np.ndarray, H: np.ndarray) -> float:
        sum_wh = float(np.dot(W.sum(axis=0, dtype=np.float64), H.sum(axis=1, dtype=np.float64)))
        if self.csr is not None:
            from ..kernels.kl import kl_loss_sparse

            W_ = np.ascontiguousarray(W, dtype=self.dtype)
            Ht = np.ascontiguousarray(H.T, dtype=self.dtype)
            # Σ_{x>eps} x log(x / max(wh, eps)) − x (float64 products and sums)
            nz = float(kl_loss_sparse(*self.csr[:3], W_, Ht, self.dtype.type(self.EPS),
                                      self.csr[3]).sum())
            return nz + sum_wh
        X, eps = self.X, self.EPS
        W64, H64 = W.astype(np.float64), H.astype(np.float64)
        rows = max(1, self.BLOCK_ELEMENTS // max(X.shape[1], 1))
        s = 0.0
        for a in range(0, X.shape[0], rows):
            wh = W64[a:a + rows] @ H64
            x = X[a:a + rows].astype(np.float64)
            keep = x > eps
            x, wh = x[keep], wh[keep]
            np.maximum(wh, eps, out=wh)
            s += float(np.dot(x, np.log(x / wh)))
        return s - self.sum_x + sum_wh


def evaluator(X, loss: str = "frobenius"):
    """The loss evaluator of a workload: :class:`LossEvaluator` or :class:`KLLossEvaluator`."""
    return KLLossEvaluator(X) if loss == "kullback-leibler" else LossEvaluator(X)


def time_to_target(times, losses, target: float, rtol: float, iterations=None) -> float | None:
    """First time at which the loss is within ``rtol`` of ``target`` or below; None if never.

    Where the loss was not evaluated at every iteration (``iterations`` has a gap
    before the first point below the target), the crossing is placed by linear
    interpolation between the last point above and the first below: on a convex
    decreasing curve the chord crosses no earlier than the curve, so this never
    flatters the method.
    """
    losses, times = np.asarray(losses, dtype=float), np.asarray(times, dtype=float)
    goal = target * (1.0 + rtol)
    hit = np.nonzero(losses <= goal)[0]
    if not hit.size:
        return None
    i = hit[0]
    if iterations is None or i == 0 or iterations[i] - iterations[i - 1] <= 1:
        return float(times[i])
    f = (losses[i - 1] - goal) / (losses[i - 1] - losses[i])
    return float(times[i - 1] + f * (times[i] - times[i - 1]))


# --- the machine ----------------------------------------------------------------------

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info() -> list[dict]:
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "version", "architecture", "threading_layer",
            "num_threads", "filepath")
    # plain values only: scipy.io's Matrix Market reader registers a controller whose
    # version is a function (it broke the JSON after a .mtx was read in the process)
    return [{k: v if v is None or isinstance(v, (str, int, float)) else str(v)
             for k, v in ((k, d.get(k)) for k in keep)} for d in threadpool_info()]


def machine_info() -> dict:
    import numba
    import scipy
    import sklearn

    import fastnmf

    numpy_blas = [b for b in blas_info() if b["user_api"] == "blas"]
    return dict(
        cpu=cpu_model(),
        cores=os.cpu_count(),
        platform=platform.platform(),
        python=platform.python_version(),
        versions={"numpy": np.__version__, "scipy": scipy.__version__,
                  "numba": numba.__version__, "scikit-learn": sklearn.__version__,
                  "fastnmf": fastnmf.__version__},
        numba_threading_layer=_threading_layer(),
        blas=numpy_blas,
        openblas_env={k: os.environ.get(k) for k in OPENBLAS_VARS},
    )


def _threading_layer() -> str | None:
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel region has run yet in this process
        return None
