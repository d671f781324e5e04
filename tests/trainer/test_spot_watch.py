"""The spot watcher as it runs on the instance: real trainer and watcher processes against a fake IMDS.

A spot interruption notice mid-run makes the trainer checkpoint and exit 3 and `--resume` finishes with
bitwise the weights of an uninterrupted run; a rebalance recommendation is recorded but does not stop it
(unless --stop-on-rebalance); off EC2 the watcher leaves quietly; the composed shell line that runs both
exits with the trainer's code, also when its process group gets SIGTERM from `stop_job`.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.support.fake_imds import REBALANCE_PATH, SPOT_ACTION_PATH, FakeImds
from tests.support.hold import HELD, TrainerHold
from tests.trainer.trainer_fixtures import REPO, model_arrays, run_trainer, trainer_env, write_job
from trainer.spot_watch import (
    NO_IMDS_LINE,
    REBALANCE_KIND,
    SPOT_KIND,
    read_interruption,
    shell_command,
    write_interruption,
)

# 30 fine-tuning epochs on digits; the runs that get a notice or a signal are held mid-epoch 2 (TrainerHold)
# until it lands, however fast the CPU.
MODEL = {
    "layers": [64, 200, 200, 10],
    "learn_rates": 0.3,
    "learn_rate_decays": 0.9,
    "epochs": 30,
    "minibatch_size": 16,
    "dropouts": [0.0, 0.2, 0.2],
}


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    with FakeImds() as fake:
        yield fake


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits job, its data saved as an .npz so each trainer process skips importing scikit-learn."""
    datasets = pytest.importorskip("sklearn.datasets")
    tmp = tmp_path_factory.mktemp("spot-job")
    digits = datasets.load_digits()
    np.savez(tmp / "digits.npz", X=(digits.data / 16.0).astype(np.float32), y=digits.target)
    return write_job(tmp / "job.yaml", {"name": str(tmp / "digits.npz")}, MODEL)


WATCH = [sys.executable, "-m", "trainer.spot_watch"]


def watch_env(imds_url: str) -> dict[str, str]:
    return trainer_env() | {"EC2DBN_IMDS_URL": imds_url}


