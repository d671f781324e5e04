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
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import yaml

from ec2dbn.errors import ConfigError, Ec2dbnError, JobFailedError
from ec2dbn.events import QuietOnClosedTerminal, Reporter
from ec2dbn.package_data import trainer_argv
from ec2dbn.results_layout import JOB_FILE
from ec2dbn.run import signals
from ec2dbn.run.blas_threads import plan_here
from ec2dbn.run.results import RunRecord, claim_run_dir, plot_run, timed_phase
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


def start_local(job_path: Path, results_root: Path, backend: str | None = None) -> tuple[RunRecord, Path]:
    """Validate the job (its data, that it fits this machine's memory, its backend) and only then claim a
    new results folder for it: a run refused here leaves no folder behind;
    its job.yaml is written from the validated job (what `--local --resume` runs again)."""
    from ec2dbn.run.validate import check_local_data, load_job_file, with_backend
    from ec2dbn.spec.memory import check_fits

    start = time.monotonic()
    job = with_backend(load_job_file(job_path), backend)
    check_local_data(str(job.data.name))
    check_fits(job, None)
    check_backend_here(job.backend)
    run_id, results_dir = claim_run_dir(results_root, job_path)
    (results_dir / JOB_FILE).write_text(yaml.safe_dump(job.to_dict(), sort_keys=False), encoding="utf-8")
    record = RunRecord(run_id=run_id, job=str(job_path), mode="local")
    record.phases["validate"] = round(time.monotonic() - start, 3)
    return record, results_dir


def check_backend_here(backend: str) -> None:
    """`backend: cupy` needs a usable GPU on this machine: refused here, before a results folder exists
    (the trainer would refuse it too, but only once the run had begun). auto and numpy always run."""
    if backend != "cupy":
        return
    from trainer.backend import select_backend
    from trainer.errors import TrainerError

    try:
        select_backend("cupy")
    except TrainerError as exc:
        raise ConfigError(str(exc)) from None


def resume_local(run_id: str, results_root: Path) -> tuple[RunRecord, Path, Path]:
    """A local run to continue from its checkpoint: (record, results folder, its job.yaml)."""
    from ec2dbn.run.validate import load_job_file, resumable_run

    record, results_dir = resumable_run(run_id, results_root, "local")
    job_path = results_dir / JOB_FILE
    load_job_file(job_path)
    return record, results_dir, job_path


def run_local(
    job_path: Path,
    results_dir: Path,
    record: RunRecord,
    reporter: Reporter,
    backend: str | None = None,
    resume: bool = False,
    env: Mapping[str, str] | None = None,
    on_start: Callable[[subprocess.Popen[str]], None] | None = None,
    plot: bool = True,
) -> int:
    """Train `job_path` here into `results_dir`, streaming the trainer's output; return its exit code.

    Never leaves the trainer behind: every stop reaches it and this waits for its checkpoint. A
    diverged run (exit 4) is recorded as "diverged" with exit code 1 and raised as JobFailedError
    carrying the trainer's message. env: the trainer's environment (default this process's);
    on_start(proc): told the trainer process as it starts (a sweep stops its workers through it);
    plot: draw the learning curve (a sweep draws its points' at its end).
    """
    reporter = QuietOnClosedTerminal(reporter)
    if env is None:
        warn_if_busy(reporter)
    cmd = [*trainer_argv("trainer"), "run", str(job_path), "--out", str(results_dir)]
    if backend:
        cmd += ["--backend", backend]
    if resume:
        cmd.append("--resume")
    reporter.step(f"training {job_path} locally into {results_dir}")
    record.save(results_dir)
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    with timed_phase(record, "train"):
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env=None if env is None else dict(env),
        )
        if on_start is not None:
            on_start(proc)
        # SIGTERM / SIGHUP to ec2dbn become SIGTERM to the trainer (which checkpoints and exits 3).
        with signals.on_signals(lambda _signum: _stop(proc)):
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
    if plot:
        plot_quietly(results_dir, reporter)
    if diverged:
        raise diverged_error(results_dir, tail)
    return code


def warn_if_busy(reporter: Reporter) -> None:
    """A hint when other processes keep cores busy and the trainer's BLAS threads would oversubscribe
    them (ec2dbn.run.blas_threads); the trainer's environment stays as it is, and so do its numbers."""
    plan = plan_here(1)
    if plan.hint:
        reporter.warn(plan.hint)


def _stop(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)


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
