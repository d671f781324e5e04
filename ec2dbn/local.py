"""`ec2dbn train --local`: the same job, on this machine, with no AWS at all.

The trainer runs as a child process (`python -m trainer run`), exactly as it runs on an instance, so a
local run and a remote run of the same job and seed produce the same files and the same numbers.
Whatever stops ec2dbn stops the trainer the way it expects: Ctrl-C reaches it directly (same process
group), SIGTERM and SIGHUP (a closed terminal) are forwarded as SIGTERM. It then writes its checkpoint
and exits 3, and `ec2dbn train --local --resume RUN_ID` continues the run.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import yaml

from ec2dbn.errors import ConfigError, Ec2dbnError
from ec2dbn.events import QuietOnClosedTerminal, Reporter
from ec2dbn.results import RunRecord, claim_run_dir, plot_run, timed_phase

#: The trainer's exit codes (trainer/__main__.py), and what each one means for a run's status.
TRAINER_STATUS = {0: "finished", 1: "failed", 2: "failed", 3: "interrupted"}


def trainer_status(exit_code: int) -> str:
    """Run status for a trainer exit code: finished, failed, or interrupted (checkpoint written)."""
    return TRAINER_STATUS.get(exit_code, "failed")


def start_local(job_path: Path, results_root: Path) -> tuple[RunRecord, Path]:
    """Validate the job and claim a new results folder for it; its job.yaml is written from the
    validated job (what `--local --resume` runs again)."""
    from ec2dbn.validation import load_job_file

    start = time.monotonic()
    job = load_job_file(job_path)
    run_id, results_dir = claim_run_dir(results_root, job_path)
    (results_dir / "job.yaml").write_text(yaml.safe_dump(job.to_dict(), sort_keys=False), encoding="utf-8")
    record = RunRecord(run_id=run_id, job=str(job_path), mode="local")
    record.phases["validate"] = round(time.monotonic() - start, 3)
    return record, results_dir


def resume_local(run_id: str, results_root: Path) -> tuple[RunRecord, Path, Path]:
    """A local run to continue from its checkpoint: (record, results folder, its job.yaml)."""
    from ec2dbn.validation import load_job_file

    results_dir = results_root / run_id
    try:
        record = RunRecord.load(results_dir)
    except (OSError, ValueError, TypeError):
        raise ConfigError(f"no run {run_id} in {results_root} (no readable run.json)") from None
    if record.mode != "local":
        raise ConfigError(f"run {run_id} ran on EC2; resume it with `ec2dbn train --resume {run_id}`")
    if record.status == "finished":
        raise ConfigError(f"run {run_id} already finished; its results are in {results_dir}")
    job_path = results_dir / "job.yaml"
    load_job_file(job_path)
    record.status, record.exit_code, record.finished_at = "running", None, None
    return record, results_dir, job_path


@contextlib.contextmanager
def _forward_stops(proc: subprocess.Popen[str]) -> Iterator[None]:
    """SIGTERM / SIGHUP to ec2dbn become SIGTERM to the trainer (which checkpoints and exits 3)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(_signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_local(
    job_path: Path,
    results_dir: Path,
    record: RunRecord,
    reporter: Reporter,
    backend: str | None = None,
    resume: bool = False,
) -> int:
    """Train `job_path` here into `results_dir`, streaming the trainer's output; return its exit code.

    Never leaves the trainer behind: every stop reaches it and this waits for its checkpoint.
    """
    reporter = QuietOnClosedTerminal(reporter)
    cmd = [sys.executable, "-u", "-m", "trainer", "run", str(job_path), "--out", str(results_dir)]
    if backend:
        cmd += ["--backend", backend]
    if resume:
        cmd.append("--resume")
    reporter.step(f"training {job_path} locally into {results_dir}")
    record.save(results_dir)
    with timed_phase(record, "train"):
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        with _forward_stops(proc):
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
    """The learning curve is a bonus: a missing matplotlib, odd metrics or a plotting bug is a warning,
    never the run's failure (its results are already safe on disk)."""
    try:
        png = plot_run(results_dir)
    except Exception as exc:
        reporter.warn(f"no learning-curve plot: {exc if isinstance(exc, Ec2dbnError) else repr(exc)}")
        return
    if png is not None:
        reporter.step(f"learning curve: {png}")
