"""Finding ec2dbn's resources by their tags: the source of truth for status and teardown.

Only live things count: instances not yet terminated, spot requests still open or active, EC2 fleets not
deleted (a sweep's), and every tagged launch template, security group and key pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ec2dbn.aws.errors import aws_errors
from ec2dbn.aws.fleets import LIVE_FLEET_STATES
from ec2dbn.aws.session import Aws
from ec2dbn.aws.tags import MANAGED_TAG, STACK_TAG, as_dict, stack_filters

LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
OPEN_SPOT_STATES = ["open", "active"]


@dataclass
class Inventory:
    """What is tagged for one stack (or all stacks) in one region, as EC2 describes it."""

    region: str
    instances: list[dict[str, Any]] = field(default_factory=list)
    spot_requests: list[dict[str, Any]] = field(default_factory=list)
    security_groups: list[dict[str, Any]] = field(default_factory=list)
    key_pairs: list[dict[str, Any]] = field(default_factory=list)
    fleets: list[dict[str, Any]] = field(default_factory=list)
    launch_templates: list[dict[str, Any]] = field(default_factory=list)

    def _kinds(self) -> tuple[tuple[str, list[dict[str, Any]], str], ...]:
        return (
            ("instance", self.instances, "InstanceId"),
            ("open spot request", self.spot_requests, "SpotInstanceRequestId"),
            ("fleet", self.fleets, "FleetId"),
            ("launch template", self.launch_templates, "LaunchTemplateId"),
            ("security group", self.security_groups, "GroupId"),
            ("key pair", self.key_pairs, "KeyName"),
        )

    @property
    def empty(self) -> bool:
        return not any(items for _, items, _ in self._kinds())

    def describe(self) -> str:
        """'2 instances (i-1, i-2), 1 security group (sg-1)' — for messages."""
        parts = []
        for label, items, key in self._kinds():
            if items:
                ids = ", ".join(str(i.get(key)) for i in items)
                parts.append(f"{len(items)} {label}{'s' if len(items) > 1 else ''} ({ids})")
        return ", ".join(parts) or "nothing"

    def stacks(self) -> list[str]:
        """Stack names appearing in any tag, sorted."""
        names = set()
        for _, items, _ in self._kinds():
            for item in items:
                name = as_dict(item.get("Tags")).get(STACK_TAG)
                if name:
                    names.add(name)
        return sorted(names)


def instances(aws: Aws, stack: str | None) -> list[dict[str, Any]]:
    """Tagged instances that are not terminated, oldest launch first."""
    filters = [*stack_filters(stack), {"Name": "instance-state-name", "Values": LIVE_STATES}]
    found: list[dict[str, Any]] = []
    with aws_errors(aws.region, "listing instances"):
        for page in aws.ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                found.extend(reservation["Instances"])
    return sorted(found, key=lambda i: str(i.get("LaunchTime", "")))


def spot_requests(aws: Aws, stack: str | None, instance_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """Open or active spot requests tagged for the stack, or attached to `instance_ids`."""
    found: dict[str, dict[str, Any]] = {}
    with aws_errors(aws.region, "listing spot requests"):
        tagged = aws.ec2.describe_spot_instance_requests(
            Filters=[*stack_filters(stack), {"Name": "state", "Values": OPEN_SPOT_STATES}]
        )["SpotInstanceRequests"]
        found.update({r["SpotInstanceRequestId"]: r for r in tagged})
        if instance_ids:
            attached = aws.ec2.describe_spot_instance_requests(
                Filters=[
                    {"Name": "instance-id", "Values": instance_ids},
                    {"Name": "state", "Values": OPEN_SPOT_STATES},
                ]
            )["SpotInstanceRequests"]
            found.update({r["SpotInstanceRequestId"]: r for r in attached})
    return list(found.values())


def security_groups(aws: Aws, stack: str | None) -> list[dict[str, Any]]:
    with aws_errors(aws.region, "listing security groups"):
        return list(aws.ec2.describe_security_groups(Filters=stack_filters(stack))["SecurityGroups"])


def key_pairs(aws: Aws, stack: str | None) -> list[dict[str, Any]]:
    with aws_errors(aws.region, "listing key pairs"):
        return list(aws.ec2.describe_key_pairs(Filters=stack_filters(stack))["KeyPairs"])


def _tagged(item: dict[str, Any], stack: str | None) -> bool:
    tags = as_dict(item.get("Tags"))
    return tags.get(MANAGED_TAG) == "true" and (stack is None or tags.get(STACK_TAG) == stack)


def fleets(aws: Aws, stack: str | None) -> list[dict[str, Any]]:
    """Tagged EC2 fleets not yet deleted. Filtered here by tags and state: DescribeFleets' own filters
    are not applied by every endpoint (moto ignores tag filters), and a filter we do not check is a leak."""
    found: list[dict[str, Any]] = []
    with aws_errors(aws.region, "listing EC2 fleets"):
        for page in aws.ec2.get_paginator("describe_fleets").paginate():
            found.extend(
                f for f in page["Fleets"] if f.get("FleetState") in LIVE_FLEET_STATES and _tagged(f, stack)
            )
    return found


def launch_templates(aws: Aws, stack: str | None) -> list[dict[str, Any]]:
    with aws_errors(aws.region, "listing launch templates"):
        pages = aws.ec2.get_paginator("describe_launch_templates").paginate(Filters=stack_filters(stack))
        return [t for page in pages for t in page["LaunchTemplates"] if _tagged(t, stack)]


def inventory(aws: Aws, stack: str | None) -> Inventory:
    """Everything live and tagged for `stack` (or every stack) in the region."""
    found = instances(aws, stack)
    return Inventory(
        region=aws.region,
        instances=found,
        spot_requests=spot_requests(aws, stack, [i["InstanceId"] for i in found]),
        security_groups=security_groups(aws, stack),
        key_pairs=key_pairs(aws, stack),
        fleets=fleets(aws, stack),
        launch_templates=launch_templates(aws, stack),
    )
