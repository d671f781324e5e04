"""Job files: a path, or an example job shipped with ec2dbn named like a bundled stack is.

`ec2dbn train --local seed-mnist5k` and `ec2dbn plan seed-mnist` work from any folder and from an installed
wheel; `ec2dbn examples` lists what is there. An example's description is the first line of its leading
comment (each file in examples/ starts with a one-line summary).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ec2dbn import package_data
from ec2dbn.errors import ConfigError
from trainer.safe_yaml import YamlError, read_yaml_file


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
        folder = package_data.examples_dir()
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
    if path.is_dir():
        hint = "name a YAML file in it, or an example (`ec2dbn examples`)"
        raise ConfigError(f"{text} is a folder, not a job file: {hint}")
    if "/" not in text and os.sep not in text:
        for example in bundled_examples():
            if example.name == text.removesuffix(".yaml"):
                return example.path
    names = ", ".join(e.name for e in bundled_examples()) or "none"
    raise ConfigError(f"job file {text} not found, nor a bundled example ({names}; `ec2dbn examples`)")


def shown_ref(path: Path) -> str:
    """How to name `path` back to the user: a bundled example by its name, any other file as given."""
    for example in bundled_examples():
        if example.path == path:
            return example.name
    return str(path)


def is_sweep_file(path: Path) -> bool:
    """The file is a sweep (a job with a top-level `sweep:` section), which `train` and `plan` do not take.

    Read only to tell a user which verb to use: any problem reading it is left to the job loader's own error.
    """
    from trainer.safe_yaml import YamlError, read_yaml_file

    try:
        data = read_yaml_file(path, "job file")
    except YamlError:
        return False
    return isinstance(data, dict) and "sweep" in data


def sweep_refused(path: Path) -> ConfigError:
    """One line for a sweep file given to a verb that runs one job: the command that runs it."""
    ref = shown_ref(path)
    return ConfigError(f"{ref} is a sweep: run `ec2dbn sweep {ref}` (add --local to run it here)")


def read_job_mapping(path: Path) -> tuple[dict[str, Any], Any]:
    """The job file as a mapping without its `sweep:` section, and that section; ConfigError when the
    file is missing or not YAML (the trainer's loader, as for any job)."""
    path = job_path(path)
    try:
        data = read_yaml_file(path, "job file")
    except YamlError as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys data and model")
    section = data.pop("sweep", None)
    return data, section
