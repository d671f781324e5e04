"""One run's files on the instance and here: where they live, what is shipped, what is pulled back.

The instance holds `<remote_dir>/runs/<run-id>/` (job.yaml, trainer/, data/, the detached job's log and
the trainer's out/); the user's machine holds `results/<run-id>/`. The pipeline moves files between the
two only through these functions, so the layout is defined once.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ec2dbn.errors import ConfigError, Ec2dbnError
from ec2dbn.events import Reporter
from ec2dbn.package_data import trainer_dir
from ec2dbn.results_layout import JOB_FILE
from ec2dbn.ssh import detached
from ec2dbn.ssh.remote import Remote
from ec2dbn.ssh.shell import quote_path
from ec2dbn.stack import state
from ec2dbn.untrusted_json import read_object, text
from trainer.contract import CHECKPOINT_FILE, INTERRUPTION_FILE, RESUME_FILES, SPOT_KIND
from trainer.strict_json import dumps

#: Seconds between checks for a newer remote checkpoint while following the log.
CHECKPOINT_PULL_INTERVAL_S = 1.0


@dataclass(frozen=True)
class RemoteRun:
    """Where one run lives on the instance: `<remote_dir>/runs/<run-id>/` (POSIX paths, `~` allowed)."""

    remote_dir: str
    run_id: str

    @property
    def workdir(self) -> str:
        return str(PurePosixPath(self.remote_dir) / "runs" / self.run_id)

    @property
    def out(self) -> str:
        return str(PurePosixPath(self.workdir) / "out")

    @property
    def log(self) -> str:
        return str(PurePosixPath(self.workdir) / detached.LOG_NAME)

    def python(self) -> str:
        """Shell prelude setting $PY: the bootstrap venv's python, or python3 when there is none."""
        venv_python = str(PurePosixPath(self.remote_dir) / "venv" / "bin" / "python")
        return f'PY="{venv_python.replace("~/", "$HOME/", 1)}"; [ -x "$PY" ] || PY=python3; '

    def trainer_command(self, resume: bool = False, store: Any = None) -> str:
        """Shell line that runs the shipped trainer on the shipped job, writing into out/, with the spot
        watcher beside it (it polls IMDSv2 for the two-minute notice and makes the trainer checkpoint) and,
        given a run store (`store`: a trainer.sidecars.StoreTarget), the uploader; the line's exit code is
        the trainer's. The backend is the shipped job's (--backend is applied to it when it is validated)."""
        from trainer.sidecars import shell_command

        extra = " --resume" if resume else ""
        return self.python() + shell_command('"$PY"', f"job.yaml --out out{extra}", "out", store=store)


# ------------------------------------------------------------------------------------------ shipping


def shipped_files(job: Any, staging: Path) -> dict[str, Path]:
    """The archive's contents: trainer/, job.yaml (written from the validated job) and the job's local
    data file or IDX folder (as data/<its name>).

    The shipped job.yaml names the shipped copy of the data, relative to the run folder, exactly as
    `--local` and the trainer resolve it, so the same job runs unchanged on the instance.
    """
    from trainer.data import local_data_path

    spec = job.to_dict()
    files: dict[str, Path] = {"trainer": trainer_dir()}
    local = local_data_path(str(job.data.name))
    if local is not None:
        # `idx/..` and `./x.npz` ship under a real name, never as data/.. (the name as written, links kept)
        local = Path(os.path.normpath(local.absolute()))
        shipped_name = f"data/{local.name or 'dataset'}"
        files[shipped_name] = local
        spec["data"]["name"] = shipped_name
    path = staging / JOB_FILE
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    files[JOB_FILE] = path
    return files


def upload_resume_files(remote: Remote, run: RemoteRun, results_dir: Path, reporter: Reporter) -> None:
    """Give a new instance what `--resume` continues from: the checkpoint and the logs so far."""
    for name in RESUME_FILES:
        local = results_dir / name
        if local.is_file():
            remote.put_file(local, str(PurePosixPath(run.out) / name))
    reporter.step(f"uploaded the checkpoint to {run.out}; the trainer resumes from it")


# ------------------------------------------------------------------------------------------- pulling


