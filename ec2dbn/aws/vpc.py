"""Where an instance goes: the VPC and, per availability zone, the subnet a launch there uses.

A stack names nothing (the region's default VPC and its subnets), a `vpc_id` (its subnets), `subnet_ids`
(exactly those) or `subnet_tags` (the subnets carrying all those tags, in `vpc_id` when given). A zone
without a usable subnet (available, with free addresses) is left out up front, so launch never tries it.
Instances always get a public IP (the launch asks for one on its network interface), whatever the subnet's
MapPublicIpOnLaunch says: ec2dbn reaches them over SSH from outside.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from ec2dbn.aws.errors import aws_errors, error_code
from ec2dbn.aws.session import Aws
from ec2dbn.errors import ConfigError


@dataclass(frozen=True)
class Network:
    """The VPC a stack launches into and the subnet used in each zone (zone -> subnet id), with what
    chose them ('the default VPC', 'vpc_id vpc-…', 'subnet_ids', 'subnet_tags …')."""

    vpc_id: str
    subnets: Mapping[str, str]
    source: str
    skipped: list[str] = field(default_factory=list)

    @property
    def zones(self) -> list[str]:
        return sorted(self.subnets)


def resolve(
    aws: Aws,
    *,
    vpc_id: str | None = None,
    subnet_ids: Sequence[str] | None = None,
    subnet_tags: Mapping[str, str] | None = None,
) -> Network:
    """The stack's network in the region. Raises ConfigError when what the stack names does not exist or
    has no usable subnet, and when there is no default VPC and the stack names no subnets."""
    region = aws.region
    if subnet_ids:
        subnets = _describe_subnets(aws, SubnetIds=list(subnet_ids))
        vpcs = {s["VpcId"] for s in subnets}
        if len(vpcs) > 1 or (vpc_id and vpcs != {vpc_id}):
            raise ConfigError(
                f"subnet_ids {', '.join(subnet_ids)} are in {', '.join(sorted(vpcs))}"
                f"{f', not in vpc_id {vpc_id}' if vpc_id else ''}: list subnets of one VPC"
            )
        return _network(vpcs.pop(), subnets, "subnet_ids")
    if subnet_tags:
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in subnet_tags.items()]
        if vpc_id:
            filters.append({"Name": "vpc-id", "Values": [vpc_id]})
        subnets = _describe_subnets(aws, Filters=filters)
        wanted = ", ".join(f"{k}={v}" for k, v in subnet_tags.items())
        if not subnets:
            raise ConfigError(
                f"no subnet in {region}{f' ({vpc_id})' if vpc_id else ''} is tagged {wanted}: tag the "
                "subnets to use, or list them as subnet_ids"
            )
        vpcs = {s["VpcId"] for s in subnets}
        if len(vpcs) > 1:
            raise ConfigError(
                f"subnets tagged {wanted} are in several VPCs ({', '.join(sorted(vpcs))}): add vpc_id"
            )
        return _network(vpcs.pop(), subnets, f"subnet_tags {wanted}")
    if vpc_id:
        _require_vpc(aws, vpc_id)
        subnets = _describe_subnets(aws, Filters=[{"Name": "vpc-id", "Values": [vpc_id]}])
        return _network(vpc_id, subnets, f"vpc_id {vpc_id}")
    default = default_vpc(aws)
    if default is None:
        raise ConfigError(
            f"{region} has no default VPC and the stack names no subnets: add `subnet_ids: [subnet-...]` "
            "(or `vpc_id:` / `subnet_tags:`) to the stack, or create a default VPC with "
            f"`aws ec2 create-default-vpc --region {region}`"
        )
    subnets = _describe_subnets(aws, Filters=[{"Name": "vpc-id", "Values": [default]}])
    return _network(default, subnets, f"the default VPC {default}")


def default_vpc(aws: Aws) -> str | None:
    """The region's default VPC id, or None when the account has none (common in organisations)."""
    with aws_errors(aws.region, "looking up the default VPC"):
        vpcs = aws.ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    return str(vpcs[0]["VpcId"]) if vpcs else None


def _require_vpc(aws: Aws, vpc_id: str) -> None:
    try:
        aws.ec2.describe_vpcs(VpcIds=[vpc_id])
    except ClientError as exc:
        if error_code(exc).startswith("InvalidVpcID"):
            raise ConfigError(f"vpc_id {vpc_id} does not exist in {aws.region} (VPCs are regional)") from None
        with aws_errors(aws.region, f"describing {vpc_id}"):
            raise


def _describe_subnets(aws: Aws, **kwargs: Any) -> list[dict[str, Any]]:
    try:
        return list(aws.ec2.describe_subnets(**kwargs)["Subnets"])
    except ClientError as exc:
        if error_code(exc).startswith("InvalidSubnetID"):
            raise ConfigError(
                f"subnet_ids: {' '.join(str(exc.response['Error'].get('Message', '')).split())} "
                f"in {aws.region} (subnets are regional)"
            ) from None
        with aws_errors(aws.region, "listing subnets"):
            raise


def _network(vpc_id: str, subnets: list[dict[str, Any]], source: str) -> Network:
    """One subnet per zone: available with free addresses, preferring the zone's default subnet, then
    one that maps public IPs, then the one with most free addresses."""
    chosen: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for s in subnets:
        if s.get("State", "available") != "available" or int(s.get("AvailableIpAddressCount", 1)) <= 0:
            skipped.append(f"{s['SubnetId']} ({s.get('AvailabilityZone', '?')}: no free address)")
            continue
        zone = str(s["AvailabilityZone"])
        if zone not in chosen or _rank(s) > _rank(chosen[zone]):
            chosen[zone] = s
    if not chosen:
        why = f"; skipped {', '.join(skipped)}" if skipped else ""
        raise ConfigError(
            f"{source} has no usable subnet (available, with free addresses) in any zone{why}: "
            "create one, or name others"
        )
    return Network(vpc_id, {z: str(s["SubnetId"]) for z, s in sorted(chosen.items())}, source, skipped)


def _rank(subnet: Mapping[str, Any]) -> tuple[bool, bool, int, str]:
    return (
        bool(subnet.get("DefaultForAz")),
        bool(subnet.get("MapPublicIpOnLaunch")),
        int(subnet.get("AvailableIpAddressCount", 0)),
        str(subnet["SubnetId"]),
    )
