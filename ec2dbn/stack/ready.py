"""Making an instance ready: connect (the pinned host key, sshd answering), then run the stack's bootstrap.

ONE make-ready for every way an instance comes: `launch`, `train` and `bake` (each phase timed by its
pipeline) and every instance of a sweep's fleet (in its own thread). An instance that is not reachable
within EC2DBN_SSH_TIMEOUT, or that EC2 says is gone while it is awaited (`still_there`), fails here with
RemoteError; a script that fails raises the bootstrap's RemoteError naming it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from ec2dbn.events import NullReporter, Reporter
from ec2dbn.ssh.bootstrap import BootstrapResult, run_bootstrap
from ec2dbn.ssh.remote import Remote
from ec2dbn.stack.connect import remote_for, ssh_timeout_s
from ec2dbn.stack.state import StackState

#: A pipeline's timed phase ("connect", "bootstrap"), or nothing.
Phase = Callable[[str], AbstractContextManager[None]]


@contextlib.contextmanager
def _untimed(name: str) -> Iterator[None]:
    yield


def _always(remote: Remote) -> bool:
    return True


@dataclass
class Ready:
    """A reachable instance: its open connection (the caller closes it) and what its bootstrap did
    (None: not run, because the caller said it was not needed)."""

    remote: Remote
    bootstrap: BootstrapResult | None = None


def make_ready(
    st: StackState,
    steps: Sequence[str],
    log: Path,
    *,
    reporter: Reporter | None = None,
    requirements: Sequence[tuple[str, str]] = (),
    still_there: Callable[[], bool] | None = None,
    phase: Phase = _untimed,
    needs_bootstrap: Callable[[Remote], bool] = _always,
    on_connected: Callable[[Remote], None] | None = None,
) -> Ready:
    """Connect to the stack's instance and bootstrap it with `steps`, its output streamed to `log`.

    requirements: what the job's data sets need beyond NumPy and PyYAML (python.sh installs them).
    still_there: asked while the address or sshd is awaited; False ends the wait (the instance is gone).
    phase: the caller's timed phases, "connect" then "bootstrap". needs_bootstrap: asked once connected
    (False: already made ready, or a job to re-attach to). on_connected: the caller takes the connection
    as soon as it exists and ends it itself, whatever happens; without it a failure here closes it.
    """
    reporter = reporter or NullReporter()
    with phase("connect"):
        remote = remote_for(st, wait_s=ssh_timeout_s(), still_there=still_there)
        if on_connected is not None:
            on_connected(remote)
        try:
            remote.wait_until_reachable(ssh_timeout_s(), reporter, still_there=still_there)
        except BaseException:
            if on_connected is None:
                remote.close()
            raise
    try:
        if not needs_bootstrap(remote):
            return Ready(remote)
        log.parent.mkdir(parents=True, exist_ok=True)
        with phase("bootstrap"):
            done = run_bootstrap(remote, steps, st.remote_dir, reporter, log, requirements=requirements)
    except BaseException:
        if on_connected is None:
            remote.close()
        raise
    return Ready(remote, done)
