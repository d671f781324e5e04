"""A stack's life on this machine: bring it up or reuse it, record it, pin its host key, lease it to a run,
tear it down. The ONE bring-up: every new instance, a stack's (`bring_up`) or a sweep fleet's
(ec2dbn.sweep.fleet), gets its host key, deadline, tags, user-data and state from `new_instances` and is
pinned by `pin_host_key`; every plan goes through `plan_stack`.

The AWS face (ec2dbn.aws) makes the cloud calls and returns plain records; this module keeps the local state
dir (state.json, the private key, known_hosts) in step with them and decides whether a running instance
may be reused: only when no other run holds its lease (the `ec2dbn:run` tag, which outlives the local
state dir) and when it is what the user asked for (market, instance type, image) — the way `sky launch`
refuses a cluster launched with other resources.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ec2dbn import aws
from ec2dbn.aws import InstanceRecord
from ec2dbn.aws.tags import DEADLINE_TAG, HOST_KEY_TAG, IMAGE_TAG, RUN_TAG
from ec2dbn.errors import CloudError, ConfigError, Ec2dbnError, StackBusyError
from ec2dbn.events import NullReporter, Reporter
from ec2dbn.spec.bake_inputs import bake_hash
from ec2dbn.spec.stack import Stack
from ec2dbn.stack import state, userdata
from ec2dbn.stack.lease import busy_message


class StateKeyStore:
    """The stack's private key, 0600 in its 0700 state folder (aws.keys.KeyStore)."""

    def __init__(self, stack: str) -> None:
        self.stack = stack

    def present(self) -> bool:
        return state.key_path(self.stack).is_file()

    def keep(self, material: str) -> str:
        return str(state.write_private_key(self.stack, material))

    def forget(self) -> None:
        with contextlib.suppress(OSError):
            state.key_path(self.stack).unlink()
            state.stack_dir(self.stack).rmdir()  # only if nothing else is in it


@dataclass
class Up:
    """A stack that is up: its recorded state, whether it was reused, and what this call created.

    bootstrapped: the instance was already made ready (a sweep's fleet bootstraps each instance once);
    env: variables for the job's command (a sweep slot's CUDA_VISIBLE_DEVICES).
    """

    state: state.StackState
    reused: bool
    created: list[str] = field(default_factory=list)
    bootstrapped: bool = False
    env: dict[str, str] = field(default_factory=dict)


class TeardownIncomplete(CloudError):
    """Teardown ran every step it could and something failed or is still tagged; `report` says what."""

    def __init__(self, message: str, report: aws.TeardownReport) -> None:
        super().__init__(message)
        self.report = report


def resolve_cidr(stack: Stack, reporter: Reporter | None = None) -> str:
    """The CIDR allowed in on port 22 (the caller's /32 for `auto`)."""
    return aws.resolve_cidr(stack.ssh_cidr, reporter)


def plan_stack(stack: Stack, reporter: Reporter | None = None, *, cidr: str | None = None) -> aws.Plan:
    """What launching the stack would make (offerings, image, prices); creates nothing. The one way above
    aws/ to plan: `cidr` (default: resolved as the stack asks) and the bake's hash over the stack's steps
    are handed down, since aws/ computes neither."""
    return aws.plan(
        stack,
        cidr=cidr if cidr is not None else resolve_cidr(stack, reporter),
        bake_name=lambda base_image_id: bake_hash(base_image_id, stack.bootstrap),
        reporter=reporter or NullReporter(),
    )


# ------------------------------------------------------------------------------------------- reuse


def reusable_instance(stack: Stack, run_id: str | None = None) -> InstanceRecord | None:
    """The stack's running instance if it may be used by `run_id` (None: by `launch`), else None when
    there is none. Raises StackBusyError when another run holds it, ConfigError when it is not what the
    stack asks for, CloudError when it is stopped."""
    live = aws.live_instances(stack.region, stack.name)
    stuck = [i.instance_id for i in live if i.state in ("stopping", "stopped")]
    if stuck:
        raise CloudError(
            f"stack {stack.name} has stopped instance(s) {', '.join(stuck)}; "
            f"run `ec2dbn teardown {stack.name}` first"
        )
    usable = [i for i in live if i.state in aws.REUSABLE_STATES]
    if not usable:
        return None
    inst = usable[0]
    holder = inst.tags.get(RUN_TAG)
    if holder and holder != run_id:
        raise StackBusyError(busy_message(stack.name, holder, f"instance {inst.instance_id}"))
    differences = _differences(stack, inst)
    if differences:
        raise ConfigError(
            f"stack {stack.name} is already running {inst.instance_id} with {'; '.join(differences)}: "
            f"`ec2dbn teardown {stack.name}` first, or use --name OTHER for a second stack"
        )
    return inst


def _differences(stack: Stack, inst: InstanceRecord) -> list[str]:
    markets = {str(stack.market)}
    if stack.market == "spot" and stack.fallback == "on-demand":
        markets.add("on-demand")
    out = []
    if inst.market not in markets:
        out.append(f"market {inst.market} (asked for {stack.market})")
    if inst.instance_type not in stack.candidates:
        out.append(f"instance type {inst.instance_type} (asked for {', '.join(stack.candidates)})")
    image = inst.tags.get(IMAGE_TAG)
    if image and image != stack.image:
        out.append(f"image {image} (asked for {stack.image})")
    return out


