"""A bench's outputs: summary.md and bench.png (time per epoch and GPU speedup against the hidden width).

The figure reads rows that ec2dbn.insight.bench made; bench itself draws nothing, so the two import in one
direction only. matplotlib as in ec2dbn.insight.plots: an extra, imported when a plot is drawn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ec2dbn.errors import ConfigError
from ec2dbn.insight.bench import (
    BenchSummary,
    as_row,
    find_break_even,
    render_summary,
    speedups,
    usd_small,
)
from ec2dbn.insight.plots import _COLOURS, _LABELS, _figure, _save, literal
from ec2dbn.results_layout import BENCH_PLOT, SUMMARY_FILE
from ec2dbn.untrusted_json import mapping, text


def plot_bench(
    bench_rows: Sequence[Any],
    out_png: str | Path,
    *,
    title: str = "ec2dbn bench",
    usd_per_hour: float | None = None,
) -> Path:
    """The bench figure (`bench_figure`) saved as a PNG; returns its path."""
    return _save(bench_figure(bench_rows, title=title, usd_per_hour=usd_per_hour), out_png)


def bench_figure(
    bench_rows: Sequence[Any], *, title: str = "ec2dbn bench", usd_per_hour: float | None = None
) -> Any:
    """Left: s/epoch vs hidden width per backend (log-log), $/epoch labels when priced. Right, when some
    width has both backends: speedup (NumPy s/epoch ÷ CuPy s/epoch) vs width with speedup = 1 and the
    break-even width marked. Without a speedup (e.g. no GPU rows) the figure is the one panel.

    `bench_rows` are `ec2dbn.insight.bench.BenchRow`s or bench.json row dicts (priced with `usd_per_hour` when
    given, else using their own `usd_per_epoch`). Rows that were skipped or failed are listed under the
    plot, not drawn. Raises ConfigError when no row has a measurement, or matplotlib is missing.
    """
    rows = [as_row(r, usd_per_hour) for r in bench_rows]
    measured = [r for r in rows if r.ok]
    if not measured:
        raise ConfigError("no measured bench rows (every row is skipped or failed): nothing to plot")
    sp = speedups(rows)
    widths = sorted({r.width for r in rows})
    if sp:
        fig = _figure(11.0, 4.8)
        ax_t, ax_s = fig.subplots(1, 2)
        _speedup_panel(ax_s, sp, widths)
    else:
        fig = _figure(6.4, 4.8)
        ax_t = fig.subplots(1, 1)
    _time_panel(ax_t, measured, widths)
    notes = sorted(
        {f"{r.backend}: {r.status} ({_shorten(r.reason or 'no reason given')})" for r in rows if not r.ok}
    )
    if not sp:
        notes.append("no speedup panel: no width has both a NumPy and a CuPy measurement")
    fig.suptitle(literal(title))
    if notes:
        shown = notes[:3] + ([f"… and {len(notes) - 3} more"] if len(notes) > 3 else [])
        fig.supxlabel("\n".join(shown), fontsize=8, color="dimgrey")
    return fig


def _time_panel(ax_t: Any, measured: list[Any], widths: list[int]) -> None:
    """s/epoch vs width per backend on log-log axes, each point labelled with its $/epoch when priced."""
    spe_at = {(r.width, r.backend): r.seconds_per_epoch for r in measured}
    priced = [r for r in measured if r.usd_per_epoch is not None]
    label_cost = any(r.usd_per_epoch for r in priced)  # all $0 (an unbilled local run): say it once instead
    for backend in sorted({r.backend for r in measured}, key=lambda b: (b != "numpy", b)):
        pts = sorted(
            (r.width, r.seconds_per_epoch, r.usd_per_epoch) for r in measured if r.backend == backend
        )
        colour = _COLOURS.get(backend)
        label = _LABELS.get(backend, backend)
        ax_t.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colour, label=label)
        for w, spe, usd in pts:
            if usd is None or not label_cost:
                continue
            # Put the label on the side away from the other backend's point at this width.
            others = [v for (ow, ob), v in spe_at.items() if ow == w and ob != backend and v is not None]
            above = not others or (spe or 0.0) >= max(others)
            ax_t.annotate(
                _usd_label(usd),
                (w, spe),
                textcoords="offset points",
                # Curves rise with width: up-left and down-right of a point stay clear of its own line.
                xytext=(-5, 6) if above else (5, -12),
                ha="right" if above else "left",
                fontsize=7.5,
                color=colour,
            )
    ax_t.set_xscale("log")
    ax_t.set_yscale("log")
    t_title = "Time per training epoch"
    if label_cost:
        t_title += " (labels: $/epoch)"
    elif priced:
        t_title += " ($0/epoch: not billed)"
    ax_t.set(title=t_title, xlabel="hidden layer width (units)", ylabel="seconds / epoch (log)")
    _seconds_axis(ax_t, [r.seconds_per_epoch for r in measured if r.seconds_per_epoch])
    _width_axis(ax_t, widths)
    ax_t.grid(True, which="major", alpha=0.35)
    ax_t.grid(True, which="minor", axis="y", alpha=0.12)
    ax_t.legend(loc="upper left")


def _speedup_panel(ax_s: Any, sp: dict[int, float], widths: list[int]) -> None:
    """NumPy s/epoch ÷ CuPy s/epoch per width (log), the speedup = 1 line and the break-even marked."""
    be = find_break_even(sp)
    ax_s.set_xscale("log")
    ax_s.set(title="GPU speedup over CPU", xlabel="hidden layer width (units)")
    _width_axis(ax_s, widths)
    ws, ss = list(sp), list(sp.values())
    ax_s.set_yscale("log")
    ax_s.set_ylabel("speedup (×, log)")
    ax_s.plot(ws, ss, "o-", color="tab:green", label="NumPy s/epoch ÷ CuPy s/epoch")
    for w, s in sp.items():
        ax_s.annotate(f"{s:.2f}×", (w, s), textcoords="offset points", xytext=(-5, 6), ha="right", fontsize=8)
    ax_s.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="break-even (speedup = 1)")
    if be.kind == "crossing" and be.width is not None:
        ax_s.axvline(be.width, color="tab:red", linestyle=":", linewidth=1.5)
        ax_s.plot(
            [be.width], [1.0], "X", color="tab:red", markersize=9, label=f"break-even ≈ {be.width:,.0f}"
        )
    lo, hi = min([*ss, 1.0]), max([*ss, 1.0])
    ax_s.set_ylim(lo / 1.6, hi * 1.8)
    _speedup_ticks(ax_s)
    ax_s.legend(loc="upper left", fontsize=8)
    ax_s.grid(True, which="major", alpha=0.35)


def _width_axis(ax: Any, widths: list[int]) -> None:
    """Both panels span every width asked for, measured or not, with room for labels left of the first."""
    _width_ticks(ax, widths)
    ax.set_xlim(min(widths) / 1.8, max(widths) * 1.4)


def _width_ticks(ax: Any, widths: list[int]) -> None:
    """Label exactly the measured widths (log axes otherwise show only powers of ten)."""
    from matplotlib.ticker import FixedLocator, NullLocator

    ax.xaxis.set_major_locator(FixedLocator(widths))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{w:,}" for w in widths])


def _seconds_axis(ax: Any, values: list[float]) -> None:
    """Log y limits with room for the labels, and ticks written as plain numbers (0.005, 20, 300).

    The range is widened to at least a factor of 4 so that a tick always falls inside it. Every power of
    ten in the range is a labelled tick, however many decades it spans (LogLocator would skip some on
    a tall range); while it spans few decades, 2× and 5× (and 3×) ticks are labelled too.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter

    lo, hi = min(values), max(values)
    mid = math.sqrt(lo * hi)
    half = math.sqrt(max(hi / lo * 2.5, 4.0))
    bottom, top = mid / half, mid * half
    ax.set_ylim(bottom, top)
    plain = FuncFormatter(lambda v, _pos: f"{v:g}")
    decades = math.log10(top / bottom)
    few_decades = decades < 2.5
    subs = (2.0, 3.0, 5.0) if decades < 1.5 else (2.0, 5.0) if few_decades else tuple(range(2, 10))
    powers = range(math.floor(math.log10(bottom)), math.ceil(math.log10(top)) + 1)
    ax.yaxis.set_major_locator(FixedLocator([10.0**e for e in powers]))
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_locator(LogLocator(base=10, subs=subs, numticks=100))
    ax.yaxis.set_minor_formatter(plain if few_decades else NullFormatter())


