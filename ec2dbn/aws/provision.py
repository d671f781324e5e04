"""Provisioning verbs keyed by a stack name: plan, launch, query, teardown (in the spirit of SkyPilot's
sky/provision API).

Each verb is idempotent and finds what exists by tags, so it is safe to re-run after any failure:
`launch` reuses a running instance, `teardown` removes whatever is tagged for the stack, even with the
local state dir gone. Records returned here are plain dataclasses; the CLI formats them.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ec2dbn import catalog, cost, state, userdata
from ec2dbn.aws import discovery, images, instances, keys, network
from ec2dbn.aws.session import Aws
from ec2dbn.aws.tags import DEADLINE_TAG, HOST_KEY_TAG, MARKET_TAG, STACK_TAG, as_dict
from ec2dbn.catalog import Price
from ec2dbn.config import Stack
from ec2dbn.errors import CloudError, ConfigError, Ec2dbnError
from ec2dbn.events import NullReporter, Reporter

REUSABLE_STATES = ("pending", "running")


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
    reporter: Reporter | None = None,
    avoid_zones: Iterable[str] = (),
    cidr: str | None = None,
) -> Plan:
    """Validate the stack against the region and price it. Creates nothing.

    Raises ConfigError when no candidate is offered (naming where it is), the image is unknown or larger
    than volume_gb; CloudError/CredentialsError for AWS trouble.
    """
    reporter = reporter or NullReporter()
    cidr = cidr or network.resolve_cidr(stack.ssh_cidr, reporter)
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
        avoid = set(avoid_zones)
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
    reporter = reporter or NullReporter()
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


# -------------------------------------------------------------------------------------------- launch


@dataclass
class LaunchRecord:
    """What `launch` left running: the recorded state, whether it was reused, and how it got there."""

    state: state.StackState
    reused: bool
    attempts: list[instances.Attempt] = field(default_factory=list)
    created: list[str] = field(default_factory=list)


def _spot_price(aws: Aws, instance_type: str, az_or_region: str) -> Price | None:
    """The live spot price (cost.spot_price) in an AZ or a region's cheapest AZ; None when unknown."""
    try:
        return cost.spot_price(aws.ec2, instance_type, az_or_region)
    except Ec2dbnError:
        return None  # display only: the launch itself is bounded by max_price


def _price_for(
    aws: Aws, instance_type: str, market: str, zone: str | None, max_price: float | None
) -> tuple[Price, Price]:
    """(price paid per hour, on-demand price) for an instance, best effort for spot."""
    od = catalog.on_demand_price(instance_type, aws.region)
    if market != "spot":
        return od, od
    found = _spot_price(aws, instance_type, zone or aws.region)
    if found is not None:
        return found, od
    cap = max_price if max_price is not None else od.usd_per_hour
    return Price(cap, "spot max_price (upper bound; no spot price history)", od.date, aws.region, "spot"), od


def _state_price(p: Price) -> state.Price:
    return state.Price(usd_per_hour=p.usd_per_hour, source=p.source, date=p.date, market=p.market)


def _known_hosts_names(st: state.StackState) -> list[str]:
    names = [st.public_ip or "", st.public_dns or ""]
    override = _endpoint_override()
    if override:
        names.append(state.endpoint_host_pattern(*override))
    return names


def _endpoint_override() -> tuple[str, int] | None:
    text = os.environ.get(state.SSH_ENDPOINT_ENV)
    return state.parse_endpoint(text) if text else None


def _pin_host_key(st: state.StackState) -> None:
    if st.host_public_key and any(_known_hosts_names(st)):
        state.write_known_hosts(st.name, _known_hosts_names(st), st.host_public_key)


def _apply_instance(st: state.StackState, inst: dict[str, Any]) -> None:
    st.instance_id = inst["InstanceId"]
    st.instance_type = inst.get("InstanceType", st.instance_type)
    st.availability_zone = inst.get("Placement", {}).get("AvailabilityZone", st.availability_zone)
    st.public_ip = inst.get("PublicIpAddress") or st.public_ip
    st.public_dns = inst.get("PublicDnsName") or st.public_dns
    st.instance_state = inst.get("State", {}).get("Name", st.instance_state)
    st.image_id = inst.get("ImageId", st.image_id)


