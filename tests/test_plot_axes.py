"""What the plots' axes say, read from the matplotlib figure objects (ticks, labels, panels), not pixels:
whole epochs only, every decade of a log axis labelled, no empty panel."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from ec2dbn.insight.bench import BenchRow
from ec2dbn.insight.bench_plot import bench_figure
from ec2dbn.insight.plots import learning_curve_figure, load_metrics
from tests.support.trained_runs import digits_runs

__all__ = ["digits_runs"]


def _drawn(fig: Any) -> Any:
    FigureCanvasAgg(fig).draw()  # tick positions and labels are settled by a draw
    return fig


def _visible_ticks(ax: Any, axis: str = "x") -> list[tuple[float, str]]:
    """(position, label) of the major ticks inside the axis' view."""
    a = ax.xaxis if axis == "x" else ax.yaxis
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    return [
        (t.get_loc(), t.label1.get_text())
        for t in a.get_major_ticks()
        if lo <= t.get_loc() <= hi and t.label1.get_visible()
    ]


@pytest.mark.parametrize("n_epochs", [1, 2, 3, 4])
def test_learning_curve_epoch_ticks_are_whole_epochs(digits_runs: tuple[Path, Path], n_epochs: int) -> None:
    metrics = json.loads((digits_runs[0] / "metrics.json").read_text())
    assert len(metrics["epochs"]) >= n_epochs
    metrics["epochs"] = metrics["epochs"][:n_epochs]  # the real run, as if it had stopped there
    fig = _drawn(learning_curve_figure(metrics))
    for ax in fig.axes:
        ticks = _visible_ticks(ax)
        assert ticks, ax.get_title()
        for pos, label in ticks:
            assert pos == int(pos) and 1 <= pos <= n_epochs, (ax.get_title(), ticks)
            assert label.replace("−", "-") == str(int(pos)), (ax.get_title(), ticks)
        assert {int(p) for p, _ in ticks} == set(range(1, n_epochs + 1))


def test_a_long_run_still_gets_whole_epoch_ticks(digits_runs: tuple[Path, Path]) -> None:
    metrics = dict(load_metrics(digits_runs[0]))
    first = metrics["epochs"][0]
    metrics["epochs"] = [{**first, "epoch": i} for i in range(1, 38)]
    for ax in _drawn(learning_curve_figure(metrics)).axes:
        ticks = _visible_ticks(ax)
        assert 3 <= len(ticks) <= 12 and all(p == int(p) for p, _ in ticks), ticks


def _cpu_rows(seconds: dict[int, float]) -> list[BenchRow]:
    return [BenchRow(w, "numpy", "ok", seconds_per_epoch=s) for w, s in seconds.items()]


def _label_value(label: str) -> float:
    return float(label.replace("−", "-"))


@pytest.mark.parametrize(
    "seconds",
    [
        {100: 1e-5, 200: 1e-3, 400: 0.1, 800: 10.0, 1600: 1e3, 3200: 1e5},  # ten (LogLocator: every other)
        {100: 0.0009, 300: 0.02, 800: 0.4, 1600: 9.0, 3200: 120.0},  # five decades
        {100: 0.004, 300: 0.03, 800: 0.6},  # three
        {100: 0.2, 300: 0.9, 800: 4.0},  # two
        {16: 0.02, 32: 0.03},  # less than one
    ],
    ids=["10-decades", "5-decades", "3-decades", "2-decades", "within-one"],
)
def test_bench_time_axis_labels_every_decade_it_spans(seconds: dict[int, float]) -> None:
    fig = _drawn(bench_figure(_cpu_rows(seconds)))
    ax = fig.axes[0]
    lo, hi = ax.get_ylim()
    labelled = {round(math.log10(pos)) for pos, label in _visible_ticks(ax, "y") if label and pos > 0}
    decades = set(range(math.ceil(math.log10(lo) - 1e-9), math.floor(math.log10(hi) + 1e-9) + 1))
    assert decades <= labelled, (lo, hi, sorted(labelled))
    for pos, label in _visible_ticks(ax, "y"):
        if label:
            assert _label_value(label) == pytest.approx(pos)  # plain numbers, the values they stand at
    # every measurement is inside the axis
    assert lo < min(seconds.values()) and max(seconds.values()) < hi


def test_a_bench_without_gpu_rows_draws_one_panel() -> None:
    rows = _cpu_rows({16: 0.02, 32: 0.03, 64: 0.05})
    rows += [BenchRow(w, "cupy", "skipped", reason="CuPy is not installed") for w in (16, 32, 64)]
    fig = bench_figure(rows)
    assert len(fig.axes) == 1
    assert fig.axes[0].get_lines()  # and it holds the measurements


def test_a_bench_with_both_backends_draws_the_speedup_panel_too() -> None:
    rows = _cpu_rows({100: 1.1, 300: 4.0})
    rows += [BenchRow(w, "cupy", "ok", seconds_per_epoch=s) for w, s in ((100, 2.0), (300, 2.2))]
    fig = _drawn(bench_figure(rows))
    assert len(fig.axes) == 2
    assert "speedup" in fig.axes[1].get_title().lower()
    assert all(ax.get_lines() for ax in fig.axes)
