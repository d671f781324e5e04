"""A run that diverges on the "instance" (issue 20): moto as EC2, the fake cloud-init's loopback sshd.

`ec2dbn train` of a job whose learning rate (1e30: legal, unwise) makes the loss NaN in epoch 1 must fail
with the trainer's own message first, record the run as `diverged`, tear everything down, and not treat
the trainer's exit as an interruption: one instance, no recovery, and `train --resume` refuses it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ec2dbn.cli import main
from ec2dbn.run.results import RunRecord
from tests.e2e.helpers import nothing_left, write_job, write_stack
from tests.support.moto_server import MotoServer
from tests.support.strict_json import check_folder

pytestmark = pytest.mark.slow


def _launched(aws: MotoServer) -> list[dict[str, Any]]:
    """Every ec2dbn instance moto ran in this test, terminated ones included."""
    flt = [{"Name": "tag:ec2dbn:managed", "Values": ["true"]}]
    pages = aws.client("ec2", "us-east-1").describe_instances(Filters=flt)["Reservations"]
    return [i for r in pages for i in r["Instances"]]


def test_a_diverged_run_fails_with_the_trainers_message_and_is_not_recovered(
    fake_cloud, aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = write_stack(tmp_path, max_recoveries=2)
    job = write_job(tmp_path, learn_rates=1e30)
    results = tmp_path / "results"
    code = main(["train", str(job), "--stack", str(stack), "--results", str(results)])
    out, err = capsys.readouterr()

    assert code == 1, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err[-3000:]
    assert errors[0].startswith("error: Training diverged in fine-tuning epoch 1: the loss is nan")
    assert "learn_rates too high (1e+30" in errors[0]
    assert not re.search(r"^Traceback", err, re.MULTILINE)
    assert "recovering" not in err and "Training diverged in fine-tuning epoch 1" in out  # streamed live

    (run_dir,) = results.iterdir()
    record = RunRecord.load(run_dir)
    assert (record.status, record.exit_code, record.recoveries) == ("diverged", 1, [])
    assert "teardown" in record.phases and record.cost_usd is not None
    assert len(_launched(aws)) == 1  # no relaunch
    nothing_left(aws)
    # What came back: the trainer's metrics.json (status diverged) and logs, all strict JSON; no model.
    checked = set(check_folder(run_dir))
    assert {"metrics.json", "metrics.jsonl", "run.json"} <= checked
    assert not (run_dir / "model.npz").exists()

    # Resuming would start from the last finite state and diverge again: refused, nothing launched.
    code = main(["train", "--resume", record.run_id, "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 2
    assert f"run {record.run_id} diverged: resuming it would diverge again" in err
    assert len(_launched(aws)) == 1
    nothing_left(aws)