def launch(
    stack: Stack,
    *,
    reporter: Reporter | None = None,
    avoid_zones: Iterable[str] = (),
    stack_source: str = "",
) -> LaunchRecord:
    """Bring the stack up, or reuse it if it is already up. Returns once the instance is running.

    On a cloud failure before any instance exists, the key pair and security group this call created are
    deleted again. Once an instance exists its state is recorded at once, so an interruption leaves
    nothing that `teardown` cannot find.
    """
    reporter = reporter or NullReporter()
    cidr = network.resolve_cidr(stack.ssh_cidr, reporter)
    aws = Aws(stack.region)
    live = discovery.instances(aws, stack.name)
    usable = [i for i in live if i["State"]["Name"] in REUSABLE_STATES]
    if usable:
        return _reuse(aws, stack, usable, cidr, reporter)
    stuck = [i for i in live if i["State"]["Name"] in ("stopping", "stopped")]
    if stuck:
        ids = ", ".join(i["InstanceId"] for i in stuck)
        raise CloudError(
            f"stack {stack.name} has stopped instance(s) {ids}; run `ec2dbn teardown {stack.name}` first"
        )

    p = plan(stack, reporter=reporter, avoid_zones=avoid_zones, cidr=cidr)
    created: list[str] = []
    key = sg = None
    try:
        key = keys.ensure(aws, stack.name, stack.key_name, reporter=reporter)
        if key.created:
            created.append(f"key pair {key.name}")
        sg = network.ensure(aws, stack.name, stack.key_name, p.cidr, reporter=reporter)
        if sg.created:
            created.append(f"security group {sg.group_id}")
        host_key = userdata.generate_host_key(f"ec2dbn-{stack.name}")
        deadline = userdata.deadline_after(stack.lifetime_minutes)
        spec = instances.LaunchSpec(
            stack=stack.name,
            image_id=p.image.image_id,
            root_device_name=p.image.root_device_name,
            volume_gb=stack.volume_gb,
            key_name=key.name,
            security_group_id=sg.group_id,
            user_data=userdata.render(host_key, deadline, stack=stack.name),
            instance_tags={
                DEADLINE_TAG: state.iso(deadline),
                HOST_KEY_TAG: " ".join(host_key.public.split()[:2]),
            },
            user_tags=stack.tags,
        )
        cands = [instances.Candidate(c.instance_type, c.zones, c.vcpus, c.max_price) for c in p.candidates]
        result = instances.launch_with_fallback(
            aws, spec, cands, p.markets, avoid_zones=avoid_zones, reporter=reporter
        )
    except Ec2dbnError:
        _undo(aws, stack, key, sg, reporter)
        raise
    inst = result.instance
    launched = next(a for a in reversed(result.attempts) if a.outcome == "ok")
    st = state.StackState(
        name=stack.name,
        region=stack.region,
        stack_source=stack_source,
        market=result.market,
        key_name=key.name,
        key_path=key.private_key_path,
        security_group_id=sg.group_id,
        ssh_user=stack.ssh_user,
        ssh_cidr=p.cidr,
        remote_dir=stack.remote_dir,
        host_public_key=host_key.public,
        launched_at=state.iso(state.utc_now()),
        deadline=state.iso(deadline),
    )
    _apply_instance(st, inst)
    state.save(st)  # first, before anything else can fail: the instance exists now
    chosen = next(c for c in p.candidates if c.instance_type == launched.instance_type)
    paid, od = _price_for(aws, launched.instance_type, result.market, launched.zone, chosen.max_price)
    st.price, st.on_demand_price = _state_price(paid), _state_price(od)
    state.save(st)
    reporter.step(
        f"launched {st.instance_id} ({launched.instance_type}, {result.market}, {launched.zone}); "
        f"self-terminates at {st.deadline}"
    )
    try:
        running = instances.wait_running(aws, st.instance_id or "", reporter=reporter)
    except instances.InstanceGone:
        _undo(aws, stack, key, sg, reporter)
        state.remove(stack.name)
        raise
    _apply_instance(st, running)
    state.save(st)
    _pin_host_key(st)
    return LaunchRecord(state=st, reused=False, attempts=result.attempts, created=created)


