"""`ec2dbn check`: one ✓/✗ line per thing a launch needs, the fix under each ✗, exit 1 when the stack cannot
launch. Each ✗ is provoked against moto: an account or answer changed with plain boto3, or an answer that
moto cannot give (quotas, spot prices, refusals) injected on ec2dbn's real clients."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from tests.aws import helpers
from tests.aws.helpers import NOTHING, cli
from tests.aws.test_network_vpc import custom_vpc, remove_default_vpc
from tests.aws.test_spot_role import make_spot_role
from tests.support import authz_record
from tests.support.moto_server import MotoServer, add_hook, count_calls, inject_error, tagged_resources


def stack_file(tmp_path: Path, **fields: Any) -> str:
    return helpers.stack_file(tmp_path, "c", **fields)


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any], str]:
    """`ec2dbn check --json ARGS`: (exit code, the report, stderr)."""
    rc, out, err = cli(capsys, "check", "--json", *args)
    return rc, json.loads(out), err


def rows(report: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [c for c in report["checks"] if c["name"] == name]


def quotas_are(values: dict[str, float]) -> None:
    """GetServiceQuota answers `values` (quota code -> vCPUs), as Service Quotas would for EC2."""

    def handler(params: dict[str, Any], **_: Any) -> Any:
        code = json.loads(params["body"])["QuotaCode"]
        body = {"Quota": {"ServiceCode": "ec2", "QuotaCode": code, "Value": values[code]}}
        return AWSResponse("http://answered", 200, {}, None), {
            **body,
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    add_hook("before-call.service-quotas.GetServiceQuota", handler)


def spot_prices_are(prices: dict[str, float]) -> None:
    now = datetime.now(timezone.utc)
    history = [
        {
            "AvailabilityZone": z,
            "InstanceType": "g4dn.xlarge",
            "ProductDescription": "Linux/UNIX",
            "SpotPrice": str(p),
            "Timestamp": now,
        }
        for z, p in prices.items()
    ]

    def handler(**_: Any) -> Any:
        return AWSResponse("http://answered", 200, {}, None), {
            "SpotPriceHistory": history,
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    add_hook("before-call.ec2.DescribeSpotPriceHistory", handler)


def test_a_launchable_stack_is_all_ticks_and_exit_0(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    quotas_are({"L-3819A6DF": 8, "L-DB2E81BA": 8})
    make_spot_role(aws)
    rc, out, err = cli(capsys, "check")
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0] == "ec2dbn check: stack g4dn-spot in us-east-1"
    marks = {line.split()[1]: line.split()[0] for line in lines[1:-1] if not line.lstrip().startswith("fix:")}
    assert marks == {
        "credentials": "✓",
        "region": "✓",
        "instance": "✓",
        "quotas": "✓",
        "network": "✓",
        "zones": "✓",
        "image": "✓",
        "spot": "✓",
        "service-linked": "✓",
        "run": "✓",
        "role": "✓",
    }
    assert (
        "account 123456789012" in out and "All G and VT Spot Instance Requests (L-3819A6DF) is 8 vCPUs" in out
    )
    assert lines[-1] == "stack g4dn-spot can launch"
    assert tagged_resources(aws) == NOTHING  # a check creates nothing


def test_missing_credentials(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    # The one line (and exit 2) every verb gives without credentials (issue 27), not a table of skips.
    rc, out, err = cli(capsys, "check", "--json")
    assert rc == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("error: no AWS credentials found: set AWS_PROFILE")


def test_a_region_name_aws_does_not_have_is_refused_before_any_call(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = count_calls()
    rc, out, err = cli(capsys, "check", "--json", "--region", "us-east-9")
    assert rc == 2 and not out.strip()
    assert len(err.strip().splitlines()) == 1 and "'us-east-9' is not an AWS region" in err
    assert calls.calls == 0


def test_a_region_not_enabled_for_the_account(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    inject_error("DescribeAvailabilityZones", "OptInRequired", "You are not subscribed", times=None)
    rc, report, _ = check(capsys, "--region", "us-east-1")
    (region,) = rows(report, "region")
    assert rc == 1 and region["status"] == "fail" and "not enabled for this account" in region["detail"]
    assert "--region" in region["fix"]


def test_an_unknown_instance_type(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, report, _ = check(capsys, "--stack", stack_file(tmp_path, instance_type="g4dn.xlargee"))
    (types,) = rows(report, "instance types")
    assert rc == 1 and types["status"] == "fail" and "did you mean g4dn.xlarge?" in types["detail"]
    assert "ec2dbn catalog" in types["fix"]


def test_a_zero_on_demand_quota_blocks_and_says_what_to_ask_for(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quotas_are({"L-DB2E81BA": 0})
    rc, report, _ = check(capsys, "--stack", stack_file(tmp_path, market="on-demand", fallback="none"))
    (quota,) = rows(report, "quotas")
    assert rc == 1 and quota["status"] == "fail" and quota["blocking"]
    assert (
        "Running On-Demand G and VT instances (L-DB2E81BA) is 0 vCPUs, g4dn.xlarge needs 4" in quota["detail"]
    )
    assert quota["fix"] == (
        "aws service-quotas request-service-quota-increase --service-code ec2 --quota-code L-DB2E81BA "
        "--desired-value 4 --region us-east-1"
    )


def test_a_zero_spot_quota_does_not_block_while_on_demand_can_take_over(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    quotas_are({"L-3819A6DF": 2, "L-DB2E81BA": 64})
    rc, report, _ = check(capsys)
    spot, on_demand = rows(report, "quotas")
    assert rc == 0 and report["launchable"]
    assert (
        spot["status"] == "fail"
        and not spot["blocking"]
        and "(launch uses on-demand instead)" in spot["detail"]
    )
    assert "--desired-value 6" in spot["fix"]  # 2 now + 4 for one g4dn.xlarge
    assert on_demand["status"] == "ok"


def test_no_default_vpc(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    remove_default_vpc(aws)
    rc, report, _ = check(capsys)
    (net,) = rows(report, "network")
    assert (
        rc == 1
        and net["status"] == "fail"
        and "has no default VPC and the stack names no subnets" in net["detail"]
    )
    assert "subnet_ids" in net["fix"] and "create-default-vpc --region us-east-1" in net["fix"]
    assert rows(report, "zones")[0]["status"] == "skip"


def test_no_zone_with_both_the_type_and_a_subnet(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vpc, _ = custom_vpc(aws, {"us-east-1e": None})  # moto offers no g4dn.xlarge in us-east-1e
    rc, report, _ = check(capsys, "--stack", stack_file(tmp_path, vpc_id=vpc))
    (zones,) = rows(report, "zones")
    assert rc == 1 and zones["status"] == "fail"
    assert (
        "offered in us-east-1a, us-east-1b, us-east-1c, us-east-1d, us-east-1f, none of which has a subnet"
        in zones["detail"]
    )
    assert "use --region there, or add subnets" in zones["fix"]


def test_an_image_that_does_not_exist(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, report, _ = check(capsys, "--stack", stack_file(tmp_path, image="ami-0123456789abcdef0"))
    (image,) = rows(report, "image")
    assert (
        rc == 1
        and image["status"] == "fail"
        and "ami-0123456789abcdef0 does not exist in us-east-1" in image["detail"]
    )
    # The fix names --image, and check takes it (issue 27): the same image given on the command line
    # fails the same way, and a good alias then passes.
    assert "(--image)" in image["fix"]
    rc, report, _ = check(capsys, "--image", "ami-0123456789abcdef0")
    assert rc == 1 and rows(report, "image")[0]["status"] == "fail"
    rc, report, _ = check(
        capsys, "--stack", stack_file(tmp_path, image="ami-0123456789abcdef0"), "--image", "ubuntu22"
    )
    assert rows(report, "image")[0]["status"] == "ok"


@pytest.mark.parametrize(("fallback", "rc"), [("none", 1), ("on-demand", 0)])
def test_spot_above_max_price(
    fallback: str, rc: int, aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spot_prices_are({"us-east-1a": 0.41, "us-east-1b": 0.39})
    got, report, _ = check(capsys, "--stack", stack_file(tmp_path, max_price=0.3, fallback=fallback))
    (spot,) = rows(report, "spot price")
    assert got == rc and spot["status"] == "fail" and spot["blocking"] == (fallback == "none")
    assert (
        "$0.3900/h in us-east-1b (cheapest zone, tried first)" in spot["detail"]
        and "above max_price" in spot["detail"]
    )
    assert "raise max_price" in spot["fix"]


def test_the_run_store_row_says_where_runs_keep_their_files(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`store: none` is skipped; ec2dbn's bucket is fine before its first run (made then) and after;
    a named bucket that does not exist blocks the launch. The check itself makes no bucket."""
    quotas_are({"L-3819A6DF": 8, "L-DB2E81BA": 8})
    make_spot_role(aws)
    _rc, report, _err = check(capsys, "--stack", stack_file(tmp_path, store="none"))
    assert [r["status"] for r in rows(report, "run store")] == ["skip"]
    rc, report, _err = check(capsys, "--stack", stack_file(tmp_path))
    (row,) = rows(report, "run store")
    assert rc == 0 and row["status"] == "ok" and "made by the first stored run" in row["detail"]
    assert aws.client("s3").list_buckets()["Buckets"] == []
    from ec2dbn import aws as face

    face.ensure_store("us-east-1", None)
    _rc, report, _err = check(capsys, "--stack", stack_file(tmp_path))
    (row,) = rows(report, "run store")
    assert row["status"] == "ok" and row["detail"] == "s3://ec2dbn-runs-123456789012-us-east-1/ exists"
    rc, report, _err = check(capsys, "--stack", stack_file(tmp_path, store="s3://ec2dbn-runs-nobody/x"))
    (row,) = rows(report, "run store")
    assert rc == 1 and row["status"] == "fail" and "does not exist" in row["detail"]


