"""Job files: a path, or an example job shipped with ec2dbn named like a bundled stack is.

`ec2dbn train --local seed-mnist5k` and `ec2dbn plan seed-mnist` work from any folder and from an installed
wheel; `ec2dbn examples` lists what is there. An example's description is the first line of its leading
comment (each file in examples/ starts with a one-line summary).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ec2dbn import resources
from ec2dbn.errors import ConfigError


@dataclass(frozen=True)
class Example:
    """An example job shipped with ec2dbn: its name (the file's stem), file and one-line description."""

    name: str
    path: Path
    description: str


def _description(path: Path) -> str:
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text.startswith("#"):
            break
        if text.lstrip("# "):
            return text.lstrip("# ").strip()
    return ""


def bundled_examples() -> list[Example]:
    """The example jobs shipped with ec2dbn, by name."""
    try:
        folder = resources.examples_dir()
    except FileNotFoundError:
        return []
    return [Example(p.stem, p, _description(p)) for p in sorted(folder.glob("*.yaml"))]


def job_path(ref: str | os.PathLike[str]) -> Path:
    """The job file `ref` names: an existing file, else a bundled example by name (with or without
    `.yaml`, no folder part). ConfigError naming the bundled examples when it is neither."""
    text = os.fspath(ref)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if "/" not in text and os.sep not in text:
        for example in bundled_examples():
            if example.name == text.removesuffix(".yaml"):
                return example.path
    names = ", ".join(e.name for e in bundled_examples()) or "none"
    raise ConfigError(f"job file {text} not found, nor a bundled example ({names}; `ec2dbn examples`)")
