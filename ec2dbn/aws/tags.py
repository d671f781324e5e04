"""The tags that mark a resource as ec2dbn's: how everything is found again without local state."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

STACK_TAG = "ec2dbn:stack"
MANAGED_TAG = "ec2dbn:managed"
#: ISO-8601 UTC moment the instance terminates itself (status shows time left from it).
DEADLINE_TAG = "ec2dbn:deadline"
#: The instance's pinned SSH host public key ('ssh-ed25519 AAAA...'), so it can be re-pinned without state.
HOST_KEY_TAG = "ec2dbn:host-key"
#: spot | on-demand, as launched.
MARKET_TAG = "ec2dbn:market"
#: The image the stack asked for (an alias such as dlami-ubuntu22, or an ami- id), as launched.
IMAGE_TAG = "ec2dbn:image"
#: On an image `ec2dbn bake` made (and its snapshots): the hash of what went into it (base image id,
#: bootstrap scripts, the trainer's Python requirements), so unchanged inputs find the bake again.
BAKE_TAG = "ec2dbn:bake"
#: On a bake: the image id it was baked from.
BASE_IMAGE_TAG = "ec2dbn:base-image"
#: The lease: the id of the `ec2dbn train` run using the instance. It outlives the local state dir, so a
#: second run on the same stack is refused even from another machine or after the state dir is gone.
RUN_TAG = "ec2dbn:run"
#: Set by `ec2dbn teardown` (an ISO-8601 UTC time) just before it terminates the instance: a run that
#: then loses its instance knows it was ended on purpose and does not relaunch.
TEARDOWN_TAG = "ec2dbn:teardown"
#: The id of the `ec2dbn sweep` that owns a fleet, its launch template and its instances.
SWEEP_TAG = "ec2dbn:sweep"


def utc_stamp() -> str:
    """Now as ISO-8601 UTC with a Z and whole seconds, the form used in tags."""
    return datetime.now(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def base_tags(stack: str, extra: Mapping[str, str] | None = None) -> list[dict[str, str]]:
    """ec2dbn's three contract tags plus the stack's own `tags`."""
    tags = {**(extra or {}), STACK_TAG: stack, MANAGED_TAG: "true", "Name": f"ec2dbn-{stack}"}
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tag_specs(
    resource_types: Iterable[str], stack: str, extra: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """TagSpecifications tagging each resource type at creation (so nothing exists untagged)."""
    tags = base_tags(stack, extra)
    return [{"ResourceType": rt, "Tags": tags} for rt in resource_types]


def stack_filters(stack: str | None) -> list[dict[str, Any]]:
    """describe_* filters for ec2dbn's resources: one stack's, or every stack's when `stack` is None."""
    filters: list[dict[str, Any]] = [{"Name": f"tag:{MANAGED_TAG}", "Values": ["true"]}]
    if stack is not None:
        filters.append({"Name": f"tag:{STACK_TAG}", "Values": [stack]})
    return filters


def as_dict(tags: Iterable[Mapping[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def is_ours(tags: Iterable[Mapping[str, str]] | None, stack: str) -> bool:
    d = as_dict(tags)
    return d.get(MANAGED_TAG) == "true" and d.get(STACK_TAG) == stack
