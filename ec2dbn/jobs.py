"""`ec2dbn train` on EC2, as named and timed phases.

launch → ssh → bootstrap → ship → train (detached, log followed) → pull → teardown. Each phase is one call
here and lands in run.json with its duration. Whatever goes wrong after something exists in AWS, the stack
is torn down (unless --keep), and the user is told exactly what is left if even that fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ec2dbn import catalog, cost, detached, state
from ec2dbn.aws import provision
from ec2dbn.bootstrap import job_requirements, run_bootstrap
from ec2dbn.config import Stack
from ec2dbn.errors import Ec2dbnError, JobFailedError, RemoteError
from ec2dbn.events import Reporter
from ec2dbn.local import plot_quietly, trainer_status
from ec2dbn.remote import Remote
from ec2dbn.resources import trainer_dir
from ec2dbn.results import RunRecord, timed_phase

#: Files the trainer writes into its --out folder that are pulled back, in this order.
RESULT_FILES = ("metrics.json", "metrics.jsonl", "report.txt", "train.log", "model.npz", "checkpoint.npz")

#: Seconds to wait for sshd on a fresh instance (boot plus cloud-init); EC2DBN_SSH_TIMEOUT overrides.
DEFAULT_SSH_TIMEOUT_S = 600.0

#: Lines of the trainer's log quoted when it fails.
TAIL_LINES = 10

#: Seconds between checks for a newer remote checkpoint while following the log.
CHECKPOINT_PULL_INTERVAL_S = 1.0

#: Seconds a stopped (Ctrl-C) trainer gets to write its checkpoint before results are pulled.
STOP_GRACE_S = 60.0


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

    def trainer_command(self, backend: str | None = None, resume: bool = False) -> str:
        """Shell line that runs the shipped trainer on the shipped job, writing into out/, with the spot
        watcher beside it (it polls IMDSv2 for the two-minute notice and makes the trainer checkpoint);
        the line's exit code is the trainer's."""
        from trainer.spot_watch import shell_command

        extra = (f" --backend {backend}" if backend else "") + (" --resume" if resume else "")
        return self.python() + shell_command('"$PY"', f"job.yaml --out out{extra}", "out")


def ssh_timeout_s() -> float:
    return float(os.environ.get("EC2DBN_SSH_TIMEOUT", DEFAULT_SSH_TIMEOUT_S))


def remote_for(st: state.StackState) -> Remote:
    """The SSH target for a launched stack, with the host key pinned at launch (never trust-on-first-use)."""
    if not st.host_public_key:
        raise RemoteError(
            f"no pinned host key for stack {st.name}: refusing to SSH; "
            f"`ec2dbn teardown {st.name}` and relaunch"
        )
    host, port = st.ssh_endpoint()
    key = st.key_path or str(state.key_path(st.name))
    return Remote(host, port, st.ssh_user, key, st.host_public_key)


def shipped_files(job_path: Path, staging: Path) -> dict[str, Path]:
    """The archive's contents: trainer/, job.yaml, and the job's local data file (renamed into data/).

    The shipped job.yaml is the user's with `data.name` pointed at the shipped copy when the data is a
    local file, so the same job runs unchanged on the instance.
    """
    from trainer.data import local_data_path

    job = yaml.safe_load(job_path.read_text(encoding="utf-8"))
    files: dict[str, Path] = {"trainer": trainer_dir()}
    local = local_data_path(str(job["data"]["name"]))
    if local is not None:
        # Relative to the working directory, exactly as `--local` and the trainer resolve it.
        files[f"data/{local.name}"] = local
        job["data"]["name"] = f"data/{local.name}"
    shipped = staging / "job.yaml"
    shipped.write_text(yaml.safe_dump(job, sort_keys=False), encoding="utf-8")
    files["job.yaml"] = shipped
    return files


def record_instance(record: RunRecord, st: state.StackState) -> None:
    """Copy where the run is (stack, instance, market, zone, price) into its record."""
    record.stack = st.name
    record.region = st.region
    record.availability_zone = st.availability_zone
    record.instance_id = st.instance_id
    record.instance_type = st.instance_type
    record.market = st.market
    if st.price is not None:
        record.price_usd_per_hour = st.price.usd_per_hour
        record.price_source = f"{st.price.source} ({st.price.date})"


def pointer_path(stack_name: str) -> Path:
    """The stack's pointer to its current run, so `ec2dbn logs` can re-attach."""
    return state.stack_dir(stack_name) / "current-run.json"


