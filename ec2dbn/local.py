"""`ec2dbn train --local`: the same job, on this machine, with no AWS at all.

The trainer runs as a child process (`python -m trainer run`), exactly as it runs on an instance, so a
local run and a remote run of the same job and seed produce the same files and the same numbers.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from ec2dbn.errors import Ec2dbnError, JobFailedError
from ec2dbn.events import Reporter
from ec2dbn.results import RunRecord, plot_run, timed_phase
from trainer.contract import DIVERGED_MARKER, EXIT_DIVERGED, RUN_STATUS, TRAIN_LOG, run_status

#: The trainer's exit codes (trainer.contract), and what each one means for a run's status.
TRAINER_STATUS = RUN_STATUS

#: Lines of the trainer's output kept to quote when it fails (here and on EC2).
TAIL_LINES = 10


def trainer_status(exit_code: int) -> str:
    """Run status for a trainer exit code: finished, failed, interrupted (checkpoint written) or diverged."""
    return run_status(exit_code)


def diverged_error(results_dir: Path, lines: Iterable[str] = ()) -> JobFailedError:
    """The error for a run whose trainer exited EXIT_DIVERGED, the trainer's own account first.

    That account is its DIVERGED_MARKER line (the epoch and the likely causes), taken from `lines` (the
    output just streamed) or else from results_dir/train.log. A diverged run is a failure of the job, not
    of the machine: it is not retried (it would diverge again from the same checkpoint).
    """
    message = _diverged_line(lines) or _diverged_line(_read_lines(results_dir / TRAIN_LOG))
    if message is None:
        message = f"{DIVERGED_MARKER} (the trainer exited {EXIT_DIVERGED}; no message in its log)"
    return JobFailedError(f"{message}; results in {results_dir}")


def _diverged_line(lines: Iterable[str]) -> str | None:
    found = [line.strip() for line in lines if line.strip().startswith(DIVERGED_MARKER)]
    return found[-1] if found else None


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def run_local(
    job_path: Path,
    results_dir: Path,
    record: RunRecord,
    reporter: Reporter,
    backend: str | None = None,
    resume: bool = False,
) -> int:
    """Train `job_path` here into `results_dir`, streaming the trainer's output; return its exit code.

    Ctrl-C reaches the trainer too (same process group): it writes a checkpoint and exits 3, and this
    waits for that instead of abandoning it half-written. A diverged run (exit 4) is recorded as
    "diverged" with exit code 1 and raised as JobFailedError carrying the trainer's message.
    """
    cmd = [sys.executable, "-u", "-m", "trainer", "run", str(job_path), "--out", str(results_dir)]
    if backend:
        cmd += ["--backend", backend]
    if resume:
        cmd.append("--resume")
    reporter.step(f"training {job_path} locally into {results_dir}")
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with timed_phase(record, "train"):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.rstrip("\n")
                tail.append(line)
                reporter.stream(line)
            code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            code = proc.wait()
    diverged = code == EXIT_DIVERGED
    record.finish(1 if diverged else code, trainer_status(code))
    record.save(results_dir)
    plot_quietly(results_dir, reporter)
    if diverged:
        raise diverged_error(results_dir, tail)
    return code


def plot_quietly(results_dir: Path, reporter: Reporter) -> None:
    """The learning curve is a bonus: a missing matplotlib or odd metrics is a warning, not a failure."""
    try:
        png = plot_run(results_dir)
    except Ec2dbnError as exc:
        reporter.warn(f"no learning-curve plot: {exc}")
        return
    if png is not None:
        reporter.step(f"learning curve: {png}")
