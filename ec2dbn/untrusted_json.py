"""Reading JSON that came from an instance or sits in a results folder: it may be anything.

metrics.json, bench.json and interruption.json are written on the instance and pulled; run.json and
current-run.json are ours, but a results folder is edited, copied and truncated by hand. Each may be a
list, `{}`, cut off mid-write, huge, nested a hundred thousand deep, or hold a string where a number
belongs. `read_object` turns every way the file can be wrong into one ConfigError naming the file; the
`text`/`number`/`mapping` helpers read one field, answering None (or {}) for a value of the wrong type,
so no reader ever trips over a field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ec2dbn.errors import ConfigError

#: The largest results JSON file read (bytes): a metrics.json of ten thousand epochs is about 3 MB.
MAX_JSON_BYTES = 32 * 1024 * 1024


def read_object(path: Path, what: str | None = None) -> dict[str, Any]:
    """The JSON object in `path`. NaN and ±Infinity (not JSON, but Python writes them) read as None.

    Raises ConfigError, one line naming the file, when it is missing, unreadable, larger than
    MAX_JSON_BYTES, not UTF-8, not JSON (e.g. truncated), nested too deeply, or not an object.
    """
    what = what or path.name
    too_large = f"too large for a {what} (at most {MAX_JSON_BYTES // 2**20} MiB)"
    try:
        size = path.stat().st_size
        if size > MAX_JSON_BYTES:
            raise ConfigError(f"{path}: {size / 2**20:.1f} MiB, {too_large}")
        with path.open("rb") as fh:
            raw = fh.read(MAX_JSON_BYTES + 1)  # the file may have grown since
        if len(raw) > MAX_JSON_BYTES:
            raise ConfigError(f"{path}: {too_large}")
        data = json.loads(raw.decode("utf-8"), parse_constant=lambda _name: None)
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a {what} (not UTF-8 text)") from None
    except RecursionError:
        raise ConfigError(f"{path}: not a {what} (JSON nested too deeply)") from None
    except ValueError as exc:  # JSONDecodeError, or an integer with more digits than Python reads
        detail = str(exc)[:120]
        raise ConfigError(f"{path}: not a {what} (not valid JSON: {detail}; cut off mid-write?)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not a {what} (expected a JSON object, found {_kind(data)})")
    return data


def text(value: Any) -> str | None:
    """`value` when it is a non-empty string, else None."""
    return value if isinstance(value, str) and value else None


def number(value: Any, *, minimum: float | None = None) -> float | None:
    """`value` as a float when it is a finite JSON number (not a bool) at least `minimum`, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        x = float(value)
    except OverflowError:  # an int too large for a float
        return None
    if not math.isfinite(x) or (minimum is not None and x < minimum):
        return None
    return x


def whole(value: Any, *, minimum: int | None = None) -> int | None:
    """`value` when it is a JSON integer (not a bool) at least `minimum`, else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return None if minimum is not None and value < minimum else value


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` when it is a JSON object, else {}."""
    return value if isinstance(value, Mapping) else {}


def objects(value: Any) -> list[Mapping[str, Any]]:
    """The objects in `value` when it is a JSON list (other items left out), else []."""
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _kind(data: Any) -> str:
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "a boolean"
    if isinstance(data, int | float):
        return "a number"
    return {list: "a list", str: "a string"}.get(type(data), type(data).__name__)
