"""A sweep on EC2: its fleets (one per kind of hardware) and a pipeline per point on a slot of them.

Each point runs through the same pipeline as `ec2dbn train` (ec2dbn.run.pipeline), with a `SlotCapacity`:
connect, ship, run, follow and pull happen exactly as for a train run, into results/<sweep-id>/<point>/;
the instance is the slot's (already bootstrapped), and losing it hands the point back to the pool, where
it waits for another slot and resumes from its last checkpoint (a recovery in its run.json). The fleets
are torn down by tags when the sweep ends, whatever ends it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ec2dbn.errors import ConfigError, Ec2dbnError
from ec2dbn.events import Reporter
from ec2dbn.results_layout import JOB_FILE, RUN_FILE
from ec2dbn.run.results import RunRecord
from ec2dbn.run.validate import Validated
from ec2dbn.spec.stack import Stack
from ec2dbn.stack import lifecycle
from ec2dbn.stack.lease import LocalLease
from ec2dbn.sweep.budget import Budget, instance_floor_usd, point_estimate_usd
from ec2dbn.sweep.fleet import FleetGroup, slots_of
from ec2dbn.sweep.points import ValidPoint
from ec2dbn.sweep.slots import Slot, SlotCapacity, SlotPool


def instances_for(points: int, stack: Stack, asked: int | None, max_instances: int) -> int:
    """How many instances a group gets: `asked`, else enough slots for its points, capped."""
    if asked is not None:
        return asked
    return max(1, min(max_instances, math.ceil(points / slots_of(stack.candidates[0]))))


class Ec2Runner:
    """The sweep's fleets, and each point's pipeline on one of their slots."""

    mode = "ec2"

    def __init__(
        self,
        sweep_id: str,
        sweep_dir: Path,
        stacks_: Sequence[Stack],
        counts: Sequence[int],
        budget: Budget,
        reporter: Reporter,
        work_left: Callable[[int], bool],
        requirements: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.sweep_dir = sweep_dir
        self.pool = SlotPool()
        self.counts = list(counts)
        self.budget = budget
        self.groups = [
            FleetGroup(i, s, sweep_id, sweep_dir, self.pool, budget, reporter, work_left, requirements)
            for i, s in enumerate(stacks_)
        ]
        self.sweep_id = sweep_id
        self._flows: dict[str, Any] = {}
        self._leases: list[LocalLease] = []
        self.unlaunched: dict[int, str] = {}

    def start_capacity(self, reporter: Reporter) -> None:
        """Lease each group's stack name to this sweep and launch its fleet. A group EC2 gives nothing is
        left out (its points are skipped, with the reason); when every group gets nothing, the first
        group's explained error is raised."""
        self._check_budget(reporter)
        first_error: Ec2dbnError | None = None
        for group, count in zip(self.groups, self.counts, strict=True):
            if count == 0:  # nothing left to run on this hardware (a --resume)
                self.pool.give_up(group.index, "no point of the group is left to run")
                continue
            self._leases.append(LocalLease(group.name, self.sweep_id).acquire())
            try:
                group.launch(count)
            except Ec2dbnError as exc:
                self.pool.give_up(group.index, f"its fleet got no instance: {exc}")
                self.unlaunched[group.index] = str(exc)
                reporter.warn(f"{group.name}: no instance: {exc}")
                first_error = first_error or exc
        if first_error is not None and len(self.unlaunched) == sum(1 for n in self.counts if n):
            raise first_error

    def _check_budget(self, reporter: Reporter) -> None:
        """Refuse, before anything is created, a --max-cost below the fleets' first minute."""
        limit = self.budget.max_cost_usd
        if limit is None:
            return
        floor = math.fsum(
            n * instance_floor_usd(g.plan(reporter).hourly.usd_per_hour)
            for g, n in zip(self.groups, self.counts, strict=True)
            if n
        )
        if floor >= limit:
            raise ConfigError(
                f"--max-cost ${limit:g} is below what {sum(self.counts)} instance(s) cost in their first "
                f"minute (~${floor:.4f}, EC2's minimum): raise --max-cost or lower --instances"
            )

    def run_point(self, vp: ValidPoint, slot: Slot, reporter: Reporter) -> tuple[RunRecord, str | None]:
        """The point's pipeline on `slot` (resuming its run when its folder has one); blocks."""
        from ec2dbn.run.pipeline import Pipeline

        group = self.groups[slot.group]
        pid = vp.point.point_id
        results_dir = self.sweep_dir / pid
        previous = RunRecord.load(results_dir) if (results_dir / RUN_FILE).is_file() else None
        v = Validated(
            job_path=self.sweep_dir / JOB_FILE,
            job=vp.job,
            stack=group.stack,
            stack_ref=vp.stack_ref,
            results_root=self.sweep_dir,
            results_dir=results_dir,
            resume=previous,
            plot=False,  # drawn after the fleet is torn down (ec2dbn.sweep.summary), not on its time
        )
        flow = Pipeline(v, reporter, SlotCapacity(group, slot, results_dir))
        self._flows[pid] = flow
        error = None
        try:
            flow.run()
        except Ec2dbnError as exc:
            error = str(exc)
        except Exception as exc:  # a bug in one point's run: recorded, the sweep goes on
            error = f"unexpected {type(exc).__name__}: {exc}"
        return flow.record, error

    def stop_point(self, pid: str) -> None:
        flow = self._flows.get(pid)
        if flow is not None:
            flow.request_stop()

    def estimate_usd(self, vp: ValidPoint, slot: Slot) -> float:
        member = self.groups[slot.group].members[slot.instance_id or ""]
        itype = member.instance.instance_type
        return point_estimate_usd(vp.job, itype, member.price.usd_per_hour, member.slots)

    def actual_usd(self) -> float:
        return math.fsum(g.actual_usd() for g in self.groups)

    def end(self, reporter: Reporter) -> list[str]:
        """Tear every group down by tags (also a group whose launch failed half-way); what is left."""
        problems = []
        for group in self.groups:
            try:
                report = lifecycle.tear_down(group.name, group.stack.region, reporter=reporter)
                reporter.step(f"teardown: {report.remaining} ec2dbn-tagged remains for {group.name}")
            except (Ec2dbnError, KeyboardInterrupt) as exc:
                problems.append(f"{group.name}: {exc or 'interrupted'}")
            finally:
                group.ended()
        for lease in self._leases:
            with contextlib.suppress(Exception):
                lease.release()
        return problems

    def capacity_record(self) -> list[dict[str, Any]]:
        return [g.to_dict() for g in self.groups]
