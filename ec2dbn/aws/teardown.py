"""Tearing a stack down by its tags, one failure at a time, then checking that nothing tagged remains.

Only what carries ec2dbn's tags for the stack is removed: local state may name a security group or key
pair, but without the tags it is left alone. The stack's instance role and profile (IAM, named for the
stack and region) go too, once its instances are gone; the run store never does (`delete_store` is its
own, asked-for verb). A step that fails is recorded and the others still run, so
one stuck resource never hides the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ec2dbn.aws import discovery, fleets, instances, keys, network, run_role, templates
from ec2dbn.aws.errors import aws_errors
from ec2dbn.aws.session import Aws
from ec2dbn.aws.tags import MANAGED_TAG, TEARDOWN_TAG, as_dict, is_ours, utc_stamp
from ec2dbn.errors import CloudError, Ec2dbnError
from ec2dbn.events import NullReporter, Reporter


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
    #: The instance profile and role removed (ec2dbn.aws.run_role.profile_name), or "".
    removed_instance_profile: str = ""
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
    delete the key pairs, remove the instance profile and its role (after the instances: they use it). A
    step that fails is recorded and the rest still runs: one stuck resource never hides the others. A
    security group or key pair without ec2dbn's tags for this stack is never deleted. Raises CloudError
    at the end when anything failed or is still tagged.
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
    # Only ec2dbn's own (tagged) spot requests: a fleet's are untagged one-time requests that EC2 closes
    # with their instances, and the IAM policy lets ec2dbn cancel nothing it did not tag.
    spot_ids = sorted(
        r["SpotInstanceRequestId"]
        for r in inv.spot_requests
        if as_dict(r.get("Tags")).get(MANAGED_TAG) == "true"
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
    profile = run_role.profile_name(name, region)
    removed: list[bool] = []
    if (
        attempt(f"remove instance profile and role {profile}", _remove_role, name, region, removed)
        and removed[0]
    ):
        report.removed_instance_profile = profile
        reporter.step(f"removed instance profile and role {profile}")
    for what in report.skipped:
        reporter.warn(f"left {what} alone: only what ec2dbn tagged is removed")

    try:
        report.remaining = discovery.inventory(aws, name).describe()
    except Ec2dbnError as exc:
        report.remaining = f"unknown ({exc})"
    return report


def _remove_role(stack: str, region: str, removed: list[bool]) -> None:
    removed.append(run_role.remove_instance_profile(stack, region))


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
    """Stack names with anything tagged in `region`: EC2 resources, or an instance profile left alone."""
    return sorted({*discovery.inventory(Aws(region), None).stacks(), *run_role.profile_stacks(region)})


def verify_clean(region: str) -> str:
    """'nothing' when no ec2dbn-tagged instance, spot request, security group or key pair is left."""
    return discovery.inventory(Aws(region), None).describe()
