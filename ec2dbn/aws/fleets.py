"""EC2 Fleet: many instances in one call (`CreateFleet` of type `instant`), and removing fleets again.

One request asks for `count` instances of one market over every pool the stack allows — its candidate
instance types × the zones offering them — through a launch template (ec2dbn.aws.templates). Spot
uses `price-capacity-optimized` (EC2 picks the pools least likely to be interrupted, among the cheap
ones); on-demand uses `prioritized`, in the stack's order of candidates. An instant fleet answers at
once with the instances it could launch and one error per pool it could not: fewer instances than asked
is a partial success, and the errors are explained the way `launch` explains its attempts
(ec2dbn.aws.instances), quota codes included.

An instant fleet is a record, not a manager: EC2 does not replace its instances. Deleting it needs
`TerminateInstances=True` (EC2 refuses to keep an instant fleet's instances running without it).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ec2dbn.aws import quotas
from ec2dbn.aws.errors import (
    CAPACITY_CODES,
    QUOTA_CODES,
    SPOT_PRICE_CODES,
    SPOT_ROLE_CODE,
    ZONE_CODES,
    aws_errors,
    error_code,
    spot_role_error,
    translate,
)
from ec2dbn.aws.instances import Attempt, InstanceRecord, _final_error, _summary
from ec2dbn.aws.session import Aws
from ec2dbn.aws.tags import MARKET_TAG, base_tags
from ec2dbn.errors import CloudError

#: Fleet states in which the fleet (and maybe instances) still exist; `deleted*` and `failed` are gone.
LIVE_FLEET_STATES = ("submitted", "active", "modifying")


@dataclass(frozen=True)
class Pool:
    """One instance type in one zone. `max_price` USD/h caps spot (None: EC2's cap, the on-demand price)."""

    instance_type: str
    zone: str
    max_price: float | None = None
    vcpus: int | None = None
    #: the zone's subnet (the stack's vpc_id / subnet_ids / subnet_tags); None: the zone's default subnet.
    subnet: str | None = None


@dataclass
class FleetAnswer:
    """What one CreateFleet gave: its id, the instances launched, and one Attempt per pool that failed."""

    fleet_id: str | None
    market: str
    instances: list[InstanceRecord] = field(default_factory=list)
    errors: list[Attempt] = field(default_factory=list)


def fleet_request(
    stack: str,
    template_id: str,
    pools: Sequence[Pool],
    market: str,
    count: int,
    tags: Mapping[str, str],
) -> dict[str, Any]:
    """The CreateFleet parameters: `count` instances of `market` over `pools` (in order of preference)."""
    overrides: list[dict[str, Any]] = []
    for priority, pool in enumerate(pools):
        o: dict[str, Any] = {"InstanceType": pool.instance_type, "AvailabilityZone": pool.zone}
        if pool.subnet:
            o["SubnetId"] = pool.subnet
        if market == "spot" and pool.max_price is not None:
            o["MaxPrice"] = f"{pool.max_price:.5f}".rstrip("0").rstrip(".")
        if market == "on-demand":
            o["Priority"] = float(priority)
        overrides.append(o)
    target = "SpotTargetCapacity" if market == "spot" else "OnDemandTargetCapacity"
    instance_tags = base_tags(stack, {**tags, MARKET_TAG: market})
    params: dict[str, Any] = {
        "Type": "instant",
        "LaunchTemplateConfigs": [
            {
                "LaunchTemplateSpecification": {"LaunchTemplateId": template_id, "Version": "$Default"},
                "Overrides": overrides,
            }
        ],
        "TargetCapacitySpecification": {
            "TotalTargetCapacity": count,
            target: count,
            "DefaultTargetCapacityType": market,
        },
        "TagSpecifications": [
            {"ResourceType": "fleet", "Tags": base_tags(stack, dict(tags))},
            {"ResourceType": "instance", "Tags": instance_tags},
        ],
        # Same token on botocore's own retries: a retried request never launches a second fleet.
        "ClientToken": f"ec2dbn-{uuid.uuid4().hex}",
    }
    if market == "spot":
        params["SpotOptions"] = {
            "AllocationStrategy": "price-capacity-optimized",
            "InstanceInterruptionBehavior": "terminate",
        }
    else:
        params["OnDemandOptions"] = {"AllocationStrategy": "prioritized"}
    return params


def request(
    aws: Aws,
    stack: str,
    template_id: str,
    pools: Sequence[Pool],
    market: str,
    count: int,
    tags: Mapping[str, str],
) -> FleetAnswer:
    """One instant CreateFleet; a partial answer (fewer instances, with per-pool errors) is returned as
    is. Raises CloudError when EC2 refuses the request itself (bad parameters, permissions)."""
    params = fleet_request(stack, template_id, pools, market, count, tags)
    with aws_errors(aws.region, f"creating an EC2 fleet of {count} {market} instance(s)"):
        resp = aws.ec2.create_fleet(**params)
    answer = FleetAnswer(fleet_id=resp.get("FleetId"), market=market)
    for group in resp.get("Instances") or []:
        lifecycle = "spot" if group.get("Lifecycle") == "spot" else "on-demand"
        zone = _overrides(group).get("AvailabilityZone")
        for iid in group.get("InstanceIds") or []:
            answer.instances.append(
                InstanceRecord(iid, str(group.get("InstanceType", "?")), "pending", zone, market=lifecycle)
            )
    for err in resp.get("Errors") or []:
        o = _overrides(err)
        lifecycle = "spot" if err.get("Lifecycle", market) == "spot" else "on-demand"
        message = " ".join(str(err.get("ErrorMessage", "")).split())
        answer.errors.append(
            Attempt(
                str(o.get("InstanceType", "?")),
                str(o.get("AvailabilityZone", "?")),
                lifecycle,
                str(err.get("ErrorCode", "UnknownError")),
                message,
            )
        )
    return answer


def _overrides(item: Mapping[str, Any]) -> Mapping[str, Any]:
    return (item.get("LaunchTemplateAndOverrides") or {}).get("Overrides") or {}


def explain(
    region: str, errors: Sequence[Attempt], markets: Sequence[str], pools: Sequence[Pool] = ()
) -> CloudError:
    """The one-line error for a fleet that got no instance, as `launch` words it: quota codes to raise,
    spot price, or capacity (what was tried). An error that is none of these (a permission, a parameter,
    the Spot service-linked role) is not a lack of capacity: its code and AWS's message, as AWS gave them."""
    for e in errors:
        if e.outcome == SPOT_ROLE_CODE:
            return spot_role_error(f"creating an EC2 fleet of {e.market} {e.instance_type}", region)
    known = CAPACITY_CODES | ZONE_CODES | SPOT_PRICE_CODES | QUOTA_CODES
    for e in errors:
        if e.outcome not in known:
            where = f"{e.market} {e.instance_type} in {e.zone}"
            return CloudError(f"EC2 refused the fleet in {region} ({where}): {e.outcome}: {e.message}")
    vcpus = {p.instance_type: p.vcpus for p in pools}
    quota_lines = [
        quotas.quota_message(
            e.outcome,
            instance_type=e.instance_type,
            market=e.market,
            region=region,
            vcpus=vcpus.get(e.instance_type),
            quota=quotas.current(Aws(region), e.instance_type, e.market),
        )
        for e in errors
        if e.outcome in QUOTA_CODES
    ]
    return _final_error(region, list(errors), list(dict.fromkeys(quota_lines)), markets)


def summary(errors: Sequence[Attempt]) -> str:
    """'spot g4dn.xlarge in us-east-1a,us-east-1b: InsufficientInstanceCapacity; ...'"""
    return _summary(errors)


def delete(aws: Aws, fleet_ids: Sequence[str]) -> list[str]:
    """Delete instant fleets and terminate their instances; returns the ids EC2 could not delete, each
    with its reason. Up to 25 fleets per call (EC2's limit for instant fleets).

    A fleet that launched nothing has nothing to terminate, and some endpoints (moto) then refuse
    `TerminateInstances=True` with InvalidParameterCombination: such a fleet is deleted on its own,
    without terminating (there is nothing to keep running).
    """
    failed: list[str] = []
    ids = list(fleet_ids)
    for start in range(0, len(ids), 25):
        batch = ids[start : start + 25]
        try:
            resp = aws.ec2.delete_fleets(FleetIds=batch, TerminateInstances=True)
        except ClientError as exc:
            if error_code(exc) != "InvalidParameterCombination":
                raise translate(exc, region=aws.region, action="deleting EC2 fleets") from exc
            resp = {"UnsuccessfulFleetDeletions": [_delete_one(aws, fid) for fid in batch]}
        except Exception as exc:
            raise translate(exc, region=aws.region, action="deleting EC2 fleets") from exc
        for item in resp.get("UnsuccessfulFleetDeletions") or []:
            why = item.get("Error") or {}
            if item and why.get("Code") != "fleetIdDoesNotExist":
                failed.append(f"{item.get('FleetId')}: {why.get('Code')}: {why.get('Message')}")
    return failed


def _delete_one(aws: Aws, fleet_id: str) -> dict[str, Any]:
    """One fleet, terminating its instances, or (refused: it has none) without; {} when deleted."""
    for terminate in (True, False):
        try:
            resp = aws.ec2.delete_fleets(FleetIds=[fleet_id], TerminateInstances=terminate)
        except ClientError as exc:
            if terminate and error_code(exc) == "InvalidParameterCombination":
                continue
            raise translate(exc, region=aws.region, action=f"deleting EC2 fleet {fleet_id}") from exc
        failures = resp.get("UnsuccessfulFleetDeletions") or []
        return dict(failures[0]) if failures else {}
    return {}
