"""Provisioning verbs keyed by a stack name: plan, launch, wait, describe, teardown (in the spirit of
SkyPilot's sky/provision API).

This layer only talks to AWS and returns plain records of what exists. It does not persist local state,
pin host keys, price runs or connect: `ec2dbn.stacks` does that with what these verbs return. Each verb
finds what exists by tags, so it is safe to re-run after any failure: `teardown` removes whatever is
tagged for the stack, even with the local state dir gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ec2dbn import catalog
from ec2dbn.aws import discovery, fleets, images, instances, keys, network, templates
from ec2dbn.aws.errors import aws_errors
from ec2dbn.aws.prices import spot_price
from ec2dbn.aws.session import Aws
from ec2dbn.aws.tags import MARKET_TAG, TEARDOWN_TAG, as_dict, is_ours, utc_stamp
from ec2dbn.catalog import Price
from ec2dbn.config import Stack
from ec2dbn.errors import CloudError, ConfigError, Ec2dbnError
from ec2dbn.events import NullReporter, Reporter

REUSABLE_STATES = ("pending", "running")


# --------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class InstanceRecord:
    """One instance as EC2 describes it. `tags` is a plain dict; `launched_at` is UTC."""

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
        )

    @property
    def torn_down(self) -> bool:
        """`ec2dbn teardown` marked it before terminating it: a deliberate end, not a loss."""
        return TEARDOWN_TAG in self.tags


# ---------------------------------------------------------------------------------------------- plan


@dataclass
class CandidatePlan:
    """One instance type the stack may get. Prices USD/hour; `zones` in the order they will be tried."""

    instance_type: str
    zones: list[str]
    vcpus: int
    gpu: str
    on_demand: Price
    spot: Price | None
    max_price: float | None


@dataclass
class Plan:
    """What `launch` would do: validated stack, resolved image, candidates with prices, markets to try."""

    stack: Stack
    cidr: str
    image: images.Image
    markets: list[str]
    candidates: list[CandidatePlan]
    notes: list[str] = field(default_factory=list)
    checks: list[tuple[str, str]] = field(default_factory=list)

    @property
    def region(self) -> str:
        return self.stack.region

    @property
    def hourly(self) -> Price:
        """The expected price of the first choice: current spot price (capped by max_price) or on-demand."""
        first = self.candidates[0]
        if self.markets[0] == "spot":
            if (
                first.spot is not None
                and first.max_price is not None
                and first.spot.usd_per_hour <= first.max_price
            ):
                return first.spot
            cap = first.max_price if first.max_price is not None else first.on_demand.usd_per_hour
            return Price(cap, "spot max_price (upper bound)", first.on_demand.date, self.region, "spot")
        return first.on_demand

    @property
    def max_cost_usd(self) -> float:
        """The most the first choice can cost if left to its self-terminating deadline."""
        first = self.candidates[0]
        worst = first.on_demand.usd_per_hour
        if self.markets[0] == "spot" and first.max_price is not None:
            worst = max(first.max_price, worst if "on-demand" in self.markets else 0.0)
        return worst * self.stack.lifetime_minutes / 60


def plan(
    stack: Stack,
    *,
    cidr: str,
    reporter: Reporter | None = None,
    avoid_zones: Iterable[str] = (),
) -> Plan:
    """Validate the stack against the region and price it. Creates nothing.

    Raises ConfigError when no candidate is offered (naming where it is), the image is unknown or larger
    than volume_gb; CloudError/CredentialsError for AWS trouble.
    """
    reporter = reporter or NullReporter()
    aws = Aws(stack.region)
    zones = instances.check_offered(aws, stack.candidates)
    notes: list[str] = []
    wanted = stack.availability_zones
    image = images.resolve(aws, stack.image)
    if image.root_size_gb and stack.volume_gb < image.root_size_gb:
        raise ConfigError(
            f"volume_gb {stack.volume_gb} is smaller than image {image.image_id}'s "
            f"{image.root_size_gb} GiB root snapshot"
        )
    offered = [t for t in stack.candidates if zones.get(t)]
    archs = instances.supported_architectures(aws, offered)
    markets: list[str] = [str(stack.market)]
    if stack.market == "spot" and stack.fallback == "on-demand":
        markets.append("on-demand")
    avoid = set(avoid_zones)
    cands: list[CandidatePlan] = []
    for t in stack.candidates:
        tz = zones.get(t, [])
        if wanted:
            tz = [z for z in wanted if z in tz]
        if not tz:
            notes.append(f"{t} skipped: not offered in {', '.join(wanted) if wanted else stack.region}")
            continue
        if image.architecture not in archs.get(t, [image.architecture]):
            notes.append(
                f"{t} skipped: it runs {'/'.join(archs[t])}, image {image.image_id} is {image.architecture}"
            )
            continue
        entry = catalog.lookup(t)
        od = catalog.on_demand_price(t, stack.region)
        spot = None
        max_price = None
        if "spot" in markets:
            max_price = stack.max_price if stack.max_price is not None else od.usd_per_hour
            spot = _spot_price(aws, t, stack.region)
            if spot is not None and spot.usd_per_hour > max_price:
                notes.append(
                    f"{t}: spot now ${spot.usd_per_hour:.4f}/h is above max_price ${max_price:.4f}/h"
                )
        tz = [z for z in tz if z not in avoid] + [z for z in tz if z in avoid]
        gpu = f"{entry.gpu_count}x {entry.gpu_model}" if entry.gpu_count else "no GPU"
        cands.append(CandidatePlan(t, tz, entry.vcpus, gpu, od, spot, max_price))
    if not cands:
        raise ConfigError(f"no instance_type candidate can run here: {'; '.join(notes)}")
    for n in notes:
        reporter.warn(n)
    return Plan(stack=stack, cidr=cidr, image=image, markets=markets, candidates=cands, notes=notes)


def dry_run(p: Plan, *, reporter: Reporter | None = None) -> list[tuple[str, str]]:
    """EC2's DryRun permission checks for everything launch would create: (what, 'allowed' | why not)."""
    aws = Aws(p.region)
    stack = p.stack
    vpc = network.default_vpc(aws)
    checks: list[tuple[str, str]] = []
    if keys.find(aws, stack.key_name) is None:
        checks.append(
            (
                "create key pair",
                instances.dry_run(aws, {"KeyName": stack.key_name, "KeyType": "ed25519"}, "create_key_pair"),
            )
        )
    existing_sg = network.find(aws, stack.name, vpc)
    if not existing_sg:
        params = {"GroupName": stack.key_name, "Description": "ec2dbn dry run", "VpcId": vpc}
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
    )
    first = p.candidates[0]
    for market in p.markets:
        params = instances.run_request(spec, first.instance_type, first.zones[0], market, first.max_price)
        params.pop("ClientToken")
        checks.append(
            (f"run {market} {first.instance_type}", instances.dry_run(aws, params, "run_instances"))
        )
    p.checks = checks
    return checks


