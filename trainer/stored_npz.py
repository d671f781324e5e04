"""Reading checkpoint.npz and model.npz back as untrusted input.

The trainer writes both files, but they are read back from wherever they were copied (an instance, a
results folder, a user's download), so every array is checked against the shape the job implies from its
.npy header alone, before any data is read: a header that promises 10**13 floats is refused, not
allocated, and a W0 of the wrong shape is named instead of failing later inside a matrix product. The
`meta` entry must be a JSON object, and its fields the types training and logging expect.

Every problem is one line from `StoredNpz.problem`, raised as the caller's error type (CheckpointError for
checkpoints, DataError for models) with the file's path in front.
"""

from __future__ import annotations

import itertools
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from trainer.errors import TrainerError

#: dtype kinds accepted for parameter arrays (converted to float32) and for index arrays.
NUMBERS, INTEGERS = "fiu", "iu"


def array_headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in the .npz at `path`, read from the .npy headers only.

    Raises ValueError when an entry is not a .npy array of the size its header promises (truncated or
    forged), and OSError / zipfile.BadZipFile for files that are not readable zip archives.
    """
    out: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[: -len(".npy")]
            with zf.open(info) as fh:
                version = npy_format.read_magic(fh)
                if version == (1, 0):
                    shape, _, dtype = npy_format.read_array_header_1_0(fh)
                elif version == (2, 0):
                    shape, _, dtype = npy_format.read_array_header_2_0(fh)
                else:
                    raise ValueError(f"{name}: .npy format version {version} is not one NumPy writes for us")
                data_bytes = info.file_size - fh.tell()
            promised = math.prod(shape) * dtype.itemsize
            if dtype.hasobject or promised != data_bytes:
                raise ValueError(
                    f"{name}: its header promises {promised:,} bytes of {dtype}, it holds {data_bytes:,}"
                )
            out[name] = (tuple(int(n) for n in shape), dtype)
    return out


class StoredNpz:
    """An .npz of the trainer's, opened with its headers checked. Use as a context manager.

    `error` is the exception type every problem is raised as; `what` names the file's kind in messages
    ("checkpoint", "model file"); `advice` ends them (e.g. "delete it to start over").
    """

    def __init__(self, path: Path, error: type[TrainerError], what: str, advice: str = "") -> None:
        self.path, self.error, self.what, self.advice = Path(path), error, what, advice
        try:
            self.headers = array_headers(self.path)
            self._npz = np.load(self.path, allow_pickle=False)
        except FileNotFoundError:
            raise error(f"{self.path}: no such {what}") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise self.problem(f"not a readable .npz file ({exc})") from None

    def __enter__(self) -> StoredNpz:
        return self

    def __exit__(self, *exc: object) -> None:
        self._npz.close()

    def problem(self, text: str) -> TrainerError:
        """The error for one problem with this file, as one line."""
        advice = f"; {self.advice}" if self.advice else ""
        return self.error(f"{self.path}: unreadable {self.what}: {' '.join(text.split())}{advice}")

    def has(self, name: str) -> bool:
        return name in self.headers

    def meta(self) -> dict[str, Any]:
        """The `meta` entry: a JSON object (anything else is a problem)."""
        if "meta" not in self.headers:
            raise self.problem("it has no meta entry")
        shape, dtype = self.headers["meta"]
        if shape != () or dtype.kind != "U":
            raise self.problem(f"meta is a {dtype} array of shape {shape}, not a JSON text")
        try:
            meta = json.loads(str(self._npz["meta"]))
        except (ValueError, RecursionError) as exc:
            raise self.problem(f"meta is not JSON ({exc})") from None
        if not isinstance(meta, dict):
            raise self.problem(f"meta is a JSON {type(meta).__name__}, not an object")
        return meta

    def array(
        self, name: str, shape: tuple[int | None, ...], kinds: str = NUMBERS, why: str = ""
    ) -> np.ndarray:
        """Array `name`, whose shape must be `shape` (None: any length) and dtype of one of `kinds`.

        `why` says where the expected shape comes from, e.g. "for model.layers [64, 10]".
        """
        if name not in self.headers:
            raise self.problem(f"it has no array {name}")
        got, dtype = self.headers[name]
        if len(got) != len(shape) or any(
            want is not None and want != n for want, n in zip(shape, got, strict=True)
        ):
            expected = (
                "("
                + ", ".join("n" if n is None else str(n) for n in shape)
                + ("," if len(shape) == 1 else "")
                + ")"
            )
            raise self.problem(f"{name} has shape {got}, expected {expected} {why}".rstrip())
        if dtype.kind not in kinds:
            raise self.problem(
                f"{name} holds {dtype} values, expected {'integers' if kinds == INTEGERS else 'numbers'}"
            )
        try:
            return np.asarray(self._npz[name])
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError) as exc:
            raise self.problem(f"{name} cannot be read ({type(exc).__name__}: {exc})") from None

    def params(self, layers: tuple[int, ...], why: str) -> dict[str, np.ndarray]:
        """W{i} (n_i, n_{i+1}), b{i} (n_{i+1},), c{i} (n_i,) for every weight layer of `layers`."""
        out: dict[str, np.ndarray] = {}
        for i, (n_in, n_out) in enumerate(itertools.pairwise(layers)):
            out[f"W{i}"] = self.array(f"W{i}", (n_in, n_out), why=why)
            out[f"b{i}"] = self.array(f"b{i}", (n_out,), why=why)
            out[f"c{i}"] = self.array(f"c{i}", (n_in,), why=why)
        return out


# ------------------------------------------------------------------------------------------ meta fields


def is_int(x: Any, low: int = 0) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= low


def is_number(x: Any) -> bool:
    """An int or float (NaN and infinities included: a diverged run's records hold them)."""
    return isinstance(x, int | float) and not isinstance(x, bool)


def history_problem(history: Any) -> str | None:
    """What is wrong with a stored list of epoch records (see trainer.loop), or None when nothing is.

    Each record: phase "pretrain" (layer >= 1) or "finetune" (err a number), epoch >= 1, loss and seconds
    numbers, and test_loss / test_err / eval_seconds numbers when present.
    """
    if not isinstance(history, list):
        return f"history is a {type(history).__name__}, not a list of epoch records"
    for i, record in enumerate(history):
        if not isinstance(record, dict):
            return f"history[{i}] is a {type(record).__name__}, not an epoch record"
        phase = record.get("phase")
        numbers = ["loss", "seconds", *(k for k in ("test_loss", "test_err", "eval_seconds") if k in record)]
        if phase == "finetune":
            numbers.append("err")
        elif phase != "pretrain" or not is_int(record.get("layer"), 1):
            return f"history[{i}] has phase {phase!r} and layer {record.get('layer')!r}"
        if not is_int(record.get("epoch"), 1):
            return f"history[{i}].epoch is {record.get('epoch')!r}, not an epoch number"
        for key in numbers:
            if not is_number(record.get(key)):
                return f"history[{i}].{key} is {record.get(key)!r}, not a number"
    return None
