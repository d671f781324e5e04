"""One run on EC2 as named, timed phases — the single place where teardown is guaranteed and recovery
decided. `ec2dbn train`, `train --resume`, `plan` and `bench --stack` all go through it:

    validate → plan → provision → connect → bootstrap → ship → run → follow → pull → teardown

- validate: the job and the stack, parsed once, with no AWS call; bad input stops here, nothing created.
- plan: the stack is leased to this run (a local lock), then AWS is asked what exists and what a launch
  would cost. Nothing is created yet, so a failure up to here needs no teardown.
- provision … pull: from here on something may exist in AWS. Every way out — any exception, Ctrl-C,
  SIGTERM, SIGHUP, a stop asked by another thread — goes through the one `finally` in `Pipeline.run`,
  which tears the stack down (unless --keep) and writes a final run.json.
- recovery: whatever goes wrong after launch, the pipeline asks AWS about the instance. Gone → a
  recovery (a new instance resumes from the last checkpoint) while `max_recoveries` allows; marked by
  `ec2dbn teardown` → the run stops, no relaunch; still running → the failure is real.
- run store (run/store_link.py): the instance keeps the run's files in S3; `--detach` ends once the job runs.

The instance comes from the pipeline's `Capacity` (run/capacity.py): a stack of its own, or a sweep's slot.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from ec2dbn.errors import (
    ConfigError,
    Ec2dbnError,
    JobFailedError,
    RemoteError,
    StackTornDownError,
)
from ec2dbn.events import QuietOnClosedTerminal, Reporter
from ec2dbn.results_layout import BOOTSTRAP_LOG
from ec2dbn.run import signals
from ec2dbn.run.capacity import Capacity, StackCapacity
from ec2dbn.run.instance_fate import Fate, instance_fate, settled_fate
from ec2dbn.run.instance_files import (
    CheckpointCopier,
    RemoteRun,
    log_size,
    pull_results,
    save_pointer,
    set_aside_notice,
    shipped_files,
    spot_notice,
    upload_resume_files,
)
from ec2dbn.run.local import TAIL_LINES, diverged_error, plot_quietly, trainer_status
from ec2dbn.run.results import timed_phase
from ec2dbn.run.store_link import StoreLink
from ec2dbn.run.validate import Validated, open_record
from ec2dbn.spec import cost
from ec2dbn.ssh import detached
from ec2dbn.ssh.remote import Remote
from ec2dbn.stack import state
from ec2dbn.stack.ready import make_ready
from trainer.contract import (
    CHECKPOINT_FILE,
    EPOCH_MARKER,
    EXIT_DIVERGED,
    EXIT_OK,
    EXIT_STOPPED,
    SPOT_NOTICE_MARKER,
)

PHASES = (
    "validate",
    "plan",
    "provision",
    "connect",
    "bootstrap",
    "ship",
    "run",
    "follow",
    "pull",
    "teardown",
)

#: Test seam: callables told the name of each phase as it starts (teardown excepted: it is the guarantee
#: itself). Tests append one that raises to prove every way out tears down; production code never does.
PHASE_HOOKS: list[Callable[[str], None]] = []

#: Seconds a stopped (Ctrl-C) trainer gets to write its checkpoint before results are pulled.
STOP_GRACE_S = 60.0


class StopRequested(signals.Interrupted):
    """`Pipeline.request_stop()` was called (from another thread, e.g. a sweep's Ctrl-C): stop as Ctrl-C
    does, at the next phase boundary or while following the log."""

    def __init__(self) -> None:
        super().__init__(signal.SIGINT)


class Pipeline:
    """One run on EC2. `run()` returns the exit code: 0 finished, 1 failed, 128+N ended by signal N.

    capacity: where the instance comes from (default: a stack of the run's own, `StackCapacity`).
    """

    def __init__(self, v: Validated, reporter: Reporter, capacity: Capacity | None = None) -> None:
        self.v = v
        self.stack = v.stack
        self.capacity: Capacity = capacity or StackCapacity(v)
        self.reporter: Reporter = QuietOnClosedTerminal(reporter)
        self.record, self.results_dir = open_record(v)
        self.run_dir = RemoteRun(self.stack.remote_dir, self.record.run_id)
        self.st: state.StackState | None = None
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.segments: list[cost.InstanceSegment] = []
        self._remote: Remote | None = None
        self._provisioning = False
        self._copier = CheckpointCopier(self.run_dir, self.results_dir, self.reporter)
        self._reattach = v.resume is not None
        self._discard = False
        self._stop_requested = threading.Event()
        self.stored = StoreLink(v, self.record, self.capacity.stores_runs, self.reporter)

    def request_stop(self) -> None:
        """Ask the run (from any thread) to stop as Ctrl-C stops it: the trainer checkpoints, what exists is
        pulled, the run ends `interrupted`. Noticed at the next phase or log poll."""
        self._stop_requested.set()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if self._stop_requested.is_set() and name not in ("pull", "teardown"):  # a stop still pulls
            raise StopRequested()
        for hook in PHASE_HOOKS:
            hook(name)
        with timed_phase(self.record, name):
            yield
        self.record.save(self.results_dir)

    # -- the guarantee ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Run every phase; whatever happens, end in teardown (unless --keep) and a final run.json."""
        self.record.save(self.results_dir)
        with signals.on_signals(signals.raise_interrupted):
            try:
                return self._phases()
            except KeyboardInterrupt as exc:
                code, why = signals.exit_code(exc)
                self.reporter.warn(f"interrupted ({why})")
                self._finish_record(code, "interrupted")
                if self._remote is not None:
                    self._remote.abandon()  # closing a connection wedged by the interrupt could hang
                return int(self.record.exit_code or code)
            except ConfigError as exc:
                # Refused before anything could exist (a busy stack, a stack that differs): a new run
                # leaves no results folder behind, as bad input in the validate phase leaves none.
                self._discard = (
                    not self._provisioning and self.v.resume is None and self.v.results_dir is None
                )
                self._finish_record(exc.exit_code, "failed")
                raise
            except BaseException as exc:
                # An error may name the status it means (a torn-down stack, a sweep out of capacity).
                self._finish_record(1, getattr(exc, "run_status", "failed"))
                raise
            finally:
                self._end()

    def _finish_record(self, exit_code: int, status: str) -> None:
        if self.record.exit_code is None:
            self.record.finish(exit_code, status)

    def _phases(self) -> int:
        with self.phase("plan"):
            self.capacity.plan(self.v, self.reporter, self.record.run_id)
            self.record.bake = self.capacity.bake
        resume = (self.results_dir / CHECKPOINT_FILE).is_file() or self.stored.holds_checkpoint()
        avoid: list[str] = []
        while True:
            try:
                status = self._attempt(resume=resume, avoid_zones=avoid)
            except Exception as exc:
                reason = self._loss_reason(exc)
                code = self.stored.ended_with(self.results_dir)  # the store says the job ended: no relaunch
                if code is not None:
                    return self._finish(code, detached.JobStatus("finished", code))
            else:
                if status is None:  # --detach: the instance finishes the run alone
                    return 0
                exit_code = status.exit_code if status.exit_code is not None else 1
                notice = spot_notice(self.results_dir, self.reporter) if exit_code == EXIT_STOPPED else None
                if notice is None:
                    return self._finish(exit_code, status)
                when = f"{notice.get('action', '?')} at {notice.get('time', '?')}"
                reason = f"spot interruption notice ({when})"
            avoid = [self.st.availability_zone] if self.st and self.st.availability_zone else []
            self._recover(reason)
            resume = True

    def _loss_reason(self, exc: Exception) -> str:
        """Decide from what AWS says about the instance, not from the exception: gone → the reason to
        recover; marked by `ec2dbn teardown` → stop; running (or unknown, or none yet) → re-raise."""
        iid = self.st.instance_id if self.st else None
        fate = settled_fate(self.stack.region, iid, self._remote, self.reporter)
        if fate == "torn-down":
            raise StackTornDownError(
                f"stack {self.stack.name} was torn down by `ec2dbn teardown` during the run; "
                f"not relaunching; what was pulled so far is in {self.results_dir}"
            ) from None
        if fate != "lost":
            raise exc
        what = f"{type(exc).__name__}: {exc}" if not isinstance(exc, Ec2dbnError) else str(exc)
        return f"the instance {iid or '?'} went away ({what})"

    def _instance_fate(self) -> Fate:
        return instance_fate(self.stack.region, self.st.instance_id if self.st else None)

    # -- one instance ----------------------------------------------------------------------------------

    def _attempt(self, *, resume: bool, avoid_zones: list[str]) -> detached.JobStatus | None:
        """Provision (or reuse), connect, bootstrap, ship, run and follow on one instance (None: detached)."""
        run = self.run_dir
        self._provisioning = True  # from here on something may exist in AWS: `_end` tears down
        with self.phase("provision"):
            profile = self.stored.open()
            up = self.capacity.acquire(self.reporter, avoid_zones, self._launched, instance_profile=profile)
        self._launched(up.state)
        target = self.stored.grant(up.state, profile)
        reattach = False

        def needs_bootstrap(remote: Remote) -> bool:
            nonlocal reattach
            reattach = self._reattach and detached.job_status(remote, run.workdir).state != "absent"
            return not reattach and not up.bootstrapped

        ready = make_ready(
            up.state,
            self.stack.bootstrap,
            self.results_dir / BOOTSTRAP_LOG,
            reporter=self.reporter,
            requirements=self.v.requirements + self.stored.requirements(target),
            still_there=lambda: self._instance_fate() != "lost",
            phase=self.phase,
            needs_bootstrap=needs_bootstrap,
            on_connected=lambda r: setattr(self, "_remote", r),
        )
        remote = ready.remote
        if ready.bootstrap is not None:
            self.record.bootstrap = ready.bootstrap.said
        if reattach:
            self.reporter.step(f"re-attaching to the job already running in {run.workdir}")
        else:
            with self.phase("ship"), tempfile.TemporaryDirectory(prefix="ec2dbn-ship-") as staging:
                remote.put_tree(shipped_files(self.v.job, Path(staging)), run.workdir)
                if resume:
                    self.stored.fetch(self.results_dir)
                    upload_resume_files(remote, run, self.results_dir, self.reporter)
            with self.phase("run"):
                self.stored.new_segment(target)
                command = self.v.command(run, resume, store=target)
                detached.start_detached(remote, command, run.workdir, env=up.env)
        self._reattach = False
        self.stored.save()
        if self.v.detach:  # the job runs: left to the instance, which ends itself once its files are stored
            self.stored.detached(self.results_dir, self.st.instance_id if self.st else None)
            return None
        try:
            with self.phase("follow"):
                status = self._follow(remote, run)
        except KeyboardInterrupt:
            remote.abandon()  # the interrupted SSH call may have left the connection wedged: use a new one
            self._stop(remote, run)
            with self.phase("pull"):
                pull_results(remote, run, self.results_dir, self.v.result_files, self.reporter)
            raise
        with self.phase("pull"):
            if not pull_results(remote, run, self.results_dir, self.v.result_files, self.reporter):
                # Nothing came back. Gone → recover (the resumed run ends at once from its last
                # checkpoint and writes the results again); still there → the failure is real.
                raise RemoteError(f"nothing could be pulled from {run.out}")
        return status

    def _launched(self, st: state.StackState) -> None:
        """The instance exists: remember it (for recovery decisions and cost) before anything else."""
        self.st = st
        if st.price is not None and not (self.segments and self.segments[-1].instance_id == st.instance_id):
            started = state.parse_iso(st.launched_at) if st.launched_at else state.utc_now()
            self.segments.append(
                cost.InstanceSegment(
                    st.instance_id or "?",
                    st.instance_type or "?",
                    st.market or "?",
                    st.price.usd_per_hour,
                    started,
                )
            )
        for key in ("region", "availability_zone", "instance_id", "instance_type", "market", "image_id"):
            setattr(self.record, key, getattr(st, key))
        self.record.stack = st.name
        if st.price is not None:
            self.record.price_usd_per_hour = st.price.usd_per_hour
            self.record.price_source = f"{st.price.source} ({st.price.date})"
        save_pointer(st.name, self.run_dir, self.results_dir)
        self.record.save(self.results_dir)

    def _follow(self, remote: Remote, run: RemoteRun) -> detached.JobStatus:
        """Follow the trainer's log until it ends; returns its final status."""
        self.reporter.step(f"training on {self.st.instance_id if self.st else '?'}: following {run.log}")

        def on_line(line: str) -> None:
            self.tail.append(line)
            self.reporter.stream(line)
            notice = line.startswith(SPOT_NOTICE_MARKER)
            if notice or line.startswith(EPOCH_MARKER):
                self._copier.maybe_copy(remote, force=notice)

        status = detached.follow_log(
            remote,
            run.log,
            on_line=on_line,
            is_done=lambda s: s.state != "running" or self._stop_requested.is_set(),
            workdir=run.workdir,
            reporter=self.reporter,
            on_disconnect=lambda _err: self._instance_fate() in ("alive", "unknown"),
        ).status
        if status.state == "running":  # only a stop request ends following a job still running
            raise StopRequested()
        return status

    def _stop(self, remote: Remote, run: RemoteRun) -> None:
        """Interrupted: ask the trainer to checkpoint and stop, and wait (bounded) for it to do so."""
        self.reporter.warn("stopping the remote trainer (it writes a checkpoint first)")
        with contextlib.suppress(Ec2dbnError):
            start = log_size(remote, run.log)  # before the signal, so its "stopped by SIGTERM" line shows
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

    def _finish(self, exit_code: int, status: detached.JobStatus) -> int:
        self.record.finish(0 if exit_code == EXIT_OK else 1, trainer_status(exit_code))
        if exit_code == EXIT_DIVERGED:  # the job's fault, not the machine's: no recovery, the trainer's words
            raise diverged_error(self.results_dir, self.tail)
        if exit_code != EXIT_OK:
            last = " | ".join(line.strip() for line in self.tail if line.strip()) or "no output"
            raise JobFailedError(
                f"the trainer failed (exit {exit_code}, {status.state}); last lines: {last}; "
                f"full output in {self.results_dir / detached.LOG_NAME}"
            )
        return 0

    # -- recovery --------------------------------------------------------------------------------------

    def _recover(self, reason: str) -> None:
        used = len(self.record.recoveries)
        old = self.st
        if used >= self.stack.max_recoveries:
            raise JobFailedError(
                f"{reason}; giving up after {used} recoveries (max_recoveries {self.stack.max_recoveries}); "
                f"the last checkpoint is in {self.results_dir}: `ec2dbn train --resume {self.record.run_id}`"
            )
        self.reporter.warn(f"{reason}: recovering ({used + 1}/{self.stack.max_recoveries})")
        if self._remote is not None:
            self._remote.abandon()
            self._remote = None
        with self.phase("teardown"):
            self.capacity.lost(self.reporter, reason)
        self._end_segment()
        segment_cost = self._cost(self.segments[-1:]).total_usd
        self.record.recoveries.append(
            {
                "at": state.iso(state.utc_now()),
                "reason": reason,
                "instance_id": old.instance_id if old else None,
                "instance_type": old.instance_type if old else None,
                "market": old.market if old else None,
                "availability_zone": old.availability_zone if old else None,
                "checkpoint": (self.results_dir / CHECKPOINT_FILE).is_file(),
                "cost_usd": round(segment_cost, 6),
            }
        )
        set_aside_notice(self.results_dir, used + 1)
        self.record.save(self.results_dir)
        self.st = None

    # -- ending ----------------------------------------------------------------------------------------

    def _end(self) -> None:
        """Tear down (unless --keep) once anything may exist in AWS, cost the run and write the final
        record; never lets a teardown error hide the run's own."""
        if self._remote is not None:
            self._remote.close()
        if self.stored.left_to_instance:  # no teardown: the instance ends itself; its stack stays leased
            self.capacity.close()  # (run.json was written as the run detached)
            return
        try:
            if self._provisioning and self.v.keep:
                self.capacity.release(self.reporter, self.st, keep=True, run_id=self.record.run_id)
            elif self._provisioning:
                with self.phase("teardown"):
                    self.capacity.release(self.reporter, self.st, keep=False, run_id=self.record.run_id)
        except (Ec2dbnError, KeyboardInterrupt) as exc:
            self.reporter.warn(
                f"teardown did not finish ({exc or 'interrupted'}): resources of stack {self.stack.name} may "
                f"still be running; run `ec2dbn teardown {self.stack.name} --yes`"
            )
        finally:
            self._end_segment()
            if self.segments:
                breakdown = self._cost(self.segments)
                self.record.segments = breakdown.to_dict()["segments"]
                self.record.cost_usd = round(breakdown.total_usd, 6)
            self._finish_record(1, "failed")  # a way out that set no status is a failure
            if self._discard:
                shutil.rmtree(self.results_dir, ignore_errors=True)
            else:
                self.record.save(self.results_dir)
                if self._provisioning:
                    self.stored.save()
            self.capacity.close()
            if self.v.plot and self.record.status in ("finished", "diverged") and not self._discard:
                plot_quietly(self.results_dir, self.reporter)  # once the instance is let go

    def _cost(self, segments: list[cost.InstanceSegment]) -> cost.CostBreakdown:
        return cost.actual_cost(segments, minimum_billed_s=self.capacity.minimum_billed_s)

    def _end_segment(self) -> None:
        if self.segments and self.segments[-1].ended_at is None:
            self.segments[-1] = dataclasses.replace(self.segments[-1], ended_at=state.utc_now())
