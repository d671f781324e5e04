"""From the command line to a sweep ready to run: points validated, grouped by hardware, planned, priced.

Nothing here touches AWS except `capacity_plan` (read-only: offerings, image, prices — what `ec2dbn plan`
asks); nothing is created until `open_sweep` claims the results folder and the scheduler launches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ec2dbn import aws
from ec2dbn.errors import ConfigError
from ec2dbn.events import Reporter
from ec2dbn.results_layout import JOB_FILE
from ec2dbn.spec import cost
from ec2dbn.spec.jobfiles import read_job_mapping
from ec2dbn.spec.stack import Stack
from ec2dbn.stack import lifecycle
from ec2dbn.sweep import points as pts
from ec2dbn.sweep.budget import instance_floor_usd, point_estimate_usd
from ec2dbn.sweep.fleet import slots_of
from ec2dbn.sweep.on_ec2 import instances_for
from ec2dbn.sweep.record import PointEntry, SweepRecord, claim_sweep_dir


@dataclass
class Prepared:
    """A validated sweep: its points, the hardware group of each, one stack per group (named after the
    sweep) and how many instances each group asks for (EC2 only)."""

    job_path: Path
    base: dict[str, Any]
    keys: list[str]
    points: list[pts.ValidPoint]
    local: bool
    stack_ref: str | None = None
    region: str | None = None  # the command line's --region and --spot/--on-demand, kept for --resume
    spot: bool | None = None
    groups: dict[str, int] = field(default_factory=dict)
    stacks: list[Stack] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    @property
    def requirements(self) -> tuple[tuple[str, str], ...]:
        """(module, pip requirement) pairs the points' data sets need on an instance (bootstrap installs
        the missing ones once per instance), every point's together."""
        from trainer.data import data_requirements

        found = (r for vp in self.points for r in data_requirements(vp.job.data.name))
        return tuple(dict.fromkeys(found))


def group_by_hardware(points: list[pts.ValidPoint], sweep_id: str) -> tuple[dict[str, int], list[Stack]]:
    """Points that share a stack (after their instance_type) share a group; group n's stack is named
    `<sweep-id>-<n>` (its resources' names and tags)."""
    keys: dict[str, int] = {}
    groups: dict[str, int] = {}
    stacks: list[Stack] = []
    for vp in points:
        assert vp.stack is not None
        key = vp.stack.model_dump_json()
        if key not in keys:
            keys[key] = len(stacks)
            stacks.append(vp.stack.model_copy(update={"name": f"{sweep_id}-{len(stacks) + 1}"}))
        groups[vp.point.point_id] = keys[key]
    return groups, stacks


def prepare(
    job_path: Path,
    *,
    grid: tuple[str, ...] = (),
    random_count: int | None = None,
    seed: int | None = None,
    sample: tuple[str, ...] = (),
    local: bool = False,
    stack_ref: str | None = None,
    spot: bool | None = None,
    ssh_cidr: str | None = None,
    region: str | None = None,
) -> Prepared:
    """The job file and the command line's points, every point validated (ConfigError: the first bad)."""
    base, section = read_job_mapping(job_path)
    spec = pts.merge_spec(pts.spec_from_section(section, str(job_path)), grid, random_count, seed, sample)
    points = pts.expand(spec)
    valid = pts.validate_all(
        points, base, stack_ref=stack_ref, spot=spot, ssh_cidr=ssh_cidr, local=local, region=region
    )
    return Prepared(job_path, base, spec.keys(), valid, local, stack_ref, region, spot)


