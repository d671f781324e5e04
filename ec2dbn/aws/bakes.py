"""Images `ec2dbn bake` makes: create one from a builder instance, find them by their bake hash, remove
them with their snapshots.

A bake is an AMI tagged `ec2dbn:managed=true` and `ec2dbn:bake=<hash>`, owned by the account; its EBS
snapshots carry the same tags. The hash is handed to these verbs (ec2dbn.spec.bake_inputs computes it). What
it costs to keep is its snapshots' storage, so removing a bake is always two steps in one verb: deregister
the image, then delete every snapshot it named (AWS leaves them behind otherwise, billed, with no image to
use them: "Deregistering an AMI does not delete ... snapshots", EC2 API reference, DeregisterImage).
Snapshots tagged as a bake's whose image is gone (a bake interrupted between the two steps) are found by
their tag and removed too.

CreateImage tags the image and its snapshots at creation (TagSpecifications `image` and `snapshot`): no
moment exists where they are untagged, and the IAM policy grants CreateImage only when both are tagged
ec2dbn's (the Service Authorization Reference authorizes CreateImage on the snapshots it makes too).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from botocore.exceptions import ClientError

from ec2dbn.aws.errors import aws_errors, error_code
from ec2dbn.aws.images import Image, image_record
from ec2dbn.aws.session import Aws
from ec2dbn.aws.tags import BAKE_TAG, BASE_IMAGE_TAG, MANAGED_TAG, STACK_TAG, as_dict, base_tags
from ec2dbn.errors import CloudError, ConfigError, Ec2dbnError
from ec2dbn.events import NullReporter, Reporter
from ec2dbn.spec.stack import Stack

#: Seconds CreateImage may take before the bake gives up (a g4dn root volume of ~30 GiB of data takes
#: about 5-15 minutes on AWS; the first snapshot of a volume is a full copy).
IMAGE_TIMEOUT_S = 3600.0
POLL_S = 5.0


@dataclass(frozen=True)
class BakeRecord:
    """One bake as EC2 describes it. `size_gb`: the sum of its snapshots' volume sizes (GiB), an upper
    bound of what is billed (EBS bills the blocks a snapshot stores); `created_at` UTC."""

    image_id: str
    name: str
    state: str
    bake_hash: str
    stack: str
    base_image_id: str
    created_at: datetime | None
    snapshot_ids: tuple[str, ...] = ()
    size_gb: int = 0
    tags: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_ec2(cls, desc: Mapping[str, Any]) -> BakeRecord:
        tags = as_dict(desc.get("Tags"))
        snaps = [m["Ebs"] for m in desc.get("BlockDeviceMappings", []) if m.get("Ebs", {}).get("SnapshotId")]
        created = desc.get("CreationDate")
        return cls(
            image_id=str(desc["ImageId"]),
            name=str(desc.get("Name", "")),
            state=str(desc.get("State", "unknown")),
            bake_hash=tags.get(BAKE_TAG, "?"),
            stack=tags.get(STACK_TAG, "?"),
            base_image_id=tags.get(BASE_IMAGE_TAG, "?"),
            created_at=_parse_time(created) if isinstance(created, str) else None,
            snapshot_ids=tuple(str(s["SnapshotId"]) for s in snaps),
            size_gb=sum(int(s.get("VolumeSize") or 0) for s in snaps),
            tags=tags,
        )


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)
    except ValueError:
        return None


def _filters(bake_hash: str | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]},
        {"Name": "tag-key", "Values": [BAKE_TAG]},
    ]
    if bake_hash is not None:
        out.append({"Name": f"tag:{BAKE_TAG}", "Values": [bake_hash]})
    return out


def find(region: str, bake_hash: str | None = None) -> list[BakeRecord]:
    """The account's bakes in `region` (those with `bake_hash` only, when given), newest first."""
    aws = Aws(region)
    with aws_errors(region, "listing baked images"):
        found = aws.ec2.describe_images(Owners=["self"], Filters=_filters(bake_hash))["Images"]
    records = [BakeRecord.from_ec2(d) for d in found]
    oldest = datetime.min.replace(tzinfo=timezone.utc)
    return sorted(records, key=lambda r: r.created_at or oldest, reverse=True)


