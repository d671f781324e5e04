"""Plots: learning curves from a real trainer run and bench plots; they are PNGs that show the data.

"Shows the data" is checked on the pixels: each series is drawn in a known colour, so the image must
contain enough pixels of that colour (and none of a series that is absent).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from ec2dbn.errors import ConfigError
from ec2dbn.insight.bench import BenchRow, local_price, summarize
from ec2dbn.insight.bench_plot import plot_bench, write_outputs
from ec2dbn.insight.plots import INSTALL_HINT, plot_learning_curve
from tests.support.trained_runs import digits_runs

__all__ = ["digits_runs"]  # the fixture, imported so pytest finds it here

# matplotlib's tab10 colours, as RGB in [0, 1].
BLUE = (0x1F / 255, 0x77 / 255, 0xB4 / 255)
ORANGE = (0xFF / 255, 0x7F / 255, 0x0E / 255)
GREEN = (0x2C / 255, 0xA0 / 255, 0x2C / 255)
RED = (0xD6 / 255, 0x27 / 255, 0x28 / 255)


def _count(img: np.ndarray, rgb: tuple[float, float, float], tol: float = 0.04) -> int:
    """Pixels within `tol` of colour `rgb` (anti-aliased edges are not counted)."""
    return int(np.all(np.abs(img[..., :3] - np.array(rgb)) < tol, axis=-1).sum())


def _png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def test_learning_curve_of_a_real_run(digits_runs: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = digits_runs
    metrics = json.loads((run / "metrics.json").read_text())
    # The trainer scores the test set after every epoch (model.eval_test_every_epoch, on by default).
    assert all(
        isinstance(e.get("test_loss"), float) and isinstance(e.get("test_err"), float)
        for e in metrics["epochs"]
    )
    out = plot_learning_curve(run / "metrics.json", tmp_path / "curve.png")
    img = _png(out)
    assert img.shape[:2] == (462, 1100)  # 10 x 4.2 inches at 110 dpi
    blue, orange = _count(img, BLUE), _count(img, ORANGE)
    assert blue > 1000  # the train loss and error curves
    assert orange > blue / 2 > 500  # the run's own test loss and error curves, dashed with square markers


def test_learning_curve_without_per_epoch_test_figures_marks_the_final_test_error(
    digits_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    run, _ = digits_runs
    metrics = json.loads((run / "metrics.json").read_text())
    for e in metrics["epochs"]:  # as a run with model.eval_test_every_epoch: false writes them
        del e["test_loss"], e["test_err"], e["eval_seconds"]
    img = _png(plot_learning_curve(metrics, tmp_path / "curve.png"))
    blue, orange = _count(img, BLUE), _count(img, ORANGE)
    assert blue > 1000
    assert 20 < orange < blue / 3  # only the final test error is marked (a diamond and its label)


def test_learning_curve_accepts_the_run_folder(digits_runs: tuple[Path, Path], tmp_path: Path) -> None:
    run, _ = digits_runs
    assert plot_learning_curve(run, tmp_path / "c.png").is_file()


def test_learning_curve_without_epochs_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no fine-tuning epochs"):
        plot_learning_curve({"epochs": [], "test_accuracy": 0.9}, tmp_path / "c.png")
    with pytest.raises(ConfigError, match="not found"):
        plot_learning_curve(tmp_path / "nothing" / "metrics.json", tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def _gpu_bench_rows() -> list[BenchRow]:
    timings = {100: (1.1, 2.0), 300: (4.0, 2.2), 800: (20.0, 3.0), 1600: (70.0, 5.0)}
    rows = []
    for w, (cpu, gpu) in timings.items():
        rows.append(BenchRow(w, "numpy", "ok", seconds_per_epoch=cpu, usd_per_epoch=cpu * 0.526 / 3600))
        rows.append(BenchRow(w, "cupy", "ok", seconds_per_epoch=gpu, usd_per_epoch=gpu * 0.526 / 3600))
    rows.append(BenchRow(3200, "cupy", "failed", reason="OutOfMemoryError: out of memory"))
    return rows


def test_bench_plot_shows_both_backends_the_speedup_and_the_break_even(tmp_path: Path) -> None:
    img = _png(plot_bench(_gpu_bench_rows(), tmp_path / "bench.png"))
    assert img.shape[:2] == (528, 1210)
    assert _count(img, BLUE) > 300 and _count(img, ORANGE) > 300  # s/epoch per backend
    assert _count(img, GREEN) > 300  # the speedup curve
    assert _count(img, RED) > 30  # the break-even marker (speedup crosses 1 between 100 and 300)


def test_bench_plot_of_a_cpu_only_bench(tmp_path: Path) -> None:
    bench = {
        "rows": [
            {"width": 16, "backend": "numpy", "status": "ok", "seconds_per_epoch": 0.02},
            {"width": 32, "backend": "numpy", "status": "ok", "seconds_per_epoch": 0.03},
            {"width": 16, "backend": "cupy", "status": "skipped", "reason": "CuPy is not installed"},
            {"width": 32, "backend": "cupy", "status": "skipped", "reason": "CuPy is not installed"},
        ]
    }
    price, note = local_price()
    paths = write_outputs(tmp_path, summarize(bench, price, note))
    assert [p.name for p in paths] == ["summary.md", "bench.png"]
    img = _png(tmp_path / "bench.png")
    assert _count(img, BLUE) > 200
    assert _count(img, ORANGE) == 0 and _count(img, GREEN) == 0  # no GPU rows, no speedup


def test_bench_plot_from_no_measurement_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nothing to plot"):
        plot_bench([], tmp_path / "b.png")
    with pytest.raises(ConfigError, match="nothing to plot"):
        plot_bench([{"width": 8, "backend": "cupy", "status": "skipped"}], tmp_path / "b.png")
    assert not (tmp_path / "b.png").exists()


def test_missing_matplotlib_is_one_line_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, digits_runs: tuple[Path, Path]
) -> None:
    # A None entry in sys.modules makes `import matplotlib...` raise ImportError, as if not installed.
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError) as err:
        plot_learning_curve(digits_runs[0], tmp_path / "c.png")
    assert INSTALL_HINT in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="ec2dbn\\[plot\\]"):
        plot_bench(_gpu_bench_rows(), tmp_path / "b.png")
    # The bench write-up still gets its summary before the plot fails.
    price, note = local_price()
    with pytest.raises(ConfigError, match="matplotlib"):
        write_outputs(
            tmp_path / "w", summarize({"rows": [r.to_dict() for r in _gpu_bench_rows()]}, price, note)
        )
    assert (tmp_path / "w" / "summary.md").is_file()
