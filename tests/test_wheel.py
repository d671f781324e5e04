"""The installed tool equals the checkout: build the wheel, install it into a fresh venv outside the checkout,
and use it from a folder that is not the checkout — `ec2dbn --help`, `ec2dbn examples`, `ec2dbn plan` on a
bundled job against the moto server, and README's first command, `ec2dbn train --local` on the default job.

Offline and quick to set up: the wheel is built with this interpreter's setuptools (--no-build-isolation;
the test extra requires setuptools>=77) and installed with --no-deps; the venv reaches the dependencies
(NumPy, boto3, mlxtend, ...) through a .pth file naming this interpreter's site-packages, which, unlike a
site folder, does not run the .pth files there (the editable install of the checkout stays out).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: What a wheel is built from: the sources pyproject.toml names (a copy, so the checkout gets no build/).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "ec2dbn", "trainer", "stacks", "bootstrap", "examples")

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"{args} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheel built from a copy of the checkout's sources, and the build's output."""
    root = tmp_path_factory.mktemp("wheel-build")
    src = root / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    out = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-v",
            "-w",
            str(root / "dist"),
            ".",
        ],
        cwd=src,
    )
    (whl,) = (root / "dist").glob("ec2dbn-*.whl")
    return whl, out


def test_the_wheel_holds_the_data_under_ec2dbn_and_builds_without_warnings(wheel: tuple[Path, str]) -> None:
    whl, build_output = wheel
    names = set(zipfile.ZipFile(whl).namelist())
    for expected in (
        "ec2dbn/stacks/g4dn-spot.yaml",
        "ec2dbn/bootstrap_scripts/python.sh",
        "ec2dbn/bootstrap_scripts/_lib.sh",
        "ec2dbn/examples/seed-mnist5k.yaml",
        "ec2dbn/data/catalog.yaml",
        "ec2dbn/data/default-job.yaml",
        "trainer/__main__.py",
    ):
        assert expected in names, expected
    tops = {name.split("/")[0] for name in names}
    assert tops == {"ec2dbn", "trainer", whl.name.split("-py3")[0] + ".dist-info"}
    info = whl.name.split("-py3")[0] + ".dist-info"
    metadata = zipfile.ZipFile(whl).read(f"{info}/METADATA").decode()
    assert "License-Expression: MIT" in metadata
    assert f"{info}/licenses/LICENSE" in names
    requires = [
        line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra" not in line
    ]
    assert any("cryptography" in line for line in requires) and not any("fabric" in line for line in requires)
    assert "absent from the `packages` configuration" not in build_output
    assert "SetuptoolsDeprecationWarning" not in build_output


@pytest.fixture(scope="module")
def installed(wheel: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the checkout with the wheel installed; returns its bin/ folder."""
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent)
    python = venv / "bin" / "python"
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=venv)
    Path(purelib.strip(), "test-env-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run([str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel[0])], cwd=venv.parent)
    return venv / "bin"


def _user_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def test_the_venv_imports_its_own_copy(installed: Path, tmp_path: Path) -> None:
    code = (
        "import ec2dbn, trainer; from ec2dbn import package_data as pd\n"
        "print(ec2dbn.__file__); print(trainer.__file__); print(pd.trainer_dir())\n"
        "print(pd.stacks_dir()); print(pd.bootstrap_dir()); print(pd.examples_dir())\n"
    )
    out = _run([str(installed / "python"), "-c", code], cwd=tmp_path, env=_user_env(installed))
    venv = installed.parent.resolve()
    for line in out.split():
        assert Path(line).resolve().is_relative_to(venv), line
    assert not any(Path(line).resolve().is_relative_to(REPO) for line in out.split())


def test_help_examples_and_plan_from_the_wheel(installed: Path, aws: object, tmp_path: Path) -> None:
    env = _user_env(installed)
    ec2dbn = str(installed / "ec2dbn")
    assert "ec2dbn examples" in _run([ec2dbn, "--help"], cwd=tmp_path, env=env)
    listed = _run([ec2dbn, "examples"], cwd=tmp_path, env=env).split()
    assert {"seed-mnist", "seed-mnist5k", "seed-fashion"} <= set(listed)
    plan = _run([ec2dbn, "plan", "seed-mnist5k"], cwd=tmp_path, env=env)  # the aws fixture's moto server
    assert "Plan for stack g4dn-spot" in plan and "dry run" in plan
    assert "numpy, pyyaml, mlxtend>=0.23: installed by bootstrap python.sh" in plan


def test_readmes_first_command_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    """`ec2dbn train --local` on the default job (the seed network on mnist-5k, 10 epochs), from a folder
    that is not the checkout. One BLAS thread: on a busy 2-core machine a threaded BLAS waits for time
    slices (the run's own figures are not what this checks)."""
    env = _user_env(installed, OPENBLAS_NUM_THREADS="1")
    out = _run([str(installed / "ec2dbn"), "train", "--local"], cwd=tmp_path, env=env, timeout=900)
    assert "finished (exit 0)" in out
    (run,) = (tmp_path / "results").iterdir()
    log = (run / "train.log").read_text()
    assert "Epoch 10:" in log and "data: mnist-5k: 3,350 train / 1,650 test" in log
