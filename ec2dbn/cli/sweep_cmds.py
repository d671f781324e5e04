"""`ec2dbn sweep`: one job at many points (a grid, a random search), on an EC2 Fleet or here."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import click
from rich.live import Live
from rich.table import Table

from ec2dbn.cli import cli, results_option
from ec2dbn.cli.examples_cmds import JOB_FILE
from ec2dbn.cli.options import (
    backend_option,
    dry_run_option,
    json_option,
    market_option,
    region_option,
    ssh_cidr_option,
)
from ec2dbn.cli.output import ConsoleReporter, stderr, stdout, styled
from ec2dbn.errors import ConfigError
from ec2dbn.spec.cost import format_usd
from ec2dbn.sweep.prepare import Prepared
from ec2dbn.sweep.record import SweepRecord


@cli.command("sweep")
@click.argument("job", type=JOB_FILE, required=False)
@click.option(
    "--grid",
    multiple=True,
    metavar="KEY=V1,V2",
    help="Values of a job key (dotted), or stack=/instance_type=.",
)
@click.option(
    "--random", "random_count", type=click.IntRange(min=1), help="Random points: N draws of --sample."
)
@click.option(
    "--sample", multiple=True, metavar="KEY=DIST", help="uniform(a,b), loguniform(a,b) or choice(v,...)."
)
@click.option("--seed", type=click.IntRange(min=0), help="Seed of the random draws (default 0).")
@click.option("--stack", "stack_ref", metavar="NAME|PATH", help="Stack (default: the job's `stack:`).")
@market_option
@region_option()
@ssh_cidr_option("Who may SSH in (default: your IP /32).")
@click.option(
    "--instances", type=click.IntRange(min=1), help="Instances per hardware group (default: enough)."
)
@click.option(
    "--max-instances", type=click.IntRange(min=1), default=4, show_default=True, help="Cap on the default."
)
@click.option(
    "--max-cost", type=click.FloatRange(min=0, min_open=True), metavar="USD", help="Stop launching here."
)
@click.option("--local", is_flag=True, help="Run here, no AWS: --parallel worker processes.")
@click.option("--parallel", type=click.IntRange(min=1), default=2, show_default=True, help="Local workers.")
@backend_option("Override the job's backend (--local).")
@results_option("Folder under which results/<sweep-id>/ is written.")
@dry_run_option("Print the points, the capacity plan and the estimate; create nothing.")
@click.option("--resume", "resume_id", metavar="SWEEP_ID", help="Run the unfinished points of a sweep.")
@json_option("Print sweep.json's record as JSON at the end; the table and the points' output go to stderr.")
def sweep(
    job: Path | None,
    grid: tuple[str, ...],
    random_count: int | None,
    sample: tuple[str, ...],
    seed: int | None,
    stack_ref: str | None,
    spot: bool | None,
    region: str | None,
    ssh_cidr: str | None,
    instances: int | None,
    max_instances: int,
    max_cost: float | None,
    local: bool,
    parallel: int,
    backend: str | None,
    results_root: Path,
    dry_run: bool,
    resume_id: str | None,
    as_json: bool,
) -> int:
    """Run JOB at many points — a grid, a random search — each point a full `train` run, side by side.

    \b
    On EC2 the points share instances from ONE EC2 Fleet (one slot per GPU, or per CPU instance); each
    free slot takes the next point. Results per point in results/<sweep-id>/<point>/, plus sweep.json,
    summary.md (by test accuracy) and sweep.png. Everything is torn down at the end, also on Ctrl-C.
    Exit code: 0 every point finished (or diverged), 1 some did not, 130 interrupted.

    \b
    Examples:
      ec2dbn sweep sweep-mnist5k --local --parallel 2
      ec2dbn sweep seed-mnist5k --local --parallel 2 \\
          --grid model.learn_rates=0.1,0.3,1.0 --grid 'model.layers=[784,300,10];[784,800,10]'
      ec2dbn sweep job.yaml --grid instance_type=g4dn.xlarge,g5.xlarge --max-cost 2
      ec2dbn sweep job.yaml --random 8 --sample 'model.learn_rates=loguniform(0.01,1)' --dry-run
      ec2dbn sweep --resume sweep-20261130-120000-ab12
    """
    from ec2dbn.sweep import prepare as prep
    from ec2dbn.sweep import start

    reporter = ConsoleReporter(streams_to_stderr=as_json)  # stdout is the JSON's alone
    reporter.as_json = as_json
    if as_json and dry_run:
        raise click.UsageError("--json reports a sweep that ran: leave it out of --dry-run")
    if resume_id:
        if job or grid or random_count or sample:
            raise click.UsageError("--resume takes no JOB, --grid, --random or --sample: the sweep has them")
        sweep_dir = results_root / resume_id
        record, p = start.resume_sweep(
            sweep_dir,
            instances=instances,
            max_instances=max_instances,
            backend=backend,
            spot=spot,
            ssh_cidr=ssh_cidr,
            region=region,
        )
        stderr.print(f"resuming sweep {record.sweep_id}: {len(p.points)} unfinished point(s)")
        return _run(record, sweep_dir, p, reporter, max_cost or record.max_cost_usd, parallel)
    if job is None:
        raise click.UsageError(
            "name a job file or example (e.g. sweep-mnist5k, see `ec2dbn examples`), or --resume SWEEP_ID"
        )
    p = start.new_sweep(
        job,
        backend=backend,
        grid=grid,
        random_count=random_count,
        seed=seed,
        sample=sample,
        local=local,
        stack_ref=stack_ref,
        spot=spot,
        ssh_cidr=ssh_cidr,
        region=region,
    )
    if dry_run:
        return _dry_run(p, reporter, instances, max_instances, parallel, max_cost)
    record, sweep_dir = prep.open_sweep(
        p,
        results_root,
        instances=instances,
        max_instances=max_instances,
        parallel=parallel if local else None,
        max_cost=max_cost,
    )
    return _run(record, sweep_dir, p, reporter, max_cost, parallel)


def _points_table(p: Prepared) -> Table:
    from ec2dbn.sweep.points import show_value

    table = Table(title="points", title_justify="left", box=None, pad_edge=False)
    table.add_column("point")
    for k in p.keys:
        table.add_column(k)
    for vp in p.points:
        table.add_row(vp.point.point_id, *(show_value(vp.point.values.get(k, "")) for k in p.keys))
    return table


def _dry_run(
    p: Prepared,
    reporter: ConsoleReporter,
    instances: int | None,
    max_instances: int,
    parallel: int,
    max_cost: float | None,
) -> int:
    from ec2dbn.sweep import prepare as prep
    from ec2dbn.sweep.on_local import threads_per_worker
    from ec2dbn.sweep.record import new_sweep_id

    stdout.print(_points_table(p))
    if p.local:
        stdout.print(
            f"capacity: {parallel} local worker(s), {threads_per_worker(parallel)} BLAS thread(s) each; "
            "nothing billed"
        )
        return 0
    prep.assign_capacity(p, new_sweep_id(), instances, max_instances)
    total = 0.0
    for g in prep.capacity_plan(p, reporter):
        first = g.plan.candidates[0]
        pools = ", ".join(f"{c.instance_type} in {','.join(c.zones)}" for c in g.plan.candidates)
        stdout.print(
            f"fleet {g.stack.name}: {g.instances} instance(s) × {g.slots_per_instance} slot(s) for "
            f"{g.points} point(s); {' then '.join(g.plan.markets)} over {pools}; "
            f"image {g.plan.image.image_id}"
        )
        stdout.print(
            f"  {first.instance_type} at {format_usd(g.plan.hourly.usd_per_hour)}/h "
            f"({g.plan.hourly.source}); estimate ~{format_usd(g.estimate_usd)}"
        )
        total += g.estimate_usd
    limit = f"; --max-cost {format_usd(max_cost)}" if max_cost else ""
    stdout.print(
        f"estimated cost ~{format_usd(total)} (instances' launch and bootstrap, plus each point's epochs at "
        f"the s/epoch guess `train` uses){limit}"
    )
    return 0


def _run(
    record: SweepRecord,
    sweep_dir: Path,
    p: Prepared,
    reporter: ConsoleReporter,
    max_cost: float | None,
    parallel: int,
) -> int:
    """Show the sweep while ec2dbn.sweep.start.run_sweep runs it: a live board on a terminal, else each
    point's lines; then its outcome."""
    from ec2dbn.sweep.start import run_sweep

    console = stderr if reporter.as_json else stdout
    live = console.is_terminal
    echo = None if live else _echo(sys.stderr if reporter.as_json else sys.stdout)
    stderr.print(f"sweep {record.sweep_id}: {len(p.points)} point(s) — results in {sweep_dir}")

    def show(board: Any) -> Live:
        return Live(get_renderable=board.table, console=console, refresh_per_second=2)

    try:
        return run_sweep(
            record,
            sweep_dir,
            p,
            reporter,
            max_cost=max_cost,
            parallel=parallel,
            show=show if live else None,
            echo=echo,
        )
    finally:
        _print_outcome(sweep_dir, reporter.as_json)


