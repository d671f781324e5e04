"""Network access to the instance: the caller's public IP and the security group that admits only it.

The security group allows exactly one inbound rule, TCP 22 from one CIDR (by default the caller's public
IP as /32), in the VPC the stack launches into (ec2dbn.aws.vpc). Outbound stays open (the instance
installs packages).
"""

from __future__ import annotations

import ipaddress
import os
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from ec2dbn.aws.errors import aws_errors, error_code, translate
from ec2dbn.aws.session import Aws
from ec2dbn.aws.tags import is_ours, stack_filters, tag_specs
from ec2dbn.errors import CloudError
from ec2dbn.events import NullReporter, Reporter

#: Overrides caller-IP discovery (offline machines, tests, or a known egress IP).
CALLER_IP_ENV = "EC2DBN_CALLER_IP"
CHECKIP_URL = "https://checkip.amazonaws.com"

#: Seconds between delete attempts while the group is still attached (DependencyViolation); the last
#: value repeats until the timeout.
SG_DELETE_BACKOFF: tuple[float, ...] = (1, 2, 4, 8, 15)
SG_DELETE_TIMEOUT_S = 300.0
_sleep: Callable[[float], None] = time.sleep

_RULE_DESCRIPTION = "ssh from the ec2dbn caller"


def caller_ip(timeout_s: float = 5.0) -> str:
    """This machine's public IP: $EC2DBN_CALLER_IP, else what checkip.amazonaws.com sees."""
    text = os.environ.get(CALLER_IP_ENV, "").strip()
    source = CALLER_IP_ENV
    if not text:
        source = CHECKIP_URL
        try:
            with urllib.request.urlopen(CHECKIP_URL, timeout=timeout_s) as resp:
                text = resp.read(64).decode("ascii", "replace").strip()
        except OSError as exc:
            raise CloudError(
                f"could not discover your public IP from {CHECKIP_URL} ({exc}); pass --ssh-cidr YOUR.IP/32"
            ) from None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise CloudError(f"{source} gave {text!r}, not an IP address; pass --ssh-cidr YOUR.IP/32") from None


def resolve_cidr(spec: str, reporter: Reporter | None = None) -> str:
    """The CIDR to admit on port 22: 'auto' -> caller IP as /32 (/128 for IPv6); explicit CIDRs as given.

    An explicit world-open CIDR (0.0.0.0/0, ::/0) is honoured, with a loud warning; 'auto' never opens it.
    """
    reporter = reporter or NullReporter()
    if spec == "auto":
        ip = ipaddress.ip_address(caller_ip())
        return f"{ip}/{ip.max_prefixlen}"
    net = ipaddress.ip_network(spec, strict=True)
    if net.prefixlen == 0:
        reporter.warn(
            f"SSH (port 22) will be open to the WHOLE INTERNET ({net}) because you asked for it; "
            "anyone can try to log in. Use --ssh-cidr YOUR.IP/32 (or 'auto') unless you really mean it"
        )
    return str(net)


@dataclass(frozen=True)
class SecurityGroup:
    group_id: str
    name: str
    cidr: str
    created: bool


def find(aws: Aws, stack: str | None, vpc_id: str | None = None) -> list[dict[str, Any]]:
    """ec2dbn's security groups (one stack's, or all when `stack` is None)."""
    filters = stack_filters(stack)
    if vpc_id:
        filters.append({"Name": "vpc-id", "Values": [vpc_id]})
    with aws_errors(aws.region, "listing security groups"):
        return list(aws.ec2.describe_security_groups(Filters=filters)["SecurityGroups"])


def _ssh_permission(cidr: str) -> dict[str, Any]:
    ranges_key, cidr_key = ("Ipv6Ranges", "CidrIpv6") if ":" in cidr else ("IpRanges", "CidrIp")
    return {
        "IpProtocol": "tcp",
        "FromPort": 22,
        "ToPort": 22,
        ranges_key: [{cidr_key: cidr, "Description": _RULE_DESCRIPTION}],
    }


def _rules(group: dict[str, Any]) -> list[tuple[dict[str, Any], str]]:
    """(permission to revoke, cidr) for every inbound CIDR rule, split one CIDR per rule."""
    out = []
    for perm in group.get("IpPermissions", []):
        base = {k: perm[k] for k in ("IpProtocol", "FromPort", "ToPort") if k in perm}
        for r in perm.get("IpRanges", []):
            out.append(({**base, "IpRanges": [{"CidrIp": r["CidrIp"]}]}, r["CidrIp"]))
        for r in perm.get("Ipv6Ranges", []):
            out.append(({**base, "Ipv6Ranges": [{"CidrIpv6": r["CidrIpv6"]}]}, r["CidrIpv6"]))
        for pair in perm.get("UserIdGroupPairs", []):
            out.append(({**base, "UserIdGroupPairs": [{"GroupId": pair["GroupId"]}]}, pair["GroupId"]))
        for pl in perm.get("PrefixListIds", []):
            out.append(
                ({**base, "PrefixListIds": [{"PrefixListId": pl["PrefixListId"]}]}, pl["PrefixListId"])
            )
    return out


