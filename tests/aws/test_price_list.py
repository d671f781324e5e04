"""The AWS Price List Query API client (ec2dbn/aws/price_list.py): the parser on answers shaped as AWS
sends them, and the call itself on a real boto3 `pricing` client.

moto has no Pricing backend (there is no moto/pricing), so the call is tested with botocore's Stubber on a
real boto3 client: the Stubber stands in for AWS, not for ec2dbn's code, and validates each request
against the service model. The plan-level behaviour (an unreachable or refusing endpoint → "price
unknown") is in tests/aws/test_types_and_prices.py.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import boto3
import botocore.loaders
import pytest
from botocore.stub import Stubber

from ec2dbn.aws import price_list
from tests.support.moto_server import MotoServer, count_calls

#: One GetProducts PriceList item for c5.xlarge in us-east-1 (Linux, Shared, no pre-installed software,
#: capacitystatus Used) as the API returns it, abridged: product attributes cut to the filtered ones, one
#: of its Reserved terms kept. Shape as in AWS's GetProducts example (botocore's
#: data/pricing/2017-10-15/examples-1.json, also the AWS CLI's `aws pricing get-products` example) and
#: AWS's "Reading the service price list file" (Billing User Guide); figures from a recorded real answer
#: (Price List publication 2020-06-18: $0.17 per On Demand Linux c5.xlarge Instance Hour).
C5_XLARGE: dict[str, Any] = {
    "product": {
        "productFamily": "Compute Instance",
        "attributes": {
            "capacitystatus": "Used",
            "instanceType": "c5.xlarge",
            "licenseModel": "No License required",
            "location": "US East (N. Virginia)",
            "operatingSystem": "Linux",
            "operation": "RunInstances",
            "preInstalledSw": "NA",
            "regionCode": "us-east-1",
            "servicecode": "AmazonEC2",
            "tenancy": "Shared",
            "usagetype": "BoxUsage:c5.xlarge",
        },
        "sku": "35AEEWH98DECPC35",
    },
    "serviceCode": "AmazonEC2",
    "terms": {
        "OnDemand": {
            "35AEEWH98DECPC35.JRTCKXETXF": {
                "priceDimensions": {
                    "35AEEWH98DECPC35.JRTCKXETXF.6YS6EN2CT7": {
                        "unit": "Hrs",
                        "endRange": "Inf",
                        "description": "$0.17 per On Demand Linux c5.xlarge Instance Hour",
                        "appliesTo": [],
                        "rateCode": "35AEEWH98DECPC35.JRTCKXETXF.6YS6EN2CT7",
                        "beginRange": "0",
                        "pricePerUnit": {"USD": "0.1700000000"},
                    }
                },
                "sku": "35AEEWH98DECPC35",
                "effectiveDate": "2020-06-01T00:00:00Z",
                "offerTermCode": "JRTCKXETXF",
                "termAttributes": {},
            }
        },
        "Reserved": {
            "35AEEWH98DECPC35.4NA7Y494T4": {
                "priceDimensions": {
                    "35AEEWH98DECPC35.4NA7Y494T4.6YS6EN2CT7": {
                        "unit": "Hrs",
                        "description": "Linux/UNIX (Amazon VPC), c5.xlarge reserved instance applied",
                        "appliesTo": [],
                        "rateCode": "35AEEWH98DECPC35.4NA7Y494T4.6YS6EN2CT7",
                        "pricePerUnit": {"USD": "0.1070000000"},
                    }
                },
                "sku": "35AEEWH98DECPC35",
                "effectiveDate": "2020-04-01T00:00:00Z",
                "offerTermCode": "4NA7Y494T4",
                "termAttributes": {"LeaseContractLength": "1yr", "PurchaseOption": "No Upfront"},
            }
        },
    },
    "version": "20200618221809",
    "publicationDate": "2020-06-18T22:18:09Z",
}


def item(usd: str = "0.1700000000", unit: str = "Hrs") -> str:
    """C5_XLARGE as the JSON string PriceList carries, with its on-demand price and unit replaced."""
    doc = json.loads(json.dumps(C5_XLARGE))
    (term,) = doc["terms"]["OnDemand"].values()
    (dim,) = term["priceDimensions"].values()
    dim["pricePerUnit"]["USD"], dim["unit"] = usd, unit
    return json.dumps(doc)


def aws_documented_example() -> dict[str, Any]:
    """AWS's own GetProducts example (request and answer), as botocore ships it."""
    examples = botocore.loaders.Loader().load_service_model("pricing", "examples-1")
    (example,) = examples["examples"]["GetProducts"]
    return example


# ----------------------------------------------------------------------------------------------- parser


def test_reads_the_on_demand_hourly_price_and_not_the_reserved_one() -> None:
    assert price_list.hourly_usd([json.dumps(C5_XLARGE)]) == 0.17