def test_the_role_boundary_row_says_whether_the_administrator_made_it(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Stored runs need the instances' permissions boundary: there → ✓; missing → ✗ with the administrator's
    commands, exit 1; `store: none` → skipped (and the stack can launch without it)."""
    quotas_are({"L-3819A6DF": 8, "L-DB2E81BA": 8})
    make_spot_role(aws)
    boundary = "arn:aws:iam::123456789012:policy/ec2dbn/ec2dbn-run-boundary"
    rc, report, _err = check(capsys, "--stack", stack_file(tmp_path))
    (row,) = rows(report, "role boundary")
    assert rc == 0 and row["status"] == "ok" and row["detail"] == f"{boundary} exists"
    aws.client("iam").delete_policy(PolicyArn=boundary)
    rc, report, _err = check(capsys, "--stack", stack_file(tmp_path))
    (row,) = rows(report, "role boundary")
    assert rc == 1 and row["status"] == "fail" and row["detail"] == f"{boundary} does not exist"
    assert "ec2dbn iam-policy --boundary > boundary.json" in row["fix"] and "store: none" in row["fix"]
    rc, report, _err = check(capsys, "--stack", stack_file(tmp_path, store="none"))
    assert rc == 0 and [r["status"] for r in rows(report, "role boundary")] == ["skip"]
    # A bucket the stack names must be in the boundary.
    aws.create_boundary()
    aws.client("s3").create_bucket(Bucket="team-data")
    start = len(authz_record.RECORDED)
    rc, report, _err = check(capsys, "--stack", stack_file(tmp_path, store="s3://team-data/runs"))
    # Asking S3 about the user's own bucket is theirs to grant beside ec2dbn's policy (README), so the
    # session's proof of that policy leaves these calls out.
    authz_record.RECORDED[start:] = [
        r for r in authz_record.RECORDED[start:] if r["params"].get("Bucket") != "team-data"
    ]
    (row,) = rows(report, "role boundary")
    assert rc == 1 and row["detail"] == f"{boundary} does not let instances write to s3://team-data/runs/"
    assert "--boundary --bucket team-data" in row["fix"] and "create-policy-version" in row["fix"]
