"""Any instance type EC2 offers (described by DescribeInstanceTypes when the catalog lacks it, priced from the
bundled regional table, the AWS Price List API, or "price unknown"), and the spot price a plan shows being
the price of the zone launch tries first (the cheapest), with no MaxPrice unless the stack sets max_price."""

from __future__ import annotations

import json
import socket
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from tests.aws.helpers import NOTHING, cli, stack_file
from tests.aws.test_price_list import item as price_item
from tests.support.moto_server import MotoServer, add_hook, count_calls, inject_error, tagged_resources


def answer(operation: str, body: dict[str, Any], service: str = "ec2") -> None:
    """Make `operation` answer `body` (a parsed response) instead of reaching moto: for what moto cannot
    say (real spot prices, a type's GPU)."""

    def handler(**_: Any) -> Any:
        return AWSResponse("http://answered", 200, {}, None), {
            **body,
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    add_hook(f"before-call.{service}.{operation}", handler)


def spot_history(prices: dict[str, float], instance_type: str = "g4dn.xlarge") -> dict[str, Any]:
    now = datetime.now(timezone.utc)
    return {
        "SpotPriceHistory": [
            {
                "AvailabilityZone": zone,
                "InstanceType": instance_type,
                "ProductDescription": "Linux/UNIX",
                "SpotPrice": f"{usd:.6f}",
                "Timestamp": now,
            }
            for zone, usd in prices.items()
        ]
    }


# ------------------------------------------------------------------------------------- any instance type


def test_a_cpu_type_outside_the_catalog_is_described_by_ec2_and_priced_unknown(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = stack_file(tmp_path, instance_type="c5.xlarge", market="on-demand", fallback="none")
    rc, out, err = cli(capsys, "launch", "--stack", stack, "--dry-run")
    assert rc == 0, err
    row = next(line for line in out.splitlines() if line.startswith("c5.xlarge"))
    assert "no GPU" in row and " 4 " in row and "price unknown" in row
    assert "cost       price unknown; no upper bound known" in out
    assert "c5.xlarge: price unknown (not in ec2dbn's bundled price table, and the AWS Price List" in err
    # And it launches: nothing refuses a type for being missing from the catalog.
    rc, _, err = cli(capsys, "launch", "--stack", stack, "--no-bootstrap")
    assert rc == 0, err
    assert cli(capsys, "teardown", "t", "--yes")[0] == 0


def test_a_type_outside_the_catalog_is_priced_from_the_price_list_api_when_it_answers(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """moto has no Pricing service: GetProducts is answered here as AWS answers it (the item of
    tests/aws/test_price_list.py), through ec2dbn's own client, like the EC2 answers above."""
    answer("GetProducts", {"FormatVersion": "aws_v1", "PriceList": [price_item()]}, service="pricing")
    stack = stack_file(tmp_path, instance_type="c5.xlarge", market="on-demand", fallback="none")
    rc, out, err = cli(capsys, "launch", "--stack", stack, "--dry-run")
    assert rc == 0, err
    row = next(line for line in out.splitlines() if line.startswith("c5.xlarge"))
    assert "0.17" in row and "price unknown" not in out + err
    assert "prices     on-demand from AWS Price List API (us-east-1 list price, " in out
    rc, out, err = cli(capsys, "plan", "examples/seed-mnist.yaml", "--stack", stack)
    assert rc == 0, err
    assert "estimated cost ~$" in out + err and "AWS Price List API" in out + err


def test_an_unreachable_price_list_api_leaves_the_price_unknown(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Price List endpoint on a local port that refuses connections (botocore's own
    AWS_ENDPOINT_URL_PRICING): the API was asked, the plan goes on, and the price is unknown."""
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", f"http://127.0.0.1:{closed.getsockname()[1]}")
        sent = count_calls("before-send.pricing.GetProducts")
        stack = stack_file(tmp_path, instance_type="c5.xlarge", market="on-demand", fallback="none")
        rc, out, err = cli(capsys, "plan", "examples/seed-mnist.yaml", "--stack", stack)
    assert rc == 0, err
    assert sent.calls >= 1
    assert "cost: price unknown" in out + err
    assert "c5.xlarge: price unknown (not in ec2dbn's bundled price table, and the AWS Price List" in err


def test_a_gpu_type_outside_the_catalog_shows_the_gpu_ec2_reports(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.seed_images(("us-east-2",))  # where moto's offerings have this H200 type
    stack = stack_file(
        tmp_path, region="us-east-2", instance_type="p5e.48xlarge", market="on-demand", fallback="none"
    )
    rc, out, err = cli(capsys, "launch", "--stack", stack, "--dry-run")
    assert rc == 0, err
    row = next(line for line in out.splitlines() if line.startswith("p5e.48xlarge"))
    assert "8x NVIDIA H200" in row and "192" in row and "price unknown" in row


def test_a_network_too_large_for_a_type_outside_the_catalog_is_refused_at_plan(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Validation cannot size a type the catalog lacks; the plan phase checks the job against what EC2
    describes (c5.xlarge: 8 GiB RAM, no GPU) before anything is created."""
    stack = stack_file(tmp_path, instance_type="c5.xlarge", market="on-demand", fallback="none")
    wide = {"data": {"name": "digits"}, "model": {"layers": [64, 50_000_000, 10]}}
    for job, words in (
        (wide, "but c5.xlarge has (RAM; it trains on the CPU) 8.0 GiB"),
        (
            {**wide, "model": {"layers": [64, 10]}, "backend": "cupy"},
            "backend: cupy needs a GPU, but c5.xlarge",
        ),
    ):
        path = tmp_path / "job.yaml"
        path.write_text(json.dumps(job))
        for verb in ("plan", "train"):
            rc, out, err = cli(capsys, verb, str(path), "--stack", stack)
            (error,) = [line for line in err.splitlines() if not line.startswith("warning: ")]
            assert rc == 2 and error.startswith("error: ") and words in error, (out, err)
    assert tagged_resources(aws) == NOTHING


def test_a_typo_is_refused_with_the_closest_name_before_anything_is_created(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = cli(capsys, "launch", "--instance-type", "g4dn.xlargee", "--no-bootstrap")
    (line,) = err.strip().splitlines()
    assert rc == 2
    assert (
        "unknown instance type g4dn.xlargee: EC2 does not know it in us-east-1; did you mean g4dn.xlarge?"
        in line
    )
    assert tagged_resources(aws) == NOTHING


def test_the_retirement_rule_applies_to_what_ec2_describes(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A type the catalog does not list (a made-up g3n) whose GPU EC2 names as a Maxwell M60, as g3's is."""
    answer(
        "DescribeInstanceTypes",
        {
            "InstanceTypes": [
                {
                    "InstanceType": "g3n.4xlarge",
                    "VCpuInfo": {"DefaultVCpus": 16},
                    "MemoryInfo": {"SizeInMiB": 124928},
                    "ProcessorInfo": {"SupportedArchitectures": ["x86_64"]},
                    "GpuInfo": {
                        "Gpus": [
                            {
                                "Name": "M60",
                                "Manufacturer": "NVIDIA",
                                "Count": 1,
                                "MemoryInfo": {"SizeInMiB": 8192},
                            }
                        ]
                    },
                }
            ]
        },
    )
    from ec2dbn.aws import offerings
    from ec2dbn.aws.session import Aws

    (facts,) = offerings.describe_types(Aws("us-east-1"), ["g3n.4xlarge"]).values()
    with pytest.raises(Exception, match=r"compute capability 5\.2.*use g4dn\.xlarge"):
        facts.instance_type()


# ----------------------------------------------------------------------------------------------- spot


def test_no_max_price_unless_the_stack_sets_one(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = inject_error("RunInstances", "unused", times=0)
    assert cli(capsys, "launch", "--stack", stack_file(tmp_path), "--no-bootstrap")[0] == 0
    assert "MaxPrice" not in run.params[-1]["InstanceMarketOptions"]["SpotOptions"]
    assert cli(capsys, "teardown", "t", "--yes")[0] == 0
    assert cli(capsys, "launch", "--stack", stack_file(tmp_path, max_price=0.3), "--no-bootstrap")[0] == 0
    assert run.params[-1]["InstanceMarketOptions"]["SpotOptions"]["MaxPrice"] == "0.3"


def test_launch_tries_the_cheapest_spot_zone_first_and_the_plan_shows_its_price(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    answer(
        "DescribeSpotPriceHistory",
        spot_history({"us-east-1a": 0.31, "us-east-1b": 0.29, "us-east-1c": 0.1625, "us-east-1d": 0.2}),
    )
    rc, out, err = cli(capsys, "launch", "--stack", stack_file(tmp_path), "--dry-run")
    assert rc == 0, err
    row = next(line for line in out.splitlines() if line.startswith("g4dn.xlarge"))
    assert "c,d,b,a,f" in row and "$0.1625" in row  # zones without a price (1f) last
    assert "$0.1625/h spot (live spot price (us-east-1c" in out
    assert "at most $1.58" in out  # no max_price: spot caps at on-demand, $0.526/h x 3h
    run = inject_error("RunInstances", "unused", times=0)
    assert cli(capsys, "launch", "--stack", stack_file(tmp_path), "--no-bootstrap")[0] == 0
    assert run.params[0]["Placement"]["AvailabilityZone"] == "us-east-1c"


def test_regional_on_demand_prices_are_used_outside_us_east_1(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    aws.seed_images(("eu-central-1",))
    stack = stack_file(tmp_path, region="eu-central-1", market="on-demand", fallback="none")
    rc, out, err = cli(capsys, "launch", "--stack", stack, "--dry-run")
    assert rc == 0, err
    assert "$0.6580" in out and "bundled catalog (eu-central-1 list price" in out
    assert "may differ" not in out


def test_a_quota_refusal_asks_for_the_current_quota_plus_what_is_needed(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    inject_error("RunInstances", "VcpuLimitExceeded", "You have requested more vCPU capacity", times=None)
    answer(
        "GetServiceQuota",
        {"Quota": {"ServiceCode": "ec2", "QuotaCode": "L-DB2E81BA", "Value": 8.0}},
        service="service-quotas",
    )
    rc, _, err = cli(capsys, "launch", "--on-demand", "--no-bootstrap")
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert rc == 1
    assert "from 8 to at least 12 vCPUs (8 now + 4 for this g4dn.xlarge)" in line
    assert "--quota-code L-DB2E81BA --desired-value 12 --region us-east-1" in line
    assert tagged_resources(aws) == NOTHING


def test_an_unreadable_quota_says_so_instead_of_guessing(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    # moto has no EC2 quotas: GetServiceQuota answers NoSuchResourceException, as for a denied one.
    quota_calls = count_calls("before-call.service-quotas.GetServiceQuota")
    inject_error("RunInstances", "VcpuLimitExceeded", "You have requested more vCPU capacity", times=None)
    rc, _, err = cli(capsys, "launch", "--on-demand", "--no-bootstrap")
    (line,) = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert rc == 1 and quota_calls.calls >= 1
    assert "to your current quota + 4 vCPUs (the current value could not be read)" in line
    assert (
        "--desired-value" not in line
        and "get-service-quota --service-code ec2 --quota-code L-DB2E81BA" in line
    )
