"""The checks the job schema (trainer.config) is built from: sections with only known keys, per-layer
values, sizes the CUDA kernels can index, numbers float32 can hold, and the short renderings of bad values
that start every JobError message. Standard library only, like the schema.
"""

from __future__ import annotations

import difflib
import math
import struct
from collections.abc import Callable, Mapping
from typing import Any

from trainer.errors import JobError, printable

#: The largest layer or minibatch size: the CUDA kernels index rows and units with 32-bit ints.
MAX_SIZE = 2**31 - 1
#: float32's range: the largest finite value and the smallest non-zero (subnormal) magnitude.
FLOAT32_MAX = 3.4028234663852886e38
FLOAT32_TINY = 1.401298464324817e-45


def section(
    mapping: Any, where: str, allowed: tuple[str, ...], prefix: str | None = None
) -> Mapping[str, Any]:
    if not isinstance(mapping, Mapping):
        raise JobError(f"{where}: expected a mapping of keys, got {describe(mapping)}")
    reject_unknown(mapping, allowed, where if prefix is None else prefix)
    return mapping


def reject_unknown(mapping: Mapping[Any, Any], allowed: tuple[str, ...], prefix: str) -> None:
    for k in mapping:
        if k not in allowed:
            path = f"{prefix}.{printable(k)}" if prefix else printable(k)
            close = difflib.get_close_matches(str(k), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(allowed)})"
            raise JobError(f"{path}: unknown key{hint}")


def per_layer(
    raw: Any, n: int, check: Callable[[Any], bool], what: str, convert: Callable[[Any], Any], path: str
) -> tuple[Any, ...]:
    """A scalar (repeated n times) or a list of exactly n values, each passing `check`."""
    noun = ("integer" if convert is int else "number") + ("s" if n != 1 else "")
    expected = f"expected {what} or a list of {n} {noun}"
    if isinstance(raw, list | tuple):
        if len(raw) != n:
            raise JobError(f"{path}: {expected} (one per weight layer), got a list of {len(raw)}")
        for i, x in enumerate(raw):
            if not check(x):
                raise JobError(f"{path}[{i}]: expected {what}, got {describe(x)}")
            if convert is float:
                check_float32(x, f"{path}[{i}]")
        return tuple(convert(x) for x in raw)
    if not check(raw):
        raise JobError(f"{path}: {expected}, got {describe(raw)}")
    if convert is float:
        check_float32(raw, path)
    return (convert(raw),) * n


def check_size(n: int, path: str) -> None:
    """JobError for a size the CUDA kernels cannot index (they use 32-bit ints)."""
    if n > MAX_SIZE:
        raise JobError(
            f"{path}: {n:,} is more than the {MAX_SIZE:,} the trainer can index; use a smaller size"
        )


def check_float32(x: float, path: str) -> None:
    """JobError unless the finite number x survives conversion to float32 (no overflow to inf, and no
    non-zero value rounding to 0): the trainer's weights, rates and costs are float32 on the device."""
    try:
        as_f32 = struct.unpack("f", struct.pack("f", x))[0]
    except OverflowError:
        as_f32 = math.inf
    if math.isinf(as_f32) or (as_f32 == 0) != (x == 0):
        raise JobError(
            f"{path}: {describe(x)} cannot be represented in float32, the precision the trainer computes "
            f"in (magnitudes from {FLOAT32_TINY:.2g} to {FLOAT32_MAX:.3g}, or 0); use a value in that range"
        )


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_number(x: Any) -> bool:
    return (isinstance(x, int | float) and not isinstance(x, bool)) and math.isfinite(x)


def nonneg_int(x: Any, path: str) -> int:
    if not is_int(x) or x < 0:
        raise JobError(f"{path}: expected an integer >= 0, got {describe(x)}")
    return int(x)


def describe(x: Any) -> str:
    """A short rendering of a bad value for an error message."""
    if x is None:
        return "nothing (null)"
    if isinstance(x, Mapping):
        return "a mapping"
    if isinstance(x, list | tuple):
        text = repr(list(x))
        return text if len(text) <= 60 else f"a list of {len(x)}"
    text = repr(x)
    return text if len(text) <= 60 else text[:57] + "..."


def plain(x: Any) -> Any:
    return list(x) if isinstance(x, tuple) else x
