"""Issue 26's faults: runs that outlive the laptop, against moto (S3, IAM, EC2) and the fake instance.

The instance is the fake cloud-init's loopback sshd with its own fake IMDS (IMDSv2), which serves the
instance id and, for an instance launched with ec2dbn's instance profile, the role's credentials (moto STS):
the uploader beside the trainer (trainer.store_sync) reaches the store as on EC2, through boto3's standard
credential chain and the standard AWS_ENDPOINT_URL, never with keys of this machine. The fake instance
has no boto3: bootstrap installs it, as on a fresh image.

Rows: the laptop killed and then the instance lost without a notice → `--resume` continues from the
store's checkpoint to the uninterrupted result; the store unreachable mid-run → training goes on, the
uploader says it retries, the final sync is verified; a detached run finishing alone → results in the
store, the instance terminated through the EC2 API, `pull` complete; teardown leaves no role, profile or
instance and keeps the store; `teardown --store` (asked) empties and removes it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.e2e.helpers import (
    hold_on_the_instance,
    nothing_left,
    run_cli,
    train_locally_as_on_the_instance,
    write_job,
    write_stack,
)
from tests.support.hold import HELD
from tests.support.moto_server import MotoServer
from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.slow

REGION = "us-east-1"
BUCKET = "ec2dbn-runs-123456789012-us-east-1"


# --------------------------------------------------------------------------------------------- helpers


def _stored_instance(fake_cloud: Any, aws: MotoServer, tmp_path: Path, s3_url: str | None = None) -> Path:
    """Instances booted from now on have IMDS, reach AWS (moto) as a real one reaches AWS, and each boots
    with a fresh disk (a relaunched instance has nothing of the lost one's); returns the stack file."""
    fake_cloud.with_imds = True
    fake_cloud.env["AWS_ENDPOINT_URL"] = aws.url
    if s3_url is not None:
        fake_cloud.env["AWS_ENDPOINT_URL_S3"] = s3_url
    fake_cloud.disk = tmp_path / "disk"
    return write_stack(tmp_path, store="auto", remote_dir=str(fake_cloud.disk / "home" / "ec2dbn"))


def _stored_keys(aws: MotoServer, run_id: str) -> dict[str, int]:
    s3 = aws.client("s3", REGION)
    prefix = f"runs/{run_id}/"
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"][len(prefix) :]: o["Size"] for page in pages for o in page.get("Contents", [])}


def _stored(aws: MotoServer, run_id: str, name: str) -> bytes:
    return aws.client("s3", REGION).get_object(Bucket=BUCKET, Key=f"runs/{run_id}/{name}")["Body"].read()


def _wait_for(what: str, check: Any, timeout_s: float = 300) -> Any:
    """Poll `check()` until it returns something truthy (generous timeout: no speed is assumed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _instance_state(aws: MotoServer, iid: str) -> str:
    (res,) = aws.client("ec2", REGION).describe_instances(InstanceIds=[iid])["Reservations"]
    return str(res["Instances"][0]["State"]["Name"])


def _ec2dbn_roles(aws: MotoServer) -> list[str]:
    iam = aws.client("iam", REGION)
    roles = [r["RoleName"] for r in iam.list_roles(PathPrefix="/ec2dbn/")["Roles"]]
    profiles = [
        p["InstanceProfileName"]
        for p in iam.list_instance_profiles(PathPrefix="/ec2dbn/")["InstanceProfiles"]
    ]
    return roles + profiles


def _same_weights(a_dir: Path, b_dir: Path) -> None:
    with np.load(a_dir / "model.npz") as a, np.load(b_dir / "model.npz") as b:
        weights = [k for k in a.files if a[k].dtype.kind == "f"]
        assert weights
        for key in weights:
            np.testing.assert_array_equal(a[key], b[key])


def _cli(args: list[str], **kw: Any) -> tuple[int, str, str]:
    code, lines, err = run_cli(args, {**os.environ, "PYTHONFAULTHANDLER": "1"}, **kw)
    return code, "\n".join(text for _, text in lines), err


# ------------------------------------------------------------------------------------------------ rows


def test_laptop_killed_then_instance_lost_resumes_from_the_store(fake_cloud, aws, tmp_path: Path) -> None:
    """SIGKILL of `ec2dbn train` mid-epoch 3, then the instance terminated with no notice: `--resume`
    relaunches and continues from the store's checkpoint (this machine's copy deleted) to the weights of
    an uninterrupted run."""
    stack = _stored_instance(fake_cloud, aws, tmp_path)
    job = write_job(tmp_path, epochs=4)
    results = tmp_path / "results"
    killed: list[str] = []

    def kill_when_stored(proc: subprocess.Popen[str], line: str) -> None:
        if killed or not line.startswith(HELD):
            return
        run_dir = next(results.iterdir())
        rid = run_dir.name
        # the uploader puts each new checkpoint promptly (the logs within its interval): epoch 2's are in
        # the store before the plug is pulled
        _wait_for("epoch 2 in the store", lambda: _metrics(aws, rid).count(b"\n") >= 2)
        assert "out/checkpoint.npz" in _stored_keys(aws, rid)
        proc.send_signal(signal.SIGKILL)
        killed.append(rid)

    with hold_on_the_instance(fake_cloud, tmp_path, epoch=3, minibatch=2):
        code, _out, err = _cli(
            ["train", str(job), "--stack", str(stack), "--results", str(results)], on_line=kill_when_stored
        )
        assert killed, err[-3000:]
        assert code == -signal.SIGKILL
        (iid,) = fake_cloud.booted
        fake_cloud.reclaim(iid)  # powered off and terminated, without a notice, while still held
    rid = killed[0]
    run_dir = results / rid
    (run_dir / "checkpoint.npz").unlink(missing_ok=True)  # the laptop's copy is not what resumes

    code, out, err = _cli(["train", "--resume", rid, "--results", str(results)])
    assert code == 0, err[-4000:]
    assert "took the newest checkpoint from the run store" in out + err
    assert any("resuming from" in line and "epoch 3" in line for line in out.splitlines()), out[-2000:]
    assert len(fake_cloud.booted) == 2
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["store"].rstrip("/") == f"s3://{BUCKET}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3, 4]
    _same_weights(run_dir, train_locally_as_on_the_instance(job, tmp_path / "local"))
    assert _stored(aws, rid, "out/model.npz") == (run_dir / "model.npz").read_bytes()
    nothing_left(aws)
    assert _ec2dbn_roles(aws) == []


def _metrics(aws: MotoServer, rid: str) -> bytes:
    try:
        return _stored(aws, rid, "out/metrics.jsonl")
    except Exception:
        return b""


def test_store_unreachable_mid_run_training_goes_on_and_the_final_sync_is_verified(
    fake_cloud, aws, tmp_path: Path
) -> None:
    host, port = aws.url.removeprefix("http://").split(":")
    with TcpProxy(host, int(port)) as proxy:
        stack = _stored_instance(fake_cloud, aws, tmp_path, s3_url=proxy.url)
        job = write_job(tmp_path, epochs=4)
        results = tmp_path / "results"
        seen: list[str] = []

        def cut_then_restore(_proc: subprocess.Popen[str], line: str) -> None:
            if line.startswith(HELD) and not seen:
                proxy.cut()
                seen.append("cut")
                hold.release()
            elif line.startswith("store: upload failed") and seen == ["cut"]:
                seen.append("retrying")
                proxy.restore()

        with hold_on_the_instance(fake_cloud, tmp_path, epoch=2) as hold:
            code, out, err = _cli(
                ["train", str(job), "--stack", str(stack), "--results", str(results)],
                on_line=cut_then_restore,
            )
    assert code == 0, err[-4000:]
    assert seen == ["cut", "retrying"], out[-3000:]
    lines = out.splitlines()
    assert any(line.startswith("store: uploads work again") for line in lines)
    assert any(line.startswith("store: final sync verified") for line in lines)
    (run_dir,) = results.iterdir()
    stored = _stored_keys(aws, run_dir.name)
    for name in ("model.npz", "metrics.json", "metrics.jsonl", "checkpoint.npz", "train.log"):
        assert _stored(aws, run_dir.name, f"out/{name}") == (run_dir / name).read_bytes(), name
    manifest = json.loads(_stored(aws, run_dir.name, "sync.json"))
    assert manifest["exit_code"] == 0
    assert set(manifest["files"]) <= set(stored)
    nothing_left(aws)


def test_detached_run_finishes_alone_ends_its_instance_and_pulls_complete(
    fake_cloud, aws, tmp_path: Path
) -> None:
    stack = _stored_instance(fake_cloud, aws, tmp_path)
    job = write_job(tmp_path, epochs=3)
    results = tmp_path / "results"
    code, out, err = _cli(["train", str(job), "--stack", str(stack), "--results", str(results), "--detach"])
    assert code == 0, err[-4000:]
    (run_dir,) = results.iterdir()
    rid = run_dir.name
    assert f"ec2dbn logs {rid} --follow" in out + err and f"ec2dbn pull {rid}" in out + err
    record = json.loads((run_dir / "run.json").read_text())
    assert record["detached"] is True and record["status"] == "running"
    (iid,) = fake_cloud.booted
    # Nobody follows it: the instance ends itself (through the EC2 API) once its files are stored.
    _wait_for(
        "the instance to terminate itself",
        lambda: _instance_state(aws, iid) in ("shutting-down", "terminated"),
    )
    assert "sync.json" in _stored_keys(aws, rid)

    code, out, err = _cli(["logs", rid, "--results", str(results)])
    assert code == 0, err[-2000:]
    assert [line for line in out.splitlines() if line.startswith("Epoch ")][-1].startswith("Epoch 3")

    code, out, err = _cli(["pull", rid, "--results", str(results)])
    assert code == 0, err[-2000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["exit_code"] == 0
    for name in ("model.npz", "metrics.json", "report.txt", "train.log", "job.log"):
        assert (run_dir / name).is_file(), name
    _same_weights(run_dir, train_locally_as_on_the_instance(job, tmp_path / "local"))

    # The stack's free parts stay for the next run; teardown removes them, instance profile and role too,
    # and keeps the store; `teardown --store` asks, then empties and removes it.
    code, _out, err = _cli(["teardown", "--stack", "e2e", "--yes"])
    assert code == 0, err[-2000:]
    nothing_left(aws)
    assert _ec2dbn_roles(aws) == []
    s3 = aws.client("s3", REGION)
    assert BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    code, _out, err = _cli(["teardown", "--store", "--region", REGION])
    assert code == 2 and "pass --yes" in err
    assert BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    code, _out, err = _cli(["teardown", "--store", "--region", REGION, "--yes"])
    assert code == 0, err[-2000:]
    assert BUCKET not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_resume_attached_to_a_detached_run_ends_from_the_store_when_its_instance_ends_itself(
    fake_cloud, aws, tmp_path: Path
) -> None:
    """`train --resume` of a detached run still training re-attaches to it; when the job ends, its instance
    terminates itself (the run was detached) and the SSH connection drops: ec2dbn asks EC2 (gone), then the
    store (the job ended), and finishes from the store's files instead of relaunching."""
    stack = _stored_instance(fake_cloud, aws, tmp_path)
    job = write_job(tmp_path, epochs=3)
    results = tmp_path / "results"
    with hold_on_the_instance(fake_cloud, tmp_path, epoch=2) as hold:
        code, out, err = _cli(
            ["train", str(job), "--stack", str(stack), "--results", str(results), "--detach"]
        )
        assert code == 0, err[-4000:]
        (run_dir,) = results.iterdir()

        def release_when_attached(_proc: subprocess.Popen[str], line: str) -> None:
            if line.startswith(HELD):  # the log so far, re-read from the start: the job waits for us
                hold.release()

        code, out, err = _cli(
            ["train", "--resume", run_dir.name, "--results", str(results)], on_line=release_when_attached
        )
    assert code == 0, err[-4000:]
    assert "re-attaching to the job already running" in out + err
    assert "the job ended on its instance (exit 0)" in out + err
    assert len(fake_cloud.booted) == 1  # no relaunch
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["recoveries"] == []
    _same_weights(run_dir, train_locally_as_on_the_instance(job, tmp_path / "local"))
    nothing_left(aws)
    assert _ec2dbn_roles(aws) == []
