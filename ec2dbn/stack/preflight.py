"""Can this stack launch, from these credentials, in this region? `ec2dbn check`, like `sky check`.

Each check asks AWS one thing and ends in a `Check`: ok, fail (with the fix), warn (worth knowing, not in
the way) or skip (an earlier failure made it meaningless). A failure is `blocking` when the stack cannot
launch because of it (a spot quota of 0 is not, while on-demand can take over). Nothing is created.

`require_account` is the cheap part — credentials, then the region — that `train`, `plan` and `launch`
run before anything else, so that the first error a user sees is its cause.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ec2dbn.aws import account, images, offerings, price_list, quotas, vpc
from ec2dbn.aws.errors import CREDENTIALS_HINT, SPOT_ROLE_FIX
from ec2dbn.aws.prices import spot_prices_by_zone
from ec2dbn.aws.session import Aws
from ec2dbn.errors import CredentialsError, Ec2dbnError
from ec2dbn.spec import catalog
from ec2dbn.spec.cost import format_usd
from ec2dbn.spec.stack import Stack

if TYPE_CHECKING:
    from ec2dbn.aws.store import StoreRef


@dataclass
class Check:
    """One line of `ec2dbn check`. `status`: ok | fail | warn | skip."""

    name: str
    status: str
    detail: str
    fix: str = ""
    blocking: bool = True


@dataclass
class CheckReport:
    stack: str
    region: str
    checks: list[Check] = field(default_factory=list)

    @property
    def launchable(self) -> bool:
        return not any(c.status == "fail" and c.blocking for c in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "region": self.region,
            "launchable": self.launchable,
            "checks": [asdict(c) for c in self.checks],
        }


def require_account(region: str) -> account.Identity:
    """Credentials, then the region: raises their one-line error (CredentialsError, ConfigError,
    CloudError) before any other call is made."""
    aws = Aws(region)
    who = account.identity(aws)
    account.zones(aws)
    return who


def run(stack: Stack) -> CheckReport:
    """Every check, in the order a launch needs them."""
    report = CheckReport(stack.name, stack.region)
    aws = Aws(stack.region)
    checks = report.checks

    def skip_rest(after: str) -> CheckReport:
        rest = (
            "instance types",
            "quotas",
            "network",
            "zones",
            "image",
            "spot price",
            "service-linked role",
            "run store",
            "role boundary",
        )
        for name in rest:
            checks.append(Check(name, "skip", f"skipped: {after} failed"))
        return report

    try:
        who = account.identity(aws)
        checks.append(Check("credentials", "ok", f"account {who.account} as {who.arn}"))
    except CredentialsError:
        raise  # no credentials, expired or rejected: the one line every verb gives (exit 2), not a table
    except Ec2dbnError as exc:
        checks.append(Check("credentials", "fail", str(exc), CREDENTIALS_HINT))
        checks.append(Check("region", "skip", "skipped: credentials failed"))
        return skip_rest("credentials")
    try:
        zones = account.zones(aws)
        shown = ", ".join(z.removeprefix(stack.region) for z in zones)
        checks.append(Check("region", "ok", f"{stack.region}: {len(zones)} zones ({shown})"))
    except Ec2dbnError as exc:
        fix = "pass --region with a region enabled for this account (e.g. us-east-1)"
        checks.append(Check("region", "fail", str(exc), fix))
        return skip_rest("region")
    specs = _types(aws, stack, checks)
    _quotas(aws, stack, specs, checks)
    net = _network(aws, stack, checks)
    usable = _zones(aws, stack, net, checks)
    _image(aws, stack, checks)
    _spot(aws, stack, usable, checks)
    _spot_role(aws, stack, checks)
    _run_store(stack, checks)
    return report


def _run_store(stack: Stack, checks: list[Check]) -> None:
    """Where runs keep their files (ec2dbn's bucket, there or made on first use, or the stack's own) and the
    permissions boundary their instances' role carries (an administrator makes it once), which must let
    instances write there. Both skipped with `store: none`."""
    from ec2dbn import aws as face

    if not stack.has_store:
        checks.append(Check("run store", "skip", "store: none (runs keep their files on this machine only)"))
        checks.append(Check("role boundary", "skip", "store: none (the instance gets no role)"))
        return
    named = None if stack.store == "auto" else face.parse_store_uri(stack.store)
    for name, row in (("run store", _store_row), ("role boundary", _boundary_row)):
        try:
            checks.append(row(stack.region, named))
        except Ec2dbnError as exc:
            fix = "attach the policy `ec2dbn iam-policy` prints, or set `store: none` in the stack"
            checks.append(Check(name, "warn", str(exc), fix, blocking=False))


def _store_row(region: str, named: StoreRef | None) -> Check:
    from ec2dbn import aws as face

    ref, ready = face.store_status(region, named)
    if ready:
        return Check("run store", "ok", f"{ref.uri} exists")
    if named is None:
        return Check("run store", "ok", f"{ref.uri} is made by the first stored run")
    fix = "create the bucket, or use `store: auto` (ec2dbn's own) or `store: none`"
    return Check("run store", "fail", f"{ref.uri} does not exist", fix)


def _boundary_row(region: str, named: StoreRef | None) -> Check:
    from ec2dbn import aws as face

    arn, problem = face.boundary_status(region, named)
    if problem is None:
        return Check("role boundary", "ok", f"{arn} exists")
    hint = face.boundary_hint(arn.split(":")[1], named, arn if problem != "does not exist" else None)
    fix = f"an IAM administrator runs {hint}, or set `store: none` in the stack"
    return Check("role boundary", "fail", f"{arn} {problem}", fix)


def _spot_role(aws: Aws, stack: Stack, checks: list[Check]) -> None:
    """The Spot service-linked role: present, or what the first spot request needs to create it."""
    role = account.SPOT_ROLE
    if "spot" not in _markets(stack):
        checks.append(Check("service-linked role", "skip", "on-demand stack"))
        return
    try:
        found = account.spot_role(aws)
    except Ec2dbnError as exc:
        checks.append(Check("service-linked role", "warn", str(exc), SPOT_ROLE_FIX, blocking=False))
        return
    if found:
        checks.append(Check("service-linked role", "ok", f"{role} exists"))
    elif found is None:
        detail = f"could not tell whether {role} exists (iam:GetRole refused)"
        checks.append(Check("service-linked role", "warn", detail, SPOT_ROLE_FIX, blocking=False))
    else:
        detail = (
            f"{role} does not exist yet: the first spot request creates it, which needs "
            "iam:CreateServiceLinkedRole for spot.amazonaws.com (ec2dbn's policy grants exactly that)"
        )
        checks.append(Check("service-linked role", "warn", detail, SPOT_ROLE_FIX, blocking=False))


def _markets(stack: Stack) -> list[str]:
    markets = [str(stack.market)]
    if stack.market == "spot" and stack.fallback == "on-demand":
        markets.append("on-demand")
    return markets


def _types(aws: Aws, stack: Stack, checks: list[Check]) -> dict[str, catalog.InstanceType]:
    try:
        facts = offerings.describe_types(aws, stack.candidates)
        specs = {t: facts[t].instance_type() for t in stack.candidates if t in facts}
    except Ec2dbnError as exc:
        checks.append(
            Check("instance types", "fail", str(exc), "use a type EC2 offers (`ec2dbn catalog --gpu`)")
        )
        return {}
    for t, spec in specs.items():
        gpu = f"{spec.gpu_count}x {spec.gpu_model}" if spec.gpu_count else "no GPU"
        cc = f", compute capability {spec.gpu_compute_capability}" if spec.gpu_compute_capability else ""
        price = price_list.on_demand(t, stack.region)
        cost = f"{format_usd(price.usd_per_hour)}/h on-demand" if price else "price unknown"
        detail = f"{t}: {spec.vcpus} vCPUs, {spec.memory_gib:g} GiB, {gpu}{cc}; {cost}"
        checks.append(Check("instance types", "ok", detail))
    return specs


def _quotas(aws: Aws, stack: Stack, specs: dict[str, catalog.InstanceType], checks: list[Check]) -> None:
    first = next((specs[t] for t in stack.candidates if t in specs), None)
    if first is None:
        checks.append(Check("quotas", "skip", "skipped: no instance type to check"))
        return
    markets = _markets(stack)
    rows: list[tuple[str, Check]] = []
    for market in markets:
        q = quotas.current(aws, first.name, market)
        label = f"{q.name} ({q.code})" if q.code else q.name
        if q.vcpus is None:
            detail = f"{market}: {label} could not be read ({q.error})"
            fix = "see the EC2 quotas in the Service Quotas console"
            rows.append((market, Check("quotas", "warn", detail, fix, blocking=False)))
        elif q.vcpus >= first.vcpus:
            detail = f"{market}: {label} is {q.vcpus:g} vCPUs, {first.name} needs {first.vcpus}"
            rows.append((market, Check("quotas", "ok", detail)))
        else:
            detail = f"{market}: {label} is {q.vcpus:g} vCPUs, {first.name} needs {first.vcpus}"
            fix = quotas.increase_command(q.code or "?", q.vcpus + first.vcpus, aws.region)
            rows.append((market, Check("quotas", "fail", detail, fix)))
    usable = {m for m, c in rows if c.status != "fail"}
    for _market, check in rows:
        if check.status == "fail" and usable:  # another market in the chain can take the launch
            check.blocking = False
            check.detail += f" (launch uses {', '.join(sorted(usable))} instead)"
        checks.append(check)


def _network(aws: Aws, stack: Stack, checks: list[Check]) -> vpc.Network | None:
    try:
        net = vpc.resolve(
            aws, vpc_id=stack.vpc_id, subnet_ids=stack.subnet_ids, subnet_tags=stack.subnet_tags
        )
    except Ec2dbnError as exc:
        fix = (
            "add `subnet_ids: [subnet-...]` (or vpc_id / subnet_tags) to the stack, or "
            f"`aws ec2 create-default-vpc --region {aws.region}`"
        )
        checks.append(Check("network", "fail", str(exc), fix))
        return None
    shown = ", ".join(f"{z.removeprefix(aws.region)} {s}" for z, s in net.subnets.items())
    checks.append(Check("network", "ok", f"{net.source}: subnets {shown}; public IP requested at launch"))
    return net


def _zones(aws: Aws, stack: Stack, net: vpc.Network | None, checks: list[Check]) -> dict[str, list[str]]:
    if net is None:
        checks.append(Check("zones", "skip", "skipped: network failed"))
        return {}
    try:
        offered = offerings.offered_zones(aws, stack.candidates)
    except Ec2dbnError as exc:
        checks.append(Check("zones", "fail", str(exc)))
        return {}
    usable: dict[str, list[str]] = {}
    lines = []
    for t in stack.candidates:
        everywhere = offered.get(t, [])
        zones = [z for z in everywhere if not stack.availability_zones or z in stack.availability_zones]
        usable[t] = [z for z in zones if z in net.subnets]
        if usable[t]:
            lines.append(f"{t}: {', '.join(z.removeprefix(aws.region) for z in usable[t])}")
        elif zones:
            lines.append(f"{t}: offered in {', '.join(zones)}, none of which has a subnet of {net.source}")
        elif everywhere:
            lines.append(f"{t}: offered in {', '.join(everywhere)}, none in availability_zones")
        else:
            lines.append(f"{t}: not offered in {aws.region}")
    if any(usable.values()):
        checks.append(Check("zones", "ok", "; ".join(lines)))
    else:
        elsewhere = offerings.offered_regions(aws, stack.candidates[0])
        where = f"{stack.candidates[0]} is offered in {', '.join(elsewhere)}; " if elsewhere else ""
        fix = f"{where}use --region there, or add subnets in the zones that offer it"
        checks.append(Check("zones", "fail", "; ".join(lines), fix))
    return usable


def _image(aws: Aws, stack: Stack, checks: list[Check]) -> None:
    try:
        image = images.resolve(aws, stack.source_image)
    except Ec2dbnError as exc:
        fix = (
            "choose another alias (dlami-ubuntu22, ubuntu22, ubuntu24) or an ami- id of this region (--image)"
        )
        checks.append(Check("image", "fail", str(exc), fix))
        return
    detail = f"{stack.source_image} -> {image.image_id} {image.name}".rstrip()
    if image.root_size_gb and stack.volume_gb < image.root_size_gb:
        fix = f"set volume_gb to at least {image.root_size_gb}"
        checks.append(Check("image", "fail", f"{detail}: its root snapshot is {image.root_size_gb} GiB", fix))
        return
    checks.append(Check("image", "ok", detail))


def _spot(aws: Aws, stack: Stack, usable: dict[str, list[str]], checks: list[Check]) -> None:
    if stack.market != "spot":
        checks.append(Check("spot price", "skip", "on-demand stack"))
        return
    first = next((t for t in stack.candidates if usable.get(t)), None)
    if first is None:
        checks.append(Check("spot price", "skip", "skipped: no zone to launch in"))
        return
    try:
        by_zone = {
            z: p for z, p in spot_prices_by_zone(aws.ec2, first, aws.region).items() if z in usable[first]
        }
    except Ec2dbnError as exc:
        checks.append(Check("spot price", "warn", str(exc), blocking=False))
        return
    if not by_zone:
        detail = f"{first}: no spot price history in {', '.join(usable[first])}"
        checks.append(Check("spot price", "warn", detail, blocking=False))
        return
    zone, price = min(by_zone.items(), key=lambda zp: (zp[1].usd_per_hour, zp[0]))
    od = price_list.on_demand(first, stack.region)
    versus = f"; on-demand {format_usd(od.usd_per_hour)}/h" if od else ""
    detail = f"{first}: {format_usd(price.usd_per_hour)}/h in {zone} (cheapest zone, tried first){versus}"
    if stack.max_price is not None and price.usd_per_hour > stack.max_price:
        fix = "raise max_price, leave it out (spot then caps at on-demand), or allow fallback: on-demand"
        blocking = stack.fallback != "on-demand"
        checks.append(
            Check(
                "spot price",
                "fail",
                f"{detail}, above max_price {format_usd(stack.max_price)}/h",
                fix,
                blocking,
            )
        )
        return
    checks.append(Check("spot price", "ok", detail))