def newest_available(region: str, bake_hash: str) -> tuple[BakeRecord, Image] | None:
    """The newest available bake with `bake_hash`, with the facts launch needs, or None."""
    for record in find(region, bake_hash):
        if record.state == "available":
            aws = Aws(region)
            with aws_errors(region, f"describing image {record.image_id}"):
                (desc,) = aws.ec2.describe_images(ImageIds=[record.image_id])["Images"]
            return record, image_record(desc, record.image_id, None)
    return None


#: The bake's name for a base image id: handed down by the caller (ec2dbn.spec.bake_inputs.bake_hash over
#: the stack's steps), never computed here.
BakeName = Callable[[str], str]


def choose(stack: Stack, base: Image, bake_name: BakeName | None, reporter: Reporter | None = None) -> Image:
    """The image a stack launches from: `base`, or with `bake: auto` the newest available bake of it with
    the current bootstrap when there is one; with `image: baked` that bake, else ConfigError (exit 2,
    before anything is created) saying to run `ec2dbn bake`. `bake_name` names the bake of `base`; a
    stack that uses bakes needs it (ValueError without: a caller's bug)."""
    if stack.bake_mode == "off":
        return base
    if bake_name is None:
        raise ValueError(
            f"stack {stack.name} uses bakes: plan it with its bake's name (ec2dbn.stack.lifecycle.plan_stack)"
        )
    reporter = reporter or NullReporter()
    wanted = bake_name(base.image_id)
    found = newest_available(stack.region, wanted)
    if found is None:
        if stack.bake_mode == "required":
            raise ConfigError(
                f"stack {stack.name} has `image: baked` but no bake {wanted} of {base.image_id} "
                f"({stack.source_image}, with the current bootstrap scripts) exists in {stack.region}: "
                f"run `ec2dbn bake --stack {stack.name}`"
            )
        reporter.step(f"no bake {wanted} of {base.image_id} yet: the base image and a full bootstrap")
        return base
    record, image = found
    reporter.step(f"image: bake {wanted} ({record.image_id}) of {base.image_id}")
    return replace(image, requested=stack.image, bake_hash=wanted)


# ---------------------------------------------------------------------------------------------- create


def start_image(region: str, instance_id: str, name: str, stack: str, tags: Mapping[str, str]) -> str:
    """CreateImage of the builder, tagged at creation; returns the image id (the image is `pending`).

    NoReboot is left false: EC2 stops the instance's file systems before the snapshots so they are
    consistent, and reboots it afterwards (the snapshots hold the disk as it was at the shutdown, before
    the reboot's cloud-init could write new keys).
    """
    aws = Aws(region)
    with aws_errors(region, f"creating an image of {instance_id}"):
        return str(
            aws.ec2.create_image(
                InstanceId=instance_id,
                Name=name,
                Description=f"ec2dbn bake of stack {stack}",
                NoReboot=False,
                TagSpecifications=[
                    {"ResourceType": kind, "Tags": base_tags(stack, tags)} for kind in ("image", "snapshot")
                ],
            )["ImageId"]
        )


def wait_available(
    region: str, image_id: str, *, reporter: Reporter | None = None, timeout_s: float = IMAGE_TIMEOUT_S
) -> BakeRecord:
    """Block until the image is available, saying how long it has waited. Raises CloudError when it
    fails (state failed/invalid/error/deregistered, with EC2's reason) or `timeout_s` passes."""
    reporter = reporter or NullReporter()
    aws = Aws(region)
    start = time.monotonic()
    with reporter.waiting(f"waiting for image {image_id} to be available (snapshotting the disk)"):
        while True:
            with aws_errors(region, f"waiting for image {image_id}"):
                found = aws.ec2.describe_images(ImageIds=[image_id])["Images"]
            if found:
                record = BakeRecord.from_ec2(found[0])
                if record.state == "available":
                    return record
                if record.state not in ("pending", "transient"):
                    reason = found[0].get("StateReason", {}).get("Message") or "no reason given"
                    raise CloudError(f"image {image_id} ended {record.state}: {reason}")
            elapsed = time.monotonic() - start
            if elapsed > timeout_s:
                raise CloudError(f"image {image_id} was not available after {elapsed:.0f} s; gave up")
            time.sleep(POLL_S)


