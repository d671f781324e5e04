"""The bootstrap scripts, linted and run for real on this machine (the CPU path) over the loopback sshd."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from ec2dbn.errors import ConfigError, RemoteError
from ec2dbn.events import RecordingReporter
from ec2dbn.package_data import bootstrap_dir
from ec2dbn.ssh.bootstrap import available_scripts, run_bootstrap
from ec2dbn.ssh.remote import Remote

STEPS = ["base", "nvidia", "python", "check"]


def test_scripts_are_shellcheck_clean() -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    scripts = sorted(str(p) for p in bootstrap_dir().glob("*.sh"))
    assert len(scripts) >= 5
    result = subprocess.run(["shellcheck", *scripts], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_scripts_shipped() -> None:
    assert set(STEPS) <= set(available_scripts())
    assert "_lib" not in available_scripts()


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="checks the CPU path")
def test_bootstrap_cpu_path_and_quick_rerun(remote: Remote, tmp_path: Path) -> None:
    remote_dir = tmp_path / "instance" / "ec2dbn"
    log_path = tmp_path / "results" / "bootstrap.log"
    reporter = RecordingReporter()

    first = run_bootstrap(remote, STEPS, str(remote_dir), reporter, log_path)

    assert list(first.seconds) == STEPS
    streamed = reporter.lines("stream")
    assert "[check] no GPU: the job will run on the CPU (NumPy)" in streamed
    assert any(line.startswith("[nvidia] no NVIDIA GPU on this machine") for line in streamed)
    assert "[base] everything needed is present" in " ".join(streamed)  # apt untouched here
    assert reporter.lines("step") == [f"bootstrap: {s}" for s in STEPS]
    log = log_path.read_text()
    assert "== check.sh on 127.0.0.1:" in log and "no GPU: the job will run on the CPU (NumPy)" in log
    venv_python = remote_dir / "venv" / "bin" / "python"
    check = subprocess.run(
        [venv_python, "-c", "import numpy, yaml; print('ok')"], capture_output=True, text=True
    )
    assert check.stdout == "ok\n", check.stderr
    assert sorted(p.name for p in (remote_dir / ".bootstrap").iterdir()) == ["base.done", "python.done"]

    again = RecordingReporter()
    second = run_bootstrap(remote, STEPS, str(remote_dir), again, log_path)
    rerun = again.lines("stream")
    assert "[base] already done" in rerun
    assert any(line.startswith("[python] already done") for line in rerun)
    assert "[check] no GPU: the job will run on the CPU (NumPy)" in rerun
    assert second.seconds["python"] < first.seconds["python"]
    assert log_path.read_text().count("== base.sh on") == 2  # appended, not overwritten


def test_a_failing_script_stops_the_run_and_is_named(remote: Remote, tmp_path: Path) -> None:
    scripts = tmp_path / "scripts"
    shutil.copytree(bootstrap_dir(), scripts)
    (scripts / "broken.sh").write_text(
        "#!/usr/bin/env bash\nset -euo pipefail\n"
        'echo "fetching the driver"\necho "E: unable to locate package" >&2\nexit 4\n'
    )
    remote_dir = tmp_path / "instance"
    reporter = RecordingReporter()
    with pytest.raises(RemoteError) as err:
        run_bootstrap(
            remote,
            ["base", "broken", "check"],
            str(remote_dir),
            reporter,
            tmp_path / "b.log",
            source_dir=scripts,
        )
    message = str(err.value)
    assert "broken.sh failed with exit code 4" in message and "E: unable to locate package" in message
    assert "\n" not in message
    assert reporter.lines("step") == ["bootstrap: base", "bootstrap: broken"]  # check never ran
    assert "fetching the driver" in reporter.lines("stream")
    assert "== broken.sh failed with exit code 4 ==" in (tmp_path / "b.log").read_text()


def test_unknown_script_fails_before_anything_is_uploaded(remote: Remote, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown bootstrap script 'cuda'.*available: base, check"):
        run_bootstrap(
            remote, ["base", "cuda"], str(tmp_path / "instance"), RecordingReporter(), tmp_path / "b.log"
        )
    assert not (tmp_path / "instance").exists()
