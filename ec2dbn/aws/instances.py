"""Instances: where a type is offered, running one with AZ / candidate / market fallback, waiting, ending.

The fallback chain, in order: InsufficientInstanceCapacity, or a zone that cannot host the launch (the
type is not offered there after all: Unsupported; its subnet is gone or full), moves to the next
availability zone, then to the next instance-type candidate; a quota or spot-price refusal skips the rest
of that candidate's zones; when the spot market is exhausted and the stack allows it, the whole chain runs
again on-demand. Anything else (bad parameters, permissions) stops at once: retrying elsewhere would not
help. One refusal is waited out instead: EC2 does not see an instance profile IAM made seconds ago
(IAM is eventually consistent), so that launch is retried in place for up to PROFILE_WAIT.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError, WaiterError

from ec2dbn.aws import quotas
from ec2dbn.aws.errors import (
    CAPACITY_CODES,
    QUOTA_CODES,
    SPOT_PRICE_CODES,
    ZONE_CODES,
    CapacityError,
    QuotaError,
    SpotPriceError,
    aws_errors,
    error_code,
    profile_not_seen,
    translate,
)
from ec2dbn.aws.session import Aws
from ec2dbn.aws.tags import MARKET_TAG, TEARDOWN_TAG, as_dict, tag_specs
from ec2dbn.errors import CloudError
from ec2dbn.events import NullReporter, Reporter

#: How long a launch naming a new instance profile is retried while EC2 does not see it yet, and the pause
#: between tries (seconds). IAM changes usually reach EC2 within seconds.
PROFILE_WAIT = (60.0, 3.0)
#: Waiter pacing (seconds between polls, polls): 5 min to reach running, 10 min to terminate.
RUNNING_WAIT = (5, 60)
TERMINATED_WAIT = (5, 120)


@dataclass(frozen=True)
class InstanceRecord:
    """One instance as EC2 describes it, the one instance record of aws/ (describe, launch, a fleet's
    answer: a fleet's instance is `pending` with what CreateFleet said). `tags` is a plain dict;
    `launched_at` is UTC."""

    instance_id: str
    instance_type: str
    state: str
    availability_zone: str | None = None
    public_ip: str | None = None
    public_dns: str | None = None
    image_id: str | None = None
    launched_at: datetime | None = None
    market: str = "on-demand"
    tags: Mapping[str, str] = field(default_factory=dict)
    #: The name of the instance profile it runs with (None: none): a run store needs ec2dbn's.
    instance_profile: str | None = None

    @classmethod
    def from_ec2(cls, inst: Mapping[str, Any]) -> InstanceRecord:
        tags = as_dict(inst.get("Tags"))
        lifecycle = "spot" if inst.get("InstanceLifecycle") == "spot" else "on-demand"
        launch_time = inst.get("LaunchTime")
        return cls(
            instance_id=str(inst["InstanceId"]),
            instance_type=str(inst.get("InstanceType", "?")),
            state=str(inst.get("State", {}).get("Name", "unknown")),
            availability_zone=inst.get("Placement", {}).get("AvailabilityZone"),
            public_ip=inst.get("PublicIpAddress") or None,
            public_dns=inst.get("PublicDnsName") or None,
            image_id=inst.get("ImageId"),
            launched_at=launch_time if isinstance(launch_time, datetime) else None,
            market=tags.get(MARKET_TAG) or lifecycle,
            tags=tags,
            instance_profile=_profile_name(inst.get("IamInstanceProfile")),
        )

    @property
    def torn_down(self) -> bool:
        """`ec2dbn teardown` marked it before terminating it: a deliberate end, not a loss."""
        return TEARDOWN_TAG in self.tags


def _profile_name(profile: Any) -> str | None:
    """`arn:aws:iam::123456789012:instance-profile/ec2dbn/NAME` → NAME (EC2 describes the profile by ARN)."""
    arn = profile.get("Arn") if isinstance(profile, Mapping) else None
    return str(arn).rsplit("/", 1)[-1] if arn else None


@dataclass(frozen=True)
class Candidate:
    """One instance type to try, in the zones (ordered) that offer it. `max_price` USD/h (spot only)."""

    instance_type: str
    zones: list[str]
    vcpus: int | None = None
    max_price: float | None = None


@dataclass(frozen=True)
class LaunchSpec:
    """Everything run_instances needs apart from type, zone and market."""

    stack: str
    image_id: str
    root_device_name: str
    volume_gb: int
    key_name: str | None
    security_group_id: str | None
    user_data: str
    instance_tags: dict[str, str] = field(default_factory=dict)
    user_tags: dict[str, str] = field(default_factory=dict)
    #: zone -> subnet the instance goes into there (ec2dbn.aws.vpc); empty: EC2's default subnet.
    subnets: Mapping[str, str] = field(default_factory=dict)
    #: The instance profile whose role gives the instance its credentials (ec2dbn.aws.run_role).
    instance_profile: str | None = None


@dataclass(frozen=True)
class Attempt:
    """One run_instances try and how EC2 answered ('ok' or its error code)."""

    instance_type: str
    zone: str
    market: str
    outcome: str
    message: str = ""


def secure_settings(spec: LaunchSpec) -> dict[str, Any]:
    """What every ec2dbn instance is launched with, by run_instances or a fleet's launch template.

    IMDSv2 only (HttpTokens=required), an encrypted gp3 root volume deleted with the instance, OS shutdown
    = terminate (so the user-data deadline ends billing), the stack's key pair and security group.
    `UserData` is plain text here (run_instances encodes it; a launch template wants it in base64).
    """
    params: dict[str, Any] = {
        "ImageId": spec.image_id,
        "UserData": spec.user_data,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 1,
        },
        "BlockDeviceMappings": [
            {
                "DeviceName": spec.root_device_name,
                "Ebs": {
                    "VolumeSize": spec.volume_gb,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
    }
    if spec.key_name:
        params["KeyName"] = spec.key_name
    if spec.security_group_id:
        params["SecurityGroupIds"] = [spec.security_group_id]
    if spec.instance_profile:
        params["IamInstanceProfile"] = {"Name": spec.instance_profile}
    return params


def run_request(
    spec: LaunchSpec, instance_type: str, zone: str | None, market: str, max_price: float | None
) -> dict[str, Any]:
    """The run_instances parameters for one attempt: secure by construction (`secure_settings`), in the
    zone's subnet when the stack names subnets, and every resource tagged at creation."""
    resources = ["instance", "volume"] + (["spot-instances-request"] if market == "spot" else [])
    tags = tag_specs(resources, spec.stack, spec.user_tags)
    extra = [{"Key": k, "Value": v} for k, v in {**spec.instance_tags, MARKET_TAG: market}.items()]
    tags[0] = {"ResourceType": "instance", "Tags": tags[0]["Tags"] + extra}
    params: dict[str, Any] = {
        **secure_settings(spec),
        "InstanceType": instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "TagSpecifications": tags,
        # Same token on botocore's own retries (idempotent), new one per fallback attempt.
        "ClientToken": f"ec2dbn-{uuid.uuid4().hex}",  # EC2 allows 64 characters
    }
    if zone:
        params["Placement"] = {"AvailabilityZone": zone}
    subnet = spec.subnets.get(zone) if zone else None
    if subnet:  # the chosen subnet, and a public IP whatever the subnet's MapPublicIpOnLaunch says
        nic: dict[str, Any] = {
            "DeviceIndex": 0,
            "SubnetId": subnet,
            "AssociatePublicIpAddress": True,
            "DeleteOnTermination": True,
        }
        groups = params.pop("SecurityGroupIds", None)  # EC2 wants them on the interface instead
        if groups:
            nic["Groups"] = groups
        params["NetworkInterfaces"] = [nic]
    if market == "spot":
        options: dict[str, Any] = {
            "SpotInstanceType": "one-time",
            "InstanceInterruptionBehavior": "terminate",
        }
        if max_price is not None:
            options["MaxPrice"] = f"{max_price:.5f}".rstrip("0").rstrip(".")
        params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": options}
    return params


def dry_run(aws: Aws, params: dict[str, Any], action: str) -> str:
    """Ask EC2 whether `action` would be allowed (DryRun=True): 'allowed' or the refusal as one line."""
    method = getattr(aws.ec2, action)
    try:
        method(**params, DryRun=True)
    except ClientError as exc:
        code = error_code(exc)
        if code == "DryRunOperation":
            return "allowed"
        return str(translate(exc, region=aws.region, action=action))
    except Exception as exc:
        raise translate(exc, region=aws.region, action=action) from exc
    return "allowed"


@dataclass
class LaunchResult:
    instance: dict[str, Any]
    market: str
    attempts: list[Attempt]


def _order_zones(zones: Iterable[str], avoid: Iterable[str]) -> list[str]:
    avoid = set(avoid)
    zs = list(zones)
    return [z for z in zs if z not in avoid] + [z for z in zs if z in avoid]


def launch_with_fallback(
    aws: Aws,
    spec: LaunchSpec,
    candidates: Sequence[Candidate],
    markets: Sequence[str],
    *,
    avoid_zones: Iterable[str] = (),
    reporter: Reporter | None = None,
) -> LaunchResult:
    """Run one instance, walking zones, then candidates, then markets. Raises the most useful error
    (QuotaError naming the quota code, SpotPriceError, CapacityError) when nothing could be launched."""
    reporter = reporter or NullReporter()
    avoid = list(avoid_zones)
    attempts: list[Attempt] = []
    quota_lines: list[str] = []
    for m_index, market in enumerate(markets):
        for cand in candidates:
            for zone in _order_zones(cand.zones, avoid):
                params = run_request(
                    spec, cand.instance_type, zone, market, cand.max_price if market == "spot" else None
                )
                try:
                    resp = _run_instance(aws, params, reporter)
                except ClientError as exc:
                    code = error_code(exc)
                    msg = " ".join(str(exc.response.get("Error", {}).get("Message", "")).split())
                    attempts.append(Attempt(cand.instance_type, zone, market, code, msg))
                    if code in CAPACITY_CODES:
                        reporter.step(
                            f"no {market} capacity for {cand.instance_type} in {zone} ({code}); trying on"
                        )
                        continue
                    if code in ZONE_CODES:
                        reporter.step(f"{zone} cannot take {cand.instance_type} ({code}: {msg}); trying on")
                        continue
                    if code in QUOTA_CODES:
                        line = quotas.quota_message(
                            code,
                            instance_type=cand.instance_type,
                            market=market,
                            region=aws.region,
                            vcpus=cand.vcpus,
                            quota=quotas.current(aws, cand.instance_type, market),
                        )
                        quota_lines.append(line)
                        reporter.warn(line)
                        break
                    if code in SPOT_PRICE_CODES and market == "spot":
                        reporter.warn(f"spot {cand.instance_type}: {code}: {msg}")
                        break
                    raise translate(
                        exc, region=aws.region, action=f"launching {cand.instance_type} in {zone}"
                    ) from exc
                except Exception as exc:
                    raise translate(
                        exc, region=aws.region, action=f"launching {cand.instance_type} in {zone}"
                    ) from exc
                attempts.append(Attempt(cand.instance_type, zone, market, "ok"))
                return LaunchResult(resp["Instances"][0], market, attempts)
        if m_index + 1 < len(markets):
            reporter.warn(
                f"no {market} instance could be launched ({_summary(attempts, market)}); "
                f"falling back to {markets[m_index + 1]} as the stack allows"
            )
    raise _final_error(aws.region, attempts, quota_lines, markets)


def _run_instance(aws: Aws, params: dict[str, Any], reporter: Reporter) -> dict[str, Any]:
    """RunInstances, retried in place for up to PROFILE_WAIT while EC2 does not see the instance profile."""
    total, pause = PROFILE_WAIT
    deadline, said = time.monotonic() + total, False
    while True:
        try:
            return dict(aws.ec2.run_instances(**params))
        except ClientError as exc:
            if (
                not params.get("IamInstanceProfile")
                or not profile_not_seen(exc)
                or time.monotonic() >= deadline
            ):
                raise
            if not said:
                name = params["IamInstanceProfile"].get("Name")
                reporter.step(
                    f"EC2 does not see instance profile {name} yet; retrying for up to {total:.0f} s"
                )
                said = True
            time.sleep(pause)
            params = {**params, "ClientToken": f"ec2dbn-{uuid.uuid4().hex}"}  # a new request, not a replay


def _summary(attempts: Sequence[Attempt], market: str | None = None) -> str:
    """'g4dn.xlarge@us-east-1a: InsufficientInstanceCapacity, ...' grouped by type and outcome."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for a in attempts:
        if market is None or a.market == market:
            groups.setdefault((a.market, a.instance_type, a.outcome), []).append(a.zone)
    return "; ".join(f"{m} {t} in {','.join(z)}: {o}" for (m, t, o), z in groups.items())


def _final_error(
    region: str, attempts: Sequence[Attempt], quota_lines: Sequence[str], markets: Sequence[str]
) -> CloudError:
    if not attempts:
        return CapacityError(f"nothing to try in {region}: no candidate is offered in any allowed zone")
    if quota_lines:
        extra = f" (also: {' | '.join(quota_lines[:-1])})" if len(quota_lines) > 1 else ""
        return QuotaError(quota_lines[-1] + extra)
    tried = _summary(attempts)
    if all(a.outcome in ZONE_CODES for a in attempts):
        return CapacityError(
            f"no zone in {region} could take the launch: tried {tried}; check the stack's subnets "
            "(`ec2dbn check`), add instance_type candidates or use --region"
        )
    if all(a.outcome in SPOT_PRICE_CODES for a in attempts):
        return SpotPriceError(
            f"the spot price is above max_price in {region} ({tried}); "
            "raise max_price, or allow fallback: on-demand"
        )
    hint = "" if "on-demand" in markets else "; allow `fallback: on-demand` or pass --on-demand"
    return CapacityError(
        f"no capacity in {region}: tried {tried}; "
        f"retry later, add instance_type candidates or use --region{hint}"
    )


def describe(aws: Aws, instance_id: str) -> dict[str, Any] | None:
    """The instance as EC2 sees it now, or None if EC2 does not know it (yet)."""
    try:
        resp = aws.ec2.describe_instances(InstanceIds=[instance_id])
    except ClientError as exc:
        if error_code(exc) == "InvalidInstanceID.NotFound":
            return None
        raise translate(exc, region=aws.region, action=f"describing {instance_id}") from exc
    for r in resp["Reservations"]:
        for i in r["Instances"]:
            return dict(i)
    return None


def wait_running(aws: Aws, instance_id: str, *, reporter: Reporter | None = None) -> dict[str, Any]:
    """Block (with progress) until the instance is running; CloudError if it ends up terminated instead."""
    reporter = reporter or NullReporter()
    delay, attempts = RUNNING_WAIT
    with reporter.waiting(f"waiting for {instance_id} to be running"):
        try:
            aws.ec2.get_waiter("instance_running").wait(
                InstanceIds=[instance_id], WaiterConfig={"Delay": delay, "MaxAttempts": attempts}
            )
        except WaiterError:
            inst = describe(aws, instance_id) or {}
            st = inst.get("State", {}).get("Name", "unknown")
            reason = inst.get("StateReason", {}).get("Message") or inst.get("StateTransitionReason") or ""
            if st in ("shutting-down", "terminated"):
                raise InstanceGone(
                    f"{instance_id} went to {st} before running: {reason or 'no reason given'}"
                ) from None
            raise CloudError(
                f"{instance_id} is still {st} after {delay * attempts}s; see `ec2dbn status`, or tear down"
            ) from None
        except Exception as exc:
            raise translate(exc, region=aws.region, action=f"waiting for {instance_id}") from exc
    running = describe(aws, instance_id)
    if running is None:
        raise CloudError(f"{instance_id} vanished while starting")
    return running


class InstanceGone(CloudError):
    """The instance terminated before it ever ran (e.g. spot capacity taken back at once)."""


def terminate(aws: Aws, instance_ids: Sequence[str]) -> None:
    if not instance_ids:
        return
    with aws_errors(aws.region, f"terminating {', '.join(instance_ids)}"):
        aws.ec2.terminate_instances(InstanceIds=list(instance_ids))


def cancel_spot_requests(aws: Aws, request_ids: Sequence[str]) -> None:
    if not request_ids:
        return
    with aws_errors(aws.region, f"cancelling spot requests {', '.join(request_ids)}"):
        aws.ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=list(request_ids))


def wait_terminated(aws: Aws, instance_ids: Sequence[str], *, reporter: Reporter | None = None) -> None:
    """Block (with progress) until every instance is terminated."""
    if not instance_ids:
        return
    reporter = reporter or NullReporter()
    delay, attempts = TERMINATED_WAIT
    with reporter.waiting(f"waiting for {', '.join(instance_ids)} to terminate"):
        try:
            aws.ec2.get_waiter("instance_terminated").wait(
                InstanceIds=list(instance_ids), WaiterConfig={"Delay": delay, "MaxAttempts": attempts}
            )
        except WaiterError:
            raise CloudError(
                f"{', '.join(instance_ids)} not terminated after {delay * attempts}s; rerun `ec2dbn teardown`"
            ) from None
        except Exception as exc:
            raise translate(exc, region=aws.region, action="waiting for termination") from exc
