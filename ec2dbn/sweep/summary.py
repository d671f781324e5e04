"""A sweep's results side by side: summary.md (points by test accuracy) and sweep.png.

Each point's row comes from its own folder, read the way `ec2dbn report` reads any run
(ec2dbn.insight.report): the swept values, s/epoch (median fine-tuning epoch), test accuracy and cost,
with the point's state when it has no accuracy (`diverged`, `failed`, `skipped`, ...). The plot shows
test accuracy against each swept key; with exactly two keys, a heatmap of one against the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ec2dbn.errors import ConfigError
from ec2dbn.events import NullReporter, Reporter
from ec2dbn.insight.bench import usd_small
from ec2dbn.insight.report import load_row
from ec2dbn.results_layout import RUN_FILE, SUMMARY_FILE, SWEEP_PLOT
from ec2dbn.run.local import plot_quietly
from ec2dbn.sweep.points import show_value
from ec2dbn.sweep.record import SweepRecord
from trainer.contract import METRICS_JSON


@dataclass(frozen=True)
class SweepRow:
    """One point: its values, state, s/epoch (s), test accuracy (0..1) and cost (USD), None when unknown."""

    point_id: str
    values: dict[str, Any]
    status: str
    seconds_per_epoch: float | None
    test_accuracy: float | None
    cost_usd: float | None
    instance_type: str | None


def rows(sweep_dir: Path) -> tuple[SweepRecord, list[SweepRow]]:
    """The sweep and its points' rows, best test accuracy first (points without one last, by id)."""
    record = SweepRecord.load(sweep_dir)
    out = []
    for entry in record.points:
        folder = sweep_dir / entry.point_id
        run = None
        if (folder / RUN_FILE).is_file() or (folder / METRICS_JSON).is_file():
            try:
                run = load_row(folder)
            except ConfigError:
                run = None
        status = entry.status if entry.status != "running" or run is None else run.status
        out.append(
            SweepRow(
                entry.point_id,
                entry.values,
                status,
                run.seconds_per_epoch if run else None,
                run.test_accuracy if run and status == "finished" else None,
                run.cost_usd if run else None,
                run.instance_type if run else None,
            )
        )
    out.sort(key=lambda r: (r.test_accuracy is None, -(r.test_accuracy or 0.0), r.point_id))
    return record, out


def to_markdown(record: SweepRecord, table: list[SweepRow]) -> str:
    """summary.md: a title line, the table, and the sweep's totals."""
    keys = record.keys
    head = ["point", *keys, "instance", "s/epoch", "test accuracy", "$"]
    lines = [
        f"# Sweep {record.sweep_id}",
        "",
        f"{len(table)} points of `{record.job}` ({record.mode}); status {record.status}"
        + (f" ({record.stop_reason})" if record.stop_reason else "")
        + (f"; total cost {usd_small(record.cost_usd)}" if record.cost_usd is not None else "")
        + (f"; {record.elapsed_s:.0f} s" if record.elapsed_s is not None else ""),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in table:
        accuracy = f"{100 * r.test_accuracy:.2f} %" if r.test_accuracy is not None else r.status
        cells = [
            r.point_id,
            *(show_value(r.values.get(k, "")) for k in keys),
            r.instance_type or "—",
            "—" if r.seconds_per_epoch is None else f"{r.seconds_per_epoch:.3g}",
            accuracy,
            "—" if r.cost_usd is None else usd_small(r.cost_usd),
        ]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    lines += [
        "",
        "s/epoch: median over fine-tuning epochs; $: the point's share of its instance (local: $0).",
    ]
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: Path, reporter: Reporter | None = None) -> list[Path]:
    """Each point's learning curve (as `train` draws it), summary.md, and sweep.png when matplotlib is
    there and some point has an accuracy."""
    for folder in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        if (folder / METRICS_JSON).is_file() and not (folder / "learning_curve.png").is_file():
            plot_quietly(folder, reporter or NullReporter())
    record, table = rows(sweep_dir)
    written = [sweep_dir / SUMMARY_FILE]
    written[0].write_text(to_markdown(record, table), encoding="utf-8")
    if any(r.test_accuracy is not None for r in table) and record.keys:
        written.append(plot_sweep(record, table, sweep_dir / SWEEP_PLOT))
    return written