def save_pointer(stack_name: str, run: RemoteRun, results_dir: Path) -> None:
    pointer_path(stack_name).write_text(
        json.dumps({"run_id": run.run_id, "remote_dir": run.remote_dir, "results_dir": str(results_dir)})
    )


def load_pointer(stack_name: str) -> tuple[RemoteRun, Path] | None:
    try:
        data = json.loads(pointer_path(stack_name).read_text())
    except (OSError, ValueError):
        return None
    return RemoteRun(data["remote_dir"], data["run_id"]), Path(data["results_dir"])


def estimate_line(stack: Stack, epochs: int, price: catalog.Price | None = None) -> str:
    """The cost estimate printed before launch: the first candidate at `price` (default: its on-demand
    list price, or the stack's spot max_price — an upper bound for spot)."""
    itype = stack.candidates[0]
    entry = catalog.lookup(itype)
    bound = ""
    if price is None:
        price = catalog.on_demand_price(itype, stack.region)
        if stack.market == "spot":
            bound = " (an upper bound: spot usually costs less)"
            if stack.max_price is not None:
                price = catalog.Price(
                    stack.max_price, "the stack's spot max_price", price.date, stack.region, "spot"
                )
    est = cost.estimate_job(entry, price, epochs)
    return f"{est.describe()}{bound}"


def job_epochs(job: Any) -> int:
    """All epochs a job trains (fine-tuning plus each layer's pretraining), for estimates."""
    pretrain = job.model.epochs_pretrain
    pretrain_epochs = sum(pretrain) if isinstance(pretrain, (tuple, list)) else int(pretrain or 0)
    return int(job.model.epochs) + pretrain_epochs


class InstanceLost(Exception):
    """The instance went away under the job (spot reclaim, or EC2 says it is no longer running)."""


@dataclass
class Attempt:
    """One instance's part of a run: what ran where, and how it ended."""

    st: state.StackState
    started: str
    ended: str | None = None


