"""Issue 27, item 10: a 1-D sweep's plot keeps its whole title and puts whole-number ticks on a whole-number
axis (read from the figure objects, not pixels); the BLAS thread count a local trainer gets is decided
from the cores it may use and the load, which is tested as a decision, not as a speed."""

from __future__ import annotations

from typing import Any

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from ec2dbn.run.blas_threads import plan_threads
from ec2dbn.sweep.record import PointEntry, SweepRecord
from ec2dbn.sweep.summary import SweepRow, sweep_figure

SWEEP_ID = "sweep-20261207-211500-ab12"


def _sweep(key: str, values: list[Any]) -> tuple[SweepRecord, list[SweepRow]]:
    points = [PointEntry(point_id=f"p{i + 1:02d}", values={key: v}) for i, v in enumerate(values)]
    record = SweepRecord(sweep_id=SWEEP_ID, job="job.yaml", mode="local", keys=[key], points=points)
    table = [
        SweepRow(p.point_id, p.values, "finished", 1.0, 0.9 + 0.01 * i, None, None)
        for i, p in enumerate(points)
    ]
    return record, table


@pytest.mark.parametrize(
    ("key", "values"),
    [("model.layers.1", [100, 200, 300]), ("model.epochs", [1, 2, 3, 5, 8]), ("model.layers.1", [64, 2048])],
)
def test_a_one_key_sweep_keeps_its_title_and_ticks_whole_numbers(key: str, values: list[int]) -> None:
    record, table = _sweep(key, values)
    fig = sweep_figure(record, table)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    title = fig._suptitle
    box = title.get_window_extent(renderer)
    assert SWEEP_ID in title.get_text() and "test accuracy" in title.get_text()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.width  # not cut at either end
    (ax,) = fig.axes
    lo, hi = sorted(ax.get_xlim())
    ticks = [t.get_loc() for t in ax.xaxis.get_major_ticks() if lo <= t.get_loc() <= hi]
    assert ticks and all(float(t).is_integer() for t in ticks), ticks
    assert set(values) <= set(ticks)  # few values: a tick at each


def test_a_float_axis_keeps_matplotlibs_ticks() -> None:
    fig = sweep_figure(*_sweep("model.learn_rates", [0.1, 0.2, 0.3]))
    FigureCanvasAgg(fig).draw()
    (ax,) = fig.axes
    assert any(not float(t).is_integer() for t in ax.get_xticks())


@pytest.mark.parametrize(
    ("parallel", "cores", "load", "fits", "hinted"),
    [
        (1, 2, 0.0, 2, False),  # idle: every core
        (1, 2, 0.4, 2, False),  # noise
        (1, 2, 1.2, 1, True),  # another process holds a core: one thread would fit, and the user is told
        (1, 2, 5.0, 1, True),  # never below one
        (2, 2, 1.5, 1, False),  # two workers on two cores get one each anyway
        (2, 8, 3.9, 2, True),  # 4 busy of 8: (8 - 4) // 2 would fit, 4 each are given
        (1, 16, None, 16, False),  # no load average on this system
    ],
)
def test_a_busy_machine_gets_a_hint_with_the_threads_that_fit(
    parallel: int, cores: int, load: float | None, fits: int, hinted: bool
) -> None:
    plan = plan_threads(parallel, cores=cores, load=load, env={})
    # The count given never depends on the load (a run's numbers depend on it); the hint does.
    assert plan.threads == cores // parallel and plan.fits == fits and not plan.user_set
    assert bool(plan.hint) == hinted
    if hinted:
        assert f"load average {load:.1f} on {cores} cores" in plan.hint
        assert f"OPENBLAS_NUM_THREADS={fits} fits the free cores" in plan.hint


def test_the_users_blas_threads_win() -> None:
    plan = plan_threads(1, cores=2, load=9.0, env={"OPENBLAS_NUM_THREADS": "2"})
    assert plan.threads == 2 and plan.user_set and plan.hint == ""
    assert plan_threads(1, cores=2, load=9.0, env={"OMP_NUM_THREADS": "x"}).fits == 1  # not a number


def test_a_busy_machine_leaves_a_local_runs_threads_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    from ec2dbn.events import RecordingReporter
    from ec2dbn.run import blas_threads, local

    for name in blas_threads.BLAS_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(blas_threads, "cores", lambda: 2)
    monkeypatch.setenv(blas_threads.LOAD_ENV, "1.7")
    reporter = RecordingReporter()
    local.warn_if_busy(reporter)
    (warning,) = reporter.lines("warn")
    assert warning.startswith("this machine is busy (load average 1.7 on 2 cores): 2 BLAS threads")
    monkeypatch.setenv(blas_threads.LOAD_ENV, "0")
    local.warn_if_busy(reporter)
    assert len(reporter.lines("warn")) == 1  # idle: nothing to say
