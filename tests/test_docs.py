"""The documentation: the site builds in strict mode, and the docstring examples run."""

import doctest
import importlib
import importlib.util
import pathlib
import subprocess
import sys

import pytest

from fastnmf import datasets

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULES = ["fastnmf._fit", "fastnmf.estimator", "fastnmf.datasets", "fastnmf.cluster",
           "fastnmf.demo",
           "fastnmf.minibatch"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest(s) failed in {name}"


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="mkdocs / mkdocstrings not installed: pip install -e '.[docs]'")
def test_site_builds_strict(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert (tmp_path / "index.html").is_file()
    assert "fastnmf.nmf" in (tmp_path / "api" / "index.html").read_text(encoding="utf-8")


@pytest.mark.skipif(datasets.missing_reason("news") is not None,
                    reason=f"NewsArticles not available: {datasets.missing_reason('news')}")
def test_clustering_page_output_is_a_fresh_run(capsys):
    """docs/clustering.md prints the output of its own code, as it runs today."""
    import re

    page = (ROOT / "docs" / "clustering.md").read_text(encoding="utf-8")
    section = page[page.index("## Topics in news articles"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    expected = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "docs/clustering.md", "exec"), {})
    assert capsys.readouterr().out == expected, (
        "docs/clustering.md's output block differs from a fresh run of its code: rerun it "
        "and paste the output (and update the prose that quotes it)")
