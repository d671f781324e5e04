"""The plan phase: what a run's stack would become, and what it would cost. Nothing is created here.

`train` plans to reuse the stack's running instance (when it is free and what was asked for) or to launch
a new one; `plan` shows the second kind, with EC2's DryRun permission checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from ec2dbn import aws
from ec2dbn.errors import CloudError
from ec2dbn.events import Reporter
from ec2dbn.run.validate import Validated
from ec2dbn.spec import catalog, cost
from ec2dbn.spec.memory import check_fits
from ec2dbn.stack import lifecycle
from ec2dbn.stack.preflight import require_account


@dataclass
class Planned:
    """The plan phase's answer: the running instance to reuse, or the plan for a new one."""

    existing: aws.InstanceRecord | None
    plan: aws.Plan | None


def plan_stack(v: Validated, reporter: Reporter, run_id: str | None) -> tuple[Planned, str]:
    """What the stack would become for this run, and the estimate line. Creates nothing.

    Raises StackBusyError when another run holds the stack, ConfigError when the running instance is
    not what the stack asks for.
    """
    require_account(v.stack.region)  # credentials and region first: the cause of a failure comes first
    existing = lifecycle.reusable_instance(v.stack, run_id)
    if existing is not None:
        region, itype = v.stack.region, existing.instance_type
        price = aws.instance_prices(region, itype, existing.market, None, None)[1]
        spec = aws.instance_spec(region, itype)
        check_fits(v.job, v.stack, {itype: spec})
        return Planned(existing, None), cost.estimate_line(v.stack, v.epochs, price, spec)
    p = lifecycle.plan_stack(v.stack, reporter)
    check_fits(v.job, v.stack, _described(p))
    return Planned(None, p), cost.estimate_line(v.stack, v.epochs, p.hourly, p.candidates[0].spec)


def dry_run(v: Validated, reporter: Reporter) -> tuple[aws.Plan, list[tuple[str, str]], str]:
    """`ec2dbn plan`: the validated run's plan phase for a new instance, EC2's DryRun permission checks
    and the estimate. Creates nothing, takes no lease."""
    try:
        cidr = lifecycle.resolve_cidr(v.stack, reporter)
    except CloudError:  # offline or behind a proxy: a plan does not need to know the address yet
        cidr = "your public IP as /32 (resolved at launch)"
    require_account(v.stack.region)
    p = lifecycle.plan_stack(v.stack, reporter, cidr=cidr)
    check_fits(v.job, v.stack, _described(p))
    checks = aws.dry_run(p, reporter=reporter)
    return p, checks, cost.estimate_line(v.stack, v.epochs, p.hourly, p.candidates[0].spec)


def _described(p: aws.Plan) -> dict[str, catalog.InstanceType]:
    """What each candidate is (the catalog's entry or EC2's description), for the memory check."""
    return {c.instance_type: c.spec for c in p.candidates}