def _speedup_ticks(ax: Any) -> None:
    """Readable ticks on the log speedup axis: 0.5×, 1×, 2×, 5×, 10×, ... instead of 10^0."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    lo, hi = ax.get_ylim()
    candidates = [m * 10.0**e for e in range(-3, 4) for m in (1, 2, 5)]
    ticks = [t for t in candidates if lo <= t <= hi]
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}×"))


def _usd_label(usd: float) -> str:
    return usd_small(usd)


def _shorten(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def write_outputs(out_dir: Path, summary: BenchSummary, plot: bool = True) -> list[Path]:
    """Write summary.md and (with `plot`) bench.png into `out_dir`; return the paths written.

    Raises ConfigError when matplotlib is missing and a plot was asked for (after summary.md is written).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / SUMMARY_FILE]
    written[0].write_text(render_summary(summary), encoding="utf-8")
    if plot:
        written.append(plot_bench(summary.rows, out_dir / BENCH_PLOT, title=_plot_title(summary)))
    return written


def _plot_title(summary: BenchSummary) -> str:
    b = summary.bench
    data = text(mapping(b.get("data")).get("name"))
    template = mapping(b.get("architecture")).get("layers_template")
    env = mapping(b.get("environment"))
    where = text(env.get("gpu_name")) or text(env.get("cpu_model"))
    parts = [p for p in (data, str(template) if template else "", where) if p]
    return "ec2dbn bench: " + " · ".join(parts) if parts else "ec2dbn bench"
