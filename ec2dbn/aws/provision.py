"""Provisioning verbs keyed by a stack name: plan, launch, wait, describe, teardown (in the spirit of
SkyPilot's sky/provision API).

This layer only talks to AWS and returns plain records of what exists. It does not persist local state,
pin host keys, price runs or connect: `ec2dbn.stack.lifecycle` does that with what these verbs return.
Each verb finds what exists by tags, so it is safe to re-run after any failure: `teardown` removes whatever is
tagged for the stack, even with the local state dir gone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from ec2dbn.aws import discovery, instances, keys, network, vpc
from ec2dbn.aws.errors import aws_errors
from ec2dbn.aws.instances import InstanceRecord
from ec2dbn.aws.planning import SKIPPED, CandidatePlan, Plan, dry_run, instance_spec, plan, prices, refused
from ec2dbn.aws.session import Aws
from ec2dbn.errors import Ec2dbnError
from ec2dbn.events import NullReporter, Reporter
from ec2dbn.spec.catalog import Price
from ec2dbn.spec.stack import Stack

#: The plan phase's verbs live in ec2dbn.aws.planning; they are part of this API.
__all__ = [
    "SKIPPED",
    "CandidatePlan",
    "InstanceRecord",
    "Plan",
    "Price",
    "dry_run",
    "instance_spec",
    "plan",
    "prices",
    "refused",
]

REUSABLE_STATES = ("pending", "running")


# --------------------------------------------------------------------------------------------- records


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
    instance_profile: str | None = None,
) -> Launched:
    """Create the key pair and security group (or reuse the stack's), then one instance through the
    fallback chain. Returns as soon as EC2 accepted the instance: wait with `wait_running`.

    On a failure before any instance exists, the key pair and security group THIS call created are
    deleted again (nothing pre-existing is touched). `instance_profile` (ec2dbn.aws.run_role's) gives the
    instance its role's credentials through IMDS; a profile IAM made seconds ago is waited for.
    """
    reporter = reporter or NullReporter()
    stack = p.stack
    aws = Aws(stack.region)
    key: keys.KeyPair | None = None
    sg: network.SecurityGroup | None = None
    try:
        key = keys.ensure(aws, stack.name, stack.key_name, key_store, reporter=reporter)
        sg = network.ensure(aws, stack.name, stack.key_name, p.cidr, p.network.vpc_id, reporter=reporter)
        spec = launch_spec(p, key, sg, user_data, instance_tags, instance_profile=instance_profile)
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
    *,
    instance_profile: str | None = None,
) -> instances.LaunchSpec:
    """What every instance of the plan is launched with (one by launch, many by a sweep's fleet), apart
    from type, zone and market."""
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
        subnets=p.network.subnets,
        instance_profile=instance_profile,
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
    """The stack's security group with its ingress reconciled to exactly `cidr` (your IP may have moved):
    the one it has, in whichever VPC, else a new one in the stack's network."""
    aws = Aws(stack.region)
    groups = network.find(aws, stack.name)
    if groups:
        vpc_id = str(groups[0]["VpcId"])
    else:
        vpc_id = vpc.resolve(
            aws, vpc_id=stack.vpc_id, subnet_ids=stack.subnet_ids, subnet_tags=stack.subnet_tags
        ).vpc_id
    return network.ensure(aws, stack.name, stack.key_name, cidr, vpc_id, reporter=reporter)


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
