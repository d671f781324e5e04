"""Strict JSON out: every JSON file the trainer or ec2dbn writes goes through `dumps` (or `write_json`).

Python's json module writes float('nan') and float('inf') as `NaN` / `Infinity`, which are not JSON: jq,
JavaScript's JSON.parse and strict parsers reject the whole file. Here a non-finite float becomes `null`
(the same as "no value", which readers already handle), and `allow_nan=False` makes any value that slips
past the conversion a ValueError instead of a broken file. Standard library only: trainer.spot_watch uses it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from trainer.atomic import atomic_write


def finite_or_null(obj: Any) -> Any:
    """`obj` with every non-finite float (NaN, ±inf; NumPy's float64 too) replaced by None, recursively
    through dicts, lists and tuples (tuples become lists, as JSON writes them anyway)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_or_null(v) for v in obj]
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """json.dumps(obj, **kwargs), but strict: non-finite floats are written as null."""
    return json.dumps(finite_or_null(obj), allow_nan=False, **kwargs)


def write_json(path: str | Path, obj: Any, *, indent: int | None = 2) -> Path:
    """Write `obj` as strict JSON (plus a newline) to `path`, atomically (trainer.atomic)."""
    text = dumps(obj, indent=indent) + "\n"
    return atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
