"""AWS failures turned into ec2dbn's one-line errors, with the Service Quotas code to raise.

botocore raises ClientError (AWS said no) and BotoCoreError subclasses (no credentials, no network).
`translate` maps both onto `ec2dbn.errors`; the launch fallback chain also needs to tell capacity,
quota and spot-price refusals apart, so those get their own CloudError subclasses here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

from ec2dbn.errors import CloudError, ConfigError, CredentialsError, Ec2dbnError

CREDENTIALS_HINT = (
    "set AWS_PROFILE to a profile from `aws configure` (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
)

#: EC2 error codes meaning "no capacity for this type here right now": try another AZ or type.
CAPACITY_CODES = frozenset(
    {"InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity"}
)
#: Quota refusals: another family (different quota) or the other market may still work.
QUOTA_CODES = frozenset({"VcpuLimitExceeded", "MaxSpotInstanceCountExceeded", "InstanceLimitExceeded"})
#: The spot market refused the price.
SPOT_PRICE_CODES = frozenset({"SpotMaxPriceTooLow"})
_AUTH_CODES = frozenset(
    {
        "AuthFailure",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "RequestExpired",
        "InvalidAccessKeyId",
    }
)
_THROTTLE_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})


class CapacityError(CloudError):
    """EC2 has no capacity for the type in that AZ (InsufficientInstanceCapacity)."""


class QuotaError(CloudError):
    """An account vCPU / spot quota is exhausted; the message names the Service Quotas code."""


class SpotPriceError(CloudError):
    """The spot price is above the stack's max_price (SpotMaxPriceTooLow)."""


# Quota names and codes (EC2 Service Quotas), by instance-family class. Codes are given only where ec2dbn
# is sure of them; the others are named, so the user can still find them in the console.
_ON_DEMAND_QUOTAS = {
    "standard": ("Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", "L-1216C47A"),
    "g": ("Running On-Demand G and VT instances", "L-DB2E81BA"),
    "p": ("Running On-Demand P instances", "L-417A185B"),
    "f": ("Running On-Demand F instances", None),
    "inf": ("Running On-Demand Inf instances", None),
    "x": ("Running On-Demand X instances", None),
    "dl": ("Running On-Demand DL instances", None),
    "trn": ("Running On-Demand Trn instances", None),
}
_SPOT_QUOTAS = {
    "standard": ("All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests", "L-34B43A08"),
    "g": ("All G and VT Spot Instance Requests", "L-3819A6DF"),
    "p": ("All P Spot Instance Requests", "L-7212CCBC"),
    "f": ("All F Spot Instance Requests", None),
    "inf": ("All Inf Spot Instance Requests", None),
    "x": ("All X Spot Instance Requests", None),
    "dl": ("All DL Spot Instance Requests", None),
    "trn": ("All Trn Spot Instance Requests", None),
}


def quota_class(instance_type: str) -> str:
    """The quota class of an instance type: 'g' (G and VT), 'p', 'standard', ... ."""
    letters = re.match(r"[a-z]+", instance_type.lower())
    prefix = letters.group(0) if letters else ""
    for cls in ("inf", "trn", "dl", "vt"):
        if prefix.startswith(cls):
            return "g" if cls == "vt" else cls
    first = prefix[:1]
    if first in ("g", "p", "f", "x"):
        return first
    return "standard"


def quota_for(instance_type: str, market: str) -> tuple[str, str | None]:
    """(quota name, Service Quotas code or None) governing `instance_type` in `market`."""
    table = _SPOT_QUOTAS if market == "spot" else _ON_DEMAND_QUOTAS
    return table[quota_class(instance_type)]


def quota_message(code: str, *, instance_type: str, market: str, region: str, vcpus: int | None) -> str:
    """One actionable line: which quota, its code, and the command that raises it."""
    name, qcode = quota_for(instance_type, market)
    want = f" to at least {vcpus} vCPUs" if vcpus else ""
    where = f"{market} {instance_type} in {region}"
    if qcode is None:
        return (
            f"{code}: the vCPU quota for {where} is exhausted; raise '{name}'{want} in Service Quotas (EC2)"
        )
    value = vcpus or 8
    return (
        f"{code}: the vCPU quota for {where} is exhausted; "
        f"raise '{name}' (Service Quotas code {qcode}){want}: "
        f"aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {qcode} "
        f"--desired-value {value} --region {region}"
    )


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _message(exc: ClientError) -> str:
    return " ".join(str(exc.response.get("Error", {}).get("Message", "")).split())


def translate(exc: BaseException, *, region: str, action: str) -> Ec2dbnError:
    """A botocore exception as one of ours, with a one-line message saying what to do."""
    if isinstance(exc, Ec2dbnError):
        return exc
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CredentialsError(f"no AWS credentials found: {CREDENTIALS_HINT}")
    if isinstance(exc, ProfileNotFound):
        return CredentialsError(f"{exc}: {CREDENTIALS_HINT}")
    if isinstance(exc, NoRegionError):
        return ConfigError("no AWS region: pass --region or set it in the stack")
    if isinstance(exc, EndpointConnectionError):
        return CloudError(f"{action}: cannot reach AWS ({exc}); check the network and AWS_ENDPOINT_URL")
    if isinstance(exc, ClientError):
        code, msg = error_code(exc), _message(exc)
        if code in _AUTH_CODES:
            return CredentialsError(f"AWS rejected the credentials ({code}: {msg}); {CREDENTIALS_HINT}")
        if code == "UnauthorizedOperation":
            return CloudError(
                f"{action}: not allowed for these credentials in {region} (UnauthorizedOperation)"
            )
        if code in _THROTTLE_CODES:
            return CloudError(
                f"{action}: AWS kept throttling ({code}) after retries; wait a minute and rerun"
            )
        if code in CAPACITY_CODES:
            return CapacityError(f"{action}: {code}: {msg}")
        if code in SPOT_PRICE_CODES:
            return SpotPriceError(f"{action}: {code}: {msg}")
        if code in QUOTA_CODES:
            return QuotaError(f"{action}: {code}: {msg}")
        return CloudError(f"{action} failed in {region}: {code}: {msg}")
    if isinstance(exc, BotoCoreError):
        return CloudError(f"{action} failed: {exc}")
    return CloudError(f"{action} failed: {type(exc).__name__}: {exc}")


@contextmanager
def aws_errors(region: str, action: str) -> Iterator[None]:
    """Run AWS calls with their failures translated (`action` says what was being done)."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, region=region, action=action) from exc
