"""Where the files shipped with ec2dbn live: stacks, bootstrap scripts, example jobs and the trainer.

Everything is found from ec2dbn's own package folder, never through sys.path or the working directory,
so a `stacks/` or `trainer/` folder that happens to be in the current directory (or earlier on sys.path)
is never the one used or shipped to an instance. Two layouts exist:

- an installed wheel: the data is package data under ec2dbn (`ec2dbn/stacks`, `ec2dbn/bootstrap_scripts`,
  `ec2dbn/examples`; pyproject.toml maps the repository folders there) and `trainer/` is the top-level
  package installed beside `ec2dbn/` by the same wheel;
- a checkout (editable install or PYTHONPATH): the folders sit at the repository's top, beside `ec2dbn/`,
  the folder that also holds pyproject.toml.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

#: (folder under the installed ec2dbn package, folder at the top of a checkout)
_STACKS = ("stacks", "stacks")
_BOOTSTRAP = ("bootstrap_scripts", "bootstrap")
_EXAMPLES = ("examples", "examples")


def package_dir() -> Path:
    """The folder of the `ec2dbn` package that is running (its __init__.py's folder)."""
    root = resources.files("ec2dbn")
    if not isinstance(root, Path):  # a zip import: the shipped folders must be real files to upload
        raise FileNotFoundError(f"ec2dbn is imported from {root}, not a folder; install it with pip")
    return root


def _checkout_root() -> Path | None:
    """The repository root when ec2dbn runs from a checkout (pyproject.toml beside ec2dbn/), else None."""
    parent = package_dir().parent
    return parent if (parent / "pyproject.toml").is_file() else None


def _shipped_dir(where: tuple[str, str]) -> Path:
    installed, in_checkout = where
    found = package_dir() / installed
    if found.is_dir():
        return found
    checkout = _checkout_root()
    if checkout is not None and (checkout / in_checkout).is_dir():
        return checkout / in_checkout
    raise FileNotFoundError(f"the {in_checkout}/ folder shipped with ec2dbn is missing; reinstall ec2dbn")


def stacks_dir() -> Path:
    """The folder holding the bundled stack definitions (*.yaml)."""
    return _shipped_dir(_STACKS)


def bootstrap_dir() -> Path:
    """The folder holding the bootstrap shell scripts (*.sh) run on the instance."""
    return _shipped_dir(_BOOTSTRAP)


def examples_dir() -> Path:
    """The folder holding the bundled example jobs (*.yaml)."""
    return _shipped_dir(_EXAMPLES)


def trainer_dir() -> Path:
    """The `trainer` package installed with this ec2dbn, shipped to the instance as-is.

    It is the `trainer/` beside the `ec2dbn/` package folder: in a wheel both are installed into the same
    site-packages by the same distribution, in a checkout both sit at the repository's top. Which
    `trainer` `import trainer` would find (the current directory, PYTHONPATH) plays no part.
    """
    found = package_dir().parent / "trainer"
    if not (found / "__init__.py").is_file() or not (found / "__main__.py").is_file():
        raise FileNotFoundError(
            f"the trainer package installed with ec2dbn is missing (expected {found}); reinstall ec2dbn"
        )
    return found


# Run as `python -c`: the interpreter puts the working directory at sys.path[0], which this replaces by
# the folder holding the installed trainer before anything named `trainer` is imported.
_RUN_INSTALLED = (
    "import runpy, sys; sys.path[0] = sys.argv.pop(1); "
    "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)"
)


def trainer_argv(module: str = "trainer") -> list[str]:
    """The command line that runs `python -u -m MODULE` (e.g. "trainer", "trainer.bench") here, with the
    trainer installed with ec2dbn: plain `python -m` would import a `trainer/` in the working directory.
    Append MODULE's own arguments."""
    if module != "trainer" and not module.startswith("trainer."):
        raise ValueError(f"{module!r} is not a trainer module")
    return [sys.executable, "-u", "-c", _RUN_INSTALLED, str(trainer_dir().parent), module]
