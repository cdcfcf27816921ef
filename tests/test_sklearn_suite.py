"""scikit-learn's own NMF tests, run against fastnmf.

The installed scikit-learn's ``decomposition/tests/test_nmf.py`` is run in a
subprocess with ``sklearn.decomposition.NMF``, ``non_negative_factorization`` and
``MiniBatchNMF`` bound to fastnmf's before the file is imported, so that its
parametrizations see fastnmf's classes too.  Every item passes but the two in
``EXPECTED_FAILURES``, each failing on purpose.  Its tests
of scikit-learn's private helpers (``_initialize_nmf``, ``_beta_divergence``)
still run scikit-learn's code and pass trivially.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

import fastnmf

# Items that fail on purpose, by test function name, with the reason.
EXPECTED_FAILURES = {
    # Its first check wants NMF(solver="cd", beta_loss=1.0) refused; fastnmf's "cd"
    # fits the KL loss by coordinate descent with Newton steps (a deliberate superset).
    # The rest of that test is test_nndsvd_rank_error_has_sklearns_wording below.
    "test_parameter_checking",
    # It fits MiniBatchNMF(init="custom") with H, then partial_fits a second model from
    # the same H and wants equal components_: in scikit-learn the first fit updated
    # the caller's H in place (components_ *is* that array), so the second model starts
    # where the first ended and shares its array.  fastnmf never modifies its inputs
    # (test_minibatch.py::test_custom_init_arrays_are_not_modified); passing a copy of
    # H there fails scikit-learn too.  The equivalence that does hold is tested in
    # test_minibatch.py::test_partial_fit_over_a_stream_equals_fit_in_the_same_batches.
    "test_minibatch_nmf_partial_fit",
}

_BIND = '''
import sklearn.decomposition as skd

import fastnmf


def pytest_configure(config):
    skd.NMF = fastnmf.NMF
    skd.non_negative_factorization = fastnmf.non_negative_factorization
    skd.MiniBatchNMF = fastnmf.MiniBatchNMF
'''


def _sklearn_test_file():
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "decomposition" / "tests" / "test_nmf.py"
    return path if path.is_file() else None


def test_sklearn_test_nmf_passes_with_fastnmf(tmp_path):
    path = _sklearn_test_file()
    if path is None:
        pytest.skip("scikit-learn's decomposition/tests/test_nmf.py is not installed "
                    "(a wheel without tests)")
    (tmp_path / "fastnmf_sklearn_bind.py").write_text(_BIND, encoding="utf-8")
    report = tmp_path / "report.xml"
    # the subprocess imports the fastnmf this process imported (not another copy)
    here = str(Path(fastnmf.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path), here, *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", str(path), "-p", "fastnmf_sklearn_bind", "-q",
         "-p", "no:cacheprovider", "-o", "addopts=", f"--junitxml={report}",
         "-W", "ignore::DeprecationWarning"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert report.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    cases = ET.parse(report).getroot().iter("testcase")
    outcome = {}
    for case in cases:
        bad = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        outcome[case.get("name")] = "failed" if bad else ("skipped" if skipped else "passed")
    assert len(outcome) > 200, proc.stdout[-3000:]
    failed = {name for name, o in outcome.items() if o == "failed"}
    unexpected = {name for name in failed if re.sub(r"\[.*", "", name) not in EXPECTED_FAILURES}
    assert not unexpected, (f"scikit-learn's test_nmf.py fails with fastnmf: "
                            f"{sorted(unexpected)}\n{proc.stdout[-5000:]}")
    passed = sum(o == "passed" for o in outcome.values())
    assert passed >= len(outcome) - len(EXPECTED_FAILURES)
    assert any(re.search(r"minibatch|mbnmf", n, re.I) and o == "passed"
               for n, o in outcome.items())


@pytest.mark.parametrize("init", ["nndsvd", "nndsvda", "nndsvdar"])
def test_nndsvd_rank_error_has_sklearns_wording(init):
    """The checks of scikit-learn's test_parameter_checking after its cd + KL one."""
    A = np.ones((2, 2))
    msg = re.escape(f"init = '{init}' can only be used when "
                    "n_components <= min(n_samples, n_features)")
    with pytest.raises(ValueError, match=msg):
        fastnmf.NMF(3, init=init).fit(A)
    with pytest.raises(ValueError, match=msg):
        fastnmf.non_negative_factorization(A, n_components=3, init=init)
    with pytest.raises(ValueError, match=msg + r".*rank"):  # and names nmf()'s argument
        fastnmf.nmf(A, 3, init=init)
    with pytest.raises(ValueError, match="Negative values in data passed to"):
        fastnmf.NMF().fit(-A)
    clf = fastnmf.NMF(2, tol=0.1).fit(A)
    with pytest.raises(ValueError, match="Negative values in data passed to"):
        clf.transform(-A)