# ---------------------------------------------------------------------------------------------- remove


@dataclass
class Removal:
    """What removing bakes did: images deregistered, snapshots deleted, and what failed."""

    deregistered: list[str] = field(default_factory=list)
    deleted_snapshots: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def remove(region: str, image_ids: Iterable[str], *, reporter: Reporter | None = None) -> Removal:
    """Deregister each image, then delete the snapshots it named; then delete every snapshot tagged as a
    bake's whose image no longer exists. One failure never stops the rest; `errors` says what failed."""
    reporter = reporter or NullReporter()
    aws = Aws(region)
    out = Removal()
    for image_id in image_ids:
        try:
            with aws_errors(region, f"describing image {image_id}"):
                found = aws.ec2.describe_images(ImageIds=[image_id])["Images"]
        except Ec2dbnError as exc:
            if not _not_found(exc):
                out.errors.append(str(exc))
                continue
            found = []
        snapshots = BakeRecord.from_ec2(found[0]).snapshot_ids if found else ()
        if found:
            try:
                with aws_errors(region, f"deregistering image {image_id}"):
                    aws.ec2.deregister_image(ImageId=image_id)
            except Ec2dbnError as exc:
                out.errors.append(str(exc))
                reporter.warn(f"could not deregister {image_id}: {exc}")
                continue
            out.deregistered.append(image_id)
            reporter.step(f"deregistered image {image_id}")
        _delete_snapshots(aws, snapshots, out, reporter)
    _delete_snapshots(aws, orphan_snapshots(region), out, reporter)
    return out


def orphan_snapshots(region: str) -> list[str]:
    """Snapshots tagged as a bake's that no registered image of the account names."""
    aws = Aws(region)
    with aws_errors(region, "listing baked snapshots"):
        snaps = aws.ec2.describe_snapshots(OwnerIds=["self"], Filters=_filters())["Snapshots"]
    named = {s for record in find(region) for s in record.snapshot_ids}
    return [str(s["SnapshotId"]) for s in snaps if s["SnapshotId"] not in named]


def _delete_snapshots(aws: Aws, snapshot_ids: Iterable[str], out: Removal, reporter: Reporter) -> None:
    for snapshot_id in snapshot_ids:
        if snapshot_id in out.deleted_snapshots:
            continue
        try:
            with aws_errors(aws.region, f"deleting snapshot {snapshot_id}"):
                aws.ec2.delete_snapshot(SnapshotId=snapshot_id)
        except Ec2dbnError as exc:
            if _not_found(exc):
                continue
            out.errors.append(str(exc))
            reporter.warn(f"could not delete snapshot {snapshot_id}: {exc}")
            continue
        out.deleted_snapshots.append(snapshot_id)
        reporter.step(f"deleted snapshot {snapshot_id}")


def by_name(region: str, name: str) -> list[str]:
    """Image ids of the account's images called `name` (a CreateImage whose answer was lost may still
    have made one)."""
    aws = Aws(region)
    with aws_errors(region, f"looking for image {name}"):
        found = aws.ec2.describe_images(Owners=["self"], Filters=[{"Name": "name", "Values": [name]}])
    return [str(d["ImageId"]) for d in found["Images"]]


def _not_found(exc: Ec2dbnError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, ClientError) and error_code(cause).startswith(
        ("InvalidAMIID", "InvalidSnapshot.NotFound")
    )
