"""Detached jobs over a real loopback sshd: they outlive the connection, report their exit code, and
their log is followed across an sshd kill/restart without losing or repeating a line."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ec2dbn.errors import ConfigError, RemoteError
from ec2dbn.events import RecordingReporter
from ec2dbn.ssh.detached import JobStatus, follow_log, job_status, start_detached, stop_job
from ec2dbn.ssh.remote import Remote
from tests.support.sshd import SshServer, remote_for


def _wait_finished(remote: Remote, workdir: Path, timeout_s: float = 15) -> JobStatus:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = job_status(remote, str(workdir))
        if status.state == "finished":
            return status
        time.sleep(0.2)
    raise AssertionError(f"job in {workdir} did not finish: {status}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_job_survives_the_connection_and_the_sshd(sshd: SshServer, remote: Remote, tmp_path: Path) -> None:
    work = tmp_path / "job"
    assert job_status(remote, str(work)) == JobStatus("absent")
    pid = start_detached(
        remote, "sleep 1.5; echo finished-at-last; echo $GREETING", str(work), env={"GREETING": "hi there"}
    )
    assert job_status(remote, str(work)) == JobStatus("running", None, pid)

    remote.close()
    sshd.stop()  # kills every SSH session process: the job is not one of them
    assert _alive(pid)
    sshd.start()

    status = _wait_finished(remote, work)
    assert status == JobStatus("finished", 0, pid)
    assert (work / "job.log").read_text() == "finished-at-last\nhi there\n"
    assert (work / "job.exit").read_text().strip() == "0"


def test_bad_environment_names_are_refused_before_anything_starts(remote: Remote, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="BAD-NAME"):
        start_detached(remote, "true", str(tmp_path / "job"), env={"BAD-NAME": "x"})
    assert not (tmp_path / "job").exists()


def test_failing_job_reports_its_exit_code_and_lines(remote: Remote, tmp_path: Path) -> None:
    work = tmp_path / "job"
    start_detached(remote, "echo starting; echo 'bad data' >&2; exit 7", str(work))
    lines: list[str] = []
    result = follow_log(remote, str(work / "job.log"), on_line=lines.append, poll_s=0.1, workdir=str(work))
    assert result.status.state == "finished" and result.status.exit_code == 7
    assert lines == ["starting", "bad data"]
    assert result.offset == len(b"starting\nbad data\n")


def test_a_second_job_is_refused_while_one_runs(remote: Remote, tmp_path: Path) -> None:
    work = tmp_path / "job"
    pid = start_detached(remote, "sleep 30", str(work))
    try:
        with pytest.raises(RemoteError, match=rf"already running .*pid {pid}"):
            start_detached(remote, "echo second", str(work))
    finally:
        assert stop_job(remote, str(work))
    assert _wait_finished(remote, work) == JobStatus("finished", 143, pid)  # SIGTERM, recorded by the wrapper
    start_detached(remote, "echo second", str(work))  # a finished job does not block the next one
    assert _wait_finished(remote, work).exit_code == 0
    assert (work / "job.log").read_text() == "Terminated\nsecond\n"  # appended to the first job's log


def test_a_job_killed_with_its_wrapper_is_lost(remote: Remote, tmp_path: Path) -> None:
    work = tmp_path / "job"
    pid = start_detached(remote, "sleep 30", str(work))
    assert stop_job(remote, str(work), "KILL")
    deadline = time.monotonic() + 10
    while (status := job_status(remote, str(work))).state == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == JobStatus("lost", None, pid)
    assert not stop_job(remote, str(work))
    with pytest.raises(ValueError):
        stop_job(remote, str(work), "TERM; rm -rf /")


def test_stop_job_terminates_the_whole_group_and_keeps_the_exit_code(remote: Remote, tmp_path: Path) -> None:
    work = tmp_path / "job"
    # Like the trainer: on SIGTERM it writes what it has and exits with its own code (3).
    start_detached(remote, "trap 'echo checkpointed; exit 3' TERM; echo ready; sleep 30 & wait", str(work))
    lines: list[str] = []
    stopped = threading.Event()

    def on_line(line: str) -> None:
        lines.append(line)
        if line == "ready" and not stopped.is_set():
            stopped.set()
            assert stop_job(remote, str(work))

    result = follow_log(remote, str(work / "job.log"), on_line=on_line, poll_s=0.1, workdir=str(work))
    assert lines == ["ready", "checkpointed"]
    assert result.status.exit_code == 3
    assert not stop_job(remote, str(work))  # nothing left to stop


def test_follow_log_survives_an_sshd_restart_mid_run(sshd: SshServer, tmp_path: Path) -> None:
    work = tmp_path / "job"
    with remote_for(sshd) as r:
        start_detached(r, 'for i in $(seq 1 40); do echo "line $i"; sleep 0.05; done', str(work))
    restarter: list[threading.Thread] = []

    def on_line(line: str) -> None:
        seen.append(line)
        if line == "line 5" and not restarter:
            sshd.stop()  # mid-run: the job keeps writing while nobody can connect
            restarter.append(threading.Timer(1.5, sshd.start))
            restarter[0].start()

    seen: list[str] = []
    reporter = RecordingReporter()
    result = follow_log(
        lambda: remote_for(sshd),
        str(work / "job.log"),
        on_line=on_line,
        poll_s=0.1,
        reconnect_timeout_s=30,
        workdir=str(work),
        reporter=reporter,
    )
    restarter[0].join()
    assert seen == [f"line {i}" for i in range(1, 41)]
    assert result.reconnects >= 1 and result.status.exit_code == 0
    assert result.offset == (work / "job.log").stat().st_size
    assert any("lost the connection" in w for w in reporter.lines("warn"))
    assert any("resuming the log at byte" in s for s in reporter.lines("step"))


def test_partial_lines_are_held_until_complete_and_resumed_whole(remote: Remote, tmp_path: Path) -> None:
    work = tmp_path / "job"
    go = tmp_path / "go"
    # The job writes "a\nb", then waits for the go file before completing the line "bc".
    start_detached(
        remote,
        f"printf 'a\\nb'; while [ ! -e {go} ]; do sleep 0.05; done; printf 'c\\nd\\n'; printf tail",
        str(work),
    )
    log = str(work / "job.log")
    first: list[str] = []
    # Stop following a running job as soon as a line came (as `ec2dbn` does on Ctrl-C or a spot notice).
    part = follow_log(
        remote, log, on_line=first.append, is_done=lambda s: bool(first), poll_s=0.1, workdir=str(work)
    )
    assert first == ["a"] and part.status.state == "running"
    assert part.offset == 2  # after "a\n": the partial "b" is left for the next reader

    go.touch()
    rest: list[str] = []
    result = follow_log(
        remote, log, start_offset=part.offset, on_line=rest.append, poll_s=0.1, workdir=str(work)
    )
    assert rest == ["bc", "d", "tail"]  # "b" was never emitted alone; the last line has no newline
    assert result.status == JobStatus("finished", 0, result.status.pid)
    assert result.offset == len(b"a\nbc\nd\ntail")


def test_follow_resumes_at_an_offset(remote: Remote, tmp_path: Path) -> None:
    log = tmp_path / "old.log"
    log.write_text("one\ntwo\nthree\n")
    first: list[str] = []
    # No workdir: the job's status is unknown ("absent"), so the log is read once to its end.
    end = follow_log(remote, str(log), on_line=first.append)
    assert first == ["one", "two", "three"] and end.offset == 14
    rest: list[str] = []
    follow_log(remote, str(log), start_offset=4, on_line=rest.append)
    assert rest == ["two", "three"]
    nothing: list[str] = []
    assert follow_log(remote, str(log), start_offset=end.offset, on_line=nothing.append).offset == 14
    assert nothing == []


def test_follow_gives_up_after_the_reconnect_timeout(sshd: SshServer, remote: Remote, tmp_path: Path) -> None:
    work = tmp_path / "job"
    start_detached(remote, "sleep 20", str(work))
    try:
        sshd.stop()
        start = time.monotonic()
        with pytest.raises(RemoteError, match=r"no SSH connection .* for 1s"):
            follow_log(remote, str(work / "job.log"), poll_s=0.1, reconnect_timeout_s=1, workdir=str(work))
        assert time.monotonic() - start < 10
        # on_disconnect can give up at once (e.g. EC2 says the instance is gone).
        errors: list[RemoteError] = []
        with pytest.raises(RemoteError):
            follow_log(
                remote,
                str(work / "job.log"),
                workdir=str(work),
                on_disconnect=lambda e: errors.append(e) or False,
            )
        assert len(errors) == 1
    finally:
        sshd.start()
        stop_job(remote, str(work), "KILL")