# -------------------------------------------------------------------------------------------- prices


def _spot_price(aws: Aws, instance_type: str, az_or_region: str) -> Price | None:
    """The live spot price in an AZ or a region's cheapest AZ; None when unknown (display only)."""
    try:
        return spot_price(aws.ec2, instance_type, az_or_region)
    except Ec2dbnError:
        return None  # the launch itself is bounded by max_price


def prices(
    region: str, instance_type: str, market: str, zone: str | None, max_price: float | None
) -> tuple[Price, Price]:
    """(price paid per hour, on-demand price) for an instance, best effort for spot."""
    od = catalog.on_demand_price(instance_type, region)
    if market != "spot":
        return od, od
    found = _spot_price(Aws(region), instance_type, zone or region)
    if found is not None:
        return found, od
    cap = max_price if max_price is not None else od.usd_per_hour
    return Price(cap, "spot max_price (upper bound; no spot price history)", od.date, region, "spot"), od


# -------------------------------------------------------------------------------------------- launch


@dataclass(frozen=True)
class Launched:
    """What `launch` created: the instance (as run_instances returned it: maybe still pending), the key
    pair and security group it used (and whether it created them), and every attempt made."""

    instance: InstanceRecord
    key: keys.KeyPair
    security_group: network.SecurityGroup
    candidate: CandidatePlan
    attempts: list[instances.Attempt]