# ------------------------------------------------------------------------------------ new instances


@dataclass
class NewInstances:
    """What every new instance of a stack is launched with, made once per launch: a stack's instance
    (`bring_up`) or a fleet group's (every instance of it shares the host key and the user-data).

    state: what is recorded (the host key to pin, the deadline; the instance's facts come later);
    user_data: cloud-config installing the host key and the self-termination; instance_tags: the
    deadline, the host key (to pin again without the state dir), the image asked for, the run's lease.
    """

    state: state.StackState
    user_data: str
    instance_tags: dict[str, str]
    key_store: StateKeyStore


def new_instances(
    stack: Stack,
    plan: aws.Plan,
    *,
    run_id: str | None = None,
    sweep: str | None = None,
    stack_source: str = "",
) -> NewInstances:
    """A fresh host key and deadline for the stack's next launch, and what follows from them."""
    host_key = userdata.generate_host_key(f"ec2dbn-{stack.name}")
    deadline = userdata.deadline_after(stack.lifetime_minutes)
    tags = {
        DEADLINE_TAG: state.iso(deadline),
        HOST_KEY_TAG: " ".join(host_key.public.split()[:2]),
        IMAGE_TAG: stack.image,
        **({RUN_TAG: run_id} if run_id else {}),
    }
    st = state.StackState(
        name=stack.name,
        region=stack.region,
        stack_source=stack_source,
        key_name=stack.key_name,
        key_path=str(state.key_path(stack.name)),
        ssh_user=stack.ssh_user,
        ssh_cidr=plan.cidr,
        remote_dir=stack.remote_dir,
        host_public_key=host_key.public,
        launched_at=state.iso(state.utc_now()),
        deadline=state.iso(deadline),
        **({"sweep": sweep} if sweep else {}),
    )
    return NewInstances(
        st, userdata.render(host_key, deadline, stack=stack.name), tags, StateKeyStore(stack.name)
    )


# ---------------------------------------------------------------------------------------------- up


def bring_up(
    stack: Stack,
    *,
    plan: aws.Plan | None = None,
    existing: InstanceRecord | None = None,
    run_id: str | None = None,
    reporter: Reporter | None = None,
    avoid_zones: Iterable[str] = (),
    stack_source: str = "",
    on_launched: Callable[[state.StackState], None] | None = None,
    instance_profile: str | None = None,
) -> Up:
    """Launch the stack (or reuse `existing`), record it and pin its host key; returns once it runs.

    instance_profile: the instance profile a new instance gets (a run store's role); a reused instance keeps
    whatever it was launched with (its state's `instance_profile` says which).

    A new instance is tagged with `run_id` (its lease) at creation. Its state is saved, and `on_launched`
    told, as soon as EC2 accepted it — before waiting for it to run — so whatever happens next, nothing
    exists that `teardown` cannot find. Raises instances.InstanceGone when it terminates before running.
    """
    reporter = reporter or NullReporter()
    if existing is not None:
        return _reuse(stack, existing, run_id, reporter, stack_source)
    if plan is None:
        plan = plan_stack(stack, reporter)
    new = new_instances(stack, plan, run_id=run_id, stack_source=stack_source)
    launched = aws.launch(
        plan,
        user_data=new.user_data,
        instance_tags=new.instance_tags,
        key_store=new.key_store,
        reporter=reporter,
        avoid_zones=avoid_zones,
        instance_profile=instance_profile,
    )
    inst = launched.instance
    st = new.state
    st.instance_profile = instance_profile
    st.market, st.key_name = inst.market, launched.key.name
    st.security_group_id = launched.security_group.group_id
    st.launched_at = state.iso(state.utc_now())
    _apply(st, inst)
    state.save(st)  # first, before anything else can fail: the instance exists now
    paid, od = aws.instance_prices(
        stack.region, inst.instance_type, inst.market, inst.availability_zone, launched.candidate.max_price
    )
    st.price, st.on_demand_price = paid, od
    state.save(st)
    if on_launched is not None:
        on_launched(st)
    reporter.step(
        f"launched {st.instance_id} ({inst.instance_type}, {inst.market}, {inst.availability_zone}); "
        f"self-terminates at {st.deadline}"
    )
    running = aws.wait_running(stack.region, inst.instance_id, reporter=reporter)
    _apply(st, running)
    state.save(st)
    pin_host_key([st])
    created = [f"key pair {launched.key.name}"] if launched.key.created else []
    if launched.security_group.created:
        created.append(f"security group {launched.security_group.group_id}")
    return Up(state=st, reused=False, created=[*created, f"instance {inst.instance_id}"])