class TrainFlow:
    """One `ec2dbn train` on EC2. `run()` returns the exit code: 0 finished, 1 failed, 130 interrupted.

    A spot interruption (the trainer checkpointed on the two-minute notice and exited 3) or a lost
    instance is survived up to the stack's `max_recoveries` times: the old instance is torn down, a new
    one launched (avoiding the old zone), bootstrapped, given the last pulled checkpoint, and the trainer
    resumes. On the NumPy backend the final weights equal an uninterrupted run's.
    """

    def __init__(
        self,
        job_path: Path,
        stack: Stack,
        record: RunRecord,
        results_dir: Path,
        reporter: Reporter,
        *,
        keep: bool = False,
        backend: str | None = None,
        stack_source: str = "",
        reattach: bool = False,
        command: Callable[[RemoteRun, bool], str] | None = None,
        result_files: tuple[str, ...] = RESULT_FILES,
    ) -> None:
        self.job_path = job_path
        self.stack = stack
        self.record = record
        self.results_dir = results_dir
        self.reporter = reporter
        self.keep = keep
        self.backend = backend
        self.stack_source = stack_source
        self.reattach = reattach
        # What runs on the instance (default: the trainer on the job, resuming when asked) and what
        # it leaves in out/ to pull back: `ec2dbn bench` runs trainer.bench through the same flow.
        self.command = command or (lambda run, resume: run.trainer_command(backend, resume=resume))
        self.result_files = result_files
        self.st: state.StackState | None = None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.segments: list[cost.InstanceSegment] = []
        self._checkpoint_seen: str | None = None
        self._checkpoint_checked = float("-inf")
        self._remote: Remote | None = None
        self._run_dir = RemoteRun(stack.remote_dir, record.run_id)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        with timed_phase(self.record, name):
            yield
        self.record.save(self.results_dir)

    def run(self) -> int:
        self.record.save(self.results_dir)
        code = 1
        try:
            code = self._run()
        except KeyboardInterrupt:
            self.reporter.warn("interrupted (Ctrl-C)")
            self.record.finish(130, "interrupted")
            code = 130
            if self._remote is not None:
                self._remote.abandon()  # closing a connection wedged by the interrupt could hang _end
        except Ec2dbnError as exc:
            if self.record.exit_code is None:
                self.record.finish(exc.exit_code, "failed")
            self.record.save(self.results_dir)
            self._end()
            raise
        self._end()
        return code

    def _run(self) -> int:
        resume = self._has_checkpoint()
        avoid: list[str] = []
        while True:
            try:
                status = self._attempt(resume=resume, avoid_zones=avoid)
            except InstanceLost as lost:
                reason = str(lost)
            else:
                exit_code = status.exit_code if status.exit_code is not None else 1
                notice = self._interruption()
                if exit_code == 3 and notice is not None:
                    reason = (
                        f"spot interruption notice ({notice.get('action', '?')} at {notice.get('time', '?')})"
                    )
                else:
                    return self._finish(exit_code, status)
            avoid = [self.st.availability_zone] if self.st and self.st.availability_zone else []
            self._recover(reason)
            resume = True

    def _attempt(self, *, resume: bool, avoid_zones: list[str]) -> detached.JobStatus:
        """Launch (or reuse), connect, bootstrap, ship, run and follow on one instance."""
        run = self._run_dir
        with self.phase("launch"):
            launched = provision.launch(
                self.stack, reporter=self.reporter, avoid_zones=avoid_zones, stack_source=self.stack_source
            )
        self.st = launched.state
        self._begin_segment(self.st)
        record_instance(self.record, self.st)
        save_pointer(self.stack.name, run, self.results_dir)
        remote = self._remote = remote_for(self.st)
        with self.phase("ssh"):
            try:
                remote.wait_until_reachable(ssh_timeout_s(), self.reporter)
            except RemoteError:
                if not self._instance_alive():
                    raise InstanceLost("the instance went away before SSH came up") from None
                raise
        if self.reattach and detached.job_status(remote, run.workdir).state != "absent":
            self.reporter.step(f"re-attaching to the job already running in {run.workdir}")
            self.reattach = False
        else:
            self.reattach = False
            with self.phase("bootstrap"):
                run_bootstrap(
                    remote,
                    self.stack.bootstrap,
                    self.st.remote_dir,
                    self.reporter,
                    self.results_dir / "bootstrap.log",
                    requirements=job_requirements(self.job_path),
                )
            with self.phase("ship"), tempfile.TemporaryDirectory(prefix="ec2dbn-ship-") as staging:
                remote.put_tree(shipped_files(self.job_path, Path(staging)), run.workdir)
                if resume:
                    self._upload_checkpoint(remote, run)
            detached.start_detached(remote, self.command(run, resume), run.workdir)
        try:
            with self.phase("train"):
                status = self._follow(remote, run)
        except KeyboardInterrupt:
            remote.abandon()  # the interrupted SSH call may have left the connection wedged: use a new one
            self._stop(remote, run)
            with self.phase("pull"):
                self._pull(remote, run)
            raise
        except RemoteError as exc:
            if not self._instance_alive():
                raise InstanceLost(
                    "the instance went away during training (SSH lost, EC2 says not running)"
                ) from exc
            raise
        with self.phase("pull"):
            self._pull(remote, run)
        return status

    def _follow(self, remote: Remote, run: RemoteRun) -> detached.JobStatus:
        """Follow the trainer's log until it ends; returns its final status."""
        where = self.st.instance_id if self.st else "?"
        self.reporter.step(f"training on {where}: following {run.log}")
        result = detached.follow_log(
            remote,
            run.log,
            on_line=lambda line: self._line(remote, run, line),
            workdir=run.workdir,
            reporter=self.reporter,
            on_disconnect=lambda _err: self._instance_alive(),
        )
        return result.status

    def _line(self, remote: Remote, run: RemoteRun, line: str) -> None:
        self.tail.append(line)
        self.reporter.stream(line)
        # After an epoch (at most once a second, so catching up on a backlog of fast epochs does not
        # copy every one) and always on a spot notice; the final pull takes the last one anyway.
        notice = line.startswith("Spot interruption notice")
        due = time.monotonic() - self._checkpoint_checked >= CHECKPOINT_PULL_INTERVAL_S
        if notice or (line.startswith("Epoch ") and due):
            self._checkpoint_checked = time.monotonic()
            self._pull_checkpoint(remote, run)

    def _finish(self, exit_code: int, status: detached.JobStatus) -> int:
        self.record.finish(0 if exit_code == 0 else 1, trainer_status(exit_code))
        plot_quietly(self.results_dir, self.reporter)
        if exit_code != 0:
            last = " | ".join(line.strip() for line in self.tail if line.strip()) or "no output"
            raise JobFailedError(
                f"the trainer failed (exit {exit_code}, {status.state}); last lines: {last}; "
                f"full output in {self.results_dir / detached.LOG_NAME}"
            )
        return 0

    # -- recovery --------------------------------------------------------------------------------------

    def _instance_alive(self) -> bool:
        """Whether EC2 still reports the job's instance pending or running.

        When EC2 cannot be asked, True: keep reconnecting rather than relaunch on a guess.
        """
        if self.st is None or not self.st.instance_id:
            return False
        try:
            rows = provision.query(self.stack.region, self.stack.name)
        except Ec2dbnError:
            return True  # cannot tell: keep trying to reconnect rather than relaunch blindly
        return any(r.instance_id == self.st.instance_id and r.state in ("pending", "running") for r in rows)

    def _recover(self, reason: str) -> None:
        used = len(self.record.recoveries)
        old = self.st
        if used >= self.stack.max_recoveries:
            raise JobFailedError(
                f"{reason}; giving up after {used} recoveries (max_recoveries {self.stack.max_recoveries}); "
                f"the last checkpoint is in {self.results_dir}: `ec2dbn train --resume {self.record.run_id}`"
            )
        self.reporter.warn(f"{reason}: recovering ({used + 1}/{self.stack.max_recoveries})")
        with self.phase("teardown"):
            provision.teardown(self.stack.name, self.stack.region, reporter=self.reporter)
        self._end_segment()
        segment_cost = cost.actual_cost(self.segments[-1:]).total_usd if self.segments else 0.0
        self.record.recoveries.append(
            {
                "at": state.iso(state.utc_now()),
                "reason": reason,
                "instance_id": old.instance_id if old else None,
                "instance_type": old.instance_type if old else None,
                "market": old.market if old else None,
                "availability_zone": old.availability_zone if old else None,
                "checkpoint": self._has_checkpoint(),
                "cost_usd": round(segment_cost, 6),
            }
        )
        notice = self.results_dir / "interruption.json"
        if notice.is_file():  # kept for the record, out of the way of the next attempt's
            notice.replace(self.results_dir / f"interruption-{used + 1}.json")
        self.record.save(self.results_dir)
        self.st = None

    def _interruption(self) -> dict[str, Any] | None:
        path = self.results_dir / "interruption.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return data if data.get("kind") == "spot-interruption" else None

    def _has_checkpoint(self) -> bool:
        return (self.results_dir / "checkpoint.npz").is_file()

    def _pull_checkpoint(self, remote: Remote, run: RemoteRun) -> None:
        """Copy the remote checkpoint back when it changed since the last copy (size and mtime)."""
        from ec2dbn.remote import quote_path

        path = str(PurePosixPath(run.out) / "checkpoint.npz")
        try:
            stamp = remote.run(f"stat -c '%s %Y' {quote_path(path)} 2>/dev/null", check=False).stdout.strip()
            if stamp and stamp != self._checkpoint_seen:
                remote.get_file(path, self.results_dir / "checkpoint.npz")
                self._checkpoint_seen = stamp
        except Ec2dbnError as exc:
            self.reporter.warn(f"could not copy the checkpoint back: {exc}")

    def _upload_checkpoint(self, remote: Remote, run: RemoteRun) -> None:
        """Give the new instance what `--resume` continues from: the checkpoint and the logs so far."""
        for name in ("checkpoint.npz", "metrics.jsonl", "train.log"):
            local = self.results_dir / name
            if local.is_file():
                remote.put_file(local, str(PurePosixPath(run.out) / name))
        self.reporter.step(f"uploaded the checkpoint to {run.out}; the trainer resumes from it")

    # -- ending ----------------------------------------------------------------------------------------

    def _stop(self, remote: Remote, run: RemoteRun) -> None:
        """Ctrl-C: ask the trainer to checkpoint and stop, and wait (bounded) for it to do so."""
        self.reporter.warn("stopping the remote trainer (it writes a checkpoint first)")
        with contextlib.suppress(Ec2dbnError):
            start = _size(remote, run.log)  # before the signal, so its "stopped by SIGTERM" line is shown
            detached.stop_job(remote, run.workdir, "TERM")
            give_up = time.monotonic() + STOP_GRACE_S
            detached.follow_log(
                remote,
                run.log,
                start_offset=start,
                on_line=self.reporter.stream,
                is_done=lambda status: status.state != "running" or time.monotonic() > give_up,
                workdir=run.workdir,
                reconnect_timeout_s=STOP_GRACE_S,
            )

    def _pull(self, remote: Remote, run: RemoteRun) -> list[str]:
        """Copy the trainer's results (whichever exist) into results/<run-id>/."""
        from ec2dbn.remote import quote_path

        wanted = (*self.result_files, "interruption.json")
        try:  # one round trip to learn which exist, rather than one per file
            listing = remote.run(
                f"cd {quote_path(run.out)} 2>/dev/null && ls -1 -- {' '.join(wanted)} 2>/dev/null",
                check=False,
            ).stdout.split()
        except Ec2dbnError as exc:
            self.reporter.warn(f"could not list the results in {run.out}: {exc}")
            listing = []
        pulled = []
        for name in (n for n in wanted if n in listing):
            try:
                remote.get_file(str(PurePosixPath(run.out) / name), self.results_dir / name)
                pulled.append(name)
            except Ec2dbnError as exc:
                self.reporter.warn(f"could not pull {name}: {exc}")
        # The trainer's own stdout and stderr (a crash's traceback lands only here).
        try:
            remote.get_file(run.log, self.results_dir / detached.LOG_NAME)
            pulled.append(detached.LOG_NAME)
        except Ec2dbnError as exc:
            self.reporter.warn(f"could not pull {detached.LOG_NAME}: {exc}")
        self.reporter.step(f"pulled {', '.join(pulled) or 'nothing'} into {self.results_dir}")
        return pulled

    def _end(self) -> None:
        """Tear down (unless --keep) and write the cost; never lets a teardown error hide the job's."""
        if self._remote is not None:
            self._remote.close()
        if self.keep:
            if self.st is not None:
                self.reporter.step(
                    f"--keep: {self.st.instance_id} is still running; `ec2dbn teardown {self.stack.name}` "
                    "removes it"
                )
            self._cost()
            self.record.save(self.results_dir)
            return
        try:
            with self.phase("teardown"):
                report = provision.teardown(self.stack.name, self.stack.region, reporter=self.reporter)
            self.reporter.step(f"teardown: {report.remaining} ec2dbn-tagged remains for {self.stack.name}")
        except (Ec2dbnError, KeyboardInterrupt) as exc:
            self.reporter.warn(
                f"teardown did not finish ({exc or 'interrupted'}): resources of stack {self.stack.name} may "
                f"still be running; run `ec2dbn teardown {self.stack.name} --yes`"
            )
        self._end_segment()
        self._cost()
        self.record.save(self.results_dir)

    def _begin_segment(self, st: state.StackState) -> None:
        if st.price is None:
            return
        if self.segments and self.segments[-1].instance_id == st.instance_id:
            return
        started = state.parse_iso(st.launched_at) if st.launched_at else state.utc_now()
        self.segments.append(
            cost.InstanceSegment(
                instance_id=st.instance_id or "?",
                instance_type=st.instance_type or "?",
                market=st.market or "?",
                usd_per_hour=st.price.usd_per_hour,
                started_at=started,
            )
        )

    def _end_segment(self) -> None:
        if self.segments and self.segments[-1].ended_at is None:
            self.segments[-1] = dataclasses.replace(self.segments[-1], ended_at=state.utc_now())

    def _cost(self) -> None:
        if not self.segments:
            return
        breakdown = cost.actual_cost(self.segments)
        self.record.segments = breakdown.to_dict()["segments"]
        self.record.cost_usd = round(breakdown.total_usd, 6)


def _size(remote: Remote, path: str) -> int:
    from ec2dbn.remote import quote_path

    out = remote.run(f"stat -c %s {quote_path(path)} 2>/dev/null || echo 0", check=False).stdout.strip()
    return int(out) if out.isdigit() else 0


def follow_run(
    st: state.StackState,
    run: RemoteRun,
    on_line: Callable[[str], None],
    reporter: Reporter,
    follow: bool,
) -> Any:
    """`ec2dbn logs`: print a run's log so far (and, with follow, until it ends)."""
    remote = remote_for(st)
    return detached.follow_log(
        remote,
        run.log,
        on_line=on_line,
        workdir=run.workdir if follow else None,
        reporter=reporter,
    )
