"""Cost: spot prices through a real boto3 client and moto server, estimates, actual cost, formatting."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from ec2dbn.aws.prices import spot_price, spot_prices
from ec2dbn.errors import CloudError, ConfigError, CredentialsError
from ec2dbn.spec import cost
from ec2dbn.spec.catalog import Price, lookup, on_demand_price
from ec2dbn.spec.cost import (
    InstanceSegment,
    actual_cost,
    estimate,
    estimate_job,
    format_usd,
)
from tests.support.spot_moto import Row, SpotReplies, ec2_client, error_xml, history_xml, spot_moto

__all__ = ["spot_moto"]  # the fixture, imported so pytest finds it here

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=timezone.utc)


# --- spot prices ----------------------------------------------------------------------------------


def test_spot_price_from_plain_moto_goes_over_http(spot_moto: str) -> None:
    # moto's own answer (0.00001 everywhere, "Linux/UNIX (Amazon VPC)", AZ filter ignored): the request,
    # the XML and our filtering all run for real.
    ec2 = ec2_client(spot_moto)
    p = spot_price(ec2, "g4dn.xlarge", "us-east-1b")
    assert p is not None
    assert p.usd_per_hour == pytest.approx(0.00001)
    assert (p.market, p.region) == ("spot", "us-east-1")
    assert "us-east-1b" in p.source and "describe_spot_price_history" in p.source


def test_spot_price_latest_per_az_and_cheapest_az_of_a_region(spot_moto: str) -> None:
    ec2 = ec2_client(spot_moto)
    replies = SpotReplies(
        ec2,
        [
            (
                200,
                history_xml(
                    [
                        Row("g4dn.xlarge", "us-east-1a", "0.310000", "2026-11-26T09:00:00.000Z"),
                        Row("g4dn.xlarge", "us-east-1a", "0.250000", "2026-11-26T10:00:00.000Z"),
                        Row("g4dn.xlarge", "us-east-1b", "0.210400", "2026-11-26T08:30:00.000Z"),
                        # Older but cheaper: must not win, only each AZ's latest price counts.
                        Row("g4dn.xlarge", "us-east-1b", "0.100000", "2026-11-20T08:30:00.000Z"),
                        Row("g4dn.xlarge", "us-east-1c", "0.2999", "2026-11-26T10:05:00.000Z"),
                        # Not Linux: ignored.
                        Row("g4dn.xlarge", "us-east-1d", "0.050000", "2026-11-26T10:05:00.000Z", "Windows"),
                    ],
                    next_token="page2",
                ),
            ),
            (200, history_xml([Row("g4dn.xlarge", "us-east-1f", "0.230000", "2026-11-26T10:06:00.000Z")])),
        ],
    )
    p = spot_price(ec2, "g4dn.xlarge", "us-east-1")
    assert p == Price(
        usd_per_hour=0.2104,
        source=(
            "live spot price (cheapest AZ us-east-1b, describe_spot_price_history, 2026-11-26T08:30:00+00:00)"
        ),
        date="2026-11-26",
        region="us-east-1",
        market="spot",
    )
    # Both pages were read, and the request asked EC2 for exactly this.
    assert len(replies.requests) == 2
    first = replies.requests[0]
    assert first["Action"] == ["DescribeSpotPriceHistory"]
    assert first["InstanceType.1"] == ["g4dn.xlarge"]
    assert first["ProductDescription.1"] == ["Linux/UNIX"]
    assert "StartTime" in first and "AvailabilityZone" not in first
    assert replies.requests[1]["NextToken"] == ["page2"]


def test_spot_price_for_one_az_asks_for_that_az(spot_moto: str) -> None:
    ec2 = ec2_client(spot_moto)
    replies = SpotReplies(
        ec2,
        [
            (
                200,
                history_xml(
                    [
                        Row("g5.xlarge", "us-east-1a", "0.401200", "2026-11-26T10:00:00.000Z"),
                        Row("g5.xlarge", "us-east-1c", "0.380000", "2026-11-26T10:00:00.000Z"),
                    ]
                ),
            )
        ],
    )
    p = spot_price(ec2, "g5.xlarge", "us-east-1a")
    assert p is not None and p.usd_per_hour == pytest.approx(0.4012)
    assert p.source.startswith("live spot price (us-east-1a,")
    assert replies.requests[0]["AvailabilityZone"] == ["us-east-1a"]


def test_spot_prices_for_many_types_in_one_call(spot_moto: str) -> None:
    ec2 = ec2_client(spot_moto)
    replies = SpotReplies(
        ec2,
        [
            (
                200,
                history_xml(
                    [
                        Row("g4dn.xlarge", "us-east-1a", "0.2104", "2026-11-26T10:00:00.000Z"),
                        Row("g5.xlarge", "us-east-1a", "0.4012", "2026-11-26T10:00:00.000Z"),
                    ]
                ),
            )
        ],
    )
    prices = spot_prices(ec2, ["g4dn.xlarge", "g5.xlarge", "p5.48xlarge"], "us-east-1")
    assert {k: v.usd_per_hour for k, v in prices.items()} == {"g4dn.xlarge": 0.2104, "g5.xlarge": 0.4012}
    assert len(replies.requests) == 1
    asked = {v[0] for k, v in replies.requests[0].items() if k.startswith("InstanceType.")}
    assert asked == {"g4dn.xlarge", "g5.xlarge", "p5.48xlarge"}


def test_no_spot_offer_is_none(spot_moto: str) -> None:
    ec2 = ec2_client(spot_moto)
    SpotReplies(ec2, [(200, history_xml([]))])
    assert spot_price(ec2, "p5.48xlarge", "us-east-1") is None


def test_spot_price_cloud_error_is_one_line(spot_moto: str) -> None:
    ec2 = ec2_client(spot_moto)
    SpotReplies(ec2, [(403, error_xml("UnauthorizedOperation", "You are not authorized to perform this."))])
    with pytest.raises(CloudError) as exc:
        spot_price(ec2, "g4dn.xlarge", "us-east-1")
    # The denied line every verb gives (issue 27): the missing action and the policy that grants it.
    assert str(exc.value) == (
        "describe_spot_price_history: AWS denied it in us-east-1 (UnauthorizedOperation): they lack "
        "ec2:DescribeSpotPriceHistory; attach the policy `ec2dbn iam-policy` prints to these credentials "
        "(README: First time on AWS)"
    )


def test_spot_price_without_credentials(spot_moto: str, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    ec2 = boto3.session.Session().client("ec2", region_name="us-east-1", endpoint_url=spot_moto)
    with pytest.raises(CredentialsError, match="no AWS credentials found") as exc:
        spot_price(ec2, "g4dn.xlarge", "us-east-1")
    assert exc.value.exit_code == 2 and "\n" not in str(exc.value)


def test_spot_price_bad_place_is_config_error(spot_moto: str) -> None:
    with pytest.raises(ConfigError, match="is not an AWS region; "):
        spot_price(ec2_client(spot_moto), "g4dn.xlarge", "atlantis")


# --- estimates ------------------------------------------------------------------------------------


def _od(usd: float) -> Price:
    return Price(usd_per_hour=usd, source="test", date="2026-11-01", region="us-east-1")


def test_estimate_is_rate_times_time() -> None:
    assert estimate(_od(0.526), 3600) == pytest.approx(0.526)
    assert estimate(_od(0.526), 90) == pytest.approx(0.01315)
    assert estimate(_od(0.526), 0) == 0
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="non-negative"):
            estimate(_od(0.526), bad)


def test_estimate_job_with_a_guess_is_labelled_as_one() -> None:
    t4 = lookup("g4dn.xlarge")
    price = on_demand_price("g4dn.xlarge", "us-east-1")
    est = estimate_job(t4, price, epochs=100)
    spe = cost.GUESS_S_PER_EPOCH_BY_GPU["NVIDIA T4"]
    assert est.seconds == pytest.approx(100 * spe + cost.GUESS_OVERHEAD_S)
    assert est.usd == pytest.approx(0.526 * est.seconds / 3600)
    line = est.describe()
    assert line.startswith(f"estimated cost ~{format_usd(est.usd)}: 100 epochs × {spe:g} s")
    assert "guess for the seed's 784-800-800-10 DBN on NVIDIA T4" in line
    assert price.source in line


def test_estimate_job_with_measured_speed_and_cpu_guess() -> None:
    price = _od(0.34)
    est = estimate_job(lookup("c6i.2xlarge"), price, epochs=10, seconds_per_epoch=25.0, overhead_s=0)
    assert est.seconds == 250 and est.usd == pytest.approx(0.34 * 250 / 3600)
    assert est.basis == "measured s/epoch"
    # The CPU guess gets faster with more vCPUs, and is labelled with the vCPU count.
    small = estimate_job(lookup("c6i.xlarge"), price, epochs=10)
    large = estimate_job(lookup("c6i.8xlarge"), price, epochs=10)
    assert large.seconds_per_epoch < small.seconds_per_epoch
    assert "4 vCPUs" in small.basis
    with pytest.raises(ConfigError, match="epochs"):
        estimate_job(lookup("c6i.xlarge"), price, epochs=-1)
    with pytest.raises(ConfigError, match="epochs"):
        estimate_job(lookup("c6i.xlarge"), price, epochs=2.5)  # type: ignore[arg-type]


# --- actual cost ----------------------------------------------------------------------------------


def test_actual_cost_one_segment() -> None:
    seg = InstanceSegment("i-1", "g4dn.xlarge", "on-demand", 0.526, T0, T0 + timedelta(hours=2))
    bill = actual_cost([seg])
    assert bill.total_usd == pytest.approx(1.052)
    assert bill.total_seconds == 7200 and bill.recoveries == 0


def test_actual_cost_adds_recoveries() -> None:
    # Spot for 30 min, interrupted; recovered on another spot instance for 45 min; then on-demand 10 min.
    segs = [
        InstanceSegment("i-1", "g4dn.xlarge", "spot", 0.2104, T0, T0 + timedelta(minutes=30)),
        InstanceSegment(
            "i-2", "g4dn.xlarge", "spot", 0.25, T0 + timedelta(minutes=33), T0 + timedelta(minutes=78)
        ),
        InstanceSegment(
            "i-3", "g4dn.xlarge", "on-demand", 0.526, T0 + timedelta(minutes=80), T0 + timedelta(minutes=90)
        ),
    ]
    bill = actual_cost(segs)
    expected = 0.2104 * 0.5 + 0.25 * 0.75 + 0.526 * 10 / 60
    assert bill.total_usd == pytest.approx(expected, rel=1e-12)
    assert [s.usd for s in bill.segments] == pytest.approx([0.1052, 0.1875, 0.526 / 6])
    assert bill.recoveries == 2
    assert bill.total_seconds == 1800 + 2700 + 600
    doc = json.loads(json.dumps(bill.to_dict()))
    assert doc["total_usd"] == round(expected, 6)
    assert doc["segments"][1]["instance_id"] == "i-2"
    assert doc["segments"][1]["started_at"] == "2026-11-01T12:33:00+00:00"
    assert doc["recoveries"] == 2


def test_short_segment_is_billed_one_minute() -> None:
    seg = InstanceSegment("i-1", "g5.xlarge", "spot", 0.36, T0, T0 + timedelta(seconds=10))
    bill = actual_cost([seg])
    assert bill.segments[0].seconds == 10 and bill.segments[0].billed_seconds == 60
    assert bill.total_usd == pytest.approx(0.006)
    assert actual_cost([seg], minimum_billed_s=0).total_usd == pytest.approx(0.001)


def test_running_segment_costs_up_to_now_and_naive_times_are_utc() -> None:
    naive_start = datetime(2026, 11, 1, 12, 0, 0)  # UTC, as stored without tzinfo
    seg = InstanceSegment("i-1", "g4dn.xlarge", "spot", 0.2, naive_start, None)
    bill = actual_cost([seg], now=T0 + timedelta(minutes=90))
    assert bill.total_seconds == 5400 and bill.total_usd == pytest.approx(0.3)
    assert bill.to_dict()["segments"][0]["ended_at"] is None


def test_actual_cost_rejects_time_travel_and_empty_is_zero() -> None:
    seg = InstanceSegment("i-1", "g4dn.xlarge", "spot", 0.2, T0, T0 - timedelta(seconds=1))
    with pytest.raises(ValueError, match="i-1 ends before it starts"):
        actual_cost([seg])
    empty = actual_cost([])
    assert empty.total_usd == 0 and empty.recoveries == 0 and format_usd(empty.total_usd) == "$0.00"


def test_many_small_segments_sum_without_drift() -> None:
    segs = [
        InstanceSegment(f"i-{k}", "g4dn.xlarge", "spot", 0.1, T0, T0 + timedelta(seconds=360))
        for k in range(1000)
    ]
    assert actual_cost(segs).total_usd == 10.0  # fsum: exact, not 9.999999999998


# --- formatting -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usd", "text"),
    [
        (0, "$0.00"),
        (0.0123, "$0.0123"),
        (0.01234567, "$0.0123"),
        (0.526, "$0.5260"),
        (0.99996, "$1.00"),
        (1.234, "$1.23"),
        (1.235001, "$1.24"),
        (1234.567, "$1,234.57"),
        (0.00001, "<$0.0001"),
        (-0.5, "-$0.5000"),
        (-12.5, "-$12.50"),
    ],
)
def test_format_usd(usd: float, text: str) -> None:
    assert format_usd(usd) == text
