"""What a launch would do, asked of AWS and priced, with nothing created: the plan phase's cloud calls.

For each instance-type candidate: what EC2 says it is (types outside the bundled catalog included), the
zones that both offer it and have a usable subnet of the stack's network, the on-demand price (bundled
table, else the AWS Price List API; None: "price unknown") and, for spot, the current price in each
zone. Launch tries the zones in the order given here: for spot, the cheapest zone first (zones without
a price history last), so the spot price a plan shows is the price of the zone launch tries first. No
MaxPrice is sent unless the stack sets max_price: AWS then caps spot at the on-demand price of the
zone's region.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from ec2dbn.aws import bakes, images, instances, keys, network, offerings, price_list, vpc
from ec2dbn.aws.prices import spot_price, spot_prices_by_zone
from ec2dbn.aws.session import Aws
from ec2dbn.aws.tags import tag_specs
from ec2dbn.errors import ConfigError, Ec2dbnError
from ec2dbn.events import NullReporter, Reporter
from ec2dbn.spec import catalog
from ec2dbn.spec.catalog import Price
from ec2dbn.spec.stack import Stack


@dataclass
class CandidatePlan:
    """One instance type the stack may get. Prices USD/hour; `zones` in the order launch tries them;
    `spot` is the current spot price in zones[0]; `on_demand` None when neither the bundled table nor the
    Price List API has a price for it."""

    instance_type: str
    zones: list[str]
    spec: catalog.InstanceType
    on_demand: Price | None
    spot: Price | None
    max_price: float | None
    zone_spot: dict[str, Price] = field(default_factory=dict)

    @property
    def vcpus(self) -> int:
        return self.spec.vcpus

    @property
    def gpu(self) -> str:
        return f"{self.spec.gpu_count}x {self.spec.gpu_model}" if self.spec.gpu_count else "no GPU"


@dataclass
class Plan:
    """What `launch` would do: validated stack, resolved image and network, candidates with prices,
    markets to try."""

    stack: Stack
    cidr: str
    image: images.Image
    markets: list[str]
    candidates: list[CandidatePlan]
    network: vpc.Network
    notes: list[str] = field(default_factory=list)
    checks: list[tuple[str, str]] = field(default_factory=list)

    @property
    def region(self) -> str:
        return self.stack.region

    @property
    def hourly(self) -> Price | None:
        """The expected price of the first choice: the spot price of the zone tried first (when within
        max_price), else spot's upper bound (max_price, or the on-demand price that caps spot), or the
        on-demand price; None when nothing is known."""
        first = self.candidates[0]
        if self.markets[0] != "spot":
            return first.on_demand
        if first.spot is not None and (first.max_price is None or first.spot.usd_per_hour <= first.max_price):
            return first.spot
        if first.max_price is not None:
            date = first.on_demand.date if first.on_demand else catalog.catalog_date()
            return Price(
                first.max_price, "the stack's spot max_price (upper bound)", date, self.region, "spot"
            )
        if first.on_demand is None:
            return None
        od = first.on_demand
        return Price(
            od.usd_per_hour, f"spot upper bound: the on-demand price, {od.source}", od.date, od.region, "spot"
        )

    @property
    def max_cost_usd(self) -> float | None:
        """The most the first choice can cost if left to its self-terminating deadline (None: unknown)."""
        first = self.candidates[0]
        worst = first.on_demand.usd_per_hour if first.on_demand else None
        if self.markets[0] == "spot" and first.max_price is not None:
            fallback = worst if "on-demand" in self.markets and worst is not None else 0.0
            worst = max(first.max_price, fallback)
        return None if worst is None else worst * self.stack.lifetime_minutes / 60


def plan(
    stack: Stack,
    *,
    cidr: str,
    bake_name: bakes.BakeName | None = None,
    reporter: Reporter | None = None,
    avoid_zones: Iterable[str] = (),
) -> Plan:
    """Validate the stack against the region and price it. Creates nothing.

    bake_name: the bake's hash for a base image id, handed down (a stack with `bake: auto` or
    `image: baked` needs it; ec2dbn.stack.lifecycle.plan_stack passes it).

    Raises ConfigError when a candidate is unknown to EC2 or retired, none is offered where the stack has
    subnets (naming where it is), the network or image is missing, or the image is larger than volume_gb;
    CloudError/CredentialsError for AWS trouble.
    """
    reporter = reporter or NullReporter()
    aws = Aws(stack.region)
    facts = offerings.describe_types(aws, stack.candidates)
    specs = {t: facts[t].instance_type() for t in stack.candidates if t in facts}
    zones = offerings.check_offered(aws, stack.candidates)
    net = vpc.resolve(aws, vpc_id=stack.vpc_id, subnet_ids=stack.subnet_ids, subnet_tags=stack.subnet_tags)
    image = bakes.choose(stack, images.resolve(aws, stack.source_image), bake_name, reporter)
    if image.root_size_gb and stack.volume_gb < image.root_size_gb:
        raise ConfigError(
            f"volume_gb {stack.volume_gb} is smaller than image {image.image_id}'s "
            f"{image.root_size_gb} GiB root snapshot"
        )
    markets: list[str] = [str(stack.market)]
    if stack.market == "spot" and stack.fallback == "on-demand":
        markets.append("on-demand")
    notes: list[str] = []
    cands: list[CandidatePlan] = []
    for t in stack.candidates:
        usable = _usable_zones(t, zones.get(t, []), stack, net, notes)
        if not usable or t not in specs:
            continue
        if image.architecture not in facts[t].architectures:
            notes.append(
                f"{t} skipped: it runs {'/'.join(facts[t].architectures)}, "
                f"image {image.image_id} is {image.architecture}"
            )
            continue
        zone_spot = _zone_spot_prices(aws, t) if "spot" in markets else {}
        order = _zone_order(usable, zone_spot, avoid_zones)
        spot = zone_spot.get(order[0])
        if spot is not None and stack.max_price is not None and spot.usd_per_hour > stack.max_price:
            notes.append(
                f"{t}: spot now ${spot.usd_per_hour:.4f}/h is above max_price ${stack.max_price:.4f}/h"
            )
        od = price_list.on_demand(t, stack.region)
        if od is None:
            notes.append(
                f"{t}: price unknown (not in ec2dbn's bundled price table, and the AWS Price List API "
                "did not answer)"
            )
        cands.append(CandidatePlan(t, order, specs[t], od, spot, stack.max_price, zone_spot))
    if not cands:
        raise ConfigError(f"no instance_type candidate can run here: {'; '.join(notes)}")
    for n in notes:
        reporter.warn(n)
    return Plan(stack, cidr, image, markets, cands, net, notes=notes)


def _usable_zones(t: str, offered: list[str], stack: Stack, net: vpc.Network, notes: list[str]) -> list[str]:
    """The zones to try for `t`: offered, allowed by the stack, with a subnet; the rest explained."""
    wanted = stack.availability_zones
    tz = [z for z in wanted if z in offered] if wanted else list(offered)
    if not tz:
        notes.append(f"{t} skipped: not offered in {', '.join(wanted) if wanted else stack.region}")
        return []
    usable = [z for z in tz if z in net.subnets]
    if not usable:
        notes.append(f"{t} skipped: {net.source} has no usable subnet in {', '.join(tz)}")
    elif len(usable) < len(tz):
        gone = ", ".join(z for z in tz if z not in net.subnets)
        notes.append(f"{t}: skipping {gone} ({net.source} has no usable subnet there)")
    return usable


def _zone_order(zones: list[str], zone_spot: dict[str, Price], avoid: Iterable[str]) -> list[str]:
    """Cheapest spot zone first (zones without a price after, by name); avoided zones last."""
    avoided = set(avoid)
    ranked = sorted(zones, key=lambda z: (zone_spot[z].usd_per_hour if z in zone_spot else math.inf, z))
    return [z for z in ranked if z not in avoided] + [z for z in ranked if z in avoided]


def _zone_spot_prices(aws: Aws, instance_type: str) -> dict[str, Price]:
    """Current spot price per zone; empty when unknown (display and ordering only)."""
    try:
        return spot_prices_by_zone(aws.ec2, instance_type, aws.region)
    except Ec2dbnError:
        return {}


def instance_spec(region: str, instance_type: str) -> catalog.InstanceType:
    """What `instance_type` is: the catalog's entry, else what EC2 describes (for a running instance)."""
    try:
        return catalog.lookup(instance_type)
    except ConfigError:
        facts = offerings.describe_types(Aws(region), [instance_type])
        return facts[instance_type].instance_type()


