"""The validate phase: the job and the stack parsed once, before anything touches AWS, and the run's
results folder and record opened for what passed.

What passes travels on as a `Validated` request: the parsed trainer `Job` (the shipped job.yaml is
written from it, never re-read from the user's file), the strict `Stack`, and how the run was asked for.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ec2dbn.errors import ConfigError
from ec2dbn.results_layout import JOB_FILE
from ec2dbn.run.instance_files import RemoteRun
from ec2dbn.run.results import RunRecord, claim_run_dir, load_run
from ec2dbn.spec import cost
from ec2dbn.spec.jobfiles import is_sweep_file, sweep_refused
from ec2dbn.spec.memory import check_fits
from ec2dbn.spec.overrides import load_for_launch
from ec2dbn.spec.stack import Stack
from ec2dbn.ssh.output import pull_limit_bytes
from trainer.contract import RESULT_FILES


@dataclass(frozen=True)
class Validated:
    """A run that passed validation. `results_dir` None: results_root/<a new run id>/."""

    job_path: Path
    job: Any  # trainer.config.Job
    stack: Stack
    stack_ref: str | None = None
    keep: bool = False
    results_root: Path = Path("results")
    results_dir: Path | None = None
    resume: RunRecord | None = None
    seconds: float = 0.0
    run_command: Callable[[RemoteRun, bool], str] | None = None
    result_files: tuple[str, ...] = RESULT_FILES
    plot: bool = True  # draw the learning curve at the end (a sweep draws its points' after teardown)
    detach: bool = False  # `train --detach`: return once the job runs; the instance finishes alone

    @property
    def epochs(self) -> int:
        return cost.job_epochs(self.job)

    @property
    def requirements(self) -> tuple[tuple[str, str], ...]:
        """(module, pip requirement) pairs the job's data set needs on the instance beyond NumPy and
        PyYAML (bootstrap/python.sh installs the missing ones)."""
        from trainer.data import data_requirements

        return data_requirements(self.job.data.name)

    def command(self, run: RemoteRun, resume: bool, store: Any = None) -> str:
        """What runs on the instance: the trainer on the job (resuming when asked), with the run store's
        uploader beside it when `store` (a trainer.sidecars.StoreTarget) is given, unless overridden
        (`ec2dbn bench --stack` runs trainer.bench through the same pipeline)."""
        if self.run_command is not None:
            return self.run_command(run, resume)
        return run.trainer_command(resume=resume, store=store)


def with_backend(job: Any, backend: str | None) -> Any:
    """The job with `--backend` applied (None: its own): from here on the job alone says where it trains
    (the memory check, the shipped job.yaml, a sweep's points)."""
    return dataclasses.replace(job, backend=backend) if backend else job


def load_job_file(job_path: Path) -> Any:
    """The job file checked with the trainer's own schema; ConfigError (one line) when it is bad."""
    from trainer.config import load_job
    from trainer.errors import TrainerError

    if not job_path.is_file():
        raise ConfigError(f"job file {job_path} not found")
    try:
        return load_job(job_path)
    except TrainerError as exc:
        if is_sweep_file(job_path):
            raise sweep_refused(job_path) from None
        where = "" if str(exc).startswith(str(job_path)) else f"{job_path}: "  # YAML errors name it already
        raise ConfigError(f"{where}{exc}") from None


def check_local_data(name: str) -> None:
    """A job naming a local data file must find it here, before anything is launched to ship it to."""
    from trainer.data import check_data_name
    from trainer.errors import TrainerError

    try:
        check_data_name(name)
    except TrainerError as exc:
        raise ConfigError(f"data.name: {exc}") from None


def validate(
    job_path: Path,
    *,
    stack_ref: str | None = None,
    name: str | None = None,
    spot: bool | None = None,
    ssh_cidr: str | None = None,
    region: str | None = None,
    **request: Any,
) -> Validated:
    """The job file and the stack it runs on (`stack_ref`, else the job's `stack:`), with the command
    line's overrides. Raises ConfigError; touches no AWS."""
    start = time.monotonic()
    job = with_backend(load_job_file(job_path), request.pop("backend", None))
    ref = stack_ref or (job.stack if isinstance(job.stack, str) else None)
    stack = load_for_launch(
        ref, name=name, spot=spot, ssh_cidr=ssh_cidr, region=region, max_lifetime=job.run.max_lifetime
    )
    check_fits(job, stack)
    check_local_data(str(job.data.name))
    pull_limit_bytes()  # a bad EC2DBN_MAX_PULL_MB is refused now, not at the pull after a paid run
    return Validated(job_path, job, stack, ref, seconds=time.monotonic() - start, **request)


def validate_resume(
    run_id: str, results_root: Path, *, keep: bool, backend: str | None, detach: bool = False
) -> Validated:
    """`train --resume RUN_ID`: the run's own job and stack, from its results folder."""
    start = time.monotonic()
    record, results_dir = resumable_run(run_id, results_root, "ec2")
    job_path = results_dir / JOB_FILE
    job = with_backend(load_job_file(job_path), backend)
    stack = load_for_launch(record.stack_ref, name=record.stack, max_lifetime=job.run.max_lifetime)
    check_fits(job, stack)
    return Validated(
        job_path,
        job,
        stack,
        record.stack_ref,
        keep=keep,
        results_root=results_root,
        results_dir=results_dir,
        resume=record,
        detach=detach,
        seconds=time.monotonic() - start,
    )


def resumable_run(run_id: str, results_root: Path, mode: str) -> tuple[RunRecord, Path]:
    """The record and folder of run `run_id`, made in `mode` ("ec2" or "local") and not ended for good:
    what `train --resume` (with or without --local) continues. ConfigError naming what is wrong."""
    record, results_dir = load_run(results_root, run_id)  # ConfigError names run.json and its fault
    if record.mode != mode:
        where, flag = ("on EC2", "") if record.mode == "ec2" else ("locally", " --local")
        raise ConfigError(f"run {run_id} ran {where}; resume it with `ec2dbn train{flag} --resume {run_id}`")
    if record.status == "finished":
        raise ConfigError(f"run {record.run_id} already finished; its results are in {results_dir}")
    if record.status == "diverged":
        from trainer.contract import TRAIN_LOG

        raise ConfigError(
            f"run {record.run_id} diverged: resuming it would diverge again; change the job's learn_rates, "
            f"scales or momentum (see {results_dir / TRAIN_LOG}) and start a new run"
        )
    record.status, record.exit_code, record.finished_at = "running", None, None
    return record, results_dir


def open_record(v: Validated) -> tuple[RunRecord, Path]:
    """The run's record and results folder: a new, never-shared folder for a new run (its job.yaml
    written from the validated job, for `--resume`), the run's own folder when resuming."""
    if v.resume is not None:
        record = v.resume
        results_dir = v.results_dir or v.results_root / record.run_id
    else:
        if v.results_dir is not None:
            results_dir = v.results_dir
            results_dir.mkdir(parents=True, exist_ok=True)
            run_id = results_dir.name
        else:
            run_id, results_dir = claim_run_dir(v.results_root, v.job_path)
        record = RunRecord(run_id=run_id, job=str(v.job_path), mode="ec2", stack_ref=v.stack_ref)
        text = yaml.safe_dump(v.job.to_dict(), sort_keys=False)
        (results_dir / JOB_FILE).write_text(text, encoding="utf-8")
    record.phases["validate"] = round((record.phases.get("validate") or 0.0) + v.seconds, 3)
    return record, results_dir