def launch(
    p: Plan,
    *,
    user_data: str,
    instance_tags: Mapping[str, str],
    key_store: keys.KeyStore,
    reporter: Reporter | None = None,
    avoid_zones: Iterable[str] = (),
) -> Launched:
    """Create the key pair and security group (or reuse the stack's), then one instance through the
    fallback chain. Returns as soon as EC2 accepted the instance: wait with `wait_running`.

    On a failure before any instance exists, the key pair and security group THIS call created are
    deleted again (nothing pre-existing is touched).
    """
    reporter = reporter or NullReporter()
    stack = p.stack
    aws = Aws(stack.region)
    key: keys.KeyPair | None = None
    sg: network.SecurityGroup | None = None
    try:
        key = keys.ensure(aws, stack.name, stack.key_name, key_store, reporter=reporter)
        sg = network.ensure(aws, stack.name, stack.key_name, p.cidr, reporter=reporter)
        spec = launch_spec(p, key, sg, user_data, instance_tags)
        cands = [instances.Candidate(c.instance_type, c.zones, c.vcpus, c.max_price) for c in p.candidates]
        result = instances.launch_with_fallback(
            aws, spec, cands, p.markets, avoid_zones=avoid_zones, reporter=reporter
        )
    except BaseException:
        _undo(aws, key, sg, key_store, reporter)
        raise
    launched = next(a for a in reversed(result.attempts) if a.outcome == "ok")
    chosen = next(c for c in p.candidates if c.instance_type == launched.instance_type)
    inst = InstanceRecord.from_ec2({**result.instance, "Tags": result.instance.get("Tags") or []})
    if inst.market != result.market:  # run_instances' answer may lack the tags it was given
        inst = replace(inst, market=result.market)
    return Launched(inst, key, sg, chosen, result.attempts)


def launch_spec(
    p: Plan,
    key: keys.KeyPair,
    sg: network.SecurityGroup,
    user_data: str,
    instance_tags: Mapping[str, str],
) -> instances.LaunchSpec:
    """What every instance of the plan is launched with, apart from type, zone and market."""
    return instances.LaunchSpec(
        stack=p.stack.name,
        image_id=p.image.image_id,
        root_device_name=p.image.root_device_name,
        volume_gb=p.stack.volume_gb,
        key_name=key.name,
        security_group_id=sg.group_id,
        user_data=user_data,
        instance_tags=dict(instance_tags),
        user_tags=p.stack.tags,
    )


def _undo(
    aws: Aws,
    key: keys.KeyPair | None,
    sg: network.SecurityGroup | None,
    key_store: keys.KeyStore,
    reporter: Reporter,
) -> None:
    """Remove the key pair and security group this launch created (nothing pre-existing)."""
    if sg is not None and sg.created:
        try:
            network.delete(aws, sg.group_id, reporter=reporter)
            reporter.step(f"removed security group {sg.group_id} (nothing was launched)")
        except Ec2dbnError as exc:
            reporter.warn(f"could not remove security group {sg.group_id}: {exc}")
    if key is not None and key.created:
        try:
            keys.delete(aws, key.name)
            reporter.step(f"removed key pair {key.name} (nothing was launched)")
        except Ec2dbnError as exc:
            reporter.warn(f"could not remove key pair {key.name}: {exc}")
        key_store.forget()


def wait_running(region: str, instance_id: str, *, reporter: Reporter | None = None) -> InstanceRecord:
    """Block (with progress) until the instance runs. Raises instances.InstanceGone if it ended instead."""
    return InstanceRecord.from_ec2(instances.wait_running(Aws(region), instance_id, reporter=reporter))


