"""A job that outlives the SSH connection: start it detached, ask how it is doing, follow its log.

The job runs under `setsid nohup bash` with its output appended to a log file, so a dropped connection
(a laptop lid, a flaky Wi-Fi, an sshd restart) does not stop it. Its state is three small files:
the pid file (written by the job's wrapper shell before the command starts), the exit file (the
command's exit code, written atomically when it ends) and the log. Following the log is by byte
offset: after a reconnect it resumes exactly where it stopped, so no line is lost or shown twice.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Literal

from ec2dbn.errors import HostKeyMismatchError, RemoteError
from ec2dbn.events import NullReporter, Reporter
from ec2dbn.ssh.output import MAX_LINE_CHARS, split_long
from ec2dbn.ssh.remote import Remote
from ec2dbn.ssh.shell import quote_path, read_command, shell_exports

LOG_NAME = "job.log"
PID_NAME = "job.pid"
EXIT_NAME = "job.exit"

_STATUS_MARK = "ec2dbn-job-status"
# A shell function: is pid $1 a live process? A zombie (exited, not yet reaped) is not.
_ALIVE = 'alive() { case "$(ps -o stat= -p "$1" 2>/dev/null)" in "" | *Z*) return 1 ;; esac; }; '

_ALREADY_RUNNING = 17  # start script's exit code when a live job already owns the workdir
_MAX_READ = 4 * 1024 * 1024  # bytes per poll: a long backlog is read in several polls
_POLL_TIMEOUT_S = 30.0  # one poll taking longer than this means the connection is dead

JobState = Literal["running", "finished", "absent", "lost"]


@dataclass(frozen=True)
class JobStatus:
    """What the job is doing. `lost`: it has a pid file but neither runs nor recorded an exit code
    (killed with its wrapper, or the machine rebooted). `absent`: never started in that folder."""

    state: JobState
    exit_code: int | None = None
    pid: int | None = None


@dataclass(frozen=True)
class FollowResult:
    """Where following stopped: the byte offset after the last line emitted, and the job's status."""

    offset: int
    status: JobStatus
    reconnects: int = 0


@dataclass(frozen=True)
class JobFiles:
    """The job's files on the remote; by default job.log / job.pid / job.exit inside `workdir`."""

    workdir: str
    log: str
    pid: str
    exit: str

    @classmethod
    def in_dir(
        cls,
        workdir: str,
        log_path: str | None = None,
        pid_path: str | None = None,
        exit_path: str | None = None,
    ) -> JobFiles:
        base = PurePosixPath(workdir)
        return cls(
            workdir,
            log_path or str(base / LOG_NAME),
            pid_path or str(base / PID_NAME),
            exit_path or str(base / EXIT_NAME),
        )


