"""Networking that works in real accounts: the default VPC, or the stack's vpc_id / subnet_ids /
subnet_tags; zones without a usable subnet skipped up front; zone refusals moving to the next zone; no
default VPC and no subnets named is one line saying so. Against moto, with plain boto3 to build the VPCs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.aws import helpers
from tests.aws.helpers import NOTHING, cli
from tests.support.moto_server import MotoServer, inject_error, tagged_resources


def stack_file(tmp_path: Path, **fields: Any) -> str:
    return helpers.stack_file(tmp_path, "net", **fields)


def custom_vpc(aws: MotoServer, zones: dict[str, dict[str, str] | None]) -> tuple[str, dict[str, str]]:
    """A non-default VPC with one subnet per zone (MapPublicIpOnLaunch off, as in most custom VPCs);
    zones map to the subnet's tags (None: untagged). Returns (vpc id, zone -> subnet id)."""
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
    subnets = {}
    for i, (zone, tags) in enumerate(zones.items()):
        spec = (
            [{"ResourceType": "subnet", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
            if tags
            else []
        )
        sub = ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.42.{i}.0/24", AvailabilityZone=zone, TagSpecifications=spec
        )["Subnet"]
        ec2.modify_subnet_attribute(SubnetId=sub["SubnetId"], MapPublicIpOnLaunch={"Value": False})
        subnets[zone] = sub["SubnetId"]
    return vpc, subnets


def remove_default_vpc(aws: MotoServer) -> None:
    ec2 = aws.client("ec2")
    (vpc,) = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    vid = vpc["VpcId"]
    for sub in ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vid]}])["Subnets"]:
        ec2.delete_subnet(SubnetId=sub["SubnetId"])
    for igw in ec2.describe_internet_gateways(Filters=[{"Name": "attachment.vpc-id", "Values": [vid]}])[
        "InternetGateways"
    ]:
        ec2.detach_internet_gateway(InternetGatewayId=igw["InternetGatewayId"], VpcId=vid)
        ec2.delete_internet_gateway(InternetGatewayId=igw["InternetGatewayId"])
    ec2.delete_vpc(VpcId=vid)


