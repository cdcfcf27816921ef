"""What the scripts of benchmarks/ that write a report share: the machine and its load,
the report folder, the markdown and JSON files.

A report never goes into docs/ unless asked for (``--out docs/...``): the numbers in
the docs come from a quiet machine, and a run on a loaded one must not overwrite them.
"""

from __future__ import annotations

import argparse
import json
import os
import time

# The report goes here unless --out says otherwise (never docs/ by default).
DEFAULT_OUT = "fastnmf-bench"
# A 1-minute load average above this (before the benchmark starts) means other work
# shares the cores: the report then says that its times were measured under load.
LOAD_LIMIT = 0.5


def add_report_options(parser: argparse.ArgumentParser, quick_help: str) -> None:
    """``--quick`` and ``--out``: the options every report script has."""
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                        help="folder for the markdown report and its JSON "
                        "(default: %(default)s, in the current folder; never docs/ unless "
                        "named)")


def conditions() -> dict:
    """The machine and its load before any work: what a reader needs to trust a timing."""
    from fastnmf.bench import metrics

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return {"machine": metrics.machine_info(), "load_before": load,
            "under_load": bool(load > LOAD_LIMIT),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def header(title: str, cond: dict, command: str) -> list[str]:
    """The report's first lines: title, command, machine, and whether it ran under load."""
    m = cond["machine"]
    blas = ", ".join(f"{b.get('internal_api')} {b.get('version')} ({b.get('num_threads')} "
                     "threads)" for b in m["blas"]) or "unknown"
    load = cond["load_before"]
    lines = [f"# {title}", "", f"Command: `{command}`, started {cond['started']}.", "",
             f"Machine: {m['cpu']}, {m['cores']} cores; BLAS {blas}; "
             f"numpy {m['versions']['numpy']}, scikit-learn {m['versions']['scikit-learn']}, "
             f"numba {m['versions']['numba']}, fastnmf {m['versions']['fastnmf']}.", ""]
    if cond["under_load"]:
        lines += [f"**Measured under load**: the 1-minute load average was {load:.2f} before "
                  "the run started, so other work shared the cores. Compare ratios within "
                  "this report only, and do not quote its times as the package's speed.", ""]
    else:
        lines += [f"Load average before the run: {load:.2f} (a quiet machine).", ""]
    return lines


def write_report(out: str, stem: str, lines: list[str], data: dict) -> str:
    """Write ``out/stem.md`` and ``out/stem.json``; returns the markdown's path."""
    os.makedirs(out, exist_ok=True)
    md = os.path.join(out, f"{stem}.md")
    with open(md, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    with open(os.path.join(out, f"{stem}.json"), "w") as f:
        json.dump(data, f, indent=1, default=float)
    return md


def fmt(value, digits: int = 3) -> str:
    """A number for a table: ``digits`` significant digits, or a dash for None/NaN."""
    if value is None or value != value:
        return "—"
    return f"{value:.{digits}g}"
