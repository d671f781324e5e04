"""Verbs that bring a stack up and show it: launch (and the plan it prints), status. Teardown is
ec2dbn.cli.teardown_cmds.

Regions: `launch` uses --region, else $AWS_REGION, else the stack's `region`. `status` and `teardown`
look where the stack is (ec2dbn.cli.stack_regions).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from ec2dbn import aws
from ec2dbn.cli import bake_cmds, cli, results_option
from ec2dbn.cli.options import (
    dry_run_option,
    image_option,
    json_option,
    launched_stack,
    market_option,
    name_option,
    region_option,
    ssh_cidr_option,
    stack_option,
)
from ec2dbn.cli.output import ConsoleReporter, cell, stdout, styled
from ec2dbn.cli.stack_regions import regions
from ec2dbn.errors import Ec2dbnError
from ec2dbn.spec.cost import format_usd
from ec2dbn.spec.overrides import load_for_launch
from ec2dbn.spec.stack import DEFAULT_STACK
from ec2dbn.stack import launch as launching
from ec2dbn.stack import lifecycle, state
from ec2dbn.stack import status as stack_status
from trainer.strict_json import dumps


def _money(usd: float) -> str:
    return format_usd(usd)


def _print_table(table: Table) -> None:
    """Tables keep every column readable when piped (rich would squeeze them to 80 columns)."""
    if stdout.is_terminal:
        stdout.print(table)
    else:
        Console(file=stdout.file, width=240, highlight=False, markup=False, emoji=False).print(table)


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    h, rem = divmod(max(0, seconds), 3600)
    return f"{h}h{rem // 60:02d}m"


# ---------------------------------------------------------------------------------------------- launch


def _print_launch(record: lifecycle.Up) -> None:
    st = record.state
    verb = "reusing" if record.reused else "launched"
    stdout.print(
        styled(
            ("✓", "bold green"),
            f" {verb} stack ",
            (st.name, "bold"),
            f": {st.instance_id} ({st.instance_type}, {st.market}, {st.availability_zone})",
        )
    )
    address = st.public_ip or "-"
    if st.public_dns:
        address += f" ({st.public_dns})"
    stdout.print(f"  address    {address}, ssh user {st.ssh_user}")
    if st.price is not None:
        stdout.print(f"  price      {_money(st.price.usd_per_hour)}/h {st.price.market} — {st.price.source}")
        od = st.on_demand_price
        if od is not None and st.price.market == "spot":
            stdout.print(f"             on-demand would be {_money(od.usd_per_hour)}/h — {od.source}")
    if st.deadline:
        left = int((state.parse_iso(st.deadline) - state.utc_now()).total_seconds())
        stdout.print(f"  lifetime   terminates itself at {st.deadline} (in {_duration(left)})")
    stdout.print(f"  state      {state.stack_dir(st.name)} (key 0600, known_hosts pinned)")
    stdout.print(f"  tear down  ec2dbn teardown {st.name} --yes")


def plan_doc(p: aws.Plan, checks: list[tuple[str, str]]) -> dict[str, Any]:
    """The plan as JSON for scripts: what `print_plan` shows, with numbers as numbers."""
    s = p.stack
    return {
        "stack": s.name,
        "region": p.region,
        "image": {
            "id": p.image.image_id,
            "name": p.image.name,
            "requested": s.image,
            "parameter": p.image.parameter,
        },
        "access": {"cidr": p.cidr, "port": 22, "ssh_user": s.ssh_user, "imds": "v2 required"},
        "disk": {"size_gib": s.volume_gb, "type": "gp3", "encrypted": True, "deleted_with_instance": True},
        "markets": list(p.markets),
        "max_lifetime": s.max_lifetime,
        "candidates": [
            {
                "instance_type": c.instance_type,
                "gpu": c.gpu,
                "vcpus": c.vcpus,
                "zones": list(c.zones),
                "on_demand": asdict(c.on_demand) if c.on_demand else None,
                "spot": asdict(c.spot) if c.spot else None,
                "max_price_usd_per_hour": c.max_price,
            }
            for c in p.candidates
        ],
        "hourly": asdict(p.hourly) if p.hourly else None,
        "max_cost_usd": p.max_cost_usd,
        "checks": [{"check": what, "outcome": outcome} for what, outcome in checks],
        "notes": list(p.notes),
    }


def print_plan(p: aws.Plan) -> None:
    s = p.stack
    stdout.print(styled((f"Plan for stack {s.name}", "bold"), f" in {p.region} (dry run: nothing created)"))
    via = f" via {p.image.parameter}" if p.image.parameter else ""
    stdout.print(f"  image      {s.image} → {p.image.image_id} {p.image.name}{via}")
    stdout.print(f"  access     TCP 22 from {p.cidr} only; ssh user {s.ssh_user}; IMDSv2 required")
    stdout.print(f"  disk       {s.volume_gb} GiB gp3, encrypted, deleted with the instance")
    stdout.print(f"  markets    {' then '.join(p.markets)}")
    stdout.print(f"  lifetime   {s.max_lifetime}: the instance terminates itself")
    stdout.print(f"  network    {p.network.source}; public IP requested at launch")
    table = Table(show_edge=False, pad_edge=False, box=None)
    for col in ("type", "GPU", "vCPUs", "zones (in order)", "on-demand/h", "spot now/h", "max price/h"):
        table.add_column(col)
    for c in p.candidates:
        table.add_row(
            *map(
                cell,
                (
                    c.instance_type,
                    c.gpu,
                    c.vcpus,
                    ",".join(z.removeprefix(p.region) for z in c.zones),
                    _money(c.on_demand.usd_per_hour) if c.on_demand else "price unknown",
                    _money(c.spot.usd_per_hour) if c.spot else "-",
                    _money(c.max_price) if c.max_price is not None else "none (caps at on-demand)",
                ),
            )
        )
    _print_table(table)
    hourly, worst = p.hourly, p.max_cost_usd
    rate = f"{_money(hourly.usd_per_hour)}/h {hourly.market} ({hourly.source})" if hourly else "price unknown"
    bound = f"at most {_money(worst)}" if worst is not None else "no upper bound known"
    stdout.print(f"  cost       {rate}; {bound} if left for its whole {s.max_lifetime}")
    od = p.candidates[0].on_demand
    stdout.print(f"  prices     on-demand from {od.source if od else 'nowhere: price unknown'}")
    for what, outcome in p.checks:
        if outcome.startswith(aws.SKIPPED):
            stdout.print(
                styled(f"  dry run    {what}: ", ("skipped", "yellow"), f": {outcome[len(aws.SKIPPED) :]}")
            )
            continue
        mark = ("allowed", "green") if outcome == "allowed" else ("refused", "red")
        stdout.print(styled(f"  dry run    {what}: ", mark, "" if outcome == "allowed" else f": {outcome}"))


@cli.command()
@stack_option
@market_option
@click.option(
    "--instance-type",
    "instance_types",
    multiple=True,
    metavar="TYPE",
    help="Override the type (repeat for candidates).",
)
@region_option()
@ssh_cidr_option()
@image_option()
@name_option()
@click.option("--no-bootstrap", is_flag=True, help="Stop once the instance is running.")
@dry_run_option("Validate, price and run EC2's DryRun checks; create nothing.")
@json_option("Print the launched stack's state (with --dry-run: the plan) as JSON.")
def launch(
    stack_ref: str | None,
    spot: bool | None,
    instance_types: tuple[str, ...],
    region: str | None,
    ssh_cidr: str | None,
    image: str | None,
    name: str | None,
    no_bootstrap: bool,
    dry_run: bool,
    as_json: bool,
) -> int:
    """Launch a stack (or reuse it if it is up): a tagged key pair, a security group admitting only
    your IP on port 22, and a self-terminating spot or on-demand instance.

    \b
    Examples:
      ec2dbn launch --spot --no-bootstrap
      ec2dbn launch --stack g5-spot --region us-west-2 --dry-run
      ec2dbn launch --stack ./my.yaml --instance-type g6.xlarge --instance-type g5.xlarge
    """
    reporter = ConsoleReporter(streams_to_stderr=as_json)  # the bootstrap's output must not mix with the JSON
    stack = load_for_launch(
        stack_ref,
        name=name,
        region=region,
        spot=spot,
        instance_types=instance_types,
        ssh_cidr=ssh_cidr,
        image=image,
    )
    if dry_run:
        p, checks = launching.dry_run(stack, reporter)
        if as_json:
            click.echo(dumps(plan_doc(p, checks), indent=2))
        else:
            print_plan(p)
        return 1 if aws.refused(checks) else 0

    def show(record: lifecycle.Up) -> None:
        if as_json:
            click.echo(dumps({**record.state.model_dump(mode="json"), "reused": record.reused}, indent=2))
        else:
            _print_launch(record)

    launching.launch(stack, reporter, stack_ref or DEFAULT_STACK, bootstrap=not no_bootstrap, on_up=show)
    return 0


# ---------------------------------------------------------------------------------------------- status


@cli.command()
@launched_stack
@region_option("Region to look in (default: where local state says, plus the default).")
@json_option()
@results_option("Where detached runs' folders are (their state is read from the run store).")
def status(name: str | None, region: str | None, as_json: bool, results_root: Path) -> int:
    """Show stacks as AWS reports them (by tags), reconciled with local state: state, type, market,
    zone, address, lifetime left, price and cost so far.

    \b
    Detached runs (`train --detach`) are listed below the stacks with their last epoch, from the run
    store.

    \b
    Examples:
      ec2dbn status
      ec2dbn status --stack g4dn-spot --json
    """
    if name:
        state.check_name(name)
    rows: list[stack_status.StackStatus] = []
    unasked: Ec2dbnError | None = None  # why AWS could not be asked: shown after what local state knows
    for r in regions(name, region):
        try:
            rows.extend(stack_status.query(r, name))
        except Ec2dbnError as exc:
            unasked = unasked or exc
            rows.extend(stack_status.from_local(r, name, _short_cause(exc)))
    if unasked is not None:
        if rows:
            _print_status(rows, as_json, name, region, bakes=False)
        raise unasked  # the same line and exit code as every verb gives for this cause
    code = _print_status(rows, as_json, name, region)
    if not as_json:
        from ec2dbn.cli.store_cmds import print_detached

        print_detached(results_root)
    return code


def _short_cause(exc: Ec2dbnError) -> str:
    """'no AWS credentials found' from 'no AWS credentials found: set AWS_PROFILE ...' (the row's note)."""
    return str(exc).split(":")[0].split(";")[0].strip()


def _print_status(
    rows: list[stack_status.StackStatus],
    as_json: bool,
    name: str | None,
    region: str | None,
    bakes: bool = True,
) -> int:
    if as_json:
        click.echo(dumps([row.as_json() for row in rows], indent=2))
        return 0
    if not rows:
        stdout.print(f"no ec2dbn stacks in {', '.join(regions(name, region))}")
        bake_cmds.print_bakes(regions(name, region))
        return 0
    table = Table(box=None, pad_edge=False)
    for col in (
        "stack",
        "state",
        "type",
        "market",
        "zone",
        "address",
        "left",
        "price/h",
        "cost so far",
        "note",
    ):
        table.add_column(col)
    sources = {}
    for row in rows:
        if row.price is not None:
            sources[row.price.source] = True
        table.add_row(
            *map(
                cell,
                (
                    row.name,
                    row.state,
                    row.instance_type or "-",
                    row.market or "-",
                    row.availability_zone or row.region,
                    row.public_ip or "-",
                    _duration(row.seconds_left),
                    _money(row.price.usd_per_hour) if row.price else "-",
                    _money(row.cost_so_far_usd) if row.cost_so_far_usd is not None else "-",
                    row.note,
                ),
            )
        )
    _print_table(table)
    for src in sources:
        stdout.print(f"prices: {src}")
    if bakes:
        bake_cmds.print_bakes(regions(name, region))
    return 0


# -------------------------------------------------------------------------------------------- teardown
