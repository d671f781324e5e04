"""`ec2dbn bake` end to end: moto as EC2 (CreateImage included), the fake cloud-init's loopback sshd as the
instances, with their disks modelled per image (tests/support/fake_cloud.py: `disk`), so a baked instance
has what the builder installed only because its image carried it.

bake → train on the bake (bootstrap confirms, run.json says so) → teardown --images leaves no image and no
snapshot; a bake that fails on the way (after bootstrap, at CreateImage, after the image exists) leaves no
instance, image or snapshot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from ec2dbn.aws.tags import BAKE_TAG
from ec2dbn.cli import main
from ec2dbn.errors import RemoteError
from ec2dbn.run import pipeline
from ec2dbn.spec.bake_inputs import bake_hash
from tests.e2e.helpers import nothing_left, run_cli, write_job, write_stack
from tests.support.fake_cloud import FakeCloudInit
from tests.support.moto_server import MotoServer, add_hook, inject_error

pytestmark = pytest.mark.slow

MANAGED = [{"Name": "tag:ec2dbn:managed", "Values": ["true"]}]


def baked_stack(fake_cloud: FakeCloudInit, tmp_path: Path, **overrides: object) -> Path:
    """The e2e stack with its remote_dir on the fake instances' modelled disk."""
    fake_cloud.disk = tmp_path / "disk"
    return write_stack(tmp_path, remote_dir=str(fake_cloud.disk / "home" / "ec2dbn"), **overrides)


def our_images(aws: MotoServer) -> list[dict[str, Any]]:
    return aws.client("ec2").describe_images(Owners=["self"], Filters=MANAGED)["Images"]


def snapshots_of(images: list[dict[str, Any]]) -> list[str]:
    return [m["Ebs"]["SnapshotId"] for i in images for m in i["BlockDeviceMappings"] if "Ebs" in m]


def existing_snapshots(aws: MotoServer, ids: list[str]) -> list[str]:
    ec2 = aws.client("ec2")
    left = []
    for sid in ids:
        try:
            left += [s["SnapshotId"] for s in ec2.describe_snapshots(SnapshotIds=[sid])["Snapshots"]]
        except ec2.exceptions.ClientError as exc:
            assert "InvalidSnapshot.NotFound" in str(exc), exc
    return left


def nothing_baked(aws: MotoServer) -> None:
    """No instance, group, key, image or bake snapshot of ec2dbn's is left."""
    nothing_left(aws)
    assert our_images(aws) == []
    ec2 = aws.client("ec2")
    tagged = ec2.describe_snapshots(OwnerIds=["self"], Filters=MANAGED)["Snapshots"]
    assert tagged == [], tagged


def train(tmp_path: Path, stack: Path, results: Path) -> dict[str, Any]:
    args = ["train", str(write_job(tmp_path)), "--stack", str(stack), "--results", str(results)]
    code, _lines, err = run_cli(args, dict(os.environ))
    assert code == 0, err[-3000:]
    (run_dir,) = results.iterdir()
    return json.loads((run_dir / "run.json").read_text())


