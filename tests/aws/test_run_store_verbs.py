"""The user's verbs over the run store (issue 26): `pull`, `logs RUN_ID`, `status`'s detached runs,
`--resume` of a run that ended alone, and the refusals that create nothing. The store is moto's S3 (a real
server, real boto3); what an instance's uploader would have written is put there with plain boto3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ec2dbn.run.results import RunRecord
from tests.aws.helpers import cli, stack_file
from tests.support.moto_server import MotoServer

REGION = "us-east-1"
BUCKET = "ec2dbn-runs-123456789012-us-east-1"
RID = "seed-mnist-20261207-120000-ab12"
LOG = "Pretrain layer 1 epoch 1:  rec_err 31.02  (0:00:04)\nEpoch 1:  loss 0.2  err 0.05  (0:00:25)\nEpoch 2:"


def _store_run(aws: MotoServer, *, ended: bool, extra_log: str = "") -> None:
    """What an instance's uploader leaves under runs/RID/ (sync.json only once the run ended)."""
    from ec2dbn import aws as ec2dbn_aws

    ec2dbn_aws.ensure_store(REGION, None)
    s3 = aws.client("s3", REGION)
    put = {
        "job.log": (LOG + extra_log).encode(),
        "out/metrics.jsonl": b'{"epoch": 1, "loss": 0.2}\n{"epoch": 2, "loss": 0.1}\n',
        "out/train.log": b"Epoch 1:\nEpoch 2:\n",
        "out/checkpoint.npz": b"checkpoint bytes",
    }
    if ended:
        put["out/model.npz"] = b"model bytes"
        put["sync.json"] = json.dumps({"exit_code": 0, "status": "finished", "files": {}}).encode()
    for name, body in put.items():
        s3.put_object(Bucket=BUCKET, Key=f"runs/{RID}/{name}", Body=body)


def _local_record(results: Path, **fields: object) -> Path:
    run_dir = results / RID
    record = RunRecord(
        RID, "seed-mnist.yaml", "ec2", region=REGION, store=f"s3://{BUCKET}", detached=True, **fields
    )
    record.save(run_dir)
    return run_dir


