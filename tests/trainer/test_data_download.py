"""The mirror downloader, end to end over real HTTP on loopback: mirror fallback, MD5 checks, the cache,
atomic writes, and the offline error. The served files are small real Fashion-MNIST subsets in IDX
format; their MD5s go into trainer.download.CHECKSUMS (the module's test seam) in place of MNIST's.
"""

from __future__ import annotations

import gzip
import socket
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.data_fixtures import fashion_subset, idx_bytes, serve_mirrors, write_idx_set
from trainer import data, download
from trainer.config import DataConfig
from trainer.data import load_data
from trainer.errors import DataError

N_TRAIN, N_TEST = 300, 100
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A running mirror server over tmp/site with good/ (right files), bad/ (other files, same names),
    empty/ (404s) and short/ (cut-off bodies); CHECKSUMS['mnist'] set to good/'s MD5s."""
    root = tmp_path / "site"
    sums = write_idx_set(root / "good", N_TRAIN, N_TEST)
    write_idx_set(root / "bad", N_TRAIN + 1, N_TEST + 1)  # valid IDX, wrong content → wrong MD5
    (root / "empty").mkdir()
    monkeypatch.setitem(download.CHECKSUMS, "mnist", sums)
    with serve_mirrors(root) as mirrors:
        mirrors.sums = sums
        yield mirrors


def cfg(mirrors, cache: Path, **kw) -> DataConfig:
    return DataConfig(name=kw.pop("name", "mnist"), mirrors=tuple(mirrors), cache_dir=str(cache), **kw)


def expected_pool() -> tuple[np.ndarray, np.ndarray]:
    """What the good/ files hold, pooled train then t10k: X (400, 784) uint8, y (400,)."""
    (xa, ya), (xb, yb) = fashion_subset("train", N_TRAIN), fashion_subset("t10k", N_TEST)
    return np.concatenate([xa, xb]).reshape(-1, 784), np.concatenate([ya, yb])


def test_first_mirror_404_then_second_serves_and_data_is_exact(site, tmp_path):
    lines: list[str] = []
    ds = load_data(cfg([site.url("empty"), site.url("good")], tmp_path / "cache"), log=lines.append)

    assert len(ds.y_train) == 268 and len(ds.y_test) == 132  # 400 pooled, ceil(0.33 * 400) = 132
    X, y = expected_pool()
    train, test = data.split_indices(400, 0.33, 42)
    np.testing.assert_array_equal(ds.X_train, X[train].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(ds.y_test, y[test])
    assert ds.source == str(tmp_path / "cache" / "mnist")
    assert any("HTTP 404" in line for line in lines)
    # every file tried on empty/ first, then fetched from good/: 8 requests, 4 files cached and verified
    assert len(site.requests) == 8
    cached = sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir())
    assert cached == sorted(site.sums)  # no .part leftovers
    for name, md5 in site.sums.items():
        assert download.md5_of(tmp_path / "cache" / "mnist" / name) == md5


def test_checksum_mismatch_moves_on_to_the_next_mirror(site, tmp_path):
    ds = load_data(cfg([site.url("bad"), site.url("good")], tmp_path / "cache"))
    assert len(ds.y_train) + len(ds.y_test) == 400  # good/'s files, not bad/'s 402


def test_checksum_mismatch_everywhere_is_one_clear_line_and_leaves_nothing(site, tmp_path):
    with pytest.raises(DataError) as err:
        load_data(cfg([site.url("bad")], tmp_path / "cache"))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"could not download mnist {TRAIN_IMAGES} from any of 1 mirror (last error: ")
    assert f"checksum mismatch (md5 {download.md5_of(site.root / 'bad' / TRAIN_IMAGES)}, " in msg
    assert f"expected {site.sums[TRAIN_IMAGES]})" in msg
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []  # no bad file, no temp file


def test_download_cut_off_midway_is_rejected_and_next_mirror_used(site, tmp_path, monkeypatch):
    monkeypatch.setitem(download.CHECKSUMS, "mnist", {})  # no MD5: only the length check can catch it
    with pytest.raises(DataError, match=r"connection closed after \d+ of \d+ bytes"):
        load_data(cfg([site.url("short")], tmp_path / "cache"))
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []

    ds = load_data(cfg([site.url("short"), site.url("good")], tmp_path / "cache"))
    assert len(ds.y_train) + len(ds.y_test) == 400


