"""PNG plots of a run's learning curve and of a bench: matplotlib, headless, optional.

matplotlib is an extra (`pip install 'ec2dbn[plot]'`), imported only when a plot is drawn, and used
through `matplotlib.figure.Figure` rather than pyplot: no GUI backend is chosen, no global state is
touched, so plotting works the same on a laptop, in CI and over SSH. A missing matplotlib is one
ConfigError line saying how to install it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ec2dbn.errors import ConfigError
from ec2dbn.untrusted_json import mapping, objects, read_object, text, whole
from trainer.contract import METRICS_JSON

INSTALL_HINT = "pip install 'ec2dbn[plot]'"

# One colour per backend, the same in every plot (colour-blind-safe pair from matplotlib's tab10).
_COLOURS = {"numpy": "tab:blue", "cupy": "tab:orange"}
_LABELS = {"numpy": "NumPy (CPU)", "cupy": "CuPy (GPU)"}


def _figure(width_in: float, height_in: float) -> Any:
    """A matplotlib Figure not attached to any GUI (saved with the Agg renderer)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(f"plots need matplotlib, which is not installed: {INSTALL_HINT}") from None
    return Figure(figsize=(width_in, height_in), dpi=110, layout="constrained")


def literal(text: str) -> str:
    """Text from files or the instance shown as is: a `$` would start matplotlib's mathtext (and a
    name like `cost_$5_$10.npz` fails to parse there), so every one is escaped."""
    return text.replace("$", r"\$")


def _save(fig: Any, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


# ---------------------------------------------------------------------------------------- learning


def load_metrics(metrics: str | Path | Mapping[str, Any]) -> Mapping[str, Any]:
    """A metrics.json (path or its folder) read as untrusted input, or the parsed dict itself.

    Raises ConfigError (one line naming the file) when it is missing or not a JSON object.
    """
    if isinstance(metrics, Mapping):
        return metrics
    path = Path(metrics)
    if path.is_dir():
        path = path / METRICS_JSON
    if not path.is_file():
        raise ConfigError(f"{path}: not found (a finished run writes metrics.json)")
    return read_object(path)


def finetune_epochs(metrics: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The fine-tuning epoch records of a metrics.json that have a loss (pretraining epochs, if listed,
    are left out)."""
    return [
        e
        for e in objects(metrics.get("epochs"))
        if e.get("phase", "finetune") == "finetune" and _finite(e.get("loss"))
    ]


def plot_learning_curve(metrics: str | Path | Mapping[str, Any], out_png: str | Path) -> Path:
    """Loss (left) and error rate (right) per fine-tuning epoch, saved as a PNG; returns its path.

    `metrics` is a metrics.json path (or its folder), or its parsed dict. Raises ConfigError when it
    cannot be read, has no epoch to plot, or matplotlib is missing.
    """
    return _save(learning_curve_figure(load_metrics(metrics)), out_png)


def learning_curve_figure(m: Mapping[str, Any]) -> Any:
    """The learning-curve Figure of a parsed metrics.json.

    Train curves come from each epoch's `loss`/`err`; test curves from `test_loss`/`test_err` where the
    records carry them. When they don't, the final test error (1 − test_accuracy) is drawn as one marked
    point at the last epoch. The epoch axis has whole-number ticks only, however few epochs there are.
    Raises ConfigError when there is no epoch to plot or matplotlib is missing.
    """
    epochs = finetune_epochs(m)
    if not epochs:
        raise ConfigError("no fine-tuning epochs in the metrics: nothing to plot")
    numbered = [whole(e.get("epoch"), minimum=1) for e in epochs]
    if None in numbered or len(set(numbered)) != len(numbered):
        numbered = list(range(1, len(epochs) + 1))  # missing, odd or repeated numbers: count them
    x = [int(n or 0) for n in numbered]

    fig = _figure(10.0, 4.2)
    ax_loss, ax_err = fig.subplots(1, 2)
    ax_loss.plot(x, [float(e["loss"]) for e in epochs], "o-", color="tab:blue", label="train")
    err_pts = [(xi, float(e["err"])) for xi, e in zip(x, epochs, strict=True) if _finite(e.get("err"))]
    if err_pts:
        ax_err.plot(
            *zip(*[(a, 100 * b) for a, b in err_pts], strict=True), "o-", color="tab:blue", label="train"
        )

    test_loss = [
        (xi, float(e["test_loss"])) for xi, e in zip(x, epochs, strict=True) if _finite(e.get("test_loss"))
    ]
    test_err = [
        (xi, float(e["test_err"])) for xi, e in zip(x, epochs, strict=True) if _finite(e.get("test_err"))
    ]
    if test_loss:
        ax_loss.plot(*zip(*test_loss, strict=True), "s--", color="tab:orange", label="test")
    if test_err:
        ax_err.plot(
            *zip(*[(a, 100 * b) for a, b in test_err], strict=True), "s--", color="tab:orange", label="test"
        )
    elif _finite(m.get("test_accuracy")):
        final = 100 * (1 - float(m["test_accuracy"]))
        ax_err.plot([x[-1]], [final], "D", color="tab:orange", markersize=8, label="test (final)")
        ax_err.annotate(
            f"{final:.2f} %",
            (x[-1], final),
            textcoords="offset points",
            xytext=(-8, 8),
            ha="right",
            color="tab:orange",
        )

    ax_loss.set(title="Cross-entropy loss", xlabel="epoch", ylabel="loss (mean per sample)")
    ax_err.set(title="Classification error", xlabel="epoch", ylabel="error (%)")
    for ax in (ax_loss, ax_err):
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper right")
        _epoch_axis(ax, x)
    fig.suptitle(literal(run_title(m)))
    return fig


def _epoch_axis(ax: Any, epochs: list[int]) -> None:
    """Whole epochs only: at least one epoch of room on each side of a short run, and a locator that
    never puts a tick between two epochs (MaxNLocator's `integer` gives way below a few integers)."""
    from matplotlib.ticker import FixedLocator, MaxNLocator

    lo, hi = min(epochs), max(epochs)
    if hi - lo < 4:
        ax.set_xlim(lo - 0.5, hi + 0.5)
        ax.xaxis.set_major_locator(FixedLocator(range(lo, hi + 1)))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))


def run_title(m: Mapping[str, Any]) -> str:
    """The figure's title: data set, network, backend and device, test accuracy (what the file says)."""
    config = mapping(m.get("config"))
    data, model = mapping(config.get("data")), mapping(config.get("model"))
    name = text(data.get("name")) or text(mapping(m.get("data")).get("name")) or text(m.get("data")) or "?"
    layers = model.get("layers") or m.get("layers")
    net = "-".join(str(n) for n in layers) if isinstance(layers, list) else ""
    backend = text(m.get("backend")) or "?"
    device = (text(m.get("device")) or "").removeprefix("cpu: ").removeprefix("gpu: ")
    parts = [str(name), f"DBN {net}" if net else "", f"{backend} on {device}" if device else str(backend)]
    title = " · ".join(p for p in parts if p)
    if _finite(m.get("test_accuracy")):
        title += f" · test accuracy {100 * float(m['test_accuracy']):.2f} %"
    return title


# ------------------------------------------------------------------------------------------- bench


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
    from ec2dbn.insight.bench import as_row, speedups

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
    from ec2dbn.insight.bench import find_break_even

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
    from ec2dbn.insight.bench import usd_small

    return usd_small(usd)


def _shorten(text: str, n: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