class CheckpointCopier:
    """Copies the remote checkpoint back when it changed (size and mtime), at most once a second unless
    forced: catching up on a backlog of fast epochs does not copy every one."""

    def __init__(self, run: RemoteRun, results_dir: Path, reporter: Reporter) -> None:
        self.run = run
        self.results_dir = results_dir
        self.reporter = reporter
        self._seen: str | None = None
        self._checked = float("-inf")

    def maybe_copy(self, remote: Remote, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._checked < CHECKPOINT_PULL_INTERVAL_S:
            return
        self._checked = time.monotonic()
        path = str(PurePosixPath(self.run.out) / CHECKPOINT_FILE)
        try:
            stamp = remote.run(f"stat -c '%s %Y' {quote_path(path)} 2>/dev/null", check=False).stdout.strip()
            if stamp and stamp != self._seen:
                remote.get_file(path, self.results_dir / CHECKPOINT_FILE)
                self._seen = stamp
        except Ec2dbnError as exc:
            self.reporter.warn(f"could not copy the checkpoint back: {exc}")


def pull_results(
    remote: Remote, run: RemoteRun, results_dir: Path, names: tuple[str, ...], reporter: Reporter
) -> list[str]:
    """Copy the trainer's results (whichever of `names` and interruption.json exist) and the job's own
    log into results_dir; returns what was pulled. Failures are warnings: pull what can be pulled."""
    wanted = (*names, INTERRUPTION_FILE)
    try:  # one round trip to learn which exist, rather than one per file
        listing = remote.run(
            f"cd {quote_path(run.out)} 2>/dev/null && ls -1 -- {' '.join(wanted)} 2>/dev/null", check=False
        ).stdout.split()
    except Ec2dbnError as exc:
        reporter.warn(f"could not list the results in {run.out}: {exc}")
        listing = []
    pulled = []
    for name in (n for n in wanted if n in listing):
        try:
            remote.get_file(str(PurePosixPath(run.out) / name), results_dir / name)
            pulled.append(name)
        except Ec2dbnError as exc:
            reporter.warn(f"could not pull {name}: {exc}")
    try:  # the trainer's own stdout and stderr (a crash's traceback lands only here)
        remote.get_file(run.log, results_dir / detached.LOG_NAME)
        pulled.append(detached.LOG_NAME)
    except Ec2dbnError as exc:
        reporter.warn(f"could not pull {detached.LOG_NAME}: {exc}")
    reporter.step(f"pulled {', '.join(pulled) or 'nothing'} into {results_dir}")
    return pulled


def log_size(remote: Remote, path: str) -> int:
    """The remote file's size in bytes (0 when it is missing)."""
    out = remote.run(f"stat -c %s {quote_path(path)} 2>/dev/null || echo 0", check=False).stdout.strip()
    return int(out) if out.isdigit() else 0


def spot_notice(results_dir: Path, reporter: Reporter | None = None) -> dict[str, Any] | None:
    """The pulled spot-interruption record, or None: missing, another kind, or malformed (an instance's
    file is untrusted input; `reporter` is told what is wrong with it)."""
    path = results_dir / INTERRUPTION_FILE
    if not path.is_file():
        return None
    try:
        record = read_object(path, INTERRUPTION_FILE)
    except ConfigError as exc:
        if reporter is not None:
            reporter.warn(f"ignored the instance's {INTERRUPTION_FILE}: {exc}")
        return None
    return record if record.get("kind") == SPOT_KIND else None


def set_aside_notice(results_dir: Path, index: int) -> None:
    """Keep a handled notice for the record, out of the way of the next attempt's."""
    notice = results_dir / INTERRUPTION_FILE
    if notice.is_file():
        notice.replace(notice.with_name(f"{notice.stem}-{index}{notice.suffix}"))


# ------------------------------------------------------------------------------------------- pointer


def _pointer_path(stack_name: str) -> Path:
    return state.stack_dir(stack_name) / "current-run.json"


def save_pointer(stack_name: str, run: RemoteRun, results_dir: Path) -> None:
    """The stack's pointer to its current run, so `ec2dbn logs` can re-attach."""
    _pointer_path(stack_name).write_text(
        dumps({"run_id": run.run_id, "remote_dir": run.remote_dir, "results_dir": str(results_dir)})
    )


def load_pointer(stack_name: str) -> RemoteRun | None:
    """The stack's current run, or None when there is none; ConfigError when the pointer is malformed."""
    path = _pointer_path(stack_name)
    if not path.is_file():
        return None
    data = read_object(path, "run pointer")
    remote_dir, run_id = text(data.get("remote_dir")), text(data.get("run_id"))
    if remote_dir is None or run_id is None:
        raise ConfigError(f"{path}: not a run pointer (no run_id and remote_dir strings)")
    return RemoteRun(remote_dir, run_id)


def follow_run(st: state.StackState, run: RemoteRun, reporter: Reporter, follow: bool) -> None:
    """`ec2dbn logs`: stream a run's log so far (and, with `follow`, until the job ends)."""
    from ec2dbn.stack.connect import remote_for

    detached.follow_log(
        remote_for(st),
        run.log,
        on_line=reporter.stream,
        workdir=run.workdir if follow else None,
        reporter=reporter,
    )
