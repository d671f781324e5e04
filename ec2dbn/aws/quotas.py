"""EC2's vCPU quotas: which one governs an instance type and market, its current value (Service Quotas
GetServiceQuota), and the one command that raises it to what a launch needs.

EC2 counts running vCPUs per instance-family class and market ("Running On-Demand G and VT instances",
"All G and VT Spot Instance Requests", ...). A refused launch (VcpuLimitExceeded,
MaxSpotInstanceCountExceeded) needs the quota raised to its current value plus the vCPUs asked for, not
to the vCPUs of one instance: other instances may hold the rest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

from ec2dbn.aws.errors import error_code
from ec2dbn.aws.session import Aws

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


@dataclass(frozen=True)
class QuotaValue:
    """A quota as Service Quotas reports it now: vCPUs (None with `error` set when it could not be read)."""

    name: str
    code: str | None
    vcpus: float | None
    error: str = ""


def current(aws: Aws, instance_type: str, market: str) -> QuotaValue:
    """The current value of the vCPU quota governing `instance_type` in `market`, in the region.

    Best effort, never raises: a quota ec2dbn has no code for, a denied or failed GetServiceQuota, gives
    a QuotaValue whose `vcpus` is None and whose `error` says why (for messages and `ec2dbn check`).
    """
    name, code = quota_for(instance_type, market)
    if code is None:
        return QuotaValue(name, None, None, "ec2dbn does not know this quota's code")
    try:
        quota = aws.quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]
        return QuotaValue(name, code, float(quota["Value"]))
    except ClientError as exc:
        return QuotaValue(name, code, None, error_code(exc) or "GetServiceQuota failed")
    except (BotoCoreError, KeyError, TypeError, ValueError) as exc:
        return QuotaValue(name, code, None, type(exc).__name__)


def increase_command(code: str, vcpus: float, region: str) -> str:
    """The AWS CLI command that asks for the quota `code` to become `vcpus`."""
    return (
        f"aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {code} "
        f"--desired-value {vcpus:g} --region {region}"
    )


def quota_message(
    code: str,
    *,
    instance_type: str,
    market: str,
    region: str,
    vcpus: int | None,
    quota: QuotaValue | None = None,
) -> str:
    """One actionable line for a quota refusal: which quota, its code, its current value, and the command
    that raises it to the current value plus the `vcpus` this launch needs."""
    name, qcode = quota_for(instance_type, market)
    where = f"{market} {instance_type} in {region}"
    need = vcpus or 0
    have = quota.vcpus if quota is not None else None
    if have is not None and need:
        target = have + need
        want = f" from {have:g} to at least {target:g} vCPUs ({have:g} now + {need} for this {instance_type})"
    elif need:
        target = None
        want = f" to your current quota + {need} vCPUs (the current value could not be read)"
    else:
        target, want = None, ""
    head = f"{code}: the vCPU quota for {where} is exhausted; raise '{name}'"
    if qcode is None:
        return f"{head}{want} in Service Quotas (EC2)"
    how = (
        increase_command(qcode, target, region)
        if target is not None
        else f"`aws service-quotas get-service-quota --service-code ec2 --quota-code {qcode} "
        f"--region {region}` shows it, then request-service-quota-increase"
    )
    return f"{head} (Service Quotas code {qcode}){want}: {how}"
