"""launch / status / teardown through the CLI entry point, against moto as a real HTTP server.

Every check of what exists in "AWS" uses plain boto3 (tests.support.moto_server.tagged_resources), not
ec2dbn's own discovery code.
"""

from __future__ import annotations

import base64
import json
import shutil
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from ec2dbn.stack import state
from tests.aws.helpers import NOTHING, cli
from tests.support.moto_server import (
    CALLER_IP,
    MotoServer,
    count_calls,
    inject_error,
    tagged_resources,
)


def one_instance(aws: MotoServer, stack: str = "g4dn-spot") -> dict[str, Any]:
    resp = aws.client("ec2").describe_instances(
        Filters=[
            {"Name": "tag:ec2dbn:stack", "Values": [stack]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    found = [i for r in resp["Reservations"] for i in r["Instances"]]
    assert len(found) == 1, found
    return found[0]


def tags_of(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_launch_status_teardown_secure_and_leak_free(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run_calls = inject_error("RunInstances", "unused", times=0)  # records the request, never fails
    rc, out, err = cli(capsys, "launch", "--spot", "--no-bootstrap")
    assert rc == 0, err
    ec2 = aws.client("ec2")
    inst = one_instance(aws)
    iid = inst["InstanceId"]

    # What was asked of EC2.
    (params,) = run_calls.params
    assert params["ImageId"] == aws.images[("us-east-1", "dlami-ubuntu22")]
    # No MaxPrice: AWS recommends none (spot then caps at the on-demand price of the instance's region).
    assert params["InstanceMarketOptions"] == {
        "MarketType": "spot",
        "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
    }
    # The default VPC's subnet in the zone tried first, with a public IP asked for on the interface.
    (nic,) = params["NetworkInterfaces"]
    zone = params["Placement"]["AvailabilityZone"]
    (subnet,) = ec2.describe_subnets(SubnetIds=[nic["SubnetId"]])["Subnets"]
    assert subnet["AvailabilityZone"] == zone and subnet["DefaultForAz"]
    assert nic["AssociatePublicIpAddress"] is True and nic["DeviceIndex"] == 0
    assert "SecurityGroupIds" not in params and inst["PublicIpAddress"]
    assert {s["ResourceType"] for s in params["TagSpecifications"]} == {
        "instance",
        "volume",
        "spot-instances-request",
    }
    assert params["MetadataOptions"]["HttpTokens"] == "required"

    # The instance as EC2 reports it.
    assert inst["InstanceType"] == "g4dn.xlarge" and inst.get("InstanceLifecycle") == "spot"
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    shutdown = ec2.describe_instance_attribute(InstanceId=iid, Attribute="instanceInitiatedShutdownBehavior")
    assert shutdown["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"
    tags = tags_of(inst)
    assert (
        tags["ec2dbn:stack"] == "g4dn-spot"
        and tags["ec2dbn:managed"] == "true"
        and tags["Name"] == "ec2dbn-g4dn-spot"
    )
    assert tags["ec2dbn:market"] == "spot" and tags["project"] == "ec2dbn"
    (vol,) = ec2.describe_volumes(Filters=[{"Name": "attachment.instance-id", "Values": [iid]}])["Volumes"]
    assert (vol["Encrypted"], vol["VolumeType"], vol["Size"]) == (True, "gp3", 100)
    assert tags_of(vol)["ec2dbn:stack"] == "g4dn-spot"
    assert inst["BlockDeviceMappings"][0]["Ebs"]["DeleteOnTermination"] is True

    # Security group: exactly one inbound rule, TCP 22 from the caller's /32.
    (sg,) = ec2.describe_security_groups(Filters=[{"Name": "tag:ec2dbn:stack", "Values": ["g4dn-spot"]}])[
        "SecurityGroups"
    ]
    # On the instance's network interface (moto does not copy it into inst["SecurityGroups"]; EC2 does).
    assert [g["GroupId"] for n in inst["NetworkInterfaces"] for g in n["Groups"]] == [sg["GroupId"]]
    assert params["NetworkInterfaces"][0]["Groups"] == [sg["GroupId"]]
    (perm,) = sg["IpPermissions"]
    assert (perm["IpProtocol"], perm["FromPort"], perm["ToPort"]) == ("tcp", 22, 22)
    assert [r["CidrIp"] for r in perm["IpRanges"]] == [f"{CALLER_IP}/32"]
    assert not perm.get("Ipv6Ranges") and not perm.get("UserIdGroupPairs")

    # Key pair: ed25519, tagged, private key 0600 in 0700 dirs.
    (kp,) = ec2.describe_key_pairs(Filters=[{"Name": "tag:ec2dbn:stack", "Values": ["g4dn-spot"]}])[
        "KeyPairs"
    ]
    assert kp["KeyType"] == "ed25519" and inst["KeyName"] == kp["KeyName"] == "ec2dbn-g4dn-spot"
    home = state.home()
    sdir = home / "stacks" / "g4dn-spot"
    assert mode(home) == mode(home / "stacks") == mode(sdir) == 0o700
    key_file = sdir / "id_ed25519"
    assert mode(key_file) == mode(sdir / "state.json") == 0o600
    assert key_file.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")

    # User-data: cloud-config with the pinned host key and the deadline.
    raw = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")["UserData"]["Value"]
    cloud = base64.b64decode(raw).decode()
    assert cloud.startswith("#cloud-config\n")
    doc = yaml.safe_load(cloud)
    st = state.load("g4dn-spot")
    assert st is not None and st.instance_id == iid
    assert doc["ssh_keys"]["ed25519_public"] == st.host_public_key
    assert "PRIVATE KEY" in doc["ssh_keys"]["ed25519_private"]
    key_b64 = st.host_public_key.split()[1]
    known = (sdir / "known_hosts").read_text().split()
    assert known[0].split(",") == [inst["PublicIpAddress"], inst["PublicDnsName"]]
    assert known[1:] == ["ssh-ed25519", key_b64]
    assert tags["ec2dbn:host-key"] == f"ssh-ed25519 {key_b64}"
    deadline = state.parse_iso(tags["ec2dbn:deadline"])
    assert tags["ec2dbn:deadline"] == st.deadline
    assert abs(deadline - (state.utc_now() + timedelta(hours=3))) < timedelta(minutes=2)
    assert str(int(deadline.timestamp())) in doc["bootcmd"][0][2]

    # What the user is told.
    assert iid in out and inst["PublicIpAddress"] in out
    assert "$0.5260/h" in out and "bundled catalog" in out and "2025-07-01" in out
    assert "ec2dbn teardown g4dn-spot --yes" in out

    rc, out, _err = cli(capsys, "status")
    assert rc == 0, _err
    assert "running" in out and "g4dn.xlarge" in out and "spot" in out and inst["PublicIpAddress"] in out
    rc, out, _ = cli(capsys, "status", "--json")
    (row,) = json.loads(out)
    assert row["instance_id"] == iid and row["market"] == "spot" and row["state"] == "running"
    assert row["availability_zone"] == inst["Placement"]["AvailabilityZone"]
    assert 3 * 3600 - 120 < row["seconds_left"] <= 3 * 3600
    assert row["price"]["source"] and row["price"]["date"] and row["cost_so_far_usd"] >= 0
    assert row["local_state"] is True

    rc, out, err = cli(capsys, "teardown", "--yes")
    assert rc == 0, err
    assert "verified: nothing tagged ec2dbn:stack=g4dn-spot remains in us-east-1" in out
    assert tagged_resources(aws) == NOTHING
    assert (
        ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"]
        == "terminated"
    )
    assert not sdir.exists()


def test_second_launch_reuses_everything(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    first = tagged_resources(aws)
    run_calls = count_calls("before-call.ec2.RunInstances")
    rc, out, err = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 0, err
    assert run_calls.calls == 0 and "reusing" in out
    assert tagged_resources(aws) == first
    assert len(first["instances"]) == len(first["security_groups"]) == len(first["key_pairs"]) == 1


def test_teardown_without_local_state_and_status_from_tags(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    iid = one_instance(aws)["InstanceId"]
    shutil.rmtree(state.home())
    rc, out, _ = cli(capsys, "status", "g4dn-spot", "--json")
    (row,) = json.loads(out)
    assert row["instance_id"] == iid and row["local_state"] is False
    assert row["seconds_left"] > 3 * 3600 - 120  # the deadline comes from the instance's tag
    rc, out, err = cli(capsys, "teardown", "g4dn-spot", "--yes")
    assert rc == 0, err
    assert tagged_resources(aws) == NOTHING
    # Idempotent: nothing left to do is still success.
    rc, out, _ = cli(capsys, "teardown", "g4dn-spot", "--yes")
    assert rc == 0 and "nothing to remove" in out


def test_teardown_refuses_without_yes_when_not_interactive(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    rc, _, err = cli(capsys, "teardown")
    assert (
        rc == 2
        and err.strip()
        == "error: refusing to tear down stack g4dn-spot in us-east-1 without confirmation: pass --yes"
    )
    assert len(tagged_resources(aws)["instances"]) == 1


def test_g2_is_refused_before_any_aws_call(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    calls = count_calls()
    rc, _, err = cli(capsys, "launch", "--instance-type", "g2.2xlarge", "--no-bootstrap")
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and "g2.2xlarge" in err and "g4dn.xlarge" in err
    assert calls.calls == 0
    assert tagged_resources(aws) == NOTHING


def test_dry_run_creates_nothing_and_prices_the_plan(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run_calls = inject_error("RunInstances", "unused", times=0)
    created = {op: inject_error(op, "unused", times=0) for op in ("CreateKeyPair", "CreateSecurityGroup")}
    rc, out, err = cli(capsys, "launch", "--stack", "g5-spot", "--dry-run")
    assert rc == 0, err
    assert tagged_resources(aws) == NOTHING
    assert "g5.xlarge" in out and "g5.2xlarge" in out and "$1.01" in out and "bundled catalog" in out
    assert "at most $3.02" in out  # max_price = on-demand $1.006/h x 3h
    assert "create key pair: allowed" in out and "create security group: allowed" in out
    for inj in created.values():  # authorized like the real calls: tagged at creation
        ((params),) = inj.params
        assert params["DryRun"] is True
        (spec,) = params["TagSpecifications"]
        assert {"Key": "ec2dbn:managed", "Value": "true"} in spec["Tags"]
    # No group yet: RunInstances would name the VPC's default group, so it is not asked, and says why.
    assert run_calls.params == [] and "run spot g5.xlarge: skipped" in out
    assert "the security group does not exist until launch creates it" in out
    # Once the stack's group exists, both markets are dry-run against it.
    assert cli(capsys, "launch", "--stack", "g5-spot", "--no-bootstrap")[0] == 0
    launched = len(run_calls.params)
    rc, out, err = cli(capsys, "launch", "--stack", "g5-spot", "--dry-run")
    assert rc == 0, err
    dry = run_calls.params[launched:]
    assert all(p.get("DryRun") is True for p in dry) and len(dry) == 2
    assert "run spot g5.xlarge: allowed" in out and "run on-demand g5.xlarge: allowed" in out


def test_dry_run_reports_a_refused_permission(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    dry = lambda params: bool(params.get("DryRun"))  # noqa: E731
    inject_error("CreateSecurityGroup", "UnauthorizedOperation", "not authorized", times=None, when=dry)
    rc, out, _ = cli(capsys, "launch", "--on-demand", "--dry-run")
    assert rc == 1
    assert "create security group: refused" in out and "UnauthorizedOperation" in out
    assert tagged_resources(aws) == NOTHING
    # Once the group exists, RunInstances is dry-run too, and its refusal reported the same way.
    assert cli(capsys, "launch", "--on-demand", "--no-bootstrap")[0] == 0
    inject_error("RunInstances", "UnauthorizedOperation", "You are not authorized", times=None)
    rc, out, _ = cli(capsys, "launch", "--on-demand", "--dry-run")
    assert rc == 1
    assert "run on-demand g4dn.xlarge: refused" in out and "UnauthorizedOperation" in out


def test_type_not_offered_in_the_region_names_where_it_is(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = cli(capsys, "launch", "--region", "ap-south-2", "--dry-run")
    assert rc == 2
    line = err.strip()
    assert "g4dn.xlarge is not offered in ap-south-2; it is offered in" in line and "us-east-1" in line
    assert len(line.splitlines()) == 1


def test_on_demand_launch_has_no_spot_options(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    run_calls = inject_error("RunInstances", "unused", times=0)
    rc, out, err = cli(capsys, "launch", "--stack", "cpu-ondemand", "--no-bootstrap")
    assert rc == 0, err
    (params,) = run_calls.params
    assert "InstanceMarketOptions" not in params
    assert {s["ResourceType"] for s in params["TagSpecifications"]} == {"instance", "volume"}
    assert params["ImageId"] == aws.images[("us-east-1", "ubuntu22")]
    inst = one_instance(aws, "cpu-ondemand")
    assert inst["InstanceType"] == "c6i.2xlarge" and tags_of(inst)["ec2dbn:market"] == "on-demand"
    assert "$0.3400/h on-demand" in out


def test_world_open_cidr_only_when_asked_and_loudly(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = cli(capsys, "launch", "--ssh-cidr", "0.0.0.0/0", "--no-bootstrap")
    assert rc == 0
    assert "WHOLE INTERNET" in err
    (sg,) = aws.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:ec2dbn:stack", "Values": ["g4dn-spot"]}]
    )["SecurityGroups"]
    assert [r["CidrIp"] for p in sg["IpPermissions"] for r in p["IpRanges"]] == ["0.0.0.0/0"]


def test_relaunch_from_a_new_ip_moves_the_rule(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    monkeypatch.setenv("EC2DBN_CALLER_IP", "198.51.100.77")
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    (sg,) = aws.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:ec2dbn:stack", "Values": ["g4dn-spot"]}]
    )["SecurityGroups"]
    assert [(p["FromPort"], r["CidrIp"]) for p in sg["IpPermissions"] for r in p["IpRanges"]] == [
        (22, "198.51.100.77/32")
    ]


def test_ssh_endpoint_override_is_pinned_too(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EC2DBN_SSH_ENDPOINT", "127.0.0.1:2222")
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    hosts = (state.home() / "stacks" / "g4dn-spot" / "known_hosts").read_text().split()[0].split(",")
    assert "[127.0.0.1]:2222" in hosts
    st = state.load("g4dn-spot")
    assert st is not None and st.ssh_endpoint() == ("127.0.0.1", 2222)


def test_teardown_all_removes_every_stack_and_spot_request(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    assert cli(capsys, "launch", "--stack", "cpu-ondemand", "--name", "cpu", "--no-bootstrap")[0] == 0
    # Real EC2 makes a (tagged) spot request for a spot launch; moto does not, so make one as EC2 would.
    ec2 = aws.client("ec2")
    req = ec2.request_spot_instances(
        InstanceCount=1,
        LaunchSpecification={"ImageId": aws.images[("us-east-1", "ubuntu22")], "InstanceType": "g4dn.xlarge"},
        TagSpecifications=[
            {
                "ResourceType": "spot-instances-request",
                "Tags": [
                    {"Key": "ec2dbn:stack", "Value": "g4dn-spot"},
                    {"Key": "ec2dbn:managed", "Value": "true"},
                ],
            }
        ],
    )["SpotInstanceRequests"][0]
    launched = ec2.describe_spot_instance_requests(SpotInstanceRequestIds=[req["SpotInstanceRequestId"]])
    for r in launched["SpotInstanceRequests"]:  # EC2 gives the instance its RunInstances' tags; moto none
        if r.get("InstanceId"):
            tags = [{"Key": "ec2dbn:stack", "Value": "g4dn-spot"}, {"Key": "ec2dbn:managed", "Value": "true"}]
            ec2.create_tags(Resources=[r["InstanceId"]], Tags=tags)
    before = tagged_resources(aws)
    assert len(before["instances"]) in (2, 3) and len(before["spot_requests"]) == 1  # 3: the request's
    rc, out, err = cli(capsys, "teardown", "--all", "--yes")
    assert rc == 0, err
    assert "verified: nothing tagged ec2dbn:managed=true remains in us-east-1" in out
    assert tagged_resources(aws) == NOTHING
    spot_instance = req.get("InstanceId") or ec2.describe_spot_instance_requests(
        SpotInstanceRequestIds=[req["SpotInstanceRequestId"]]
    )["SpotInstanceRequests"][0].get("InstanceId")
    if spot_instance:  # the instance the request launched is gone too, tags or not
        state_name = ec2.describe_instances(InstanceIds=[spot_instance])["Reservations"][0]["Instances"][0][
            "State"
        ]
        assert state_name["Name"] == "terminated"
    assert state.names() == []


@pytest.mark.parametrize("name", ["..", "../..", "a/b", "UPPER"])
def test_stack_names_cannot_escape_the_state_dir(
    name: str, aws: MotoServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    canary = tmp_path / "canary"
    canary.write_text("still here")
    for verb in (["teardown", name, "--yes"], ["status", name]):
        rc, _, err = cli(capsys, *verb)
        assert rc == 2 and "is not a stack name" in err
    assert canary.read_text() == "still here"