def _undo(
    aws: Aws, stack: Stack, key: keys.KeyPair | None, sg: network.SecurityGroup | None, reporter: Reporter
) -> None:
    """Remove the key pair and security group THIS launch created (nothing pre-existing)."""
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
        with contextlib.suppress(OSError):
            state.key_path(stack.name).unlink()
            state.stack_dir(stack.name).rmdir()  # only if nothing else is in it


def _reuse(
    aws: Aws, stack: Stack, usable: list[dict[str, Any]], cidr: str, reporter: Reporter
) -> LaunchRecord:
    inst = usable[0]
    iid = inst["InstanceId"]
    if len(usable) > 1:
        others = ", ".join(i["InstanceId"] for i in usable[1:])
        reporter.warn(f"stack {stack.name} has more than one instance ({others} too); using {iid}")
    reporter.step(f"stack {stack.name} is already up: reusing {iid} ({inst['State']['Name']})")
    sg = network.ensure(aws, stack.name, stack.key_name, cidr, reporter=reporter)
    tags = as_dict(inst.get("Tags"))
    try:
        st = state.load(stack.name)
    except Ec2dbnError:
        st = None
    if st is None or st.instance_id != iid:
        market = tags.get(MARKET_TAG) or ("spot" if inst.get("InstanceLifecycle") == "spot" else "on-demand")
        paid, od = _price_for(
            aws,
            inst["InstanceType"],
            market,
            inst.get("Placement", {}).get("AvailabilityZone"),
            stack.max_price,
        )
        launch_time = inst.get("LaunchTime")
        st = state.StackState(
            name=stack.name,
            region=stack.region,
            market=market,
            key_name=inst.get("KeyName"),
            key_path=str(state.key_path(stack.name)),
            security_group_id=sg.group_id,
            ssh_user=stack.ssh_user,
            ssh_cidr=cidr,
            remote_dir=stack.remote_dir,
            host_public_key=tags.get(HOST_KEY_TAG),
            launched_at=state.iso(launch_time) if isinstance(launch_time, datetime) else None,
            deadline=tags.get(DEADLINE_TAG),
            price=_state_price(paid),
            on_demand_price=_state_price(od),
        )
    st.ssh_cidr = cidr
    if inst["State"]["Name"] == "pending":
        inst = instances.wait_running(aws, iid, reporter=reporter)
    _apply_instance(st, inst)
    state.save(st)
    _pin_host_key(st)
    if not state.key_path(stack.name).is_file():
        reporter.warn(
            f"the private key for {iid} is not in {state.stack_dir(stack.name)}: SSH to it is impossible; "
            f"`ec2dbn teardown {stack.name}` and launch again"
        )
    return LaunchRecord(state=st, reused=True)


# --------------------------------------------------------------------------------------------- query


@dataclass
class StackStatus:
    """One stack as AWS reports it (by tags), reconciled with local state. Prices USD/h, times UTC ISO."""

    name: str
    region: str
    state: str
    instance_id: str | None = None
    instance_type: str | None = None
    market: str | None = None
    availability_zone: str | None = None
    public_ip: str | None = None
    public_dns: str | None = None
    launched_at: str | None = None
    deadline: str | None = None
    seconds_left: int | None = None
    price: Price | None = None
    cost_so_far_usd: float | None = None
    security_groups: list[str] = field(default_factory=list)
    key_pairs: list[str] = field(default_factory=list)
    local_state: bool = False
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        if self.price is not None:
            d["price"] = {
                "usd_per_hour": self.price.usd_per_hour,
                "source": self.price.source,
                "date": self.price.date,
                "market": self.price.market,
            }
        return d


