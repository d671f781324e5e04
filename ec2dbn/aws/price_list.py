"""On-demand prices from the AWS Price List Query API, for instance types the bundled table lacks.

The order a price is looked for (`on_demand`): the bundled, dated table (ec2dbn/data/catalog.yaml; no
network), then the Price List API (pricing:GetProducts, served from us-east-1 for every region of the aws
partition, from cn-northwest-1 for aws-cn's — whose prices are in CNY, so no USD price is read there —
and not at all in aws-us-gov), then nothing: the caller shows "price unknown". Best effort: short
timeouts, one retry, and any failure (no permission, no network, throttling, nothing matched, an answer we
cannot read) is None, never an error, because a missing price must not stop a plan. Answers are cached per
(type, region) for the process. moto has no Pricing backend; tests stub this API with botocore's Stubber.

An answer is a list of JSON strings, one product each (see AWS's GetProducts example):
product.attributes (instanceType, regionCode, ...) and terms.OnDemand.<sku.offerTerm>.priceDimensions
.<rateCode> = {"unit": "Hrs", "pricePerUnit": {"USD": "0.1700000000"}, ...}.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import datetime, timezone
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from ec2dbn.aws.session import RETRY_CONFIG, Aws
from ec2dbn.spec import catalog
from ec2dbn.spec.catalog import Price

#: Where the Price List Query API is served in the aws partition (also eu-central-1 and ap-south-1); any
#: region's prices. Other partitions have their own (aws-cn: cn-northwest-1), or none (aws-us-gov).
PRICE_LIST_REGION = "us-east-1"


def price_list_region(region: str) -> str | None:
    """The region serving the Price List API for `region`'s partition (botocore's endpoint data: aws-cn's
    is cn-northwest-1, api.pricing.cn-northwest-1.amazonaws.com.cn), or None where the partition has
    none (aws-us-gov): the price is then unknown, and says so."""
    session = boto3.session.Session()
    try:
        partition = session.get_partition_for_region(region)
    except Exception:  # a region botocore does not know: the aws partition's endpoint
        partition = "aws"
    served = session.get_available_regions("pricing", partition_name=partition)
    if PRICE_LIST_REGION in served:
        return PRICE_LIST_REGION
    return served[0] if served else None


SOURCE = "AWS Price List API"

#: Best effort: a plan waits at most a few seconds for a price it can do without.
PRICE_LIST_CONFIG = RETRY_CONFIG.merge(
    Config(connect_timeout=3, read_timeout=5, retries={"mode": "standard", "max_attempts": 2})
)


def filters(instance_type: str, region: str) -> list[dict[str, str]]:
    """GetProducts filters for the Linux, shared-tenancy, no-license on-demand price of a type in a region
    (capacitystatus Used: the instance's own price, not a capacity reservation's)."""
    wanted = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in wanted.items()]


def hourly_usd(price_list: Iterable[Any]) -> float | None:
    """The on-demand USD per hour in a GetProducts PriceList; None when there is none, or when the
    products disagree (the filters did not pin one product down: a guess would be worse than none)."""
    found: set[float] = set()
    for text in price_list:
        try:
            terms = json.loads(text)["terms"]["OnDemand"].values()
            dimensions = [d for t in terms for d in t["priceDimensions"].values()]
            usd = [float(d["pricePerUnit"]["USD"]) for d in dimensions if d.get("unit") == "Hrs"]
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
        found.update(u for u in usd if math.isfinite(u) and u > 0)
    return found.pop() if len(found) == 1 else None


def query(client: Any, instance_type: str, region: str) -> Price | None:
    """Ask the Price List API (a boto3 `pricing` client) for the type's on-demand price in `region`;
    None on any failure or when nothing matched."""
    try:
        answer = client.get_products(
            ServiceCode="AmazonEC2",
            Filters=filters(instance_type, region),
            FormatVersion="aws_v1",
            MaxResults=10,
        )
        usd = hourly_usd(answer.get("PriceList") or [])
    except Exception:  # best effort by design: no permission, no network, throttled, unreadable
        return None
    if usd is None:
        return None
    today = datetime.now(timezone.utc).date().isoformat()
    return Price(usd, f"{SOURCE} ({region} list price, {today})", today, region)


@cache
def price_list_price(instance_type: str, region: str) -> Price | None:
    """`query` through ec2dbn's own AWS session (its credentials, endpoints and recorded calls), once per
    (type, region) in this process."""
    endpoint_region = price_list_region(region)
    if endpoint_region is None:
        return None
    try:
        client = Aws(endpoint_region).client("pricing", config=PRICE_LIST_CONFIG)
    except Exception:  # credentials or configuration unreadable: the price is simply unknown
        return None
    return query(client, instance_type, region)


def on_demand(instance_type: str, region: str) -> Price | None:
    """The on-demand price of `instance_type` in `region`: the bundled table's, else the Price List API's,
    else None ("price unknown")."""
    return catalog.bundled_price(instance_type, region) or price_list_price(
        str(instance_type).strip().lower(), region
    )