def test_bake_then_train_on_it_then_teardown_images_leaves_nothing(
    fake_cloud: FakeCloudInit, aws: MotoServer, tmp_path: Path
) -> None:
    stack = baked_stack(fake_cloud, tmp_path, bake="auto")
    # The base image, no bake yet: a full bootstrap (bake: auto falls back to it).
    base_run = train(tmp_path, stack, tmp_path / "results-base")
    assert base_run["bake"] is None
    assert not base_run["bootstrap"]["python"].endswith("already done")

    bake = ["bake", "--stack", str(stack), "--data", "mnist-5k", "--results", str(tmp_path / "bakes")]
    code, lines, err = run_cli(bake, dict(os.environ))
    assert code == 0, err[-3000:]
    (image,) = our_images(aws)
    tags = {t["Key"]: t["Value"] for t in image["Tags"]}
    base_id = aws.images[("us-east-1", "ubuntu22")]
    assert tags[BAKE_TAG] == bake_hash(base_id, ["base", "nvidia", "python", "check"])
    snaps = snapshots_of([image])
    assert snaps
    for snap in aws.client("ec2").describe_snapshots(SnapshotIds=snaps)["Snapshots"]:
        assert {t["Key"]: t["Value"] for t in snap["Tags"]}[BAKE_TAG] == tags[BAKE_TAG]
    nothing_left(aws)  # the builder, its key pair and security group are gone
    # What the image carries: the builder's venv, markers and cache; none of its keys.
    disk = fake_cloud.image_disk(image["ImageId"])
    assert (disk / "home" / "ec2dbn" / ".bootstrap" / "baked").read_text().strip() == tags[BAKE_TAG]
    assert (disk / "home" / "ec2dbn" / "venv" / "bin" / "python").exists()
    # the run store's uploader needs boto3, which the fresh instance lacked: the bake installed it
    assert list((disk / "home" / "ec2dbn" / "venv").glob("lib/python3*/site-packages/boto3/__init__.py"))
    assert not (disk / "home" / ".ssh" / "authorized_keys").exists()
    assert not list((disk / "etc" / "ssh").glob("ssh_host_*"))
    bake_record = json.loads(next((tmp_path / "bakes").glob("*/run.json")).read_text())
    assert bake_record["status"] == "finished"

    # Unchanged inputs: the bake is found again, nothing is launched (--json: the bake alone on stdout).
    code, lines, err = run_cli([*bake, "--json"], dict(os.environ))
    assert code == 0, err[-3000:]
    assert "reusing it" in err
    doc = json.loads("\n".join(text for _, text in lines))
    assert doc["reused"] and doc["image_id"] == image["ImageId"] and doc["bake_hash"] == tags[BAKE_TAG]
    assert len(our_images(aws)) == 1 and len(fake_cloud.booted) == 2  # the base run's and the builder

    baked_run = train(tmp_path, stack, tmp_path / "results-baked")
    assert baked_run["bake"] == tags[BAKE_TAG] and baked_run["image_id"] == image["ImageId"]
    assert baked_run["bootstrap"]["base"].endswith("already done")
    assert "already done" in baked_run["bootstrap"]["python"]
    print("phases base ", json.dumps(base_run["phases"]), json.dumps(base_run["bootstrap"]))
    print("phases baked", json.dumps(baked_run["phases"]), json.dumps(baked_run["bootstrap"]))
    print("phases bake ", json.dumps(bake_record["phases"]))

    code, lines, err = run_cli(["status"], dict(os.environ))
    assert code == 0 and any(tags[BAKE_TAG] in text for _, text in lines)
    assert any("bakes: 1" in text for _, text in lines)
    code, lines, err = run_cli(["teardown", "--all", "--yes"], dict(os.environ))
    assert code == 0 and any("kept 1 bake(s)" in text for _, text in lines), err
    code, lines, err = run_cli(["teardown", "--images", "--yes"], dict(os.environ))
    assert code == 0, err[-3000:]
    nothing_baked(aws)
    assert existing_snapshots(aws, snaps) == []


def bake_in_process(stack: Path, tmp_path: Path) -> int:
    return main(["bake", "--stack", str(stack), "--data", "mnist-5k", "--results", str(tmp_path / "bakes")])


def test_a_bake_failing_after_bootstrap_leaves_nothing(
    fake_cloud: FakeCloudInit, aws: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail_at_cache(name: str) -> None:
        if name == "cache":
            raise RemoteError("injected: the builder's disk filled up")

    monkeypatch.setattr(pipeline, "PHASE_HOOKS", [fail_at_cache])
    assert bake_in_process(baked_stack(fake_cloud, tmp_path), tmp_path) == 1
    assert fake_cloud.booted, "the builder never booted: the failure came too early to prove anything"
    nothing_baked(aws)


def test_a_failing_create_image_leaves_nothing(
    fake_cloud: FakeCloudInit, aws: MotoServer, tmp_path: Path
) -> None:
    injected = inject_error("CreateImage", "InternalError", "injected: EC2 could not create the image")
    assert bake_in_process(baked_stack(fake_cloud, tmp_path), tmp_path) == 1
    assert injected.injected == 1
    nothing_baked(aws)


def test_a_bake_failing_once_the_image_exists_removes_it_and_its_snapshots(
    fake_cloud: FakeCloudInit, aws: MotoServer, tmp_path: Path
) -> None:
    made: list[str] = []
    add_hook(  # the snapshots ec2dbn removes: they existed, made (and tagged) with the image
        "before-parameter-build.ec2.DeleteSnapshot", lambda params, **_: made.append(params["SnapshotId"])
    )
    # The image exists, then waiting for it fails once (the next describe, in the clean-up, is answered).
    seeded = set(aws.images.values())  # the base images; the bake's is the one not among them
    baked = lambda params: bool(set(params.get("ImageIds") or []) - seeded)  # noqa: E731
    injected = inject_error("DescribeImages", "InternalError", when=baked)
    assert bake_in_process(baked_stack(fake_cloud, tmp_path), tmp_path) == 1
    assert injected.injected == 1 and made
    nothing_baked(aws)
    assert existing_snapshots(aws, made) == []