def allow_ssh(stack: Stack, cidr: str, *, reporter: Reporter | None = None) -> network.SecurityGroup:
    """The stack's security group with its ingress reconciled to exactly `cidr` (your IP may have moved)."""
    return network.ensure(Aws(stack.region), stack.name, stack.key_name, cidr, reporter=reporter)


# --------------------------------------------------------------------------------------------- query


def live_instances(region: str, stack: str | None) -> list[InstanceRecord]:
    """The stack's (or every stack's) instances that are not terminated, oldest first."""
    return [InstanceRecord.from_ec2(i) for i in discovery.instances(Aws(region), stack)]


def describe_instance(region: str, instance_id: str) -> InstanceRecord | None:
    """The instance as EC2 reports it now (terminated ones included, while EC2 remembers them)."""
    inst = instances.describe(Aws(region), instance_id)
    return InstanceRecord.from_ec2(inst) if inst else None


def inventory(region: str, stack: str | None) -> discovery.Inventory:
    """Everything live and tagged for `stack` (or every stack) in `region`."""
    return discovery.inventory(Aws(region), stack)


def tag_instance(region: str, instance_id: str, tags: Mapping[str, str]) -> None:
    """Set tags on an instance (e.g. the lease naming the run that uses it)."""
    aws = Aws(region)
    with aws_errors(region, f"tagging {instance_id}"):
        aws.ec2.create_tags(Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])


def untag_instance(region: str, instance_id: str, keys_: Iterable[str]) -> None:
    aws = Aws(region)
    with aws_errors(region, f"untagging {instance_id}"):
        aws.ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": k} for k in keys_])


# ------------------------------------------------------------------------------------------ teardown


@dataclass
class TeardownReport:
    """What teardown removed in one region, what failed, and what is still tagged afterwards."""

    name: str
    region: str
    terminated: list[str] = field(default_factory=list)
    cancelled_spot_requests: list[str] = field(default_factory=list)
    deleted_fleets: list[str] = field(default_factory=list)
    deleted_launch_templates: list[str] = field(default_factory=list)
    deleted_security_groups: list[str] = field(default_factory=list)
    deleted_key_pairs: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    removed_local_state: bool = False
    remaining: str = "nothing"

    @property
    def clean(self) -> bool:
        return self.remaining == "nothing" and not self.errors