def start_watch(pid: int, out: Path, imds_url: str, *extra: str) -> subprocess.Popen[str]:
    """`python -m trainer.spot_watch --pid PID --out OUT --interval 0.2 EXTRA` with the fake IMDS."""
    return subprocess.Popen(
        [*WATCH, "--pid", str(pid), "--out", str(out), "--interval", "0.2", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=watch_env(imds_url),
        cwd=REPO,
    )


def start_trainer_popen(job: Path, out: Path, hold: TrainerHold | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "trainer", "run", str(job), "--out", str(out), "--backend", "numpy"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=trainer_env() | (hold.env if hold else {}),
        cwd=REPO,
    )


def start_sleeper() -> subprocess.Popen[bytes]:
    """A stand-in for the trainer where only 'was it signalled?' matters: dies of SIGTERM (returncode -15)."""
    return subprocess.Popen(["sleep", "60"])


def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def read_until_held(proc: subprocess.Popen[str]) -> list[str]:
    """Lines of proc's stdout up to and including the line saying the trainer is held (TrainerHold)."""
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(HELD):
            return lines
    raise AssertionError(f"the trainer never said it was held; output: {''.join(lines)}")


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def stop(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


# ------------------------------------------------------------------------------------ the real trainer


def test_spot_notice_checkpoints_and_resume_equals_an_uninterrupted_run(
    job: Path, tmp_path: Path, imds: FakeImds
) -> None:
    reference = start_trainer_popen(job, tmp_path / "ref")  # runs alongside: the weights to match
    out = tmp_path / "out"
    hold = TrainerHold(tmp_path, epoch=2, minibatch=3)
    trainer = start_trainer_popen(job, out, hold)
    watch = start_watch(trainer.pid, out, imds.url)
    try:
        head = read_until_held(trainer)  # held mid-epoch 2: the notice lands mid-run
        notice = imds.announce_spot_interruption("terminate", in_seconds=120)
        code, rest, err = finish(trainer)
        text = "".join(head) + rest
        assert code == 3, text + err
        w_code, w_out, w_err = finish(watch, timeout=10)  # leaves by itself once the trainer is gone
    finally:
        hold.release()
        for proc in (trainer, watch):
            stop(proc)
    assert w_code == 0 and "Traceback" not in w_err, w_err

    line = f"Spot interruption notice: terminate at {notice['time']}; checkpointing now"
    assert line in w_out.splitlines()
    log = (out / "train.log").read_text().splitlines()
    assert line in log
    stopped = [i for i, x in enumerate(log) if x.startswith("stopped by SIGTERM at fine-tuning")]
    assert stopped and log.index(line) < stopped[0], log[-5:]  # the watcher's line first, then the trainer's
    assert f"stopped by SIGTERM at {hold.position};" in text and "continue with --resume" in text

    record = read_interruption(out)
    assert record is not None
    assert record["kind"] == SPOT_KIND and record["action"] == "terminate"
    assert record["time"] == notice["time"] and record["pid"] == trainer.pid and record["stopped"] is True
    assert record["source"] == imds.url + SPOT_ACTION_PATH
    assert record["detected_at"].endswith("Z") and record["detected_at"] <= notice["time"]

    with np.load(out / "checkpoint.npz") as ckpt:
        meta = json.loads(str(ckpt["meta"]))
    assert (meta["phase"], meta["epoch"], meta["batch"]) == ("finetune", 1, 3)  # where it was held

    notices = [r for r in imds.metadata_gets() if r.path == SPOT_ACTION_PATH and r.status == 200]
    assert len(notices) == 1  # acted once: no polling (and no second signal) after the notice
    # IMDSv2 only, and the token never reaches the logs.
    assert imds.metadata_gets() and all(r.token == "valid" for r in imds.metadata_gets())
    logged = w_out + w_err + (out / "train.log").read_text()
    assert not any(token in logged for token in imds.tokens_issued)

    resumed = run_trainer("run", str(job), "--out", str(out), "--backend", "numpy", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout
    code, _, err = finish(reference)
    assert code == 0, err
    ref, got = model_arrays(tmp_path / "ref" / "model.npz"), model_arrays(out / "model.npz")
    assert ref.keys() == got.keys() and len(ref) == 9
    for name in ref:
        assert np.array_equal(ref[name], got[name]), name
    assert json.loads((out / "metrics.json").read_text())["resumes"] == 1


def live_processes(marker: str) -> list[int]:
    """Pids of live processes whose command line contains `marker` (no zombies)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if marker in cmdline and state not in "ZX":
            pids.append(int(entry.name))
    return pids


def test_shell_command_exits_with_the_trainers_code(job: Path, tmp_path: Path) -> None:
    """The composed line under bash: 3 after a notice, 3 when its process group gets SIGTERM (what
    `stop_job` sends: the watcher dies of it harmlessly), 0 after a normal finish; no watcher left."""
    cases = {"notice": FakeImds(), "group-sigterm": FakeImds(), "finish": FakeImds()}
    # The two that get stopped are held mid-epoch 2 until the notice or the signal lands.
    holds = {name: TrainerHold(tmp_path / "holds" / name, 2, 3) for name in ("notice", "group-sigterm")}
    procs = {}
    try:
        for name, fake in cases.items():
            out = tmp_path / name
            args = f"{shlex.quote(str(job))} --out {shlex.quote(str(out))} --backend numpy"
            line = shell_command(shlex.quote(sys.executable), args, str(out), interval=0.2)
            procs[name] = subprocess.Popen(
                ["bash", "-c", line],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=watch_env(fake.url) | (holds[name].env if name in holds else {}),
                cwd=REPO,
                start_new_session=True,  # its own process group, as the detached wrapper's setsid gives
            )
        read_until_held(procs["notice"])
        notice = cases["notice"].announce_spot_interruption("stop", in_seconds=120)
        read_until_held(procs["group-sigterm"])
        os.killpg(procs["group-sigterm"].pid, signal.SIGTERM)
        results = {name: finish(proc, timeout=90) for name, proc in procs.items()}
    finally:
        for hold in holds.values():
            hold.release()
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for fake in cases.values():
            fake.stop()

    code, out, err = results["notice"]
    assert code == 3, out + err
    assert f"Spot interruption notice: stop at {notice['time']}; checkpointing now" in out
    assert f"stopped by SIGTERM at {holds['notice'].position};" in out
    assert (tmp_path / "notice" / "checkpoint.npz").exists()
    assert read_interruption(tmp_path / "notice")["action"] == "stop"  # type: ignore[index]

    code, out, err = results["group-sigterm"]
    assert code == 3, out + err
    assert f"stopped by SIGTERM at {holds['group-sigterm'].position};" in out and "Traceback" not in err, err
    assert read_interruption(tmp_path / "group-sigterm") is None  # a stop is not an interruption

    code, out, err = results["finish"]
    assert code == 0, out + err
    assert (tmp_path / "finish" / "model.npz").exists() and "Test accuracy" in out
    assert "spot watch: watching spot interruption notices" in out
    assert read_interruption(tmp_path / "finish") is None

    for name in cases:
        assert live_processes(str(tmp_path / name)) == [], name  # neither trainer nor watcher outlived it


def test_shell_command_quoting(tmp_path: Path) -> None:
    line = shell_command('"$PY"', "job.yaml --out out", "out", interval=2)
    assert line == (
        "trap '_sig=1' TERM INT; \"$PY\" -u -m trainer run job.yaml --out out & _t=$!; "
        '"$PY" -u -m trainer.spot_watch --pid "$_t" --out out --interval 2 & _w=$!; '
        'while :; do _sig=; wait "$_t"; _rc=$?; [ -n "$_sig" ] || break; done; '
        'kill "$_w" 2>/dev/null; wait "$_w" 2>/dev/null; exit "$_rc"'
    )
    assert "--out \"$HOME\"/'runs/a b/out' --interval 0.5" in shell_command(
        "python3", "j.yaml", "~/runs/a b/out", 0.5
    )
    with pytest.raises(ValueError, match="interval"):
        shell_command("python3", "j.yaml", "out", 0)
    if shutil.which("shellcheck"):
        check = subprocess.run(
            ["shellcheck", "-s", "bash", "-"], input=f"PY=python3\n{line}\n", capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout


# ------------------------------------------------------------------------ rebalance, with a stand-in


def test_rebalance_is_recorded_but_does_not_stop_the_trainer(tmp_path: Path, imds: FakeImds) -> None:
    sleeper = start_sleeper()
    watch = start_watch(sleeper.pid, tmp_path, imds.url)
    try:
        rebalance = imds.recommend_rebalance()
        wait_for(lambda: read_interruption(tmp_path), what="the rebalance record")
        seen_at = len(imds.metadata_gets())
        wait_for(lambda: len(imds.metadata_gets()) > seen_at + 3, what="more polls")  # it keeps polling
        assert sleeper.poll() is None, "a rebalance recommendation must not stop the trainer"
        record = read_interruption(tmp_path)
        assert record is not None and record["kind"] == REBALANCE_KIND and record["stopped"] is False
        assert record["time"] == rebalance["noticeTime"] and record["action"] is None
        assert record["source"] == imds.url + REBALANCE_PATH
        # the rebalance endpoint is read until the recommendation is seen, then only instance-action
        later = [r.path for r in imds.metadata_gets()[seen_at:]]
        assert set(later) == {SPOT_ACTION_PATH}, later

        notice = imds.announce_spot_interruption("hibernate")  # the notice that may follow still stops it
        assert sleeper.wait(timeout=10) == -signal.SIGTERM
        code, _, err = finish(watch, timeout=10)
    finally:
        stop(sleeper)
        stop(watch)
    assert code == 0, err
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert lines == [
        f"Rebalance recommendation at {rebalance['noticeTime']}: recorded; training continues "
        "(a spot interruption notice may follow)",
        f"Spot interruption notice: hibernate at {notice['time']}; checkpointing now",
    ]
    assert read_interruption(tmp_path)["kind"] == SPOT_KIND  # type: ignore[index]


def test_stop_on_rebalance_stops_the_trainer(tmp_path: Path, imds: FakeImds) -> None:
    sleeper = start_sleeper()
    watch = start_watch(sleeper.pid, tmp_path, imds.url, "--stop-on-rebalance")
    try:
        rebalance = imds.recommend_rebalance()
        assert sleeper.wait(timeout=10) == -signal.SIGTERM
        code, out, err = finish(watch, timeout=10)
    finally:
        stop(sleeper)
        stop(watch)
    assert code == 0, err
    line = f"Rebalance recommendation at {rebalance['noticeTime']}; checkpointing now (--stop-on-rebalance)"
    assert line in out.splitlines() and line in (tmp_path / "train.log").read_text().splitlines()
    record = read_interruption(tmp_path)
    assert record is not None and record["kind"] == REBALANCE_KIND and record["stopped"] is True


def test_a_rebalance_never_overwrites_a_spot_notice(tmp_path: Path, imds: FakeImds) -> None:
    spot = {"kind": SPOT_KIND, "action": "terminate", "time": "2017-09-18T08:22:00Z", "stopped": True}
    write_interruption(tmp_path, spot)
    sleeper = start_sleeper()
    watch = start_watch(sleeper.pid, tmp_path, imds.url)
    try:
        imds.recommend_rebalance()
        log = tmp_path / "train.log"
        wait_for(lambda: log.exists() and "Rebalance recommendation" in log.read_text(), what="the log line")
        assert sleeper.poll() is None
    finally:
        stop(sleeper)
        finish(watch, timeout=10)
    assert read_interruption(tmp_path) == spot


# ------------------------------------------------------------------------------- IMDS misbehaving


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_imds_it_says_so_in_one_line_and_exits_0(tmp_path: Path) -> None:
    sleeper = start_sleeper()
    try:
        refused = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
        with socket.socket() as silent:  # accepts connections (the kernel does) but never answers
            silent.bind(("127.0.0.1", 0))
            silent.listen(8)
            mute = f"http://127.0.0.1:{silent.getsockname()[1]}"
            for url, reason in ((refused, "Connection refused"), (mute, "timed out")):
                started = time.monotonic()
                watch = start_watch(sleeper.pid, tmp_path, url)
                code, out, err = finish(watch, timeout=10)
                took = time.monotonic() - started
                assert code == 0 and err == "", err
                assert out.splitlines() == [f"{NO_IMDS_LINE} (PUT {url}/latest/api/token {_how(reason)})"]
                assert took < 8, f"took {took:.1f}s to give up"  # 1 s timeouts, not minutes
        assert sleeper.poll() is None  # never signalled
        assert not (tmp_path / "train.log").exists() and read_interruption(tmp_path) is None
    finally:
        stop(sleeper)


def _how(reason: str) -> str:
    return "timed out" if reason == "timed out" else f"failed: {reason}"


def valid_get_after_renewal(imds: FakeImds) -> bool:
    puts = imds.token_puts()
    return len(puts) >= 2 and any(r.token == "valid" and r.at > puts[1].at for r in imds.metadata_gets())


def test_a_401_gets_a_fresh_token_and_transient_errors_are_survived(tmp_path: Path, imds: FakeImds) -> None:
    sleeper = start_sleeper()
    watch = start_watch(sleeper.pid, tmp_path, imds.url)
    try:
        wait_for(lambda: imds.metadata_gets(), what="the first poll")
        imds.expire_tokens()  # as after an IMDS restart
        wait_for(lambda: any(r.status == 401 for r in imds.requests), what="a 401")
        wait_for(lambda: valid_get_after_renewal(imds), what="a GET with a second token")
        imds.fail_next(3, status=503)
        wait_for(lambda: [r.status for r in imds.requests].count(503) == 3, what="three failed polls")
        imds.announce_spot_interruption()
        assert sleeper.wait(timeout=10) == -signal.SIGTERM
        code, _, err = finish(watch, timeout=10)
    finally:
        stop(sleeper)
        stop(watch)
    assert code == 0 and "Traceback" not in err, err
    statuses = [r.status for r in imds.requests]
    assert statuses.count(503) == 3 and statuses.count(401) == 1, statuses
    first_401 = statuses.index(401)
    retry = imds.requests[first_401 + 1 : first_401 + 3]
    assert [(r.method, r.status) for r in retry] == [("PUT", 200), ("GET", 404)]  # a new token, same GET
    assert retry[1].path == imds.requests[first_401].path and retry[1].token == "valid"
    failed_path = next(r.path for r in imds.requests if r.status == 503)  # either endpoint of a poll
    assert err.splitlines() == [  # one line when polls start failing, one when they work again
        f"spot watch: polling instance metadata failed (GET {failed_path} answered HTTP 503); still trying",
        "spot watch: instance metadata answers again",
    ]
    assert read_interruption(tmp_path)["kind"] == SPOT_KIND  # type: ignore[index]


def test_the_token_is_renewed_before_it_expires(tmp_path: Path, imds: FakeImds) -> None:
    sleeper = start_sleeper()
    watch = start_watch(sleeper.pid, tmp_path, imds.url, "--token-ttl", "2")
    try:
        wait_for(lambda: len(imds.token_puts()) >= 3, timeout=10, what="two renewals")
    finally:
        stop(sleeper)
        code, _, err = finish(watch, timeout=10)
    assert code == 0, err
    assert all(r.status == 200 for r in imds.token_puts())
    assert all(
        r.token == "valid" and r.status == 404 for r in imds.metadata_gets()
    )  # no 401: renewed in time
    puts = [r.at for r in imds.token_puts()]
    assert all(1.0 <= b - a <= 3.0 for a, b in itertools.pairwise(puts)), (
        puts
    )  # at 1.5 s of a 2 s TTL, not every poll


# ---------------------------------------------------------------------------------- the pid's lifetime


def test_the_watcher_leaves_when_the_trainer_ends(tmp_path: Path, imds: FakeImds) -> None:
    trainer = start_sleeper()
    # Polling every 30 s: leaving within seconds shows the pid is checked between polls. The ended
    # process stays a zombie (this test does not reap it) and still counts as gone.
    watch = start_watch(trainer.pid, tmp_path, imds.url, "--interval", "30")
    try:
        assert watch.stdout is not None
        first = watch.stdout.readline()  # it is watching
        assert first == (
            "spot watch: watching spot interruption notices (rebalance recommendations are only recorded) "
            f"for pid {trainer.pid} every 30s\n"
        )
        os.kill(trainer.pid, signal.SIGKILL)
        code, out, err = finish(watch, timeout=10)
    finally:
        stop(trainer)
    assert code == 0 and out == "" and err == "", err
    assert len(imds.metadata_gets()) <= 2  # at most the first poll (instance-action, rebalance)

    code = subprocess.run(  # a pid above any pid_max: no such process
        [*WATCH, "--pid", "999999999", "--out", str(tmp_path)],
        env=watch_env(imds.url),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert code.returncode == 0 and code.stdout == ""
    assert code.stderr == "spot watch: process 999999999 is not running: nothing to watch\n"


def test_read_interruption(tmp_path: Path) -> None:
    assert read_interruption(tmp_path) is None
    assert read_interruption(tmp_path / "missing-folder") is None
    (tmp_path / "interruption.json").write_text("[1, 2]")
    assert read_interruption(tmp_path) is None  # not a record
    (tmp_path / "interruption.json").write_text('{"kind": "spot-')
    assert read_interruption(tmp_path) is None
    record = {"kind": SPOT_KIND, "action": "terminate", "time": "2017-09-18T08:22:00Z"}
    write_interruption(tmp_path / "new", record)
    assert read_interruption(tmp_path / "new") == record
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["interruption.json"]  # no temp file left
