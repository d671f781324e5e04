"""`ec2dbn train` end to end: moto as EC2, a fake cloud-init booting a real sshd per instance.

The flow runs unmodified: launch → ssh (pinned host key) → bootstrap (the CPU path) → ship → detached
trainer → followed log → pull → teardown. The test then checks what a user would: the log streamed while
training ran, the pulled results equal a `--local` run's, and nothing tagged is left in AWS. Tests that
act while the trainer runs hold it at a known point on the instance (tests/support/hold.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ec2dbn import package_data
from ec2dbn.cli import main
from ec2dbn.run.pipeline import PHASES
from tests.e2e.helpers import (
    hold_on_the_instance,
    nothing_left,
    run_cli,
    train_locally_as_on_the_instance,
    write_job,
    write_stack,
)
from tests.support.hold import HELD
from tests.support.moto_server import tagged_resources

pytestmark = pytest.mark.slow


def train_in_process(tmp_path: Path) -> int:
    """`ec2dbn train` of the default small job on a fresh stack file, in this process (for capsys)."""
    job, stack = write_job(tmp_path), write_stack(tmp_path)
    return main(["train", str(job), "--stack", str(stack), "--results", str(tmp_path / "results")])


def test_train_end_to_end_matches_local_run_and_leaves_nothing(fake_cloud, aws, tmp_path: Path) -> None:
    stack, job = write_stack(tmp_path), write_job(tmp_path)
    results = tmp_path / "results"

    def release_once_streamed(_proc: subprocess.Popen[str], line: str) -> None:
        if line.startswith(HELD):
            hold.release()

    # Held after epoch 1 until its line has reached the terminal: the log streams while training runs,
    # however fast the CPU.
    with hold_on_the_instance(fake_cloud, tmp_path, epoch=2) as hold:
        code, lines, err = run_cli(
            ["train", str(job), "--stack", str(stack), "--results", str(results)],
            dict(os.environ),
            on_line=release_once_streamed,
        )
    assert code == 0, err[-3000:]

    # The epoch lines reached the terminal while the trainer was still running on the "instance".
    exit_file = next((tmp_path / "instance-home" / "ec2dbn" / "runs").glob("*/job.exit"))
    finished_at = exit_file.stat().st_mtime
    epochs = [(t, text) for t, text in lines if text.startswith("Epoch ")]
    assert [text.split(":")[0] for _, text in epochs] == [f"Epoch {i}" for i in range(1, 5)]
    assert epochs[0][0] < finished_at, "the first epoch line only arrived after training had ended"

    (run_dir,) = results.iterdir()
    for name in ("metrics.json", "metrics.jsonl", "report.txt", "model.npz", "train.log", "bootstrap.log"):
        assert (run_dir / name).is_file(), name
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["exit_code"] == 0
    assert record["instance_type"] == "g4dn.xlarge" and record["market"] == "spot"
    assert record["availability_zone"].startswith("us-east-1")
    for phase in PHASES:
        assert record["phases"][phase] >= 0, phase
    assert record["cost_usd"] is not None and record["cost_usd"] >= 0
    assert "no GPU: the job will run on the CPU" in (run_dir / "bootstrap.log").read_text()
    nothing_left(aws)

    # The same job and seed locally, with the instance's environment (so the same BLAS kernel and
    # thread count on this machine): the same numbers, bitwise.
    local_dir = train_locally_as_on_the_instance(job, tmp_path / "local")
    remote_metrics = json.loads((run_dir / "metrics.json").read_text())
    local_metrics = json.loads((local_dir / "metrics.json").read_text())
    assert remote_metrics["test_accuracy"] == local_metrics["test_accuracy"]
    assert [(e["loss"], e["err"]) for e in remote_metrics["epochs"]] == [
        (e["loss"], e["err"]) for e in local_metrics["epochs"]
    ]
    with np.load(run_dir / "model.npz") as a, np.load(local_dir / "model.npz") as b:
        assert sorted(a.files) == sorted(b.files)
        weights = [k for k in a.files if a[k].dtype.kind == "f"]
        assert weights
        for key in weights:  # the weights; the metadata record holds wall-clock timings
            np.testing.assert_array_equal(a[key], b[key])


def test_log_follower_survives_sshd_restart_mid_run(fake_cloud, aws, tmp_path: Path) -> None:
    stack = write_stack(tmp_path)
    job = write_job(tmp_path, epochs=6)
    restarted: list[str] = []

    def restart_once(_proc: subprocess.Popen[str], line: str) -> None:
        if line.startswith(HELD) and not restarted:
            fake_cloud.restart_sshd()  # the connection drops while the trainer is (held) running
            restarted.append(line)
            hold.release()

    with hold_on_the_instance(fake_cloud, tmp_path, epoch=2) as hold:
        code, lines, err = run_cli(
            ["train", str(job), "--stack", str(stack), "--results", str(tmp_path / "results")],
            dict(os.environ),
            on_line=restart_once,
        )
    assert code == 0, err[-3000:]
    seen = [text for _, text in lines]
    assert restarted
    epochs = [s.split(":")[0] for s in seen if s.startswith("Epoch ")]
    assert epochs == [f"Epoch {i}" for i in range(1, 7)], epochs  # none lost, none repeated
    nothing_left(aws)


def test_wrong_host_key_is_refused_and_stack_torn_down(fake_cloud, aws, tmp_path: Path, capsys) -> None:
    fake_cloud.wrong_host_key = True
    code = train_in_process(tmp_path)
    assert code == 1
    err = capsys.readouterr().err
    assert "host key" in err.lower()
    assert "Traceback" not in err
    nothing_left(aws)
    # Nothing ran on the impostor: no bootstrap, no job.
    assert not (tmp_path / "instance-home" / "ec2dbn" / "runs").exists()


def test_crashing_trainer_exits_1_with_its_last_lines_and_tears_down(
    fake_cloud, aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # Ship a trainer that crashes as it starts: a real Python crash on the instance, with a traceback.
    broken = tmp_path / "broken" / "trainer"
    shutil.copytree(package_data.trainer_dir(), broken, ignore=shutil.ignore_patterns("__pycache__"))
    main_py = broken / "__main__.py"
    main_py.write_text(
        'print("Epoch 1:  loss 2.0  err 0.5  (0:00:01)", flush=True)\n'
        'raise RuntimeError("injected crash in the trainer")\n'
    )
    monkeypatch.setattr("ec2dbn.run.instance_files.trainer_dir", lambda: broken)

    code = train_in_process(tmp_path)
    assert code == 1
    err = capsys.readouterr().err
    assert "the trainer failed (exit 1" in err
    assert "injected crash in the trainer" in err
    assert "Epoch 1:" in err  # the last lines, not just the exception
    nothing_left(aws)
    (run_dir,) = (tmp_path / "results").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "failed" and record["exit_code"] == 1
    assert "teardown" in record["phases"]
    assert "injected crash in the trainer" in (run_dir / "job.log").read_text()


def test_launch_bootstraps_then_train_reuses_the_instance(fake_cloud, aws, tmp_path: Path, capsys) -> None:
    stack = write_stack(tmp_path)
    assert main(["launch", "--stack", str(stack)]) == 0
    err = capsys.readouterr().err
    assert "bootstrapped in" in err
    (instance_id,) = fake_cloud.booted

    # `ec2dbn ssh --print` gives a command pinned to the stack's own known_hosts.
    assert main(["ssh", "e2e", "--print"]) == 0
    ssh_cmd = capsys.readouterr().out
    assert "StrictHostKeyChecking=yes" in ssh_cmd and "UserKnownHostsFile=" in ssh_cmd

    results = tmp_path / "results"
    assert main(["train", str(write_job(tmp_path)), "--stack", str(stack), "--results", str(results)]) == 0
    assert f"reusing {instance_id}" in capsys.readouterr().err
    assert fake_cloud.booted == [instance_id]  # no second instance
    nothing_left(aws)


def test_resume_reattaches_after_the_local_process_died(fake_cloud, aws, tmp_path: Path) -> None:
    stack = write_stack(tmp_path)
    job = write_job(tmp_path, epochs=8)
    results = tmp_path / "results"

    def close_the_lid(proc: subprocess.Popen[str], line: str) -> None:
        if line.startswith(HELD):
            proc.kill()  # the laptop lid closes: no teardown, no pull

    def release_once_attached(_proc: subprocess.Popen[str], line: str) -> None:
        if line.startswith(HELD):  # the log is followed again from its start: the trainer still runs
            hold.release()

    # Held after epoch 1 until the second ec2dbn follows it: it re-attaches to a running job.
    with hold_on_the_instance(fake_cloud, tmp_path, epoch=2) as hold:
        run_cli(
            ["train", str(job), "--stack", str(stack), "--results", str(results)],
            dict(os.environ),
            on_line=close_the_lid,
        )
        (run_dir,) = results.iterdir()
        assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
        assert tagged_resources(aws)["instances"], "the instance should still be up"

        code, _lines, err = run_cli(
            ["train", "--resume", run_dir.name, "--results", str(results)],
            dict(os.environ),
            on_line=release_once_attached,
        )
    assert code == 0, err[-3000:]
    assert "re-attaching" in err
    assert fake_cloud.booted and len(fake_cloud.booted) == 1  # the same instance, not a new one
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, 9))
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    nothing_left(aws)


def test_bench_on_a_stack_runs_remotely_and_prices_by_the_instance(fake_cloud, aws, tmp_path: Path) -> None:
    out = tmp_path / "bench-remote"
    code = main(
        [
            "bench",
            str(write_job(tmp_path)),
            "--stack",
            str(write_stack(tmp_path)),
            "--widths",
            "16,32",
            "--epochs",
            "2",
            "--out",
            str(out),
            "--no-plot",
        ]
    )
    assert code == 0
    bench = json.loads((out / "bench.json").read_text())
    measured = [r for r in bench["rows"] if r.get("seconds_per_epoch")]
    assert sorted(r["width"] for r in measured) == [16, 32]
    summary = (out / "summary.md").read_text()
    assert "g4dn.xlarge spot" in summary
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished" and record["instance_type"] == "g4dn.xlarge"
    nothing_left(aws)