def _reuse(
    stack: Stack, inst: InstanceRecord, run_id: str | None, reporter: Reporter, stack_source: str
) -> Up:
    iid = inst.instance_id
    reporter.step(f"stack {stack.name} is already up: reusing {iid} ({inst.state})")
    cidr = resolve_cidr(stack, reporter)
    sg = aws.allow_ssh(stack, cidr, reporter=reporter)
    st = local_state(stack.name)
    if st is None or st.instance_id != iid or st.region != stack.region:
        paid, od = aws.instance_prices(
            stack.region, inst.instance_type, inst.market, inst.availability_zone, stack.max_price
        )
        st = state.StackState(
            name=stack.name,
            region=stack.region,
            stack_source=stack_source,
            market=inst.market,
            key_name=stack.key_name,
            key_path=str(state.key_path(stack.name)),
            security_group_id=sg.group_id,
            ssh_user=stack.ssh_user,
            remote_dir=stack.remote_dir,
            host_public_key=inst.tags.get(HOST_KEY_TAG),
            launched_at=state.iso(inst.launched_at) if inst.launched_at else None,
            deadline=inst.tags.get(DEADLINE_TAG),
            price=paid,
            on_demand_price=od,
        )
    st.ssh_cidr = cidr
    if run_id and inst.tags.get(RUN_TAG) != run_id:
        aws.tag_instance(stack.region, iid, {RUN_TAG: run_id})
    if inst.state == "pending":
        inst = aws.wait_running(stack.region, iid, reporter=reporter)
    _apply(st, inst)
    state.save(st)
    pin_host_key([st])
    if not state.key_path(stack.name).is_file():
        reporter.warn(
            f"the private key for {iid} is not in {state.stack_dir(stack.name)}: SSH to it is impossible; "
            f"`ec2dbn teardown {stack.name}` and launch again"
        )
    return Up(state=st, reused=True)


def release(st: state.StackState, run_id: str) -> None:
    """Hand the stack back after a run that keeps it (--keep): drop the run's lease tag."""
    if not st.instance_id:
        return
    inst = aws.describe_instance(st.region, st.instance_id)
    if inst is not None and inst.tags.get(RUN_TAG) == run_id:
        aws.untag_instance(st.region, st.instance_id, [RUN_TAG])


def _apply(st: state.StackState, inst: InstanceRecord) -> None:
    st.instance_id = inst.instance_id
    st.instance_type = inst.instance_type
    st.availability_zone = inst.availability_zone or st.availability_zone
    st.public_ip = inst.public_ip or st.public_ip
    st.public_dns = inst.public_dns or st.public_dns
    st.instance_state = inst.state
    st.image_id = inst.image_id or st.image_id
    st.instance_profile = inst.instance_profile or st.instance_profile


def pin_host_key(instances: Sequence[state.StackState]) -> None:
    """Pin the stack's host key for every name its instances are reached by (public IP, DNS, SSH
    endpoint): one instance of a stack, or every instance of a fleet group (they share the key)."""
    if not instances or not instances[0].host_public_key:
        return
    names: list[str] = []
    for st in instances:
        names += [st.public_ip or "", st.public_dns or ""]
        with contextlib.suppress(Ec2dbnError):
            names.append(state.endpoint_host_pattern(*st.ssh_endpoint()))
    if any(names):
        state.write_known_hosts(instances[0].name, names, instances[0].host_public_key)


# ---------------------------------------------------------------------------------------- teardown


def tear_down(name: str, region: str, *, reporter: Reporter | None = None) -> aws.TeardownReport:
    """Remove everything tagged for the stack in `region` (plus what local state names, when it is
    provably the stack's), then the local state. Raises TeardownIncomplete, carrying the report, when a
    step failed or something is still tagged; every step that could run has run."""
    local = local_state(name)
    if local is not None and local.region != region:
        local = None  # that state describes the stack in another region
    report = aws.teardown_stack(
        name,
        region,
        instance_ids=[local.instance_id] if local and local.instance_id else [],
        group_ids=[local.security_group_id] if local and local.security_group_id else [],
        key_names=[local.key_name] if local and local.key_name else [],
        reporter=reporter,
    )
    if report.clean and local_region(name) in (None, region):
        with contextlib.suppress(ConfigError, OSError):  # a name from a tag need not be a folder name
            report.removed_local_state = state.remove(name)
    if not report.clean:
        problems = "; ".join(report.errors) or "no step failed"
        raise TeardownIncomplete(
            f"teardown of {name} in {region} incomplete ({problems}); still tagged: {report.remaining}; "
            f"rerun `ec2dbn teardown {name} --yes`",
            report,
        )
    return report


def local_state(name: str) -> state.StackState | None:
    try:
        return state.load(name)
    except Ec2dbnError:
        return None


def local_region(name: str) -> str | None:
    st = local_state(name)
    return st.region if st else None


def local_regions() -> dict[str, str]:
    """stack name -> region, for every stack with local state."""
    out = {}
    for n in state.names():
        r = local_region(n)
        if r:
            out[n] = r
    return out


def stacks_in(region: str) -> list[str]:
    """Stack names with anything tagged in `region`, plus local states recorded there."""
    names = set(aws.stacks_in(region))
    names.update(n for n, r in local_regions().items() if r == region)
    return sorted(names)