def test_cached_files_are_used_without_network(site, tmp_path):
    cache = tmp_path / "cache"
    first = load_data(cfg([site.url("good")], cache))
    site.stop()
    n_requests = len(site.requests)

    again = load_data(cfg([site.url("good")], cache))  # the server is gone: any request would fail
    assert len(site.requests) == n_requests
    np.testing.assert_array_equal(first.X_train, again.X_train)
    np.testing.assert_array_equal(first.y_test, again.y_test)


def test_corrupt_cached_file_is_downloaded_again(site, tmp_path):
    cache = tmp_path / "cache"
    load_data(cfg([site.url("good")], cache))
    cached = cache / "mnist" / TRAIN_IMAGES
    cached.write_bytes(cached.read_bytes()[:1000])  # truncated by, say, a full disk
    site.requests.clear()

    ds = load_data(cfg([site.url("good")], cache))
    assert site.requests == [f"/good/{TRAIN_IMAGES}"]  # only the bad file was fetched again
    assert download.md5_of(cached) == site.sums[TRAIN_IMAGES]
    assert len(ds.y_train) == 268


def closed_port_url() -> str:
    """An http:// URL on loopback where nothing listens (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


def test_offline_error_names_the_file_the_mirrors_and_the_fix(tmp_path):
    mirrors = [closed_port_url() for _ in range(3)]
    with pytest.raises(DataError) as err:
        load_data(cfg(mirrors, tmp_path / "cache"))
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"could not download mnist {TRAIN_IMAGES} from any of 3 mirrors (last error: ")
    assert f"{mirrors[2]}{TRAIN_IMAGES}: Connection refused" in msg
    assert msg.endswith("); check the network or set data.mirrors / data.cache_dir")
    assert err.value.exit_code == 2


def test_empty_mirror_list_with_nothing_cached(tmp_path):
    with pytest.raises(DataError, match=r"not cached in .* and data.mirrors is empty"):
        load_data(cfg([], tmp_path / "cache"))


def test_cache_dir_defaults_to_env_variable(site, tmp_path, monkeypatch):
    monkeypatch.setenv("EC2DBN_DATA_DIR", str(tmp_path / "envcache"))
    ds = load_data(DataConfig(name="mnist", mirrors=(site.url("good"),)))
    assert ds.source == str(tmp_path / "envcache" / "mnist")
    assert (tmp_path / "envcache" / "mnist" / TRAIN_IMAGES).is_file()


def test_default_mirrors_are_the_documented_ones():
    assert download.DEFAULT_MIRRORS["mnist"] == (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    )
    assert download.CHECKSUMS["mnist"][TRAIN_IMAGES] == "f68b3c2dcbeaaa9fbdd348bbdeb94873"


def test_fashion_mnist_downloads_when_debian_files_are_absent(site, tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_SYSTEM_DIR", tmp_path / "not-installed")
    monkeypatch.setitem(download.CHECKSUMS, "fashion-mnist", site.sums)
    ds = load_data(cfg([site.url("good")], tmp_path / "cache", name="fashion-mnist"))
    assert ds.name == "fashion-mnist"
    assert ds.source == str(tmp_path / "cache" / "fashion-mnist")
    assert len(ds.y_train) + len(ds.y_test) == 400


def test_downloaded_file_that_is_not_valid_idx_is_a_data_error(site, tmp_path, monkeypatch):
    # A mirror serving a file whose MD5 matches the table but whose IDX header lies (e.g. a wrong
    # table entry): the IDX check still refuses it.
    bad = site.root / "liar"
    bad.mkdir()
    for name in site.sums:
        (bad / name).write_bytes((site.root / "good" / name).read_bytes())
    raw = idx_bytes(fashion_subset("train", N_TRAIN)[0])[:-784]  # one image short of the header's count
    (bad / TRAIN_IMAGES).write_bytes(gzip.compress(raw, mtime=0))
    sums = dict(site.sums, **{TRAIN_IMAGES: download.md5_of(bad / TRAIN_IMAGES)})
    monkeypatch.setitem(download.CHECKSUMS, "mnist", sums)
    with pytest.raises(DataError, match=r"IDX size mismatch: header says 300x28x28"):
        load_data(cfg([site.url("liar")], tmp_path / "cache"))
