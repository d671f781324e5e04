"""Real trainer runs on scikit-learn's digits, and bench jobs, for the report, plot and bench tests.

`digits_runs` trains two small networks with `python -m trainer run` (a few seconds, once per session)
so the report and plot tests read metrics.json files the real trainer wrote, not hand-made copies.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

#: A job the trainer learns in a few epochs on digits (~90 % test accuracy after 3 epochs of 1,203 samples).
DIGITS_JOB = """\
data: {name: digits, test_size: 0.33, seed: 42}
model: {layers: [64, %(hidden)s, 10], learn_rates: 1.0, minibatch_size: 16, epochs: %(epochs)d}
backend: numpy
"""


def write_job(path: Path, hidden: str = "32", epochs: int = 4) -> Path:
    """A digits job file; `hidden` is the hidden layers as YAML list items, e.g. "32" or "24, 24"."""
    path.write_text(DIGITS_JOB % {"hidden": hidden, "epochs": epochs}, encoding="utf-8")
    return path


def train(job: Path, out: Path) -> Path:
    """Run the real trainer CLI; fail the test with its output if it does not finish."""
    proc = subprocess.run(
        [sys.executable, "-m", "trainer", "run", str(job), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.fixture(scope="session")
def digits_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two finished runs: 64-32-10 for 4 epochs and 64-48-10 for 3 epochs (folders with metrics.json)."""
    root = tmp_path_factory.getbasetemp() / "digits-runs"
    a, b = root / "runs" / "digits-a", root / "runs" / "digits-b"
    if not (b / "metrics.json").is_file():  # imported by several test modules: train once per session
        root.mkdir(parents=True, exist_ok=True)
        train(write_job(root / "a.yaml", "32", 4), a)
        train(write_job(root / "b.yaml", "48", 3), b)
    return a, b