def _reconcile(aws: Aws, group: dict[str, Any], cidr: str, reporter: Reporter) -> None:
    """Make the inbound rules exactly {tcp 22 from cidr}: the caller's IP may have changed since launch."""
    gid = group["GroupId"]
    have_ssh = False
    for perm, source in _rules(group):
        if (
            perm["IpProtocol"] == "tcp"
            and perm.get("FromPort") == 22
            and perm.get("ToPort") == 22
            and source == cidr
        ):
            have_ssh = True
            continue
        with aws_errors(aws.region, f"revoking an inbound rule of {gid}"):
            aws.ec2.revoke_security_group_ingress(GroupId=gid, IpPermissions=[perm])
        reporter.step(
            f"removed inbound rule {perm['IpProtocol']} {perm.get('FromPort', '')} from {source} on {gid}"
        )
    if not have_ssh:
        with aws_errors(aws.region, f"allowing ssh from {cidr} in {gid}"):
            aws.ec2.authorize_security_group_ingress(GroupId=gid, IpPermissions=[_ssh_permission(cidr)])
        reporter.step(f"security group {gid} allows TCP 22 from {cidr} only")


def ensure(
    aws: Aws, stack: str, name: str, cidr: str, vpc_id: str, *, reporter: Reporter | None = None
) -> SecurityGroup:
    """The stack's security group in `vpc_id`, created if missing, its ingress reconciled to `cidr`."""
    reporter = reporter or NullReporter()
    groups = find(aws, stack, vpc_id)
    created = False
    if groups:
        group = groups[0]
    else:
        with aws_errors(aws.region, f"looking up security group {name}"):
            clash = aws.ec2.describe_security_groups(
                Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
            )["SecurityGroups"]
        if clash and not is_ours(clash[0].get("Tags"), stack):
            raise CloudError(
                f"a security group named {name} exists in {vpc_id} "
                f"but was not created by ec2dbn for stack {stack}; "
                "delete or rename it, or launch with another --name"
            )
        with aws_errors(aws.region, f"creating security group {name}"):
            gid = aws.ec2.create_security_group(
                GroupName=name,
                Description=f"ec2dbn stack {stack}: ssh from one address only",
                VpcId=vpc_id,
                TagSpecifications=tag_specs(["security-group"], stack),
            )["GroupId"]
        group = {"GroupId": gid, "IpPermissions": []}
        created = True
        reporter.step(f"created security group {gid} ({name}) in {vpc_id}")
    try:
        _reconcile(aws, group, cidr, reporter)
    except BaseException:
        if created:
            delete(aws, group["GroupId"])
        raise
    return SecurityGroup(group["GroupId"], name, cidr, created)


def delete(
    aws: Aws, group_id: str, *, timeout_s: float | None = None, reporter: Reporter | None = None
) -> None:
    """Delete a security group, retrying DependencyViolation (an instance or ENI still holds it) with
    backoff until `timeout_s` (default SG_DELETE_TIMEOUT_S). Already-deleted groups are fine."""
    reporter = reporter or NullReporter()
    timeout = SG_DELETE_TIMEOUT_S if timeout_s is None else timeout_s
    start = time.monotonic()
    attempt = 0
    while True:
        try:
            aws.ec2.delete_security_group(GroupId=group_id)
            return
        except ClientError as exc:
            code = error_code(exc)
            if code == "InvalidGroup.NotFound":
                return
            if code != "DependencyViolation":
                raise translate(exc, region=aws.region, action=f"deleting security group {group_id}") from exc
            delay = SG_DELETE_BACKOFF[min(attempt, len(SG_DELETE_BACKOFF) - 1)]
            if time.monotonic() - start + delay > timeout:
                raise CloudError(
                    f"security group {group_id} is still in use after {timeout:.0f}s (DependencyViolation); "
                    "rerun `ec2dbn teardown` in a minute"
                ) from exc
            if attempt == 0:
                reporter.step(f"security group {group_id} still in use; retrying until its instance is gone")
            attempt += 1
            _sleep(delay)
        except Exception as exc:
            raise translate(exc, region=aws.region, action=f"deleting security group {group_id}") from exc