#: A dry run's outcome that is neither allowed nor refused starts with this (see `refused`).
SKIPPED = "skipped: "
NO_GROUP_YET = (
    SKIPPED + "the security group does not exist until launch creates it; without one EC2 would judge the "
    "VPC's default group, which ec2dbn never uses"
)


def refused(checks: Iterable[tuple[str, str]]) -> bool:
    """Whether any dry run was refused (a skipped one is not)."""
    return any(outcome != "allowed" and not outcome.startswith(SKIPPED) for _, outcome in checks)


def dry_run(p: Plan, *, reporter: Reporter | None = None) -> list[tuple[str, str]]:
    """EC2's DryRun permission checks for everything launch would create: (what, 'allowed' | why not |
    'skipped: why'). A DryRun is authorized exactly like the real call, so each is sent as launch sends
    it: tagged at creation. RunInstances is checked only once the stack's security group exists (it names
    the group; see NO_GROUP_YET)."""
    aws = Aws(p.region)
    stack = p.stack
    vpc_id = p.network.vpc_id
    checks: list[tuple[str, str]] = []
    if keys.find(aws, stack.key_name) is None:
        params = {
            "KeyName": stack.key_name,
            "KeyType": "ed25519",
            "TagSpecifications": tag_specs(["key-pair"], stack.name),
        }
        checks.append(("create key pair", instances.dry_run(aws, params, "create_key_pair")))
    existing_sg = network.find(aws, stack.name, vpc_id)
    if not existing_sg:
        params = {
            "GroupName": stack.key_name,
            "Description": "ec2dbn dry run",
            "VpcId": vpc_id,
            "TagSpecifications": tag_specs(["security-group"], stack.name),
        }
        checks.append(("create security group", instances.dry_run(aws, params, "create_security_group")))
    spec = instances.LaunchSpec(
        stack=stack.name,
        image_id=p.image.image_id,
        root_device_name=p.image.root_device_name,
        volume_gb=stack.volume_gb,
        key_name=stack.key_name if not any(c[0] == "create key pair" for c in checks) else None,
        security_group_id=existing_sg[0]["GroupId"] if existing_sg else None,
        user_data="#cloud-config\n",
        user_tags=stack.tags,
        subnets=p.network.subnets,
    )
    first = p.candidates[0]
    for market in p.markets:
        if not existing_sg:
            checks.append((f"run {market} {first.instance_type}", NO_GROUP_YET))
            continue
        params = instances.run_request(spec, first.instance_type, first.zones[0], market, first.max_price)
        params.pop("ClientToken")
        checks.append(
            (f"run {market} {first.instance_type}", instances.dry_run(aws, params, "run_instances"))
        )
    p.checks = checks
    return checks


def prices(
    region: str, instance_type: str, market: str, zone: str | None, max_price: float | None
) -> tuple[Price | None, Price | None]:
    """(price paid per hour, on-demand price) for an instance, best effort for spot; None: unknown."""
    od = price_list.on_demand(instance_type, region)
    if market != "spot":
        return od, od
    try:
        found = spot_price(Aws(region).ec2, instance_type, zone or region)
    except Ec2dbnError:
        found = None
    if found is not None:
        return found, od
    if max_price is not None:
        date = od.date if od else catalog.catalog_date()
        return Price(
            max_price, "the stack's spot max_price (upper bound; no spot price history)", date, region, "spot"
        ), od
    if od is None:
        return None, None
    return Price(
        od.usd_per_hour,
        "spot upper bound: the on-demand price (no spot price history)",
        od.date,
        region,
        "spot",
    ), od
