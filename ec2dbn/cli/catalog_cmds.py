"""Verbs about instance types and prices: catalog."""

from __future__ import annotations

import os
from typing import Any

import click

from ec2dbn.aws.prices import spot_prices
from ec2dbn.cli import cli
from ec2dbn.cli.options import json_option, region_option
from ec2dbn.cli.tables import Column, print_fitted
from ec2dbn.spec import catalog
from ec2dbn.spec.catalog import InstanceType, Price
from trainer.strict_json import dumps


def _default_region() -> str:
    # Same variables boto3 reads; without --live we make no AWS call, so no profile lookup either.
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def _ec2_client(region: str) -> Any:
    """An EC2 client from boto3's default chain (AWS_PROFILE, AWS_ENDPOINT_URL_EC2, ... all apply)."""
    from ec2dbn.aws.session import Aws  # imported here: without --live, boto3 is never loaded

    return Aws(region).ec2


def _flags(t: InstanceType) -> str:
    if t.retired:
        return f"retired (refused): use {t.suggestion}"
    if t.previous_generation:
        return "previous generation"
    return ""


def _row_dict(t: InstanceType, od: Price, spot: Price | None, live: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": t.name,
        "family": t.family,
        "gpu_model": t.gpu_model,
        "gpu_count": t.gpu_count,
        "gpu_memory_gib": t.gpu_memory_gib,
        "gpu_compute_capability": t.gpu_compute_capability,
        "vcpus": t.vcpus,
        "memory_gib": t.memory_gib,
        "previous_generation": t.previous_generation,
        "retired": t.retired,
        "suggestion": t.suggestion,
        "note": t.note,
        "on_demand_usd_per_hour": od.usd_per_hour,
        "on_demand_source": od.source,
    }
    if live:
        row["spot_usd_per_hour"] = spot.usd_per_hour if spot else None
        row["spot_source"] = spot.source if spot else None
    return row


def _price_cell(usd_per_hour: float) -> str:
    """USD/h with 2 to 5 decimals: list prices like 0.8048 or 2.24208 are shown as AWS lists them."""
    text = f"{usd_per_hour:.5f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(2, '0')}"


def _num(x: float) -> str:
    return f"{x:g}"


@cli.command("catalog")
@click.option("--gpu", "gpu_only", is_flag=True, help="Only GPU instance types.")
@region_option("Region for prices [default: $AWS_REGION or us-east-1].")
@json_option("Print JSON instead of a table.")
@click.option(
    "--live",
    is_flag=True,
    help="Also fetch current spot prices (describe_spot_price_history; needs AWS access).",
)
def catalog_cmd(gpu_only: bool, region: str | None, as_json: bool, live: bool) -> int:
    """List instance types: GPU, vCPUs, memory, on-demand price (bundled, dated) and spot price (--live).

    Without --live nothing touches AWS, so it works offline. Retired families (g2, p2: GPUs CUDA 12
    cannot run; g3, p3: Maxwell and Volta, which no NVIDIA driver after R580 supports) are listed,
    flagged, and refused by launch.

    \b
    Examples:
      ec2dbn catalog --gpu
      ec2dbn catalog --gpu --live --region us-west-2
      ec2dbn catalog --json | jq '.types[] | select(.gpu_model == "NVIDIA T4")'
    """
    region = catalog.check_region(region or _default_region())
    types = [t for t in catalog.all_types() if t.is_gpu or not gpu_only]
    spots: dict[str, Price] = {}
    if live:
        names = [t.name for t in types if not t.retired]
        spots = spot_prices(_ec2_client(region), names, region)
    rows = [(t, catalog.list_price(t, region), spots.get(t.name)) for t in types]
    base_note = catalog.list_price(types[0], region).source if types else ""

    if as_json:
        doc = {
            "region": region,
            "catalog_date": catalog.catalog_date(),
            "catalog_source": catalog.catalog_source(),
            "price_note": base_note,
            "live": live,
            "types": [_row_dict(t, od, sp, live) for t, od, sp in rows],
        }
        click.echo(dumps(doc, indent=2))
        return 0

    columns = [
        Column("Type", keep=True),
        Column("GPU", 2),
        Column("GPU mem", 4, justify="right"),
        Column("CC", 7, justify="right"),
        Column("vCPUs", 5, justify="right"),
        Column("Memory", 6, justify="right"),
        Column("On-demand $/h", 1, justify="right"),
        *([Column("Spot $/h", 3, justify="right")] if live else []),
        Column("Flags", keep=True, wrap=True),  # a retired type says so at any width
    ]
    table_rows = []
    for t, od, sp in rows:
        gpu = f"{t.gpu_count} × {t.gpu_model.removeprefix('NVIDIA ')}" if t.gpu_model else "—"
        cells = [
            t.name,
            gpu,
            f"{_num(t.gpu_memory_gib)} GiB" if t.is_gpu else "—",
            t.gpu_compute_capability or "—",
            str(t.vcpus),
            f"{_num(t.memory_gib)} GiB",
            _price_cell(od.usd_per_hour),
        ]
        if live:
            cells.append(_price_cell(sp.usd_per_hour) if sp else "—")
        cells.append(_flags(t))
        table_rows.append(cells)
    notes = [f"On-demand: Linux list prices, {base_note}. Source: {catalog.catalog_source()}."]
    if live:
        notes.append(
            f"Spot: live Linux prices in the cheapest AZ of {region} (describe_spot_price_history); "
            "— means no spot offer there."
        )
    else:
        notes.append("Spot: add --live for current spot prices (needs AWS credentials).")
    print_fitted(
        columns,
        table_rows,
        title=f"EC2 instance types — {region}",
        row_styles=["dim" if t.retired else None for t, _, _ in rows],
        notes=notes,
    )
    return 0
