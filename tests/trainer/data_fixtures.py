"""Helpers for the data-loader tests: small real IDX files cut from Debian's Fashion-MNIST, and a
loopback HTTP server that plays a set of download mirrors.

Only the first records of the Debian files are decompressed (gzip streams), so building a subset
costs milliseconds, not the 0.3 s a full decompression takes.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("t10k", "images"): "t10k-images-idx3-ubyte",
    ("t10k", "labels"): "t10k-labels-idx1-ubyte",
}


def require_fashion() -> None:
    """Skip (with the fix) when Debian's dataset-fashion-mnist is not installed; CI installs it."""
    missing = [n for n in IDX_NAMES.values() if not (FASHION_DIR / f"{n}.gz").is_file()]
    if missing:
        pytest.skip(f"needs `apt-get install dataset-fashion-mnist` ({FASHION_DIR} lacks {missing[0]}.gz)")


@lru_cache(maxsize=8)
def fashion_subset(split: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n real Fashion-MNIST images (n, 28, 28) uint8 and labels (n,) uint8 of `split`."""
    require_fashion()
    with gzip.open(FASHION_DIR / f"{IDX_NAMES[split, 'images']}.gz", "rb") as f:
        images = np.frombuffer(f.read(16 + n * 784)[16:], dtype=np.uint8).reshape(n, 28, 28)
    with gzip.open(FASHION_DIR / f"{IDX_NAMES[split, 'labels']}.gz", "rb") as f:
        labels = np.frombuffer(f.read(8 + n)[8:], dtype=np.uint8)
    return images, labels


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 array as an IDX file: magic 00 00 08 ndim, big-endian dimensions, the bytes."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write an IDX file, gzipped when the name ends in .gz (mtime 0: same bytes, same MD5)."""
    raw = idx_bytes(array)
    path.write_bytes(gzip.compress(raw, mtime=0) if path.suffix == ".gz" else raw)
    return path


def write_idx_set(folder: Path, n_train: int, n_test: int | None, gz: bool = True) -> dict[str, str]:
    """Write train (and t10k when n_test) IDX images + labels from Fashion-MNIST; return {file name: md5}."""
    folder.mkdir(parents=True, exist_ok=True)
    sums = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        if n is None:
            continue
        images, labels = fashion_subset(split, n)
        for kind, array in (("images", images), ("labels", labels)):
            name = IDX_NAMES[split, kind] + (".gz" if gz else "")
            sums[name] = hashlib.md5(write_idx(folder / name, array).read_bytes()).hexdigest()
    return sums


@dataclass
class Mirrors:
    """A loopback HTTP server over `root`: URL prefix `base + 'good/'` serves root/good/, and so on.

    `requests` records every requested path. Paths under /short/ answer with a Content-Length larger
    than the body and then close the connection (a download cut off midway).
    """

    root: Path
    base: str = ""
    requests: list[str] = field(default_factory=list)
    server: http.server.ThreadingHTTPServer | None = None

    def url(self, prefix: str) -> str:
        return f"{self.base}{prefix}/"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@contextmanager
def serve_mirrors(root: Path) -> Iterator[Mirrors]:
    """Run a Mirrors server on 127.0.0.1 at a port the OS picks, for the duration of the block."""
    mirrors = Mirrors(root)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):
            mirrors.requests.append(self.path)
            if self.path.startswith("/short/"):
                body = (root / "good" / self.path.rsplit("/", 1)[1]).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            super().do_GET()

        def log_message(self, format, *args):  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    mirrors.server = server
    mirrors.base = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield mirrors
    finally:
        mirrors.stop()
        thread.join(timeout=5)