def teardown(
    name: str,
    region: str,
    *,
    instance_ids: Iterable[str] = (),
    group_ids: Iterable[str] = (),
    key_names: Iterable[str] = (),
    reporter: Reporter | None = None,
) -> TeardownReport:
    """Remove everything tagged for the stack in `region`, plus the named extras that are provably the
    stack's (local state may name them), then verify.

    Order: mark the instances as torn down (so a run using them stops instead of relaunching), delete
    fleets (a sweep's, terminating their instances), cancel spot requests, terminate, wait, delete the
    launch templates and the security groups (retrying DependencyViolation while EC2 detaches them),
    delete the key pairs. A step that fails is recorded and the rest still runs: one
    stuck resource never hides the others. A security group or key pair without ec2dbn's tags for this
    stack is never deleted. Raises CloudError at the end when anything failed or is still tagged.
    """
    reporter = reporter or NullReporter()
    aws = Aws(region)
    inv = discovery.inventory(aws, name)
    report = TeardownReport(name=name, region=region)

    def attempt(what: str, action: Any, *args: Any) -> bool:
        try:
            action(*args)
            return True
        except Ec2dbnError as exc:
            report.errors.append(f"{what}: {exc}")
            reporter.warn(f"could not {what}: {exc}")
            return False

    ids = [i["InstanceId"] for i in inv.instances]
    extra = [*instance_ids, *(r["InstanceId"] for r in inv.spot_requests if r.get("InstanceId"))]
    for iid in dict.fromkeys(extra):  # a tagged spot request's instance is ours even if untagged
        if iid not in ids:
            inst = instances.describe(aws, iid)
            if inst and inst["State"]["Name"] in discovery.LIVE_STATES:
                ids.append(iid)
    if ids:
        attempt("mark the instances as torn down", _mark_torn_down, aws, ids)
    fleet_ids = [f["FleetId"] for f in inv.fleets]
    if fleet_ids and attempt(f"delete fleets {', '.join(fleet_ids)}", _delete_fleets, aws, fleet_ids):
        report.deleted_fleets = fleet_ids
        reporter.step(f"deleted fleet(s) {', '.join(fleet_ids)}, terminating their instances")
    spot_ids = sorted(
        {r["SpotInstanceRequestId"] for r in inv.spot_requests}
        | {i["SpotInstanceRequestId"] for i in inv.instances if i.get("SpotInstanceRequestId")}
    )
    if spot_ids and attempt("cancel spot requests", instances.cancel_spot_requests, aws, spot_ids):
        report.cancelled_spot_requests = spot_ids
        reporter.step(f"cancelled spot request(s) {', '.join(spot_ids)}")
    if ids and attempt(f"terminate {', '.join(ids)}", instances.terminate, aws, ids):
        reporter.step(f"terminating {', '.join(ids)}")
        if attempt("wait for termination", lambda: instances.wait_terminated(aws, ids, reporter=reporter)):
            report.terminated = ids

    for lt in inv.launch_templates:
        tid = lt["LaunchTemplateId"]
        if attempt(f"delete launch template {tid}", templates.delete, aws, tid):
            report.deleted_launch_templates.append(tid)
            reporter.step(f"deleted launch template {tid} ({lt.get('LaunchTemplateName')})")

    groups = [g["GroupId"] for g in inv.security_groups]
    for gid in (g for g in group_ids if g and g not in groups):
        if _group_is_ours(aws, gid, name):
            groups.append(gid)
        else:
            report.skipped.append(f"security group {gid} (not tagged for stack {name})")
    for gid in groups:
        if attempt(f"delete security group {gid}", lambda g=gid: network.delete(aws, g, reporter=reporter)):
            report.deleted_security_groups.append(gid)
            reporter.step(f"deleted security group {gid}")

    pairs = [k["KeyName"] for k in inv.key_pairs]
    for kn in (k for k in key_names if k and k not in pairs):
        found = keys.find(aws, kn)
        if found is None:
            continue
        if is_ours(found.get("Tags"), name):
            pairs.append(kn)
        else:
            report.skipped.append(f"key pair {kn} (not tagged for stack {name})")
    for kn in pairs:
        if attempt(f"delete key pair {kn}", keys.delete, aws, kn):
            report.deleted_key_pairs.append(kn)
            reporter.step(f"deleted key pair {kn}")
    for what in report.skipped:
        reporter.warn(f"left {what} alone: only what ec2dbn tagged is removed")

    try:
        report.remaining = discovery.inventory(aws, name).describe()
    except Ec2dbnError as exc:
        report.remaining = f"unknown ({exc})"
    return report


def _delete_fleets(aws: Aws, fleet_ids: list[str]) -> None:
    failed = fleets.delete(aws, fleet_ids)
    if failed:
        raise CloudError(f"EC2 did not delete fleet(s): {'; '.join(failed)}")


def _mark_torn_down(aws: Aws, instance_ids: list[str]) -> None:
    with aws_errors(aws.region, "marking instances as torn down"):
        aws.ec2.create_tags(Resources=instance_ids, Tags=[{"Key": TEARDOWN_TAG, "Value": utc_stamp()}])


def _group_is_ours(aws: Aws, group_id: str, stack: str) -> bool:
    try:
        with aws_errors(aws.region, f"describing security group {group_id}"):
            found = aws.ec2.describe_security_groups(Filters=[{"Name": "group-id", "Values": [group_id]}])[
                "SecurityGroups"
            ]
    except CloudError:
        return False
    return bool(found) and is_ours(found[0].get("Tags"), stack)


def stacks_in(region: str) -> list[str]:
    """Stack names with anything tagged in `region`."""
    return discovery.inventory(Aws(region), None).stacks()


def verify_clean(region: str) -> str:
    """'nothing' when no ec2dbn-tagged instance, spot request, security group or key pair is left."""
    return discovery.inventory(Aws(region), None).describe()
