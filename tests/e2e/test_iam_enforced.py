"""`ec2dbn train` end to end as an IAM user holding only the policy `ec2dbn iam-policy` prints, with moto
enforcing IAM on every request (launch, lease tag, bootstrap over SSH, run, pull, teardown by tags); and
the same run with one action taken away: one line naming it, exit 1, a final run.json, nothing left.
What moto's enforcement does and does not judge is in tests/support/iam.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ec2dbn.aws import iam_policy
from ec2dbn.cli import main
from tests.e2e.helpers import nothing_left, write_job, write_stack
from tests.support.iam import IamHarness, without

pytestmark = pytest.mark.slow


def train(tmp_path: Path) -> int:
    job, stack = write_job(tmp_path), write_stack(tmp_path)
    return main(["train", str(job), "--stack", str(stack), "--results", str(tmp_path / "results")])


def test_train_with_only_the_printed_policy(
    iam: IamHarness, fake_cloud, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["iam-policy"]) == 0
    printed = json.loads(capsys.readouterr().out)  # the policy exactly as a user saves it
    with iam.only(printed):
        rc = train(tmp_path)
    _, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    (run_dir,) = (tmp_path / "results").iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and (run_dir / "model.npz").is_file()
    assert "teardown: nothing ec2dbn-tagged remains for e2e" in err
    assert "AccessDenied" not in err and "they lack" not in err  # no step was refused, not even a warning
    nothing_left(iam.server)


def test_train_without_run_instances_fails_in_one_line_and_leaves_nothing(
    iam: IamHarness, fake_cloud, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with iam.only(without(iam_policy.policy(), "ec2:RunInstances")):
        rc = train(tmp_path)
    _, err = capsys.readouterr()
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert rc == 1
    assert "(AccessDenied): they lack ec2:RunInstances; attach the policy `ec2dbn iam-policy` prints" in line
    (run_dir,) = (tmp_path / "results").iterdir()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    nothing_left(iam.server)
