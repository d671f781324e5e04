"""The pipeline's side of the run store: whether a run keeps its files there, the instance's permission to
write them, and what changes when the run detaches.

One `StoreLink` per pipeline. It decides once whether the run is stored (the stack has a store, the run is a
training run, and its capacity can carry an instance profile: a sweep's fleet cannot), makes the store and
the stack's instance profile on first use, grants each instance this run's prefix (and its own termination)
and gives the uploader's target for the shell line. The pipeline keeps the guarantee; this keeps the store.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from ec2dbn import aws
from ec2dbn.errors import ConfigError, CredentialsError, Ec2dbnError
from ec2dbn.events import Reporter
from ec2dbn.run import run_store
from ec2dbn.run.results import RunRecord
from ec2dbn.stack import state
from trainer.contract import EXIT_STOPPED, STORE_REQUIREMENTS

#: How long the uploader's final sync keeps retrying an unreachable store: a detached run's files exist
#: nowhere else (and its instance ends only after a verified sync); an attached run's are pulled over SSH.
DETACHED_FINAL_SYNC_S = 600.0
ATTACHED_FINAL_SYNC_S = 120.0


class StoreLink:
    """A run's link to its run store (`store` None: the run keeps no files there)."""

    def __init__(self, v: Any, record: RunRecord, stores_runs: bool, reporter: Reporter) -> None:
        self.v = v
        self.stack = v.stack
        self.record = record
        self.reporter = reporter
        self.wanted = self.stack.has_store and v.run_command is None and stores_runs
        self.store: run_store.RunStore | None = run_store.of_record(record)
        #: This process detached from the run (`--detach`): the instance finishes it; nothing to tear down.
        self.left_to_instance = False

    def holds_checkpoint(self) -> bool:
        """`--resume` of a run whose checkpoint is in the store (this machine may have none): it resumes,
        and `fetch` brings the store's copy before shipping (listed here, downloaded once, there)."""
        if self.v.resume is None or self.store is None:
            return False
        try:
            return run_store.has_checkpoint(self.store)
        except Ec2dbnError as exc:
            self.reporter.warn(f"could not read the run store ({exc}); resuming from this machine's copy")
            return False

    def new_segment(self, target: Any) -> None:
        """A job starts on an instance: an earlier segment's manifest no longer says how the run ended."""
        if target is not None and self.store is not None:
            with contextlib.suppress(Ec2dbnError):
                self.store.reopen()

    def ended_with(self, results_dir: Path) -> int | None:
        """The instance is gone, but did the job end first? When the store's manifest says so (a detached
        job's instance ends itself once its files are stored), its files are taken from the store and the
        trainer's exit code returned; None: it did not end (or the run is not stored) — recover."""
        if self.store is None:
            return None
        try:
            manifest = self.store.manifest()
            code = manifest.get("exit_code") if manifest else None
            if not isinstance(code, int) or code == EXIT_STOPPED:
                return None
            run_store.pull(self.store, results_dir, self.reporter)
        except Ec2dbnError as exc:
            self.reporter.warn(f"could not read the run store ({exc})")
            return None
        self.reporter.step(
            f"the job ended on its instance (exit {code}); its files came from {self.store.uri}"
        )
        return code

    def fetch(self, results_dir: Path) -> None:
        """A new instance resumes the run: the store's checkpoint is the newest there is."""
        if self.store is not None:
            run_store.fetch_resume_files(self.store, results_dir, self.reporter)

    def open(self) -> str | None:
        """Make the store and the stack's instance profile (first use); the profile a new instance gets, or
        None when the run is not stored."""
        if not self.wanted:
            return None
        try:
            if self.store is None:
                self.store = run_store.open_store(self.stack, self.record.run_id, self.reporter)
                self.record.store = self.store.ref.uri
            return str(aws.ensure_instance_profile(self.stack.name, self.stack.region, self.store.ref))
        except CredentialsError:
            raise  # the one answer every verb gives for credentials
        except Ec2dbnError as exc:  # e.g. a policy from before the run store: say the other way out too
            raise type(exc)(f"{exc} (or run without a run store: `store: none` in the stack)") from None

    def grant(self, st: state.StackState, profile: str | None) -> Any:
        """Let the instance write this run's prefix and end itself; the uploader's target
        (trainer.sidecars.StoreTarget), or None when the instance runs without the profile (launched
        before, by `ec2dbn launch`): then the run's files reach only this machine, and --detach is refused."""
        from trainer.sidecars import StoreTarget

        if profile is None or self.store is None or not st.instance_id:
            return None
        if st.instance_profile != profile:
            if self.v.detach:
                raise ConfigError(
                    f"--detach needs the run store, but {st.instance_id} was launched without its instance "
                    f"profile; `ec2dbn teardown {self.stack.name}` and run again"
                )
            self.reporter.warn(
                f"{st.instance_id} was launched without the run store's instance profile: this run's files "
                f"reach only this machine (`ec2dbn teardown {self.stack.name}` starts afresh with the store)"
            )
            return None
        aws.grant_run(self.stack.name, self.stack.region, self.store.ref, self.record.run_id, st.instance_id)
        return StoreTarget(
            bucket=self.store.ref.bucket,
            prefix=self.store.prefix,
            region=self.stack.region,
            terminate_when_done=self.v.detach,
            # attached, this machine pulls the results anyway: an unreachable store holds the end briefly
            final_timeout=ATTACHED_FINAL_SYNC_S if not self.v.detach else DETACHED_FINAL_SYNC_S,
        )

    @staticmethod
    def requirements(target: Any) -> tuple[tuple[str, str], ...]:
        """What the uploader needs in the instance's venv (nothing when the run is not stored)."""
        return STORE_REQUIREMENTS if target is not None else ()

    def save(self) -> None:
        """run.json beside the run's files in the store (a failure is a warning)."""
        if self.store is not None:
            run_store.save_record(self.store, self.record, self.reporter)

    def detached(self, results_dir: Path, instance_id: str | None) -> None:
        """The run is left to its instance: recorded here and in the store, and the user told how to
        follow it."""
        self.left_to_instance = self.record.detached = True
        self.record.save(results_dir)
        self.save()
        rid = self.record.run_id
        where = self.store.uri if self.store else "?"
        self.reporter.step(
            f"detached: run {rid} trains on {instance_id or '?'} and writes to {where}; the instance "
            "terminates itself once the job ends and its files are stored"
        )
        self.reporter.step(f"follow it:  ec2dbn logs {rid} --follow")
        self.reporter.step(f"fetch it:   ec2dbn pull {rid}")
        self.reporter.step("see it:     ec2dbn status")
