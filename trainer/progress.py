"""What a run prints: the seed's epoch lines on stdout and in train.log, and one JSON object per epoch.

Fine-tuning epochs read exactly like the 2014 seed run (nolearn's numbers, Python 2's 12-digit floats):
    Epoch 1:  loss 0.554249416375  err 0.139429644809  (0:00:25)
Pretraining epochs are marked as such (loss = mean squared reconstruction error per sample):
    Pretrain layer 1 epoch 1:  rec_err 31.0215234756  (0:00:04)
A fine-tuning epoch scored on the test set (model.eval_test_every_epoch) adds a line of its own under the
seed's, never starting with "Epoch " so that tools parsing those lines are not disturbed:
      test loss 0.412538827003  err 0.148528138528
Every line is flushed as it is written so that `tail -f` and the orchestrator's log streaming see it live.
The line starts ("Epoch ", "Pretrain layer ") are the orchestrator's markers (trainer.contract); metrics.jsonl
is strict JSON (a non-finite number is written as null, trainer.strict_json).
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

from trainer.contract import EPOCH_MARKER, METRICS_JSONL, PRETRAIN_MARKER, TRAIN_LOG
from trainer.loop import TEST_KEYS
from trainer.strict_json import dumps

JSONL_KEYS = ("phase", "layer", "epoch", "loss", "err", "seconds", "time")  # then TEST_KEYS, when present


def elapsed(seconds: float) -> str:
    """'0:00:25': whole seconds as h:mm:ss, as nolearn printed them."""
    return str(timedelta(seconds=int(seconds)))


def epoch_line(record: dict[str, Any]) -> str:
    """The log line of one finished epoch record (see trainer.loop)."""
    when = elapsed(record["seconds"])
    if record["phase"] == "pretrain":
        head = f"{PRETRAIN_MARKER}{record['layer']} epoch {record['epoch']}"
        return f"{head}:  rec_err {_num(record['loss'])}  ({when})"
    head = f"{EPOCH_MARKER}{record['epoch']}"
    return f"{head}:  loss {_num(record['loss'])}  err {_num(record['err'])}  ({when})"


def eval_line(record: dict[str, Any]) -> str | None:
    """The line under a fine-tuning epoch's that gives its test-set figures; None when it has none."""
    if "test_loss" not in record:
        return None
    return f"  test loss {_num(record['test_loss'])}  err {_num(record['test_err'])}"


def _num(x: float | None) -> str:
    """Python 2's 12 significant digits; None (a non-finite number read back from strict JSON) is nan."""
    return "nan" if x is None else f"{x:.12g}"


def record_key(record: dict[str, Any]) -> tuple[str, Any, int]:
    """Identity of an epoch record: (phase, layer, epoch)."""
    return record["phase"], record.get("layer"), record["epoch"]


class RunLog:
    """train.log + stdout, and metrics.jsonl, of one output directory (both opened for appending).

    echo=False keeps stdout quiet (the estimator's default); the files are always written.
    """

    def __init__(self, out_dir: Path, echo: bool = True, stdout: TextIO | None = None) -> None:
        self.out_dir = out_dir
        self.echo = echo
        self.stdout = stdout if stdout is not None else sys.stdout
        self.log = open(out_dir / TRAIN_LOG, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in close()
        self.jsonl = open(out_dir / METRICS_JSONL, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def line(self, text: str, *, echo: bool | None = None) -> None:
        """Append a line to train.log and (by default) print it; both flushed now."""
        self.log.write(text + "\n")
        self.log.flush()
        if self.echo if echo is None else echo:
            print(text, file=self.stdout, flush=True)

    def epoch(self, record: dict[str, Any]) -> None:
        """One finished epoch: its JSON object in metrics.jsonl, its seed-format line in train.log/stdout
        (and its test line, when it was scored on the test set)."""
        obj = {k: record.get(k) for k in JSONL_KEYS} | {k: record[k] for k in TEST_KEYS if k in record}
        self.jsonl.write(dumps(obj) + "\n")
        self.jsonl.flush()
        self.line(epoch_line(record))
        test = eval_line(record)
        if test is not None:
            self.line(test)

    def reset_metrics(self) -> None:
        """Empty metrics.jsonl (a fresh start in a folder whose earlier attempt left no checkpoint)."""
        self.jsonl.seek(0)
        self.jsonl.truncate()

    def logged_epochs(self) -> set[tuple[str, Any, int]]:
        """Keys of the epochs already in metrics.jsonl (a resumed run appends only the missing ones)."""
        keys = set()
        path = self.out_dir / METRICS_JSONL
        for raw in path.read_text(encoding="utf-8").splitlines():
            try:
                keys.add(record_key(json.loads(raw)))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash
        return keys

    def close(self) -> None:
        self.log.close()
        self.jsonl.close()
