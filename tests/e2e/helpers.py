"""Shared set-up for the `ec2dbn train` end-to-end tests: a small real job, a stack file, running the CLI.

The stack points SSH at the fake cloud-init's loopback sshd as the current user, with `remote_dir` (the
"instance's" disk) in a temp folder; everything else is what a user would write. A test that must act
while the trainer runs holds it at a known point (`hold_on_the_instance`) instead of needing a slow job;
a `--local` run meant to match a remote one bitwise runs with the instance's environment
(`train_locally_as_on_the_instance`).
"""

from __future__ import annotations

import getpass
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.support.fake_cloud import FakeCloudInit
from tests.support.hold import TrainerHold
from tests.support.moto_server import MotoServer, tagged_resources
from tests.support.sshd import default_env

#: A small real job: 784-200-10 on 2,000 real MNIST digits, 4 epochs, NumPy so both runs match.
JOB = {
    "data": {"name": "mnist-5k", "test_size": 0.25, "seed": 7, "limit": 2000},
    "model": {"layers": [784, 200, 10], "learn_rates": 0.3, "learn_rate_decays": 0.9, "epochs": 4},
    "backend": "numpy",
}


def write_stack(tmp_path: Path, **overrides: object) -> Path:
    """A stack file for the fake cloud (spot g4dn.xlarge with on-demand fallback, no run store);
    `overrides` win."""
    stack = {
        "name": "e2e",
        "region": "us-east-1",
        "instance_type": "g4dn.xlarge",
        "market": "spot",
        "fallback": "on-demand",
        "image": "ubuntu22",
        "volume_gb": 30,
        "ssh_user": getpass.getuser(),
        "ssh_cidr": "auto",
        "max_lifetime": "1h",
        "remote_dir": str(tmp_path / "instance-home" / "ec2dbn"),
        "bootstrap": ["base", "nvidia", "python", "check"],
        # Off unless a test is about the run store (tests/e2e/test_run_store.py): a stored run needs the
        # fake instance's IMDS role credentials (`with_imds`) and installs boto3 there.
        "store": "none",
        **overrides,
    }
    path = tmp_path / "e2e-stack.yaml"
    path.write_text(yaml.safe_dump(stack))
    return path


def write_job(tmp_path: Path, data: dict | None = None, **model: object) -> Path:
    """JOB with `data` replaced and `model` keys overridden, as tmp_path/job.yaml."""
    job = {**JOB, "data": data or JOB["data"], "model": {**JOB["model"], **model}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def nothing_left(aws: MotoServer) -> None:
    left = tagged_resources(aws)
    assert not any(left.values()), f"ec2dbn-tagged resources remain: {left}"


def run_cli(
    args: list[str],
    env: dict[str, str],
    on_line: Callable[[subprocess.Popen[str], str], None] | None = None,
    timeout_s: float = 600,
) -> tuple[int, list[tuple[float, str]], str]:
    """Run `ec2dbn` as a user would (a process); stdout lines with the time each arrived, and stderr.

    on_line(proc, line) sees each stdout line as it arrives (e.g. to signal the process mid-run).
    A process still running after `timeout_s` gets SIGABRT (with PYTHONFAULTHANDLER=1 in `env`, its
    threads' stacks land in stderr: a hang fails with where it hung).
    """
    # Ctrl-C must reach ec2dbn as from a terminal. pytest started in the background by a shell (`... &`)
    # inherits SIGINT ignored, and so would ec2dbn; a handled signal is reset to the default at exec.
    # Only the main thread may set handlers; a test starting runs from threads does not signal them.
    main = threading.current_thread() is threading.main_thread()
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler) if main else None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ec2dbn", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
    finally:
        if main:
            signal.signal(signal.SIGINT, inherited)
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    watchdog = threading.Timer(timeout_s, lambda: proc.poll() is None and proc.send_signal(signal.SIGABRT))
    watchdog.daemon = True
    watchdog.start()
    lines: list[tuple[float, str]] = []
    try:
        for raw in proc.stdout:  # type: ignore[union-attr]
            line = raw.rstrip("\n")
            lines.append((time.time(), line))
            if on_line is not None:
                on_line(proc, line)
        code = proc.wait(timeout=600)
    finally:
        watchdog.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    return code, lines, "".join(err)


def hold_on_the_instance(
    fake_cloud: FakeCloudInit, tmp_path: Path, epoch: int, minibatch: int = 0
) -> TrainerHold:
    """A TrainerHold (a context manager: release it) that every instance booted from now on gives its
    trainer: it waits there, logging a HELD line, until released or signalled (trainer/hold.py)."""
    hold = TrainerHold(tmp_path / "hold", epoch, minibatch)
    fake_cloud.env.update(hold.env)
    return hold


def train_locally_as_on_the_instance(job: Path, results: Path) -> Path:
    """`ec2dbn train --local JOB` as a process with the environment the fake instance's commands get:
    sshd passes on none of this machine's variables, so none of its BLAS settings (OPENBLAS_CORETYPE,
    thread counts) either. On this machine both runs then use the same GEMM kernel and thread count, and
    their numbers can be compared bitwise. Returns the run's folder under `results`."""
    home = results.parent / "local-home"
    home.mkdir(parents=True, exist_ok=True)
    env = {**default_env(), "HOME": str(home), "PYTHONFAULTHANDLER": "1"}
    code, _lines, err = run_cli(["train", "--local", str(job), "--results", str(results)], env)
    assert code == 0, err[-3000:]
    (run_dir,) = results.iterdir()
    return run_dir