def _echo(out: TextIO) -> Callable[[str], None]:
    """Without a terminal: each point's lines on `out`, prefixed with its id (one writer at a time)."""
    lock = threading.Lock()

    def echo(line: str) -> None:
        with lock, contextlib.suppress(OSError):
            out.write(line + "\n")
            out.flush()

    return echo


def _print_outcome(sweep_dir: Path, as_json: bool = False) -> None:
    from ec2dbn.results_layout import SUMMARY_FILE
    from ec2dbn.sweep.record import SweepRecord

    try:
        record = SweepRecord.load(sweep_dir)
    except ConfigError:
        return
    counts: dict[str, int] = {}
    for e in record.points:
        counts[e.status] = counts.get(e.status, 0) + 1
    states = ", ".join(f"{n} {s}" for s, n in counts.items())
    spent = f" — cost {format_usd(record.cost_usd)}" if record.cost_usd is not None else ""
    why = f" ({record.stop_reason})" if record.stop_reason else ""
    summary = sweep_dir / SUMMARY_FILE
    with contextlib.suppress(OSError):
        if summary.is_file():
            (stderr if as_json else stdout).print(styled(summary.read_text(encoding="utf-8")), end="")
        stderr.print(
            styled(
                (record.status, "bold"),
                f"{why} (exit {record.exit_code}) — sweep {record.sweep_id}: "
                f"{states} — results in {sweep_dir}{spent}",
            )
        )
        if record.unfinished() and record.status != "finished":
            stderr.print(f"continue it with `ec2dbn sweep --resume {record.sweep_id}`")
        if as_json:
            from dataclasses import asdict

            from trainer.strict_json import dumps

            click.echo(dumps({**asdict(record), "results_dir": str(sweep_dir)}, indent=2))
