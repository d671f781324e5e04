"""The seed run's whole wall time, and where it goes beyond the epochs (used by benchmarks/bench_trainer.py).

`python -m trainer run JOB --out TMP` runs in a fresh process, as a user would start it: interpreter and
imports, loading and splitting the data, the epochs (each scored on the test set, each followed by a
checkpoint), then the test predictions, report.txt, model.npz and metrics.json. Every line the trainer
prints (flushed as written, see trainer.progress) is stamped with its arrival time here; with metrics.json's
per-epoch `seconds` (training only) and `eval_seconds` (test scoring) those stamps split the wall time into:

- start-up: process start to the trainer's first line (interpreter, imports, job file, backend choice);
- data: to the "data:" line (reading and splitting the data set);
- before epoch 1: from the "model:" line to the first epoch's line, less that epoch's training and scoring
  (copying the training and test sets to the device, the first permutation, the first checkpoint);
- epochs: the trainer's own epoch times; test scoring: the sum of eval_seconds;
- between epochs: the rest of the gaps between later epochs' lines (a checkpoint after every epoch, the next
  permutation, the log lines);
- finish: from the last epoch's lines to "Test accuracy" (the final checkpoint, predictions on the test set,
  report.txt, model.npz, metrics.json); exit: from there until the process has ended.
"""

from __future__ import annotations

import json
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EPOCH_LINE = re.compile(r"^(Epoch \d+|Pretrain layer \d+ epoch \d+):")
TEST_LINE = "  test loss "
#: (key, what it covers) in the order the parts happen; their seconds add up to the wall time.
PARTS = (
    ("startup", "start-up: interpreter, imports, job file, backend"),
    ("data", "data: read and split the data set"),
    ("before_epoch_1", "before epoch 1: data to the device, first checkpoint"),
    ("epochs", "epochs: training (the trainer's epoch times)"),
    ("test_scoring", "test-set scoring after each epoch"),
    ("between_epochs", "between epochs: checkpoints, permutations, logs"),
    ("finish", "finish: predictions, report.txt, model.npz, metrics.json"),
    ("exit", "interpreter exit"),
)


def time_seed_run(
    job: Path, env: dict[str, str], say: Callable[[str], None], backend: str | None = None
) -> dict[str, Any]:
    """Run `python -m trainer run job` in a fresh process; print its lines with their arrival times; return
    {"command", "exit_code", "wall_s", "cpu_s", "lines": [[seconds, text]], and when it finished: "parts"
    (seconds per PARTS key), "epoch_seconds", "test_accuracy"}. CPU seconds: the child's, all its threads."""
    with tempfile.TemporaryDirectory(prefix="bench-seed-") as tmp:
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "trainer", "run", str(job), "--out", str(out)]
        cmd += ["--backend", backend] if backend else []
        shown = " ".join(["python", *cmd[1:5], *cmd[7:]])
        say(f"seed run: {shown} (a fresh process; +seconds since its start)")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT, bufsize=1
        )
        lines: list[tuple[float, str]] = []
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append((time.perf_counter() - t0, raw.rstrip("\n")))
            if lines[-1][1].strip():
                say(f"  +{lines[-1][0]:6.1f} s  {lines[-1][1]}")
        code = proc.wait()
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        doc: dict[str, Any] = {
            "command": shown,
            "exit_code": code,
            "wall_s": wall,
            "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "lines": [[round(t, 3), text] for t, text in lines],
        }
        metrics_path = out / "metrics.json"
        if code != 0 or not metrics_path.exists():
            say(f"seed run failed (exit {code}): no breakdown")
            return doc
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    doc["parts"] = split_wall_time(lines, metrics, wall)
    doc["epoch_seconds"] = [e["seconds"] for e in metrics["epochs"]]
    doc["test_accuracy"] = metrics["test_accuracy"]
    return doc


def split_wall_time(lines: list[tuple[float, str]], metrics: dict[str, Any], wall: float) -> dict[str, float]:
    """Seconds per PARTS key from the stamped lines and metrics.json (see the module docstring); they add up
    to `wall`. Raises ValueError when the lines lack the trainer's markers."""
    first = lines[0][0] if lines else None
    data = _first(lines, lambda text: text.startswith("data: "))
    model = _first(lines, lambda text: text.startswith("model: "))
    done = _first(lines, lambda text: text.startswith("Test accuracy"))
    if first is None or data is None or model is None or done is None:
        raise ValueError("the run's output lacks the trainer's data:/model:/Test accuracy lines")
    records = [{"seconds": e["seconds"], "eval": 0.0} for e in metrics.get("pretrain_epochs", [])] + [
        {"seconds": e["seconds"], "eval": e.get("eval_seconds", 0.0)} for e in metrics["epochs"]
    ]
    ends = _epoch_ends(lines)
    if len(ends) != len(records):
        raise ValueError(f"{len(ends)} epoch lines in the output but {len(records)} epochs in metrics.json")
    # A line's stamp is when this reader got it, not when the trainer wrote it: a reader descheduled on a
    # busy machine stamps a line late, so a gap between two lines can come out microseconds shorter than
    # the epoch the trainer timed inside it. A gap is never negative; `exit` takes the remainder, so the
    # parts still add up to `wall`.
    gaps, previous = [], model
    for end, record in zip(ends, records, strict=True):
        gaps.append(max(0.0, end - previous - record["seconds"] - record["eval"]))
        previous = end
    last = ends[-1] if ends else model
    parts = {
        "startup": first,
        "data": data - first,
        "before_epoch_1": (gaps[0] if gaps else 0.0) + (model - data),
        "epochs": sum(r["seconds"] for r in records),
        "test_scoring": sum(r["eval"] for r in records),
        "between_epochs": sum(gaps[1:]),
        "finish": done - last,
    }
    parts["exit"] = wall - sum(parts.values())
    return parts


def _first(lines: list[tuple[float, str]], match: Callable[[str], bool]) -> float | None:
    return next((t for t, text in lines if match(text)), None)


def _epoch_ends(lines: list[tuple[float, str]]) -> list[float]:
    """Arrival time of each epoch's last line: its epoch line, or the test-loss line printed under it."""
    ends: list[float] = []
    for t, text in lines:
        if EPOCH_LINE.match(text):
            ends.append(t)
        elif text.startswith(TEST_LINE) and ends:
            ends[-1] = t
    return ends


def report_lines(doc: dict[str, Any]) -> list[str]:
    """The breakdown as printable lines (the header line alone when the run failed)."""
    head = f"seed run: {doc['wall_s']:.1f} s wall, {doc['cpu_s']:.1f} s CPU (exit {doc['exit_code']})"
    if "parts" not in doc:
        return [head]
    out = [head + f", test accuracy {doc['test_accuracy']:.4f}"]
    n = len(doc["epoch_seconds"])
    for key, what in PARTS:
        seconds = doc["parts"][key]
        extra = f"  ({n} epochs, {seconds / n:.2f} s each)" if key == "epochs" and n else ""
        out.append(f"  {what:60s} {seconds:7.2f} s {seconds / doc['wall_s']:5.0%}{extra}")
    return out