# -------------------------------------------------------------------------------------------- plot


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _axis_values(table: list[SweepRow], key: str) -> list[Any]:
    """The key's distinct values, sorted (numbers by value, others by their text)."""
    found = list({show_value(r.values.get(key)): r.values.get(key) for r in table}.values())
    return sorted(found) if _numeric(found) else sorted(found, key=show_value)


def plot_sweep(record: SweepRecord, table: list[SweepRow], out_png: Path) -> Path:
    """Test accuracy against each swept key (a panel each), or a heatmap for exactly two keys."""
    from ec2dbn.insight.plots import _save

    scored = [r for r in table if r.test_accuracy is not None]
    if len(record.keys) == 2:
        return _heatmap(record, table, scored, out_png)
    return _save(sweep_figure(record, table), out_png)


def sweep_figure(record: SweepRecord, table: list[SweepRow]) -> Any:
    """The panels of a sweep of one key, or of three and more: a panel per key. Its title takes two lines
    (what, then the sweep id) so that a one-panel figure does not cut it; an axis of whole numbers (layer
    widths, epochs) has whole-number ticks."""
    from ec2dbn.insight.plots import _figure, literal

    scored = [r for r in table if r.test_accuracy is not None]
    keys = record.keys
    fig = _figure(max(5.0, 4.2 * len(keys) + 0.6), 3.8)
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, key in zip(axes, keys, strict=True):
        values = _axis_values(table, key)
        numeric = _numeric(values)
        xs = [
            r.values.get(key)
            if numeric
            else [show_value(v) for v in values].index(show_value(r.values.get(key)))
            for r in scored
        ]
        ax.plot(xs, [100 * (r.test_accuracy or 0.0) for r in scored], "o", color="tab:blue")
        if numeric and len(values) > 1 and min(values) > 0 and max(values) / min(values) >= 20:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(range(len(values)), [literal(show_value(v)) for v in values], rotation=20)
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            _whole_ticks(ax, values)
        ax.set_xlabel(literal(key))
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle(literal(f"test accuracy by swept value\n{record.sweep_id}"), fontsize="medium")
    return fig


def _whole_ticks(ax: Any, values: list[int]) -> None:
    """Ticks at the swept values themselves when they are few, else at whole numbers only."""
    from matplotlib.ticker import FixedLocator, MaxNLocator, NullLocator, ScalarFormatter

    if len(values) <= 8:
        ax.xaxis.set_major_locator(FixedLocator(values))
        ax.xaxis.set_major_formatter(ScalarFormatter())  # a log axis would write 10^2.1
        ax.xaxis.set_minor_locator(NullLocator())
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _heatmap(record: SweepRecord, table: list[SweepRow], scored: list[SweepRow], out_png: Path) -> Path:
    from ec2dbn.insight.plots import _figure, _save, literal

    kx, ky = record.keys
    xs, ys = _axis_values(table, kx), _axis_values(table, ky)
    sx, sy = [show_value(v) for v in xs], [show_value(v) for v in ys]
    cells: dict[tuple[int, int], list[float]] = {}
    for r in scored:
        at = (sy.index(show_value(r.values.get(ky))), sx.index(show_value(r.values.get(kx))))
        cells.setdefault(at, []).append(100 * (r.test_accuracy or 0.0))
    grid = [[math.nan] * len(xs) for _ in ys]
    for (i, j), accs in cells.items():
        grid[i][j] = sum(accs) / len(accs)
    fig = _figure(1.4 * len(xs) + 2.8, 1.0 * len(ys) + 1.8)
    ax = fig.subplots()
    image = ax.imshow(grid, cmap="viridis", aspect="auto", origin="lower")
    for i, row in enumerate(grid):
        for j, acc in enumerate(row):
            bright = not math.isnan(acc) and float(image.norm(acc)) > 0.6  # viridis turns yellow up there
            text = "—" if math.isnan(acc) else f"{acc:.1f}"
            ax.text(j, i, text, ha="center", va="center", color="black" if bright else "white")
    ax.set_xticks(range(len(xs)), [literal(s) for s in sx])
    ax.set_yticks(range(len(ys)), [literal(s) for s in sy])
    ax.set_xlabel(literal(kx))
    ax.set_ylabel(literal(ky))
    fig.colorbar(image, ax=ax, label="test accuracy (%)")
    ax.set_title(literal(f"{record.sweep_id}: test accuracy"))
    return _save(fig, out_png)
