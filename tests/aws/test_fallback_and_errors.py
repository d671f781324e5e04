"""Capacity, quota, throttling, DependencyViolation and credential failures, injected with botocore event
hooks on ec2dbn's real clients talking to moto; each must end in the documented outcome and leave nothing
tagged behind that the call created."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ec2dbn.aws import network, session
from ec2dbn.aws.quotas import quota_for
from ec2dbn.cli import main
from ec2dbn.stack import state
from tests.aws.helpers import NOTHING, cli, stack_file
from tests.support.moto_server import (
    MotoServer,
    add_hook,
    inject_error,
    inject_http_error,
    tagged_resources,
)


def last_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def launched(aws: MotoServer, stack: str = "g4dn-spot") -> dict[str, Any]:
    resp = aws.client("ec2").describe_instances(
        Filters=[
            {"Name": "tag:ec2dbn:stack", "Values": [stack]},
            {"Name": "instance-state-name", "Values": ["running"]},
        ]
    )
    (inst,) = [i for r in resp["Reservations"] for i in r["Instances"]]
    return inst


def is_spot(params: dict[str, Any]) -> bool:
    return "InstanceMarketOptions" in params


# ----------------------------------------------------------------------------------------- fallback chain


def test_capacity_moves_to_the_next_zone(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    ice = inject_error(
        "RunInstances",
        "InsufficientInstanceCapacity",
        "We currently do not have sufficient g4dn.xlarge capacity in the Availability Zone you requested",
        times=None,
        when=lambda p: p["Placement"]["AvailabilityZone"] == "us-east-1a",
    )
    rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 0, err
    assert ice.injected == 1
    inst = launched(aws)
    assert inst["Placement"]["AvailabilityZone"] == "us-east-1b" and inst.get("InstanceLifecycle") == "spot"
    assert "no spot capacity for g4dn.xlarge in us-east-1a" in err


def test_capacity_everywhere_moves_to_the_next_candidate(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    ice = inject_error(
        "RunInstances",
        "InsufficientInstanceCapacity",
        times=None,
        when=lambda p: p["InstanceType"] == "g5.xlarge",
    )
    rc, _, err = cli(capsys, "launch", "--stack", "g5-spot", "--no-bootstrap")
    assert rc == 0, err
    assert ice.injected == 5  # every us-east-1 zone offering g5.xlarge was tried first
    inst = launched(aws, "g5-spot")
    assert inst["InstanceType"] == "g5.2xlarge" and inst.get("InstanceLifecycle") == "spot"


@pytest.mark.parametrize(
    ("code", "expect"),
    [
        ("InsufficientInstanceCapacity", "falling back to on-demand"),
        ("MaxSpotInstanceCountExceeded", "L-3819A6DF"),
        ("SpotMaxPriceTooLow", "SpotMaxPriceTooLow"),
    ],
)
def test_spot_trouble_falls_back_to_on_demand(
    code: str, expect: str, aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    spot = inject_error("RunInstances", code, times=None, when=is_spot)
    rc, out, err = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 0, err
    assert spot.injected >= 1
    inst = launched(aws)
    assert inst.get("InstanceLifecycle") != "spot"
    assert {t["Key"]: t["Value"] for t in inst["Tags"]}["ec2dbn:market"] == "on-demand"
    assert expect in err and "falling back to on-demand" in err
    assert "$0.5260/h on-demand" in out
    st = state.load("g4dn-spot")
    assert st is not None and st.market == "on-demand"
    if code == "MaxSpotInstanceCountExceeded":
        assert "us-east-1" in err and "All G and VT Spot Instance Requests" in err


def test_spot_limit_without_fallback_names_the_quota_and_cleans_up(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    inject_error(
        "RunInstances", "MaxSpotInstanceCountExceeded", "Max spot instance count exceeded", times=None
    )
    rc, _, err = cli(capsys, "launch", "--stack", stack_file(tmp_path, fallback="none"), "--no-bootstrap")
    assert rc == 1
    line = last_line(err)
    assert "MaxSpotInstanceCountExceeded" in line and "L-3819A6DF" in line and "--region us-east-1" in line
    assert "removed security group" in err and "removed key pair" in err
    assert tagged_resources(aws) == NOTHING
    assert not (state.home() / "stacks" / "t").exists()


@pytest.mark.parametrize(
    ("stack", "code", "quota"),
    [
        ("g4dn-ondemand", "L-DB2E81BA", "Running On-Demand G and VT instances"),
        ("cpu-ondemand", "L-1216C47A", "Standard"),
    ],
)
def test_vcpu_limit_names_region_and_quota_code(
    stack: str, code: str, quota: str, aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    inject_error(
        "RunInstances",
        "VcpuLimitExceeded",
        "You have requested more vCPU capacity than your current vCPU limit of 0 allows",
        times=None,
    )
    rc, _, err = cli(capsys, "launch", "--stack", stack, "--no-bootstrap")
    assert rc == 1
    line = last_line(err)
    assert "VcpuLimitExceeded" in line and code in line and quota in line and "us-east-1" in line
    assert f"--quota-code {code}" in line
    assert tagged_resources(aws) == NOTHING


def test_both_markets_over_quota_names_both_codes(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    inject_error("RunInstances", "MaxSpotInstanceCountExceeded", times=None, when=is_spot)
    inject_error("RunInstances", "VcpuLimitExceeded", times=None, when=lambda p: not is_spot(p))
    rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 1
    line = last_line(err)
    assert "L-DB2E81BA" in line and "L-3819A6DF" in line
    assert tagged_resources(aws) == NOTHING


def test_no_capacity_anywhere_is_exit_1_and_removes_what_this_call_created(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    inject_error("RunInstances", "InsufficientInstanceCapacity", times=None)
    rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 1
    line = last_line(err)
    assert line.startswith("error: no capacity in us-east-1: tried spot g4dn.xlarge in us-east-1a,")
    assert "on-demand g4dn.xlarge" in line
    assert tagged_resources(aws) == NOTHING


def test_failed_relaunch_keeps_what_it_did_not_create(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    ec2 = aws.client("ec2")
    ec2.terminate_instances(InstanceIds=[launched(aws)["InstanceId"]])  # e.g. a spot interruption
    before = tagged_resources(aws)
    inject_error("RunInstances", "InsufficientInstanceCapacity", times=None)
    rc, _, _ = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 1
    after = tagged_resources(aws)
    assert after["security_groups"] == before["security_groups"] and after["key_pairs"] == before["key_pairs"]
    assert (state.home() / "stacks" / "g4dn-spot" / "id_ed25519").is_file()
    assert cli(capsys, "teardown", "--yes")[0] == 0
    assert tagged_resources(aws) == NOTHING


def test_instance_gone_before_running_cleans_up(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    ec2 = aws.client("ec2")

    def take_it_back(parsed: dict[str, Any], **_: Any) -> None:  # spot capacity reclaimed at once
        ec2.terminate_instances(InstanceIds=[i["InstanceId"] for i in parsed.get("Instances", [])])

    add_hook("after-call.ec2.RunInstances", take_it_back)
    rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 1
    assert "went to terminated before running" in last_line(err)
    assert tagged_resources(aws) == NOTHING
    assert state.names() == []


# ------------------------------------------------------------------------------------ retries and teardown


def test_throttling_is_retried_with_backoff(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert session.RETRY_CONFIG.retries["mode"] == "standard"
    throttle = inject_http_error(
        "DescribeInstances", "RequestLimitExceeded", "Request limit exceeded.", times=2
    )
    rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 0, err
    assert throttle.injected == 2 and throttle.calls > 2
    assert len(tagged_resources(aws)["instances"]) == 1


def test_dependency_violation_is_retried_until_the_group_is_free(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    busy = inject_error(
        "DeleteSecurityGroup", "DependencyViolation", "resource sg-x has a dependent object", times=3
    )
    rc, _, err = cli(capsys, "teardown", "--yes")
    assert rc == 0, err
    assert busy.injected == 3 and busy.calls == 4
    assert "still in use; retrying" in err
    assert tagged_resources(aws) == NOTHING


def test_dependency_violation_is_bounded_and_teardown_can_be_rerun(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    monkeypatch.setattr(network, "SG_DELETE_TIMEOUT_S", 0.3)
    inject_error("DeleteSecurityGroup", "DependencyViolation", times=None)
    rc, _, err = cli(capsys, "teardown", "--yes")
    assert rc == 1
    assert "still in use after 0s (DependencyViolation); rerun `ec2dbn teardown`" in last_line(err)
    left = tagged_resources(aws)
    assert left["instances"] == [] and len(left["security_groups"]) == 1
    session.EVENT_HOOKS.clear()
    assert cli(capsys, "teardown", "--yes")[0] == 0
    assert tagged_resources(aws) == NOTHING


# ----------------------------------------------------------------------------------------- credentials


def test_missing_credentials_is_one_line(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    for verb in (["launch", "--no-bootstrap"], ["status"], ["teardown", "--yes"]):
        rc, _, err = cli(capsys, *verb)
        assert rc == 2
        assert last_line(err) == (
            "error: no AWS credentials found: set AWS_PROFILE to a profile from `aws configure` "
            "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        )
    assert tagged_resources(aws) == NOTHING


def test_unknown_profile_and_rejected_keys(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nope")
    rc, _, err = cli(capsys, "status")
    assert rc == 2 and "nope" in last_line(err) and "AWS_PROFILE" in last_line(err)
    monkeypatch.delenv("AWS_PROFILE")
    inject_error(
        "DescribeInstances", "AuthFailure", "AWS was not able to validate the provided access credentials"
    )
    rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    line = last_line(err)
    assert rc == 2 and "AWS could not validate the credentials (AuthFailure" in line
    assert "aws sts get-caller-identity" in line and "AWS_PROFILE" in line


def test_debug_shows_the_traceback(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    from ec2dbn.errors import CredentialsError

    with pytest.raises(CredentialsError):
        main(["--debug", "status"])


# --------------------------------------------------------------------------------------------- quotas


@pytest.mark.parametrize(
    ("itype", "market", "code"),
    [
        ("g4dn.xlarge", "on-demand", "L-DB2E81BA"),
        ("g5.2xlarge", "spot", "L-3819A6DF"),
        ("g6e.xlarge", "on-demand", "L-DB2E81BA"),
        ("vt1.3xlarge", "on-demand", "L-DB2E81BA"),
        ("p4d.24xlarge", "on-demand", "L-417A185B"),
        ("p5.48xlarge", "spot", "L-7212CCBC"),
        ("c6i.2xlarge", "on-demand", "L-1216C47A"),
        ("m7i.large", "spot", "L-34B43A08"),
        ("t3.micro", "on-demand", "L-1216C47A"),
        ("inf2.xlarge", "on-demand", None),
        ("trn1.2xlarge", "spot", None),
    ],
)
def test_quota_codes(itype: str, market: str, code: str | None) -> None:
    name, qcode = quota_for(itype, market)
    assert qcode == code
    assert ("Spot" in name) == (market == "spot")
