"""Progress within an epoch (issue 27): bounded-rate lines in the contract's format, from a fake clock and
from a real run, that leave the epoch lines and the numbers as they were."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.trainer.trainer_fixtures import run_trainer, write_job
from trainer.batch_progress import BatchProgress, progress_line
from trainer.contract import PROGRESS_MARKER, PROGRESS_PATTERN

PATTERN = re.compile(PROGRESS_PATTERN)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_at_most_once_per_interval_with_rate_and_time_left() -> None:
    lines: list[str] = []
    clock = Clock()
    progress = BatchProgress(
        lines.append, 100, lambda phase, layer: 10 if phase == "finetune" else 3, 5.0, clock
    )
    for batch in range(1, 100):  # 0.5 s per minibatch: a line every 10 minibatches
        progress.update("finetune", 0, 2, batch)
        clock.now += 0.5
    assert len(lines) == 9
    assert lines[0] == "Progress finetune epoch 3/10: batch 11/100  2.0 batch/s  0:00:44 left"
    assert all(PATTERN.match(line) for line in lines)
    # A new epoch starts its own timing; pretraining names its layer.
    progress.update("pretrain", 1, 0, 1)
    clock.now += 6
    progress.update("pretrain", 1, 0, 4)
    assert lines[-1] == "Progress pretrain layer 2 epoch 1/3: batch 4/100  0.5 batch/s  0:03:12 left"


def test_silent_when_off_and_never_on_an_epochs_last_minibatch() -> None:
    lines: list[str] = []
    clock = Clock()
    off = BatchProgress(lines.append, 10, lambda *_: 1, 0.0, clock)
    on = BatchProgress(lines.append, 10, lambda *_: 1, 1.0, clock)
    for batch in (1, 10):
        off.update("finetune", 0, 0, batch)
        on.update("finetune", 0, 0, batch)
        clock.now += 60
    assert lines == []
    # Past a day the time left stays h:mm:ss, which the orchestrator's parser reads.
    assert progress_line("finetune epoch 1/1", 1, 100000, 1.0).endswith("  27:46:39 left")
    assert PATTERN.match(progress_line("finetune epoch 1/1", 1, 100000, 1.0))


def test_a_run_writes_progress_lines_to_stdout_and_train_log_and_the_same_numbers(tmp_path: Path) -> None:
    job = write_job(tmp_path / "digits.yaml", {"name": "digits"}, {"layers": [64, 30, 10], "epochs": 2})
    outs = {}
    for every in ("0", "0.000001"):
        out = tmp_path / f"out{every}"
        proc = run_trainer(
            "run", str(job), "--out", str(out), "--backend", "numpy", "--progress-every", every
        )
        assert proc.returncode == 0, proc.stderr
        outs[every] = out
        shown = [line for line in proc.stdout.splitlines() if line.startswith(PROGRESS_MARKER)]
        logged = [
            line for line in (out / "train.log").read_text().splitlines() if line.startswith(PROGRESS_MARKER)
        ]
        assert shown == logged
        if every == "0":
            assert logged == []
        else:
            assert logged and all(PATTERN.match(line) for line in logged), logged[:2]
    losses = [
        [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
        for out in outs.values()
    ]
    assert losses[0] == losses[1]
