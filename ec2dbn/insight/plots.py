"""PNG plots of a run's learning curve (a bench's: ec2dbn.insight.bench_plot): matplotlib, headless, optional.

matplotlib is an extra (`pip install 'ec2dbn[plot]'`), imported only when a plot is drawn, and used
through `matplotlib.figure.Figure` rather than pyplot: no GUI backend is chosen, no global state is
touched, so plotting works the same on a laptop, in CI and over SSH. A missing matplotlib is one
ConfigError line saying how to install it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