def test_aws_documented_example_parses_but_is_not_an_hourly_price() -> None:
    """AWS's example answer is an EBS volume priced per GB-month: read as JSON fine, but no instance
    price comes out of it (a per-GB-month figure must never be shown as $/h)."""
    (text,) = aws_documented_example()["output"]["PriceList"]
    assert json.loads(text)["terms"]["OnDemand"]  # the shape the parser walks
    assert price_list.hourly_usd([text]) is None
    assert price_list.hourly_usd([text, item()]) == 0.17  # the hourly product among others still counts


@pytest.mark.parametrize(
    "answer",
    [
        [],
        ["not json"],
        ['{"terms": {}}'],
        ["[1, 2]"],
        [item(usd="n/a")],
        [item(usd="0.0000000000")],
        [item(usd="NaN")],
        [item(), item(usd="0.1800000000")],  # two products, two prices: no guess
    ],
)
def test_no_price_when_the_answer_has_none_or_is_ambiguous(answer: list[str]) -> None:
    assert price_list.hourly_usd(answer) is None


def test_unreadable_products_are_skipped() -> None:
    assert price_list.hourly_usd(["{", item(), '{"terms": {"OnDemand": []}}']) == 0.17


# ------------------------------------------------------------------------------ the call (Stubber on boto3)


@pytest.fixture
def pricing() -> Any:
    """A real boto3 Price List client with fake credentials; nothing leaves the process (Stubber)."""
    return boto3.session.Session().client(
        "pricing",
        region_name=price_list.PRICE_LIST_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def expected_request(instance_type: str, region: str) -> dict[str, Any]:
    fields = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }
    return {
        "ServiceCode": "AmazonEC2",
        "Filters": [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in fields.items()],
        "FormatVersion": "aws_v1",
        "MaxResults": 10,
    }


def test_a_price_comes_back_as_a_dated_on_demand_price(pricing: Any) -> None:
    with Stubber(pricing) as stub:
        stub.add_response(
            "get_products",
            {"FormatVersion": "aws_v1", "PriceList": [item()]},
            expected_request("c5.xlarge", "eu-west-1"),
        )
        price = price_list.query(pricing, "c5.xlarge", "eu-west-1")
        stub.assert_no_pending_responses()
    assert price is not None
    today = datetime.now(timezone.utc).date().isoformat()
    assert (price.usd_per_hour, price.region, price.market, price.date) == (
        0.17,
        "eu-west-1",
        "on-demand",
        today,
    )
    assert price.source.startswith("AWS Price List API") and "eu-west-1" in price.source


def test_nothing_matched_is_no_price(pricing: Any) -> None:
    with Stubber(pricing) as stub:
        stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": []})
        assert price_list.query(pricing, "c5.xlarge", "us-east-1") is None
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("code", "status"),
    [("AccessDeniedException", 400), ("ThrottlingException", 400), ("InternalErrorException", 500)],
)
def test_an_error_is_no_price_not_an_exception(pricing: Any, code: str, status: int) -> None:
    with Stubber(pricing) as stub:
        stub.add_client_error("get_products", code, "refused by the test", http_status_code=status)
        assert price_list.query(pricing, "c5.xlarge", "us-east-1") is None
        stub.assert_no_pending_responses()


def test_the_bundled_table_comes_first_and_the_api_is_asked_once(aws: MotoServer) -> None:
    """Through ec2dbn's own session (on moto, which answers the unknown Pricing service with an error):
    a type the bundled table prices never reaches the API; one it lacks is asked once per process."""
    sent = count_calls("before-send.pricing.GetProducts")
    price = price_list.on_demand("g4dn.xlarge", "us-east-1")
    assert price is not None and price.source.startswith("bundled catalog") and sent.calls == 0
    assert price_list.on_demand("c5.xlarge", "us-east-1") is None
    asked = sent.calls
    assert asked >= 1
    assert price_list.on_demand("C5.xlarge ", "us-east-1") is None and sent.calls == asked  # cached


# ------------------------------------------------------------------------------ the endpoint per partition


@pytest.mark.parametrize(
    ("region", "served_from", "host"),
    [
        ("us-west-2", "us-east-1", "api.pricing.us-east-1.amazonaws.com"),
        ("eu-west-1", "us-east-1", "api.pricing.us-east-1.amazonaws.com"),
        ("cn-north-1", "cn-northwest-1", "api.pricing.cn-northwest-1.amazonaws.com.cn"),
        ("cn-northwest-1", "cn-northwest-1", "api.pricing.cn-northwest-1.amazonaws.com.cn"),
    ],
)
def test_the_price_list_endpoint_follows_the_partition(
    region: str, served_from: str, host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_PRICING", raising=False)
    assert price_list.price_list_region(region) == served_from
    client = boto3.session.Session().client(
        "pricing", region_name=served_from, aws_access_key_id="x", aws_secret_access_key="x"
    )
    assert client.meta.endpoint_url == f"https://{host}"


def test_govcloud_has_no_price_list_so_the_price_is_unknown_without_a_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert price_list.price_list_region("us-gov-west-1") is None
    made: list[str] = []
    monkeypatch.setattr(price_list, "Aws", lambda region: made.append(region))
    price_list.price_list_price.cache_clear()
    assert price_list.price_list_price("p5.48xlarge", "us-gov-west-1") is None and made == []
