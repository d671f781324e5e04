"""`ec2dbn sweep` from parsed arguments to a finished sweep: the CLI calls these and only shows the result.

`new_sweep` validates the points (with --backend applied to each point's job) and refuses, before a sweep
folder exists, a backend this machine lacks for a local sweep; `resume_sweep` takes the unfinished points
of a sweep; `run_sweep` runs them on a fleet per hardware group (or local workers) under the budget, with
the live board the caller shows.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ec2dbn.events import Reporter
from ec2dbn.run.validate import with_backend
from ec2dbn.sweep import prepare as prep
from ec2dbn.sweep.budget import Budget
from ec2dbn.sweep.live import Board, PointRow
from ec2dbn.sweep.on_ec2 import Ec2Runner
from ec2dbn.sweep.on_local import LocalRunner
from ec2dbn.sweep.points import ValidPoint
from ec2dbn.sweep.prepare import Prepared
from ec2dbn.sweep.record import SweepRecord
from ec2dbn.sweep.scheduler import Runner, Sweep

#: How the caller shows the live board while the sweep runs (a rich Live on a terminal), or nothing.
Show = Callable[[Board], AbstractContextManager[object]]


def _with_backend(points: list[ValidPoint], backend: str | None) -> list[ValidPoint]:
    return [dataclasses.replace(vp, job=with_backend(vp.job, backend)) for vp in points]


def new_sweep(job: Path, *, backend: str | None = None, **given: Any) -> Prepared:
    """The sweep's points validated (`given`: prepare's grid, random_count, seed, sample, local,
    stack_ref, spot, ssh_cidr, region), each job on `backend` when given. ConfigError before anything
    exists: a bad point, or (local) a backend this machine cannot run."""
    p = prep.prepare(job, **given)
    p.points = _with_backend(p.points, backend)
    if p.local:  # a backend this machine lacks is refused before a sweep folder exists
        from ec2dbn.run.local import check_backend_here

        for wanted in sorted({vp.job.backend for vp in p.points}):
            check_backend_here(wanted)
    return p


def resume_sweep(
    sweep_dir: Path,
    *,
    instances: int | None,
    max_instances: int,
    backend: str | None = None,
    spot: bool | None = None,
    ssh_cidr: str | None = None,
    region: str | None = None,
) -> tuple[SweepRecord, Prepared]:
    """The unfinished points of the sweep in `sweep_dir`, with the capacity they need."""
    record, p = prep.prepare_resume(sweep_dir, spot=spot, ssh_cidr=ssh_cidr, region=region)
    todo = {e.point_id for e in record.unfinished()}
    prep.assign_capacity(p, record.sweep_id, instances, max_instances, todo)
    p.points = _with_backend([vp for vp in p.points if vp.point.point_id in todo], backend)
    return record, p


def run_sweep(
    record: SweepRecord,
    sweep_dir: Path,
    p: Prepared,
    reporter: Reporter,
    *,
    max_cost: float | None,
    parallel: int,
    show: Show | None = None,
    echo: Callable[[str], None] | None = None,
) -> int:
    """Run the points; returns the sweep's exit code. Whatever ends it, every fleet is torn down
    (ec2dbn.sweep.scheduler.Sweep.run). `echo`: each point's lines, prefixed, when no board is shown."""
    if p.local and max_cost:
        reporter.warn("--max-cost has no effect with --local: nothing is billed")
    budget = Budget(None if p.local else max_cost)
    board = Board(
        [PointRow(vp.point.point_id, vp.point.label(), vp.job.model.epochs) for vp in p.points],
        record.sweep_id,
    )
    groups = p.groups or {vp.point.point_id: 0 for vp in p.points}

    def runner(work_left: Callable[[int], bool]) -> Runner:
        if p.local:
            return LocalRunner(sweep_dir, record.parallel or parallel)
        return Ec2Runner(
            record.sweep_id,
            sweep_dir,
            p.stacks,
            p.counts,
            budget,
            reporter,
            work_left,
            requirements=p.requirements,
        )

    s = Sweep(record, sweep_dir, p.points, groups, runner, budget, board, reporter, echo)
    if show is None:
        return s.run()
    with show(board):
        return s.run()
