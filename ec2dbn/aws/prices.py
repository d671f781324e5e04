"""Live spot prices from EC2's spot price history (describe_spot_price_history).

The functions receive a ready boto3 EC2 client, so they run unchanged against moto in tests and against
AWS for users. Prices are USD per hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from ec2dbn.aws.errors import translate
from ec2dbn.spec.catalog import AZ_RE, Price, check_region


def _region_of(az_or_region: str) -> tuple[str, str | None]:
    """('us-east-1', 'us-east-1b') for an AZ, ('us-east-1', None) for a region; ConfigError otherwise."""
    text = str(az_or_region).strip().lower()
    m = AZ_RE.fullmatch(text)
    if m:
        return check_region(m.group(1)), text
    return check_region(text), None


def spot_prices(ec2_client: Any, instance_types: Sequence[str], az_or_region: str) -> dict[str, Price]:
    """The current Linux spot price of each type, in one AZ or (for a region) its cheapest AZ.

    One paginated describe_spot_price_history call for all types. StartTime=now makes EC2 return the
    price in effect now for each (type, AZ); if more rows come back, only each AZ's latest counts. Types
    EC2 has no spot price for (not offered there) are absent from the result.
    Raises CredentialsError / CloudError (one line) when the call fails.
    """
    region, az = _region_of(az_or_region)
    wanted = {t.strip().lower() for t in instance_types}
    if not wanted:
        return {}
    kwargs: dict[str, Any] = {
        "InstanceTypes": sorted(wanted),
        "ProductDescriptions": ["Linux/UNIX"],
        "StartTime": datetime.now(timezone.utc),
    }
    if az:
        kwargs["AvailabilityZone"] = az
    latest = _latest_rows(ec2_client, kwargs, wanted, az)
    cheapest: dict[str, dict[str, Any]] = {}
    for (itype, _zone), row in sorted(latest.items()):
        if itype not in cheapest or float(row["SpotPrice"]) < float(cheapest[itype]["SpotPrice"]):
            cheapest[itype] = row
    return {
        itype: _price(
            row, region, row["AvailabilityZone"] if az else f"cheapest AZ {row['AvailabilityZone']}"
        )
        for itype, row in cheapest.items()
    }


def spot_prices_by_zone(ec2_client: Any, instance_type: str, region: str) -> dict[str, Price]:
    """zone -> the current Linux spot price of `instance_type` there (zones without a price are absent).

    One paginated describe_spot_price_history call; how launch orders zones (cheapest first) and what the
    plan shows as the spot price of the zone launch tries first. Raises like `spot_prices`.
    """
    region = check_region(region)
    name = instance_type.strip().lower()
    kwargs: dict[str, Any] = {
        "InstanceTypes": [name],
        "ProductDescriptions": ["Linux/UNIX"],
        "StartTime": datetime.now(timezone.utc),
    }
    rows = _latest_rows(ec2_client, kwargs, {name}, None)
    return {zone: _price(row, region, zone) for (_t, zone), row in sorted(rows.items())}


def _latest_rows(
    ec2_client: Any, kwargs: dict[str, Any], wanted: set[str], az: str | None
) -> dict[tuple[str, str], dict[str, Any]]:
    """(type, zone) -> the latest Linux spot price history row."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        for page in ec2_client.get_paginator("describe_spot_price_history").paginate(**kwargs):
            for row in page.get("SpotPriceHistory", []):
                key = (row.get("InstanceType", ""), row.get("AvailabilityZone", ""))
                # Filter client-side too: not every endpoint applies every filter (moto ignores the AZ).
                # "Linux/UNIX (Amazon VPC)" is the same Linux price, labelled the EC2-Classic-era way.
                linux = str(row.get("ProductDescription", "")).startswith("Linux/UNIX")
                if key[0] not in wanted or not linux:
                    continue
                if az and key[1] != az:
                    continue
                if key not in latest or row["Timestamp"] > latest[key]["Timestamp"]:
                    latest[key] = row
    except Exception as exc:  # botocore's ClientError / NoCredentialsError / EndpointConnectionError
        region = str(getattr(getattr(ec2_client, "meta", None), "region_name", "") or "")
        raise translate(exc, region=region, action="describe_spot_price_history") from exc
    return latest


def _price(row: dict[str, Any], region: str, where: str) -> Price:
    stamp: datetime = row["Timestamp"]
    return Price(
        usd_per_hour=float(row["SpotPrice"]),
        source=f"live spot price ({where}, describe_spot_price_history, {stamp.isoformat()})",
        date=stamp.date().isoformat(),
        region=region,
        market="spot",
    )


def spot_price(ec2_client: Any, instance_type: str, az_or_region: str) -> Price | None:
    """The current Linux spot price of one type in an AZ (or the cheapest AZ of a region); None if none."""
    return spot_prices(ec2_client, [instance_type], az_or_region).get(instance_type.strip().lower())