def _status_for(
    aws: Aws, name: str, inv: discovery.Inventory, local: state.StackState | None
) -> list[StackStatus]:
    def mine(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [i for i in items if as_dict(i.get("Tags")).get(STACK_TAG) == name]

    sgs = [g["GroupId"] for g in mine(inv.security_groups)]
    kps = [k["KeyName"] for k in mine(inv.key_pairs)]
    rows: list[StackStatus] = []
    now = state.utc_now()
    for inst in mine(inv.instances):
        iid = inst["InstanceId"]
        tags = as_dict(inst.get("Tags"))
        market = tags.get(MARKET_TAG) or ("spot" if inst.get("InstanceLifecycle") == "spot" else "on-demand")
        zone = inst.get("Placement", {}).get("AvailabilityZone")
        price, _ = _price_for(aws, inst["InstanceType"], market, zone, None)
        launch_time = inst.get("LaunchTime")
        launched = launch_time if isinstance(launch_time, datetime) else None
        deadline = tags.get(DEADLINE_TAG) or (
            local.deadline if local and local.instance_id == inst["InstanceId"] else None
        )
        left = None
        if deadline:
            with contextlib.suppress(ValueError):
                left = max(0, int((state.parse_iso(deadline) - now).total_seconds()))
        so_far = None
        if launched is not None:
            segment = cost.InstanceSegment(iid, inst["InstanceType"], market, price.usd_per_hour, launched)
            so_far = round(cost.actual_cost([segment], now=now).total_usd, 6)
        rows.append(
            StackStatus(
                name=name,
                region=aws.region,
                state=inst["State"]["Name"],
                instance_id=inst["InstanceId"],
                instance_type=inst["InstanceType"],
                market=market,
                availability_zone=zone,
                public_ip=inst.get("PublicIpAddress"),
                public_dns=inst.get("PublicDnsName") or None,
                launched_at=state.iso(launched) if launched else None,
                deadline=deadline,
                seconds_left=left,
                price=price,
                cost_so_far_usd=so_far,
                security_groups=sgs,
                key_pairs=kps,
                local_state=local is not None,
            )
        )
    if not rows:
        note = "local state only: nothing tagged remains in AWS" if local and not (sgs or kps) else ""
        if sgs or kps:
            note = "no instance; leftover resources (run teardown)"
        rows.append(
            StackStatus(
                name=name,
                region=aws.region,
                state="none",
                security_groups=sgs,
                key_pairs=kps,
                local_state=local is not None,
                note=note,
            )
        )
    elif local is not None and local.instance_id and local.instance_id not in {r.instance_id for r in rows}:
        rows[0].note = f"local state named {local.instance_id}, which is gone"
    return rows


def query(region: str, name: str | None = None) -> list[StackStatus]:
    """Every ec2dbn stack in `region` (or just `name`), from tags, joined with local state."""
    aws = Aws(region)
    inv = discovery.inventory(aws, name)
    names = set(inv.stacks())
    if name is not None:
        names.add(name)
    else:
        names.update(n for n in state.names() if _local_region(n) == region)
    out: list[StackStatus] = []
    for n in sorted(names):
        out.extend(_status_for(aws, n, inv, _local(n)))
    if name is None:
        out = [r for r in out if r.state != "none" or r.local_state or r.security_groups or r.key_pairs]
    return out


def _local(name: str) -> state.StackState | None:
    try:
        return state.load(name)
    except Ec2dbnError:
        return None


def _local_region(name: str) -> str | None:
    st = _local(name)
    return st.region if st else None


def local_regions() -> dict[str, str]:
    """stack name -> region, for every stack with local state."""
    out = {}
    for n in state.names():
        r = _local_region(n)
        if r:
            out[n] = r
    return out


# ------------------------------------------------------------------------------------------ teardown


@dataclass
class TeardownReport:
    """What teardown removed in one region, and what (if anything) is still tagged afterwards."""

    name: str
    region: str
    terminated: list[str] = field(default_factory=list)
    cancelled_spot_requests: list[str] = field(default_factory=list)
    deleted_security_groups: list[str] = field(default_factory=list)
    deleted_key_pairs: list[str] = field(default_factory=list)
    removed_local_state: bool = False
    remaining: str = "nothing"

    @property
    def clean(self) -> bool:
        return self.remaining == "nothing"


def teardown(name: str, region: str, *, reporter: Reporter | None = None) -> TeardownReport:
    """Remove everything tagged for the stack in `region` (and what local state names), then verify.

    Order: cancel spot requests, terminate instances, wait until terminated, delete the security group
    (retrying DependencyViolation while EC2 detaches it), delete the key pair, delete local state.
    Raises CloudError if anything tagged for the stack is still there at the end.
    """
    reporter = reporter or NullReporter()
    aws = Aws(region)
    local = _local(name)
    if local is not None and local.region != region:
        local = None  # that state describes the stack in another region
    inv = discovery.inventory(aws, name)
    report = TeardownReport(name=name, region=region)

    ids = [i["InstanceId"] for i in inv.instances]
    if local and local.instance_id and local.instance_id not in ids:
        inst = instances.describe(aws, local.instance_id)
        if inst and inst["State"]["Name"] in discovery.LIVE_STATES:
            ids.append(local.instance_id)
    # An instance a tagged spot request launched is ours even if EC2 did not copy the tags onto it.
    for req in inv.spot_requests:
        if req.get("InstanceId") and req["InstanceId"] not in ids:
            inst = instances.describe(aws, req["InstanceId"])
            if inst and inst["State"]["Name"] in discovery.LIVE_STATES:
                ids.append(req["InstanceId"])
    spot_ids = {r["SpotInstanceRequestId"] for r in inv.spot_requests}
    spot_ids.update(i["SpotInstanceRequestId"] for i in inv.instances if i.get("SpotInstanceRequestId"))
    if spot_ids:
        instances.cancel_spot_requests(aws, sorted(spot_ids))
        report.cancelled_spot_requests = sorted(spot_ids)
        reporter.step(f"cancelled spot request(s) {', '.join(sorted(spot_ids))}")
    if ids:
        instances.terminate(aws, ids)
        reporter.step(f"terminating {', '.join(ids)}")
        instances.wait_terminated(aws, ids, reporter=reporter)
        report.terminated = ids

    groups = [g["GroupId"] for g in inv.security_groups]
    if local and local.security_group_id and local.security_group_id not in groups:
        groups.append(local.security_group_id)
    for gid in groups:
        network.delete(aws, gid, reporter=reporter)
        report.deleted_security_groups.append(gid)
        reporter.step(f"deleted security group {gid}")

    key_names = [k["KeyName"] for k in inv.key_pairs]
    if local and local.key_name and local.key_name not in key_names and keys.find(aws, local.key_name):
        key_names.append(local.key_name)
    for kn in key_names:
        keys.delete(aws, kn)
        report.deleted_key_pairs.append(kn)
        reporter.step(f"deleted key pair {kn}")

    if _local_region(name) in (None, region):
        report.removed_local_state = state.remove(name)

    left = discovery.inventory(aws, name)
    report.remaining = left.describe()
    if not left.empty:
        raise CloudError(f"teardown of {name} in {region} incomplete: still tagged: {report.remaining}")
    return report


def stacks_in(region: str) -> list[str]:
    """Stack names with anything tagged in `region`, plus local states recorded there."""
    names = set(discovery.inventory(Aws(region), None).stacks())
    names.update(n for n, r in local_regions().items() if r == region)
    return sorted(names)


def verify_clean(region: str) -> str:
    """'nothing' when no ec2dbn-tagged instance, spot request, security group or key pair is left."""
    return discovery.inventory(Aws(region), None).describe()