def running(aws: MotoServer) -> dict[str, Any]:
    resp = aws.client("ec2").describe_instances(
        Filters=[
            {"Name": "tag:ec2dbn:stack", "Values": ["net"]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )
    (inst,) = [i for r in resp["Reservations"] for i in r["Instances"]]
    return inst


def group_vpc(aws: MotoServer) -> str:
    (sg,) = aws.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:ec2dbn:stack", "Values": ["net"]}]
    )["SecurityGroups"]
    return str(sg["VpcId"])


def test_no_default_vpc_and_no_subnets_is_one_line_saying_so(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remove_default_vpc(aws)
    rc, _, err = cli(capsys, "launch", "--stack", stack_file(tmp_path), "--no-bootstrap")
    (line,) = err.strip().splitlines()
    assert rc == 2
    assert line == (
        "error: us-east-1 has no default VPC and the stack names no subnets: add `subnet_ids: [subnet-...]` "
        "(or `vpc_id:` / `subnet_tags:`) to the stack, or create a default VPC with "
        "`aws ec2 create-default-vpc --region us-east-1`"
    )
    assert tagged_resources(aws) == NOTHING


def test_subnet_ids_in_an_account_without_a_default_vpc(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remove_default_vpc(aws)
    vpc, subnets = custom_vpc(aws, {"us-east-1b": None, "us-east-1c": None})
    run = inject_error("RunInstances", "unused", times=0)
    stack = stack_file(tmp_path, subnet_ids=[subnets["us-east-1c"], subnets["us-east-1b"]])
    rc, _, err = cli(capsys, "launch", "--stack", stack, "--no-bootstrap", "--on-demand")
    assert rc == 0, err
    inst = running(aws)
    zone = inst["Placement"]["AvailabilityZone"]
    assert inst["SubnetId"] == subnets[zone] and inst["VpcId"] == vpc
    assert inst["PublicIpAddress"]  # asked for on the interface: the subnet itself maps none
    (params,) = run.params
    assert params["NetworkInterfaces"][0]["AssociatePublicIpAddress"] is True
    assert group_vpc(aws) == vpc  # the security group goes where the instance goes
    assert cli(capsys, "teardown", "net", "--yes")[0] == 0
    assert tagged_resources(aws) == NOTHING


def test_zones_without_a_subnet_are_skipped_up_front(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vpc, subnets = custom_vpc(aws, {"us-east-1d": None})
    run = inject_error("RunInstances", "unused", times=0)
    rc, _, err = cli(
        capsys, "launch", "--stack", stack_file(tmp_path, vpc_id=vpc), "--no-bootstrap", "--on-demand"
    )
    assert rc == 0, err
    assert [p["Placement"]["AvailabilityZone"] for p in run.params] == [
        "us-east-1d"
    ]  # one try, the right zone
    assert "skipping us-east-1a, us-east-1b, us-east-1c, us-east-1f" in err
    assert running(aws)["SubnetId"] == subnets["us-east-1d"] and group_vpc(aws) == vpc


def test_subnet_tags_pick_the_tagged_subnets(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vpc, subnets = custom_vpc(aws, {"us-east-1a": None, "us-east-1f": {"tier": "public"}})
    stack = stack_file(tmp_path, subnet_tags={"tier": "public"})
    rc, _, err = cli(capsys, "launch", "--stack", stack, "--no-bootstrap", "--on-demand")
    assert rc == 0, err
    assert running(aws)["SubnetId"] == subnets["us-east-1f"] and group_vpc(aws) == vpc
    rc, _, err = cli(
        capsys, "launch", "--stack", stack_file(tmp_path, subnet_tags={"tier": "none"}), "--dry-run"
    )
    assert rc == 2 and "no subnet in us-east-1 is tagged tier=none" in err


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"subnet_ids": ["subnet-0123456789abcdef0"]}, "subnet-0123456789abcdef0' does not exist"),
        ({"vpc_id": "vpc-0123456789abcdef0"}, "vpc_id vpc-0123456789abcdef0 does not exist in us-east-1"),
    ],
)
def test_network_ids_that_do_not_exist_are_config_errors(
    fields: dict[str, Any], words: str, aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = cli(capsys, "launch", "--stack", stack_file(tmp_path, **fields), "--no-bootstrap")
    (line,) = err.strip().splitlines()
    assert rc == 2 and words in line
    assert tagged_resources(aws) == NOTHING


@pytest.mark.parametrize(
    "code", ["Unsupported", "InvalidSubnetID.NotFound", "InsufficientFreeAddressesInSubnet", "InvalidSubnet"]
)
def test_a_zone_that_cannot_take_the_launch_moves_to_the_next_zone(
    code: str, aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    first = inject_error(
        "RunInstances",
        code,
        "Your requested instance type (g4dn.xlarge) is not supported in your requested Availability Zone",
        times=1,
    )
    rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 0, err
    tried = [p["Placement"]["AvailabilityZone"] for p in first.params]
    assert len(tried) == 2 and tried[0] != tried[1]
    assert f"{tried[0]} cannot take g4dn.xlarge ({code}" in err
    (inst,) = [i for r in aws.client("ec2").describe_instances()["Reservations"] for i in r["Instances"]]
    assert inst["Placement"]["AvailabilityZone"] == tried[1]


def test_every_zone_refusing_is_one_line_and_leaves_nothing(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    inject_error("RunInstances", "Unsupported", "not supported in this zone", times=None)
    rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    line = [ln for ln in err.strip().splitlines() if ln.startswith("error: ")]
    assert rc == 1 and len(line) == 1 and "no zone in us-east-1 could take the launch" in line[0]
    assert tagged_resources(aws) == NOTHING
