"""A stack leased to one run on this machine: an exclusive lock file under `$EC2DBN_HOME/leases/`.

The lock is an OS file lock (flock), so it is released by the kernel when the holding process dies,
however it dies: a crashed or killed `ec2dbn train` never leaves a stale lease here. It lives outside the
stack's state folder because `teardown` deletes that folder, and a lock on a deleted file excludes no
one. The lease that outlives the whole state dir is the instance's `ec2dbn:run` tag (ec2dbn.stack.lifecycle).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from ec2dbn.errors import StackBusyError
from ec2dbn.stack import state
from trainer.strict_json import dumps


def _path(stack: str) -> Path:
    folder = state.home() / "leases"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"{state.check_name(stack)}.lock"


def busy_message(stack: str, run_id: str | None, where: str) -> str:
    """The one line telling the user the stack is in use, by whom, and the ways out."""
    who = f"run {run_id}" if run_id else "another ec2dbn process"
    return (
        f"stack {stack} is in use by {who} ({where}); watch it with `ec2dbn logs {stack}`, "
        f"use another stack with --name OTHER, or end it with `ec2dbn teardown {stack}`"
    )


class LocalLease:
    """Holds stack `stack` for run `run_id` until released (or the process ends)."""

    def __init__(self, stack: str, run_id: str) -> None:
        self.stack = stack
        self.run_id = run_id
        self._fh: IO[str] | None = None

    def acquire(self) -> LocalLease:
        """Take the lease, or raise StackBusyError naming the run that holds it."""
        fh = open(_path(self.stack), "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fh)
            fh.close()
            where = f"pid {holder['pid']} on this machine" if holder.get("pid") else "on this machine"
            raise StackBusyError(busy_message(self.stack, holder.get("run_id"), where)) from None
        fh.seek(0)
        fh.truncate()
        fh.write(dumps({"run_id": self.run_id, "pid": os.getpid()}))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is None:
            return
        with contextlib.suppress(OSError):
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None

    def __enter__(self) -> LocalLease:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def check_free(stack: str) -> None:
    """Raise StackBusyError when a run on this machine holds the stack (takes and drops the lock)."""
    LocalLease(stack, "").acquire().release()


def _read(fh: IO[str]) -> dict[str, Any]:
    try:
        fh.seek(0)
        data = json.loads(fh.read() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
