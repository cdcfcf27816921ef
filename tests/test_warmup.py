"""python -m fastnmf.warmup: a later process's first fit compiles nothing (issue 21 item 3)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastnmf
from fastnmf import warmup

# a fresh process: which fastnmf kernels does a first KL-sparse fit compile (not load)?
_COUNT = """
import json, sys
import numpy as np
import fastnmf
from fastnmf import kernels
from fastnmf.warmup import compiled_kernels, example

X = example("kl-sparse")
with compiled_kernels() as fit:
    fastnmf.nmf(X, 5, beta_loss="kullback-leibler", random_state=0)
    fastnmf.nmf(X[:150, :80], 4, beta_loss="kl", random_state=1)  # other shapes, same kernels
with compiled_kernels() as other:
    A = np.ones((3, 2), dtype=np.float32)
    kernels.inner_f64_serial(A, A)  # float32: not warmed, so compiled here
json.dump({"fit": sorted(set(fit)), "other": sorted(set(other))}, sys.stdout)
"""


def _env(cache):
    here = str(Path(fastnmf.__file__).resolve().parents[1])  # the fastnmf under test
    return dict(os.environ, NUMBA_CACHE_DIR=str(cache), FASTNMF_NO_CACHE="0",
                PYTHONPATH=os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])]))


def test_after_the_warmup_a_first_fit_compiles_nothing(tmp_path):
    env = _env(tmp_path / "numba-cache")
    proc = subprocess.run([sys.executable, "-m", "fastnmf.warmup", "--fits", "kl-sparse"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "kl-sparse float64" in proc.stdout and "warm-up done" in proc.stdout
    assert any((tmp_path / "numba-cache").rglob("*.nbi"))  # the cache is where it was asked
    proc = subprocess.run([sys.executable, "-c", _COUNT], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = json.loads(proc.stdout)
    assert seen["fit"] == []  # every kernel of the fit came from the cache
    assert seen["other"] == ["_inner_f64"]  # the listener does see a compilation


# a fresh process: the signatures of every fastnmf kernel after float64 fits, on one thread
# (the default for these sizes) and split over two (the chunked kernels' runs of bounds)
_SIGNATURES = """
import importlib, json, pkgutil, sys
import fastnmf
from fastnmf import kernels
from fastnmf.warmup import FITS, example

for fit in ("frobenius-dense", "kl-sparse"):
    for n_threads in (None, 2):
        fastnmf.nmf(example(fit), 5, beta_loss=FITS[fit][0], random_state=0,
                    n_threads=n_threads)
seen = {}
for info in pkgutil.iter_modules(kernels.__path__):
    module = importlib.import_module("fastnmf.kernels." + info.name)
    for name, obj in vars(module).items():
        if getattr(obj, "__module__", "") == module.__name__ and hasattr(obj, "signatures"):
            seen[name] = [str(sig) for sig in obj.signatures]
json.dump(seen, sys.stdout)
"""


def test_a_fit_compiles_one_signature_per_kernel(tmp_path):
    """No second variant of a kernel (a transposed or read-only array, other index or
    bounds types, a split over threads) creeps into a first fit: each costs its whole
    compile time again on a fresh machine (docs/performance.md, *Cold start*)."""
    proc = subprocess.run([sys.executable, "-c", _SIGNATURES],
                          env=_env(tmp_path / "numba-cache"), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seen = {name: sigs for name, sigs in json.loads(proc.stdout).items() if sigs}
    assert {"hals_update", "extrapolate", "csr_matmul", "kl_ccd_sparse_pairs"} <= set(seen)
    assert {name: sigs for name, sigs in seen.items() if len(sigs) > 1} == {}


@pytest.mark.parametrize("kwargs, match", [
    (dict(fits=["nope"]), "unknown fit"),
    (dict(fits=[]), "unknown fit"),
    (dict(dtypes=["float16"]), "unknown dtype"),
    (dict(jobs=0), "jobs must be a positive int"),
    (dict(jobs=True), "jobs must be a positive int"),
])
def test_bad_arguments_are_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        warmup.warmup(**kwargs)


def test_console_errors_and_no_cache(capsys, monkeypatch):
    with pytest.raises(SystemExit) as exc:
        warmup.main(["--fits", "frobenius-dense,bad"])
    assert exc.value.code == 2 and "unknown fit ['bad']" in capsys.readouterr().err
    monkeypatch.setattr("fastnmf._jit.CACHE", False)
    with pytest.raises(SystemExit):
        warmup.main(["--fits", "kl-sparse"])
    assert "FASTNMF_NO_CACHE" in capsys.readouterr().err


def test_examples_are_what_the_fits_expect():
    import scipy.sparse as sp

    dense = warmup.example("frobenius-dense", "float32")
    assert dense.shape == (200, 100) and dense.dtype == "float32" and dense.min() >= 0
    counts = warmup.example("kl-sparse")
    assert sp.issparse(counts) and counts.dtype == "float64"
    assert (counts.data >= 1).all() and (counts.data == counts.data.round()).all()