def prepare_resume(
    sweep_dir: Path, spot: bool | None = None, ssh_cidr: str | None = None, region: str | None = None
) -> tuple[SweepRecord, Prepared]:
    """`--resume SWEEP_ID`: the sweep's record and its unfinished points, validated again, in the region and
    market the sweep was started with unless the command line says otherwise (then that is kept)."""
    record = SweepRecord.load(sweep_dir)
    todo = record.unfinished()
    if not todo:
        raise ConfigError(f"sweep {record.sweep_id} has no unfinished point; its results are in {sweep_dir}")
    base, _ = read_job_mapping(sweep_dir / JOB_FILE)
    local = record.mode == "local"
    record.region = region or record.region
    record.spot = record.spot if spot is None else spot
    kw = {
        "stack_ref": record.stack_ref,
        "spot": record.spot,
        "ssh_cidr": ssh_cidr,
        "local": local,
        "region": record.region,
    }
    every = [pts.validate_point(pts.Point(e.point_id, e.values), base, **kw) for e in record.points]
    prepared = Prepared(
        Path(record.job), base, record.keys, every, local, record.stack_ref, record.region, record.spot
    )
    return record, prepared


def assign_capacity(
    p: Prepared, sweep_id: str, instances: int | None, max_instances: int, todo: set[str] | None = None
) -> None:
    """Group the points by hardware (all of them, so a group keeps its name on --resume) and size each
    group's fleet for the points still to run (`todo`, default all; a group with none gets none). EC2 only."""
    if p.local:
        return
    p.groups, p.stacks = group_by_hardware(p.points, sweep_id)
    left = [g for pid, g in p.groups.items() if todo is None or pid in todo]
    p.counts = [
        instances_for(left.count(i), stack, instances, max_instances) if i in left else 0
        for i, stack in enumerate(p.stacks)
    ]


@dataclass(frozen=True)
class GroupPlan:
    """What one group's fleet would be: its plan (image, candidates, prices), size, slots, estimate."""

    stack: Stack
    plan: aws.Plan
    instances: int
    slots_per_instance: int
    points: int
    estimate_usd: float


def capacity_plan(p: Prepared, reporter: Reporter) -> list[GroupPlan]:
    """Each group's plan and cost estimate (read-only AWS calls): instances × (EC2's minute + the
    launch-and-bootstrap overhead `train` assumes) + every point's estimate at its share of the price."""
    out = []
    for i, stack in enumerate(p.stacks):
        plan = lifecycle.plan_stack(stack, reporter)
        hourly = plan.hourly.usd_per_hour
        slots = slots_of(plan.candidates[0].instance_type)
        members = [vp for vp in p.points if p.groups[vp.point.point_id] == i]
        overhead = cost.estimate(plan.hourly, cost.GUESS_OVERHEAD_S)
        usd = p.counts[i] * (instance_floor_usd(hourly) + overhead) + math.fsum(
            point_estimate_usd(vp.job, plan.candidates[0].instance_type, hourly, slots) for vp in members
        )
        out.append(GroupPlan(stack, plan, p.counts[i], slots, len(members), usd))
    return out


def open_sweep(
    p: Prepared,
    results_root: Path,
    *,
    instances: int | None,
    max_instances: int,
    parallel: int | None,
    max_cost: float | None,
) -> tuple[SweepRecord, Path]:
    """Claim results/<sweep-id>/, size the fleets, write job.yaml (what every point starts from) and
    sweep.json (every point pending)."""
    sweep_id, sweep_dir = claim_sweep_dir(results_root)
    assign_capacity(p, sweep_id, instances, max_instances)
    (sweep_dir / JOB_FILE).write_text(yaml.safe_dump(p.base, sort_keys=False), encoding="utf-8")
    record = SweepRecord(
        sweep_id=sweep_id,
        job=str(p.job_path),
        mode="local" if p.local else "ec2",
        keys=p.keys,
        points=[
            PointEntry(vp.point.point_id, vp.point.values, p.groups.get(vp.point.point_id, 0))
            for vp in p.points
        ],
        stack_ref=p.stack_ref,
        region=p.region,
        spot=p.spot,
        max_cost_usd=max_cost,
        parallel=parallel,
    )
    record.save(sweep_dir)
    return record, sweep_dir
