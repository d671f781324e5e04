"""Reading JSON the way jq or JavaScript's JSON.parse do: `NaN`, `Infinity` and `-Infinity` are errors.

Python's json.loads accepts them, so a test that parses a file with it cannot tell a strict file from one
that breaks every other tool; these helpers refuse them (json.loads's `parse_constant` hook).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads_strict(text: str) -> Any:
    """json.loads, refusing NaN / Infinity / -Infinity (ValueError)."""
    return json.loads(text, parse_constant=_refuse)


def check_folder(folder: Path) -> list[str]:
    """Parse, strictly, every .json file, every line of every .jsonl file and the JSON `meta` of every .npz
    under `folder`; returns the checked names (relative), raising AssertionError naming a bad one."""
    checked = []
    for path in sorted(folder.rglob("*")):
        texts: list[str] = []
        if path.suffix == ".json":
            texts = [path.read_text(encoding="utf-8")]
        elif path.suffix == ".jsonl":
            texts = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                texts = [str(npz["meta"])] if "meta" in npz.files else []
        else:
            continue
        for text in texts:
            try:
                loads_strict(text)
            except ValueError as exc:
                raise AssertionError(f"{path}: not strict JSON ({exc}): {text[:200]}") from None
        checked.append(str(path.relative_to(folder)))
    return checked
