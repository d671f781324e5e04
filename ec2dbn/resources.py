"""Where the data shipped with the package lives: stacks/, bootstrap/ and the trainer package.

They sit beside `ec2dbn/` in a checkout and are installed as (namespace) packages in a wheel, so both
layouts resolve through the import system.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"the {name}/ folder shipped with ec2dbn is missing; reinstall ec2dbn")
    return Path(next(iter(spec.submodule_search_locations)))


def stacks_dir() -> Path:
    """The folder holding the bundled stack definitions (*.yaml)."""
    return _package_dir("stacks")


def bootstrap_dir() -> Path:
    """The folder holding the bootstrap shell scripts (*.sh) run on the instance."""
    return _package_dir("bootstrap")


def trainer_dir() -> Path:
    """The `trainer` package folder, shipped to the instance as-is."""
    return _package_dir("trainer")
