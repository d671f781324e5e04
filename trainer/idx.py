"""Read IDX files (the MNIST / Fashion-MNIST format), plain or gzipped, with NumPy only.

An IDX file is a 4-byte magic number `00 00 TT NN` (TT the element type, NN the number of
dimensions), NN big-endian uint32 dimension sizes, then the elements in C order, big-endian.
Every way a file can be broken (not gzip, truncated gzip, wrong magic, fewer or more bytes than
the header promises) becomes a one-line `DataError` naming the file.
"""

from __future__ import annotations

import gzip
import re
import zlib
from pathlib import Path

import numpy as np

from trainer.errors import DataError

# IDX element type code -> big-endian NumPy dtype.
_IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"

# `train-images-idx3-ubyte`, `t10k-labels.idx1-ubyte` (the Kaggle spelling), optionally `.gz` (fullmatch).
_IDX_NAME = re.compile(r"(train|t10k)-(images|labels)[-.]idx([13])-ubyte(\.gz)?")


def parse_idx(raw: bytes, what: str) -> np.ndarray:
    """Decode the bytes of one (decompressed) IDX file into an array of the header's shape.

    The result is a read-only view on `raw` (no copy) for uint8 data. `what` names the file in errors.
    """
    if len(raw) < 4:
        raise DataError(f"{what}: not an IDX file (only {len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataError(f"{what}: not an IDX file (bad magic number 0x{raw[:4].hex()})")
    dtype = _IDX_TYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{what}: truncated IDX header ({len(raw)} bytes, {ndim} dimensions)")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        shape = "x".join(map(str, dims))
        raise DataError(
            f"{what}: IDX size mismatch: header says {shape} ({expected} bytes) but the file has "
            f"{len(raw)} bytes (truncated or corrupted; delete it to download it again)"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)


def read_idx_bytes(path: Path) -> bytes:
    """The decompressed payload of an IDX file; gzip is detected by its magic, not the file name."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw[:2] != _GZIP_MAGIC:
        if path.suffix == ".gz":
            raise DataError(f"{path}: not a gzip file (corrupted download?)")
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupted or truncated gzip data ({exc})") from None


def read_idx(path: Path) -> np.ndarray:
    """Load one IDX file (plain or .gz) as an array shaped like its header, e.g. (60000, 28, 28) uint8."""
    return parse_idx(read_idx_bytes(path), str(path))


def idx_name(split: str, kind: str, gz: bool = True) -> str:
    """The canonical file name, e.g. idx_name('train', 'images') == 'train-images-idx3-ubyte.gz'."""
    ndim = 3 if kind == "images" else 1
    return f"{split}-{kind}-idx{ndim}-ubyte" + (".gz" if gz else "")


def find_idx_files(folder: Path) -> dict[str, dict[str, Path]]:
    """IDX files in `folder` by split and kind: {'train': {'images': p, 'labels': p}, 't10k': {...}}.

    Accepts the usual spellings (`-idx3-ubyte`, `.idx3-ubyte`, with or without `.gz`); when both a
    plain and a gzipped copy exist the plain one wins (no decompression needed).
    """
    found: dict[str, dict[str, Path]] = {}
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise DataError(f"cannot list {folder}: {exc.strerror or exc}") from None
    for entry in entries:
        match = _IDX_NAME.fullmatch(entry.name)
        if not match or not entry.is_file():
            continue
        split, kind, _, gz = match.groups()
        previous = found.setdefault(split, {}).get(kind)
        if previous is None or (previous.suffix == ".gz" and not gz):
            found[split][kind] = entry
    return found