def test_pull_brings_a_finished_run_and_its_record_says_how_it_ended(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_run(aws, ended=True)
    run_dir = _local_record(tmp_path / "results")
    rc, out, _err = cli(capsys, "pull", RID, "--results", str(tmp_path / "results"))
    assert rc == 0 and "finished" in out
    assert (run_dir / "model.npz").read_bytes() == b"model bytes"
    assert (run_dir / "job.log").read_text().startswith("Pretrain layer 1")
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["exit_code"] == 0 and record["finished_at"]


def test_pull_of_a_running_run_says_so_and_leaves_it_running(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_run(aws, ended=False)
    run_dir = _local_record(tmp_path / "results")
    rc, out, _err = cli(capsys, "pull", RID, "--results", str(tmp_path / "results"))
    assert rc == 0 and "still running (epoch 2 done)" in out
    assert (run_dir / "checkpoint.npz").read_bytes() == b"checkpoint bytes"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"


def test_pull_without_a_local_record_takes_the_store_named(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_run(aws, ended=True)
    results = tmp_path / "results"
    rc, _out, err = cli(capsys, "pull", RID, "--results", str(results))
    assert rc == 2 and "--store s3://" in err  # this machine knows nothing of it: say how to name the store
    rc, _out, _err = cli(
        capsys, "pull", RID, "--results", str(results), "--store", f"s3://{BUCKET}", "--region", REGION
    )
    assert rc == 0 and (results / RID / "model.npz").is_file()
    assert json.loads((results / RID / "run.json").read_text())["status"] == "finished"


def test_logs_of_a_run_whose_instance_is_gone_come_from_the_store(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_run(aws, ended=True, extra_log="  loss 0.1  err 0.03  (0:00:24)\n")
    _local_record(tmp_path / "results", instance_id="i-0123456789abcdef0")
    rc, out, _err = cli(capsys, "logs", RID, "--results", str(tmp_path / "results"), "--follow")
    assert rc == 0
    assert "Epoch 1:  loss 0.2" in out and "Epoch 2:  loss 0.1  err 0.03" in out


def test_status_lists_detached_runs_with_their_last_epoch_from_the_store(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_run(aws, ended=False)
    _local_record(tmp_path / "results", instance_id="i-0123456789abcdef0")
    rc, out, _err = cli(capsys, "status", "--results", str(tmp_path / "results"))
    assert rc == 0, out
    row = next(line for line in out.splitlines() if line.strip().startswith(RID))
    # its instance is gone and nothing ended it: resume it
    assert "lost" in row and "last epoch 2" in row and f"`ec2dbn train --resume {RID}`" in row
    aws.client("s3", REGION).put_object(
        Bucket=BUCKET, Key=f"runs/{RID}/sync.json", Body=json.dumps({"exit_code": 0}).encode()
    )
    rc, out, _err = cli(capsys, "status", "--results", str(tmp_path / "results"))
    row = next(line for line in out.splitlines() if line.strip().startswith(RID))
    assert "finished" in row and f"ec2dbn pull {RID}" in row


def test_resume_of_a_run_that_finished_alone_points_at_pull(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_run(aws, ended=True)
    run_dir = _local_record(tmp_path / "results", stack="t", stack_ref=stack_file(tmp_path))
    (run_dir / "job.yaml").write_text(
        (Path(__file__).resolve().parents[2] / "examples" / "seed-mnist5k.yaml").read_text()
    )
    rc, _out, err = cli(capsys, "train", "--resume", RID, "--results", str(tmp_path / "results"))
    assert rc == 2 and f"`ec2dbn pull {RID}`" in err and "finished" in err
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"  # the record untouched


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["train", "--local", "--detach"], "--detach runs on EC2"),
        (["train", "seed-mnist5k", "--detach", "--keep"], "not with --keep"),
        (["teardown", "--store", "--all"], "--store removes run stores only"),
        (["pull", "not-a-run"], "is not a run id"),
        (["logs", RID], f"no run {RID} in results"),
    ],
)
def test_refusals_create_nothing(
    argv: list[str], phrase: str, aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _out, err = cli(capsys, *argv)
    assert rc == 2 and phrase in err
    assert aws.client("s3", REGION).list_buckets()["Buckets"] == []


def test_detach_on_a_stack_without_a_store_is_refused_before_aws(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = stack_file(tmp_path, store="none")
    rc, _out, err = cli(capsys, "train", "seed-mnist5k", "--stack", stack, "--detach")
    assert rc == 2 and "`store: none`" in err
    assert aws.client("ec2", REGION).describe_instances()["Reservations"] == []
    assert aws.client("s3", REGION).list_buckets()["Buckets"] == []


def test_status_says_how_to_continue_a_detached_run_a_spot_notice_ended(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_run(aws, ended=False)
    aws.client("s3", REGION).put_object(
        Bucket=BUCKET, Key=f"runs/{RID}/sync.json", Body=json.dumps({"exit_code": 3}).encode()
    )
    _local_record(tmp_path / "results")
    rc, out, _err = cli(capsys, "status", "--results", str(tmp_path / "results"))
    row = next(line for line in out.splitlines() if line.strip().startswith(RID))
    assert rc == 0 and "interrupted" in row and f"`ec2dbn train --resume {RID}`" in row


@pytest.mark.parametrize(("store", "shown"), [("none", "reach only this machine"), ("auto", "ec2dbn-runs-*")])
def test_plan_says_where_the_run_keeps_its_files(
    store: str, shown: str, aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = stack_file(tmp_path, store=store)
    rc, out, _err = cli(capsys, "plan", "seed-mnist5k", "--stack", stack)
    assert rc == 0 and shown in next(line for line in out.splitlines() if line.strip().startswith("store"))
    rc, out, _err = cli(capsys, "plan", "seed-mnist5k", "--stack", stack, "--json")
    assert json.loads(out)["store"] == store
    assert aws.client("s3", REGION).list_buckets()["Buckets"] == []  # planning makes no store


def test_a_policy_without_the_store_fails_in_one_line_naming_both_ways_out(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Credentials whose policy predates the run store: the first stored `train` stops before any
    instance exists, naming the missing action, the policy to attach, and `store: none`."""
    from tests.support.moto_server import inject_error, tagged_resources

    inject_error("CreateBucket", "AccessDenied", service="s3", times=None)
    rc, _out, err = cli(capsys, "train", "seed-mnist5k", "--stack", stack_file(tmp_path))
    line = next(x for x in err.splitlines() if x.startswith("error:"))
    assert rc == 1 and "s3:CreateBucket" in line and "iam-policy" in line and "`store: none`" in line
    assert not any(tagged_resources(aws).values())
    assert aws.client("s3", REGION).list_buckets()["Buckets"] == []
    assert aws.client("iam", REGION).list_roles(PathPrefix="/ec2dbn/")["Roles"] == []


def test_a_stored_run_without_the_boundary_stops_before_launching_and_says_how(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An account whose administrator has not made the instances' permissions boundary yet: the first stored
    `train` stops before any instance or role exists, in one line with the administrator's commands and
    `store: none`."""
    from tests.support.moto_server import tagged_resources

    aws.client("iam").delete_policy(PolicyArn="arn:aws:iam::123456789012:policy/ec2dbn/ec2dbn-run-boundary")
    rc, _out, err = cli(capsys, "train", "seed-mnist5k", "--stack", stack_file(tmp_path))
    line = next(x for x in err.splitlines() if x.startswith("error:"))
    assert rc == 1 and "ec2dbn-run-boundary does not exist" in line, err[-2000:]
    assert "ec2dbn iam-policy --boundary > boundary.json" in line and "`store: none`" in line
    assert "Traceback" not in err
    assert not any(tagged_resources(aws).values())
    assert aws.client("iam", REGION).list_roles(PathPrefix="/ec2dbn/")["Roles"] == []