def start_detached(
    remote: Remote,
    command: str,
    workdir: str,
    log_path: str | None = None,
    pid_path: str | None = None,
    exit_path: str | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """Start `command` (a shell command line, run by bash in `workdir`) so that it survives SSH
    disconnects; return its pid once the pid file exists.

    The pid is the job's process-group leader (signal the whole job with `stop_job`). stdout and
    stderr are appended to the log; the exit code lands in the exit file. Raises RemoteError when a
    job is still running in that folder (re-attach to it instead of starting a second one).
    """
    files = JobFiles.in_dir(workdir, log_path, pid_path, exit_path)
    pid_q, exit_q = quote_path(files.pid), quote_path(files.exit)
    exports = shell_exports(env)
    # The wrapper records its own pid (so setsid forking or not does not matter), runs the command in
    # its own bash (an `exit` in it cannot skip the bookkeeping) and writes the exit code atomically.
    # TERM/INT are caught by the wrapper so that it outlives the command and records its exit code;
    # a caught signal is reset to the default for the command, which handles it itself.
    wrapper = (
        'trap : TERM INT; echo $$ > "$1.tmp" && mv "$1.tmp" "$1"; '
        'bash -c "$3"; rc=$?; echo $rc > "$2.tmp" && mv "$2.tmp" "$2"'
    )
    dirs = " ".join(quote_path(str(PurePosixPath(p).parent)) for p in (files.log, files.pid, files.exit))
    script = (
        f"mkdir -p {quote_path(files.workdir)} {dirs} && cd {quote_path(files.workdir)} || exit 1; {_ALIVE}"
        f'if [ -s {pid_q} ] && [ ! -e {exit_q} ] && alive "$(cat {pid_q})"; '
        f"then cat {pid_q}; exit {_ALREADY_RUNNING}; fi; "
        f"rm -f {pid_q} {exit_q}; {exports}"
        f"setsid nohup bash -c {shlex.quote(wrapper)} ec2dbn-job {pid_q} {exit_q} {shlex.quote(command)} "
        f">> {quote_path(files.log)} 2>&1 < /dev/null & "
        f"i=0; while [ ! -s {pid_q} ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; cat {pid_q}"
    )
    result = remote.run(script, check=False, timeout=60)
    pid_text = result.stdout.strip()
    if result.exit_code == _ALREADY_RUNNING:
        raise RemoteError(
            f"a job is already running in {workdir} on {remote.address} (pid {pid_text}): "
            "follow it with `ec2dbn logs` or stop it first"
        )
    if result.exit_code != 0 or not pid_text.isdigit():
        detail = (
            result.stderr.strip() or result.stdout.strip() or f"exit code {result.exit_code}"
        ).splitlines()
        raise RemoteError(f"could not start the job in {workdir} on {remote.address}: {detail[-1][:300]}")
    return int(pid_text)


def job_status(
    remote: Remote, workdir: str, pid_path: str | None = None, exit_path: str | None = None
) -> JobStatus:
    """The job's state in `workdir`, from its pid and exit files (one round trip, safe to repeat)."""
    files = JobFiles.in_dir(workdir, pid_path=pid_path, exit_path=exit_path)
    return _parse_status(remote.run(_status_script(files), check=False, timeout=_POLL_TIMEOUT_S).stderr)


def stop_job(
    remote: Remote,
    workdir: str,
    signal: str = "TERM",
    pid_path: str | None = None,
    exit_path: str | None = None,
) -> bool:
    """Send `signal` to the job's whole process group; returns False when no job was running.

    With TERM (the default) the wrapper outlives the command and records its exit code, so the job
    ends `finished`; KILL takes the wrapper too, and the job ends `lost`.
    """
    files = JobFiles.in_dir(workdir, pid_path=pid_path, exit_path=exit_path)
    pid_q, exit_q = quote_path(files.pid), quote_path(files.exit)
    if not re.fullmatch(r"[A-Z0-9]+", signal):
        raise ValueError(f"{signal!r} is not a signal name (TERM, INT, KILL, ...)")
    running = f'[ -s {pid_q} ] && [ ! -e {exit_q} ] && alive "$(cat {pid_q})"'
    cmd = f'{_ALIVE}{running} && kill -{signal} -- -"$(cat {pid_q})"'
    return remote.run(cmd, check=False, timeout=_POLL_TIMEOUT_S).exit_code == 0


def follow_log(
    source: Remote | Callable[[], Remote],
    log_path: str,
    start_offset: int = 0,
    on_line: Callable[[str], None] = lambda line: None,
    is_done: Callable[[JobStatus], bool] | None = None,
    poll_s: float = 0.5,
    reconnect_timeout_s: float = 300.0,
    *,
    workdir: str | None = None,
    pid_path: str | None = None,
    exit_path: str | None = None,
    on_disconnect: Callable[[RemoteError], bool] | None = None,
    reporter: Reporter | None = None,
) -> FollowResult:
    """Tail the remote log from `start_offset` (bytes), calling `on_line` for each complete line in
    order, until `is_done(status)` and the log is drained; return where it stopped.

    Each poll is one command that reads the job's status (from `workdir`'s pid/exit files) and then
    the new log bytes, so once the status says finished, the bytes read with it are the last ones.
    is_done: default "the job is no longer running"; without a workdir the status is `absent`, so the
    log is read once to its end. A line without a newline is emitted only once the job has ended;
    when `is_done` stops following a running job, the returned offset is that of the end of the
    last complete line, so following again from it repeats and loses nothing.

    When the connection drops, it reconnects with backoff (a `Remote` reconnects itself; a factory is
    called for a new one) and resumes at the same offset. `on_disconnect(err)` returning False gives
    up at once (e.g. the instance is known to be gone); otherwise RemoteError after
    `reconnect_timeout_s` seconds without a connection. A host key mismatch is never retried.
    """
    say: Reporter = reporter or NullReporter()
    done = is_done or (lambda status: status.state != "running")
    files = JobFiles.in_dir(workdir, pid_path=pid_path, exit_path=exit_path) if workdir else None
    remote = source if isinstance(source, Remote) else source()
    offset, pending = start_offset, b""
    reconnects, failing_since, backoff = 0, None, 0.5
    while True:
        status_cmd = _status_script(files) if files else f"echo '{_STATUS_MARK} absent - -' >&2"
        try:
            raw = remote.run_bytes(
                f"{status_cmd}; {read_command(log_path, offset, _MAX_READ)}",
                timeout=_POLL_TIMEOUT_S,
                limit=_MAX_READ,
            )
        except HostKeyMismatchError:
            raise
        except RemoteError as exc:
            now = time.monotonic()
            if failing_since is None:
                failing_since = now
                say.warn(f"lost the connection to {remote.address} ({exc}); reconnecting")
            if on_disconnect is not None and on_disconnect(exc) is False:
                raise
            if now - failing_since > reconnect_timeout_s:
                raise RemoteError(
                    f"no SSH connection to {remote.address} for {reconnect_timeout_s:.0f}s while "
                    f"following {log_path} (last error: {exc}); the job may still be running: "
                    "re-attach with `ec2dbn logs`"
                ) from exc
            with say.waiting(f"reconnecting to {remote.address}"):
                time.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            remote.close()
            if not isinstance(source, Remote):
                remote = source()
            continue
        if failing_since is not None:
            reconnects += 1
            say.step(f"reconnected to {remote.address}; resuming the log at byte {offset}")
            failing_since, backoff = None, 0.5
        status = _parse_status(raw.stderr.decode("utf-8", errors="replace"))
        chunk = raw.stdout
        offset += len(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            for piece in split_long(line.decode("utf-8", errors="replace").rstrip("\r")):
                on_line(piece)
        while len(pending) > MAX_LINE_CHARS:  # a line that never ends is passed on in pieces
            on_line(pending[:MAX_LINE_CHARS].decode("utf-8", errors="replace"))
            pending = pending[MAX_LINE_CHARS:]
        if len(chunk) >= _MAX_READ:
            continue  # more is waiting: read it now
        if done(status):
            if pending and status.state != "running":  # nothing will complete this last line
                for piece in split_long(pending.decode("utf-8", errors="replace").rstrip("\r")):
                    on_line(piece)
                pending = b""
            # A partial line of a job still running is left unread: a resume at `offset` gets it whole.
            return FollowResult(offset - len(pending), status, reconnects)
        time.sleep(poll_s)


def _status_script(files: JobFiles) -> str:
    """Shell that prints `MARK state exit pid` to stderr. The exit file is checked again after the
    liveness check fails, because the job may end between the two checks."""
    p, e = quote_path(files.pid), quote_path(files.exit)
    finished = f's="finished $(cat {e}) $(cat {p} 2>/dev/null)"'
    return (
        f"{_ALIVE}if [ -s {e} ]; then {finished}; "
        f'elif [ -s {p} ] && alive "$(cat {p})"; then s="running - $(cat {p})"; '
        f"elif [ -s {e} ]; then {finished}; "
        f'elif [ -s {p} ]; then s="lost - $(cat {p})"; '
        f"else s='absent - -'; fi; echo \"{_STATUS_MARK} $s\" >&2"
    )


def _parse_status(stderr: str) -> JobStatus:
    for line in reversed(stderr.splitlines()):
        fields = line.split()
        if len(fields) >= 3 and fields[0] == _STATUS_MARK:
            state = fields[1]
            code = int(fields[2]) if re.fullmatch(r"-?\d+", fields[2]) else None
            pid = int(fields[3]) if len(fields) > 3 and fields[3].isdigit() else None
            if state in ("running", "finished", "absent", "lost"):
                return JobStatus(state, code, pid)  # type: ignore[arg-type]
    raise RemoteError(f"could not read the job status (got {stderr.strip()[-200:]!r})")
