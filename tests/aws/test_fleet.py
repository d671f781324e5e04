"""A sweep's fleet against moto: one instant CreateFleet over a secure launch template, partial capacity,
no capacity, and teardown / status / teardown --all seeing it — all checked with plain boto3.

moto's fleet instances do not carry the template's MetadataOptions, so the secure settings are checked
on the launch template's data, which is what EC2 applies to every instance launched from it.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from ec2dbn.aws import fleet_launch, provision
from ec2dbn.errors import CloudError
from ec2dbn.spec.stack import parse_stack
from ec2dbn.stack import lifecycle
from tests.aws.helpers import NOTHING, cli
from tests.support.fleet_faults import short_fleets
from tests.support.moto_server import CALLER_IP, MotoServer, inject_error, tagged_resources

SWEEP = "sweep-20261130-120000-ab12"


def fleet_stack(**overrides: Any) -> Any:
    data = {
        "name": f"{SWEEP}-1",
        "region": "us-east-1",
        "instance_type": ["g4dn.xlarge", "g4dn.2xlarge"],
        "image": "ubuntu22",
        "volume_gb": 40,
        "max_lifetime": "2h",
        **overrides,
    }
    return parse_stack(data)


def launch(stack: Any, count: int) -> fleet_launch.FleetLaunched:
    plan = provision.plan(stack, cidr=f"{CALLER_IP}/32")
    return fleet_launch.launch_fleet(
        plan,
        count=count,
        user_data="#cloud-config\n# the deadline and the host key go here\n",
        instance_tags={"ec2dbn:deadline": "2026-11-30T14:00:00Z"},
        sweep_tags={"ec2dbn:sweep": SWEEP},
        key_store=lifecycle.StateKeyStore(stack.name),
    )


def tags(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags") or []}


def instances(aws: MotoServer) -> list[dict[str, Any]]:
    pages = aws.client("ec2").describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )["Reservations"]
    return [i for r in pages for i in r["Instances"]]


def test_one_instant_fleet_over_a_secure_launch_template(aws: MotoServer) -> None:
    calls = inject_error("CreateFleet", "unused", times=0)  # records the requests, never fails
    stack = fleet_stack()
    launched = launch(stack, 3)
    assert len(launched.instances) == 3 and len(launched.fleet_ids) == 1
    (request,) = calls.params
    assert request["Type"] == "instant"
    assert request["TargetCapacitySpecification"] == {
        "TotalTargetCapacity": 3,
        "SpotTargetCapacity": 3,
        "DefaultTargetCapacityType": "spot",
    }
    assert request["SpotOptions"]["AllocationStrategy"] == "price-capacity-optimized"
    overrides = request["LaunchTemplateConfigs"][0]["Overrides"]
    zones = aws.client("ec2").describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": ["g4dn.xlarge"]}]
    )["InstanceTypeOfferings"]
    # every candidate type × every zone offering it, in the stack's order of preference
    assert [o["InstanceType"] for o in overrides][: len(zones)] == ["g4dn.xlarge"] * len(zones)
    assert {o["InstanceType"] for o in overrides} == {"g4dn.xlarge", "g4dn.2xlarge"}
    assert len({(o["InstanceType"], o["AvailabilityZone"]) for o in overrides}) == len(overrides)

    ec2 = aws.client("ec2")
    (template,) = ec2.describe_launch_templates()["LaunchTemplates"]
    assert tags(template)["ec2dbn:sweep"] == SWEEP and tags(template)["ec2dbn:stack"] == stack.name
    data = ec2.describe_launch_template_versions(LaunchTemplateId=template["LaunchTemplateId"])[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert data["InstanceInitiatedShutdownBehavior"] == "terminate"
    (disk,) = data["BlockDeviceMappings"]
    assert disk["Ebs"] == {
        "VolumeSize": 40,
        "VolumeType": "gp3",
        "Encrypted": True,
        "DeleteOnTermination": True,
    }
    assert base64.b64decode(data["UserData"]).decode().startswith("#cloud-config\n")
    assert data["KeyName"] == stack.key_name and "SecurityGroupIds" not in data
    # Reachable in any subnet: a public IP asked on the interface; its subnet comes from each override.
    (nic,) = data["NetworkInterfaces"]
    assert nic["DeviceIndex"] == 0 and nic["AssociatePublicIpAddress"] is True and "SubnetId" not in nic
    assert nic["Groups"] == [launched.security_group.group_id]
    instance_tags = tags(next(t for t in data["TagSpecifications"] if t["ResourceType"] == "instance"))
    assert instance_tags["ec2dbn:sweep"] == SWEEP and instance_tags["ec2dbn:deadline"]

    (fleet,) = ec2.describe_fleets()["Fleets"]
    assert tags(fleet)["ec2dbn:sweep"] == SWEEP and tags(fleet)["ec2dbn:managed"] == "true"
    for inst in instances(aws):
        t = tags(inst)
        assert (t["ec2dbn:stack"], t["ec2dbn:sweep"], t["ec2dbn:market"]) == (stack.name, SWEEP, "spot")
        assert inst["KeyName"] == stack.key_name

    report = lifecycle.tear_down(stack.name, "us-east-1")
    assert report.deleted_fleets == launched.fleet_ids
    assert report.deleted_launch_templates == [template["LaunchTemplateId"]]
    assert tagged_resources(aws) == NOTHING


def test_partial_capacity_takes_what_there_is_and_the_rest_on_demand(aws: MotoServer) -> None:
    shortage = short_fleets(spot=1, on_demand=1)
    launched = launch(fleet_stack(), 3)
    assert shortage.asked == [("spot", 3), ("on-demand", 2)]  # on-demand only for the remainder
    assert sorted(i.market for i in launched.instances) == ["on-demand", "spot"]
    assert len(launched.fleet_ids) == 2
    assert {e.outcome for e in launched.errors} == {"InsufficientInstanceCapacity"}
    assert {e.market for e in launched.errors} == {"spot", "on-demand"}
    assert "InsufficientInstanceCapacity" in fleet_launch.fleets.summary(launched.errors)
    lifecycle.tear_down(f"{SWEEP}-1", "us-east-1")
    assert tagged_resources(aws) == NOTHING


def test_no_capacity_at_all_is_explained_like_launch_and_leaves_nothing(aws: MotoServer) -> None:
    short_fleets(spot=0, on_demand=0)
    with pytest.raises(
        CloudError, match=r"no capacity in us-east-1: tried spot g4dn.xlarge in us-east-1"
    ) as exc:
        launch(fleet_stack(), 2)
    assert "on-demand g4dn.2xlarge" in str(exc.value)
    assert tagged_resources(aws) == NOTHING  # key pair, security group, template and fleets removed


def test_a_spot_quota_without_fallback_names_the_quota_code(aws: MotoServer) -> None:
    short_fleets(spot=0, code="MaxSpotInstanceCountExceeded")
    with pytest.raises(CloudError, match="L-3819A6DF"):
        launch(fleet_stack(fallback="none"), 2)
    assert tagged_resources(aws) == NOTHING


def test_status_and_teardown_all_see_a_sweep(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    stack = fleet_stack()
    launch(stack, 2)
    rc, out, _ = cli(capsys, "status", "--json")
    assert rc == 0
    rows = [r for r in json.loads(out) if r["name"] == stack.name]
    assert len(rows) == 2 and {r["note"] for r in rows} == {f"sweep {SWEEP}"}
    rc, out, err = cli(capsys, "teardown", "--all", "--yes")
    assert rc == 0, err
    assert "deleted fleet(s)" in err and "deleted launch template" in err
    assert tagged_resources(aws) == NOTHING


def sweep_job(tmp_path: Any) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(
        "data: {name: digits}\nmodel: {layers: [64, 20, 10], epochs: 2}\n"
        "sweep: {grid: {model.learn_rates: [0.1, 0.3, 1.0]}}\n"
    )
    return str(path)


def test_a_dry_run_prints_the_fleet_and_its_estimate_and_creates_nothing(
    aws: MotoServer, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    rc, out, err = cli(
        capsys,
        "sweep",
        sweep_job(tmp_path),
        "--stack",
        "g4dn-ondemand",
        "--dry-run",
        "--results",
        str(results),
    )
    assert rc == 0, err
    assert "p03" in out and "3 instance(s) × 1 slot(s) for 3 point(s)" in out
    assert "on-demand over g4dn.xlarge in us-east-1a" in out and "estimated cost ~$" in out
    assert tagged_resources(aws) == NOTHING and not results.exists()


def test_a_max_cost_below_the_fleets_first_minute_is_refused_before_anything_exists(
    aws: MotoServer, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["sweep", sweep_job(tmp_path), "--stack", "g4dn-ondemand", "--max-cost", "0.01"]
    rc, _, err = cli(capsys, *args, "--results", str(tmp_path / "results"))
    assert rc == 2 and "--max-cost $0.01 is below what 3 instance(s) cost in their first minute" in err
    assert tagged_resources(aws) == NOTHING


def test_a_grid_over_instance_types_gets_one_fleet_per_type(
    aws: MotoServer, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["sweep", sweep_job(tmp_path), "--stack", "g4dn-ondemand", "--dry-run"]
    rc, out, err = cli(capsys, *args, "--grid", "instance_type=g4dn.xlarge,g5.xlarge")
    assert rc == 0, err
    fleets = [line for line in out.splitlines() if line.startswith("fleet ")]
    assert len(fleets) == 2  # 3 learning rates × 2 types: 3 points on each type's own fleet
    assert "-1: 3 instance(s)" in fleets[0] and "over g4dn.xlarge in" in fleets[0]
    assert "-2: 3 instance(s)" in fleets[1] and "over g5.xlarge in" in fleets[1]
    assert tagged_resources(aws) == NOTHING
