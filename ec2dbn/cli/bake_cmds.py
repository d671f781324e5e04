"""`ec2dbn bake`, and the bakes' part of `status` and `teardown` (`--images`, and what `--all` keeps)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from ec2dbn import aws
from ec2dbn.bake import pipeline as baking
from ec2dbn.cli import cli, results_option
from ec2dbn.cli.options import json_option, region_option
from ec2dbn.cli.output import ConsoleReporter, cell, stdout, styled
from ec2dbn.errors import Ec2dbnError
from ec2dbn.events import Reporter
from ec2dbn.spec.catalog import snapshot_price
from ec2dbn.spec.cost import format_usd
from ec2dbn.spec.overrides import load_for_launch
from trainer.strict_json import dumps


@cli.command()
@click.option("--stack", "stack_ref", metavar="NAME|PATH", help="Stack to bake (default: g4dn-spot).")
@click.option(
    "--data",
    "data_sets",
    metavar="NAME",
    multiple=True,
    help="A data set to cache in the image (repeatable; default: those the bundled jobs use).",
)
@region_option()
@results_option("Folder under which the bake's record (<bake-id>/run.json, bootstrap.log) is written.")
@json_option("Print the bake (image, hash, size, $/month) as JSON at the end.")
def bake(
    stack_ref: str | None, data_sets: tuple[str, ...], region: str | None, results_root: Path, as_json: bool
) -> int:
    """Make (or find) the stack's baked image: launch its instance, run its bootstrap, cache the data sets,
    strip the builder's keys, image it, terminate it. Stacks with `image: baked` or `bake: auto` then
    start from it, and bootstrap only confirms. Unchanged inputs (base image, bootstrap scripts, Python
    requirements) reuse the bake that exists. A failure or Ctrl-C leaves no instance, image or snapshot.

    \b
    Examples:
      ec2dbn bake --stack g4dn-spot
      ec2dbn status                         # bakes, their size and monthly cost
      ec2dbn teardown --images --yes        # remove them (images and snapshots)
    """
    stack = load_for_launch(stack_ref, region=region)
    v = baking.validated(stack, stack_ref, results_root)
    reporter = ConsoleReporter(streams_to_stderr=as_json)  # stdout is the JSON's alone
    flow = baking.Bake(v, reporter, stack=stack, data_sets=data_sets or None)
    code = flow.run()
    if flow.outcome is not None and as_json:
        b = flow.outcome
        doc = {
            "reused": b.reused,
            "image_id": b.bake.image_id,
            "bake_hash": b.bake.bake_hash,
            "region": stack.region,
            "size_gb": b.bake.size_gb,
            "monthly_usd": b.monthly_usd,
        }
        click.echo(dumps(doc, indent=2))
    elif flow.outcome is not None:
        b = flow.outcome
        verb = "reused" if b.reused else "baked"
        what = f" {verb} {b.bake.image_id} (bake {b.bake.bake_hash}) in {stack.region}"
        stdout.print(styled(("✓", "bold green"), what))
        stdout.print(
            f"  keeping it costs ≤ {format_usd(b.monthly_usd)}/month ({b.bake.size_gb} GiB of snapshots at "
            f"${snapshot_price().usd_per_gb_month}/GB-month, {snapshot_price().source})"
        )
        stdout.print(f"  use it: `image: baked` or `bake: auto` in stack {stack.name}")
        stdout.print("  remove it: ec2dbn teardown --images --yes")
    elif code == 0:
        raise Ec2dbnError("the bake ended without an image")
    return code


def print_bakes(regions: list[str]) -> None:
    """`status`: every bake in `regions` with its snapshot size and monthly cost."""
    rows = [(r, b) for r in regions for b in baking.kept(r)]
    if not rows:
        return
    table = Table(box=None, pad_edge=False)
    for col in ("bake", "image", "state", "created", "snapshots", "per month", "stack"):
        table.add_column(col, no_wrap=col in ("bake", "image"))
    for region, b in rows:
        created = b.created_at.strftime("%Y-%m-%d") if b.created_at else "?"
        table.add_row(
            *map(
                cell,
                (
                    b.bake_hash,
                    b.image_id if len(regions) == 1 else f"{b.image_id} ({region})",
                    b.state,
                    created,
                    f"{len(b.snapshot_ids)}, ≤{b.size_gb} GiB",
                    format_usd(baking.monthly_usd(b.size_gb)),
                    b.stack,
                ),
            )
        )
    stdout.print("")
    stdout.print(table)
    total = sum(baking.monthly_usd(b.size_gb) for _, b in rows)
    stdout.print(
        f"bakes: {len(rows)}, ≤ {format_usd(total)}/month for their snapshots ({snapshot_price().source}); "
        "`ec2dbn teardown --images --yes` removes them"
    )


def kept_line(regions: list[str]) -> str:
    """`teardown --all`: how many bakes it kept and what they cost per month."""
    records = [b for r in regions for b in baking.kept(r)]
    if not records:
        return "bakes kept: none"
    total = sum(baking.monthly_usd(b.size_gb) for b in records)
    return (
        f"kept {len(records)} bake(s) costing ≤ {format_usd(total)}/month "
        "(`ec2dbn teardown --images --yes` removes them)"
    )


def teardown_images(regions: list[str], older: str | None, reporter: Reporter) -> int:
    """`teardown --images [--older-than AGE]`: deregister the bakes and delete their snapshots, then check
    that none of them (and no orphan snapshot) is left. Raises Ec2dbnError when something failed."""
    age = baking.parse_age(older) if older else None
    failures: list[str] = []
    for region in regions:
        chosen = baking.older_than(baking.kept(region), age)
        removed = baking.remove(region, chosen, reporter)
        failures.extend(removed.errors)
        left = [b.image_id for b in aws.find_bakes(region) if b.image_id in {c.image_id for c in chosen}]
        orphans = aws.orphan_snapshots(region)
        if left or orphans:
            failures.append(f"{region}: still there: {', '.join([*left, *orphans])}")
            continue
        stdout.print(
            styled(
                ("✓", "bold green"),
                f" {region}: deregistered {len(removed.deregistered)} image(s), "
                f"deleted {len(removed.deleted_snapshots)} snapshot(s)",
            )
        )
    if failures:
        raise Ec2dbnError(f"teardown --images left things behind: {' | '.join(failures)}")
    return 0
