"""`ec2dbn train --local`: the same job, on this machine, with no AWS at all.

The trainer runs as a child process (`python -m trainer run`), exactly as it runs on an instance, so a
local run and a remote run of the same job and seed produce the same files and the same numbers.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from ec2dbn.errors import Ec2dbnError
from ec2dbn.events import Reporter
from ec2dbn.resources import trainer_argv
from ec2dbn.results import RunRecord, plot_run, timed_phase

#: The trainer's exit codes (trainer/__main__.py), and what each one means for a run's status.
TRAINER_STATUS = {0: "finished", 1: "failed", 2: "failed", 3: "interrupted"}


def trainer_status(exit_code: int) -> str:
    """Run status for a trainer exit code: finished, failed, or interrupted (checkpoint written)."""
    return TRAINER_STATUS.get(exit_code, "failed")


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
    waits for that instead of abandoning it half-written.
    """
    cmd = [*trainer_argv("trainer"), "run", str(job_path), "--out", str(results_dir)]
    if backend:
        cmd += ["--backend", backend]
    if resume:
        cmd.append("--resume")
    reporter.step(f"training {job_path} locally into {results_dir}")
    with timed_phase(record, "train"):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                reporter.stream(line.rstrip("\n"))
            code = proc.wait()
        except KeyboardInterrupt:
            proc.send_signal(signal.SIGINT)
            code = proc.wait()
    record.finish(code, trainer_status(code))
    record.save(results_dir)
    plot_quietly(results_dir, reporter)
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
