"""Launching a sweep's capacity: key pair, security group, launch template and ONE instant EC2 Fleet.

The provisioning verb for many instances, beside `provision.launch` for one. It creates the stack's key pair
and /32 security group (or reuses them), a launch template carrying the secure instance settings, then asks
for `count` instances in one `CreateFleet` over every pool of the plan (candidate types × zones): spot first
when the stack is spot, then — only when spot came short and the stack allows it — on-demand for the
remainder. Partial capacity is a success with fewer instances; none at all is the error `launch` would
give, and what this call created is removed again. Returns plain records; it persists nothing locally.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ec2dbn.aws import fleets, instances, keys, network, templates
from ec2dbn.aws.fleets import FleetAnswer, Pool
from ec2dbn.aws.instances import Attempt, InstanceRecord
from ec2dbn.aws.provision import Plan, _undo, launch_spec
from ec2dbn.aws.session import Aws
from ec2dbn.errors import Ec2dbnError
from ec2dbn.events import NullReporter, Reporter


@dataclass
class FleetLaunched:
    """What `launch_fleet` created, and each CreateFleet's answer (instances may still be pending)."""

    key: keys.KeyPair
    security_group: network.SecurityGroup
    template: templates.LaunchTemplate
    answers: list[FleetAnswer] = field(default_factory=list)

    @property
    def instances(self) -> list[InstanceRecord]:
        return [i for a in self.answers for i in a.instances]

    @property
    def errors(self) -> list[Attempt]:
        return [e for a in self.answers for e in a.errors]

    @property
    def fleet_ids(self) -> list[str]:
        return [a.fleet_id for a in self.answers if a.fleet_id]


def pools(p: Plan) -> list[Pool]:
    """The plan's candidates × zones (each zone's subnet when the stack names them), in the stack's order
    of preference."""
    subnets = p.network.subnets
    return [
        Pool(c.instance_type, z, c.max_price, c.vcpus, subnets.get(z)) for c in p.candidates for z in c.zones
    ]


def request_capacity(
    p: Plan,
    template_id: str,
    count: int,
    tags: Mapping[str, str],
    reporter: Reporter,
    aws: Aws | None = None,
) -> list[FleetAnswer]:
    """Up to `count` instances over an existing launch template (a first fleet, or replacements): one
    fleet per market of the plan, the next only for what is missing."""
    aws = aws or Aws(p.stack.region)
    answers: list[FleetAnswer] = []
    got = 0
    for market in p.markets:
        need = count - got
        if need <= 0:
            break
        answer = fleets.request(aws, p.stack.name, template_id, pools(p), market, need, tags)
        answers.append(answer)
        got += len(answer.instances)
        if answer.errors:
            short = f"got {len(answer.instances)} of {need}" if answer.instances else "got none"
            reporter.warn(f"{market} fleet {short}: {fleets.summary(answer.errors)}")
    return answers


def launch_fleet(
    p: Plan,
    *,
    count: int,
    user_data: str,
    instance_tags: Mapping[str, str],
    sweep_tags: Mapping[str, str],
    key_store: keys.KeyStore,
    reporter: Reporter | None = None,
) -> FleetLaunched:
    """Key pair, security group, launch template, then up to `count` instances from one instant fleet
    (plus an on-demand one for the remainder when the stack allows).

    Raises the explained CloudError (QuotaError with the quota code, SpotPriceError, CapacityError) when
    no instance at all was launched; everything this call created is then removed again.
    """
    reporter = reporter or NullReporter()
    stack = p.stack
    aws = Aws(stack.region)
    key: keys.KeyPair | None = None
    sg: network.SecurityGroup | None = None
    template: templates.LaunchTemplate | None = None
    answers: list[FleetAnswer] = []
    try:
        key = keys.ensure(aws, stack.name, stack.key_name, key_store, reporter=reporter)
        sg = network.ensure(aws, stack.name, stack.key_name, p.cidr, p.network.vpc_id, reporter=reporter)
        spec = launch_spec(p, key, sg, user_data, {**instance_tags, **sweep_tags})
        template = templates.create(aws, stack.key_name, spec, sweep_tags)
        reporter.step(f"created launch template {template.template_id} ({template.name})")
        answers = request_capacity(p, template.template_id, count, sweep_tags, reporter, aws)
        if not any(a.instances for a in answers):
            raise fleets.explain(stack.region, [e for a in answers for e in a.errors], p.markets, pools(p))
    except BaseException:
        _undo_fleet(aws, answers, template, reporter)
        _undo(aws, key, sg, key_store, reporter)
        raise
    assert key is not None and sg is not None and template is not None
    return FleetLaunched(key, sg, template, answers)


def _undo_fleet(
    aws: Aws, answers: list[FleetAnswer], template: templates.LaunchTemplate | None, reporter: Reporter
) -> None:
    """Remove the fleets (their instances with them) and the launch template this launch created."""
    ids = [a.fleet_id for a in answers if a.fleet_id]
    try:
        if ids:
            fleets.delete(aws, ids)
        if template is not None:
            templates.delete(aws, template.template_id)
            reporter.step(f"removed launch template {template.template_id} (no instance was launched)")
    except Ec2dbnError as exc:
        reporter.warn(f"could not remove what the fleet request created: {exc}; `ec2dbn teardown` will")


def terminate(region: str, instance_ids: list[str]) -> None:
    """Terminate instances now (one that never became usable); teardown later finds any leftover by tags."""
    instances.terminate(Aws(region), instance_ids)
