"""Watch EC2's instance metadata for a spot interruption notice and make the trainer checkpoint in time.

EC2 takes a spot instance back with a two-minute warning that only the instance itself can read: IMDS
answers `latest/meta-data/spot/instance-action` with 404 until then, and with
`{"action": "terminate", "time": "2017-09-18T08:22:00Z"}` (or stop / hibernate) once it is coming.
`latest/meta-data/events/recommendations/rebalance` (`{"noticeTime": ...}`) is an earlier, weaker hint
that the instance is at elevated risk. This watcher polls both with IMDSv2 (a session token from
`PUT /latest/api/token`, renewed before its TTL runs out and on a 401) every `--interval` seconds, and:

- on an instance-action notice: writes DIR/interruption.json atomically (kind "spot-interruption"),
  appends `Spot interruption notice: terminate at <time>; checkpointing now` to DIR/train.log and stdout,
  sends SIGTERM once to the trainer (which writes checkpoint.npz and exits 3), and stays until it exits;
- on a rebalance recommendation: records it (kind "rebalance-recommendation", never over a spot notice)
  and logs a line, but leaves the trainer running: a rebalance is a hint, not a termination. With
  `--stop-on-rebalance` it stops the trainer as a notice would.

It exits 0 as soon as the trainer's pid is gone (a zombie or a reused pid counts as gone), or on
SIGTERM/SIGINT. Off EC2 (the first token request is refused or times out: 1 s to connect, 1 s to answer)
it prints one line on stdout, `no EC2 instance metadata service: spot notices are not watched (<why>)`,
and exits 0. Later errors are transient: it keeps polling (one line on stderr when polls start failing,
one when they work again). It never prints the token and never ends with a traceback.

    python -m trainer.spot_watch --pid PID --out DIR [--interval 2] [--imds-url URL] [--stop-on-rebalance]

The IMDS base URL is `--imds-url`, else $EC2DBN_IMDS_URL, else http://169.254.169.254 (tests point it at a
fake IMDS on loopback; the client is trainer.imds). It uses the standard library only (the `trainer`
package's __init__ adds PyYAML, no NumPy): it starts in about 0.1 s next to the trainer.

How the orchestrator runs it: `shell_command()` composes the line for the detached job, e.g.

    trap '_sig=1' TERM INT; "$PY" -u -m trainer run job.yaml --out out & _t=$!;
    "$PY" -u -m trainer.spot_watch --pid "$_t" --out out --interval 2 & _w=$!;
    while :; do _sig=; wait "$_t"; _rc=$?; [ -n "$_sig" ] || break; done;
    kill "$_w" 2>/dev/null; wait "$_w" 2>/dev/null; exit "$_rc"

(one line in reality). Why each part: the detached wrapper's `stop_job` sends SIGTERM to the whole
process group, so the trainer (checkpoints, exits 3), the watcher (exits 0 at once, harmlessly) and this
shell all get it. The shell must outlive the trainer to report its exit code, so it traps TERM/INT; a
trapped signal makes `wait` return early (status > 128), hence the loop that waits again until `wait`
returns the trainer's real status (bash keeps it even when the child was reaped meanwhile). Children get
default dispositions for trapped signals, so the trainer still handles them itself. The watcher is
stopped once the trainer is gone, and the composed command exits with the trainer's code (trainer.contract).

In ec2dbn, `RemoteRun.trainer_command` would become
`'PY=...; [ -x "$PY" ] || PY=python3; ' + shell_command('"$PY"', "job.yaml --out out", "out")` (no
`exec`: the shell must stay to wait). After the job, `read_interruption(out)` (or the pulled
interruption.json) tells a spot interruption (with exit code 3) from a user's stop (exit 3, no record).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from trainer.contract import INTERRUPTION_FILE, REBALANCE_KIND, SPOT_KIND, SPOT_NOTICE_MARKER, TRAIN_LOG
from trainer.imds import (
    DEFAULT_IMDS_URL,
    IMDS_URL_ENV,
    MAX_TOKEN_TTL_S,
    REBALANCE_PATH,
    SPOT_ACTION_PATH,
    ImdsClient,
    ImdsError,
    ImdsUnavailable,
)
from trainer.strict_json import write_json

NO_IMDS_LINE = "no EC2 instance metadata service: spot notices are not watched"
PID_CHECK_S = 0.1  # how often the trainer's pid is checked between polls


# --------------------------------------------------------------------------------------- interruption.json


def read_interruption(out_dir: str | Path) -> dict[str, Any] | None:
    """The record in OUT_DIR/interruption.json, or None when there is none (or it is not a JSON object).

    Keys: kind ("spot-interruption" | "rebalance-recommendation"), action (terminate / stop / hibernate;
    None for a rebalance), time (when EC2 acts / noticed, as IMDS gave it), detected_at (ISO UTC),
    source (the metadata URL), pid (the trainer's), stopped (whether the trainer was sent SIGTERM).
    """
    try:
        record = json.loads((Path(out_dir) / INTERRUPTION_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_interruption(out_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write OUT_DIR/interruption.json atomically, as strict JSON (trainer.strict_json): never half a file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return write_json(out / INTERRUPTION_FILE, record)


def utc_now() -> str:
    """Now as IMDS writes times: 2017-09-18T08:22:00Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------- the process


def process_start(pid: int) -> str | None:
    """The process's start time in clock ticks (/proc/PID/stat field 22), None without /proc or process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None


def process_alive(pid: int, start: str | None = None) -> bool:
    """Is `pid` a running process (not a zombie), and the same one that had start time `start`?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return not Path("/proc/self/stat").exists()  # without /proc, kill(0) is all we can know
    except OSError:
        return True
    fields = stat[stat.rfind(")") + 2 :].split()
    if fields and fields[0] in ("Z", "X"):
        return False  # exited; its parent has not reaped it yet
    return start is None or (len(fields) > 19 and fields[19] == start)


# --------------------------------------------------------------------------------------------- the watcher


class Watcher:
    """Poll IMDS every `interval` seconds while `pid` runs; act on the first notice (see the module doc)."""

    def __init__(
        self,
        client: ImdsClient,
        pid: int,
        out_dir: Path,
        interval: float = 2.0,
        stop_on_rebalance: bool = False,
        out: Callable[[str], None] | None = None,
        err: Callable[[str], None] | None = None,
    ) -> None:
        self.client, self.pid, self.out_dir, self.interval = client, pid, Path(out_dir), interval
        self.stop_on_rebalance = stop_on_rebalance
        self._out = out or (lambda line: _print(line, sys.stdout))
        self._err = err or (lambda line: _print(line, sys.stderr))
        self.start = process_start(pid)
        self.signalled = False
        self.rebalance_seen = False
        self._failing = False

    def run(self) -> int:
        if not process_alive(self.pid, self.start):
            self._err(f"spot watch: process {self.pid} is not running: nothing to watch")
            return 0
        try:
            self.client.open_session()
        except ImdsUnavailable as exc:
            self._out(f"{NO_IMDS_LINE} ({exc})")
            return 0
        what = "spot interruption notices" + (
            " and rebalance recommendations (they stop it too)"
            if self.stop_on_rebalance
            else " (rebalance recommendations are only recorded)"
        )
        self._out(f"spot watch: watching {what} for pid {self.pid} every {self.interval:g}s")
        next_poll = time.monotonic()
        while process_alive(self.pid, self.start):
            now = time.monotonic()
            if not self.signalled and now >= next_poll:
                self.poll_once()
                next_poll = max(next_poll + self.interval, time.monotonic())
                continue
            wait = PID_CHECK_S if self.signalled else min(PID_CHECK_S, max(0.0, next_poll - now))
            time.sleep(wait)
        return 0

    def poll_once(self) -> None:
        """One round: instance-action, then (until one was seen) the rebalance recommendation."""
        try:
            body = self.client.get(SPOT_ACTION_PATH)
            if body is not None:
                self._on_spot_notice(body)
            elif not self.rebalance_seen:
                body = self.client.get(REBALANCE_PATH)
                if body is not None:
                    self._on_rebalance(body)
        except ImdsError as exc:
            if not self._failing:
                self._err(f"spot watch: polling instance metadata failed ({exc}); still trying")
            self._failing = True
            return
        if self._failing:
            self._err("spot watch: instance metadata answers again")
            self._failing = False

    def _on_spot_notice(self, body: bytes) -> None:
        doc = _json_object(body)
        action = str(doc.get("action") or "unknown action")
        when = doc.get("time")
        self._record(SPOT_KIND, action, when, SPOT_ACTION_PATH)
        self._log(f"{SPOT_NOTICE_MARKER}: {action} at {when or 'an unknown time'}; checkpointing now")
        self._stop_trainer()

    def _on_rebalance(self, body: bytes) -> None:
        self.rebalance_seen = True
        when = _json_object(body).get("noticeTime")
        at = when or "an unknown time"
        existing = read_interruption(self.out_dir)
        if existing is None or existing.get("kind") != SPOT_KIND:
            self._record(REBALANCE_KIND, None, when, REBALANCE_PATH)
        if self.stop_on_rebalance:
            self._log(f"Rebalance recommendation at {at}; checkpointing now (--stop-on-rebalance)")
            self._stop_trainer()
        else:
            self._log(
                f"Rebalance recommendation at {at}: recorded; training continues "
                "(a spot interruption notice may follow)"
            )

    def _record(self, kind: str, action: str | None, when: Any, path: str) -> None:
        record = {
            "kind": kind,
            "action": action,
            "time": when if isinstance(when, str) else None,
            "detected_at": utc_now(),
            "source": self.client.url(path),
            "pid": self.pid,
            "stopped": kind == SPOT_KIND or self.stop_on_rebalance,
        }
        try:
            write_interruption(self.out_dir, record)
        except OSError as exc:
            self._err(f"spot watch: could not write {self.out_dir / INTERRUPTION_FILE}: {exc}")

    def _log(self, line: str) -> None:
        """A line in DIR/train.log (appended: the trainer appends too, line by line) and on stdout."""
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            with open(self.out_dir / TRAIN_LOG, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        except OSError as exc:
            self._err(f"spot watch: could not append to {self.out_dir / TRAIN_LOG}: {exc}")
        self._out(line)

    def _stop_trainer(self) -> None:
        if self.signalled:
            return
        self.signalled = True
        if not process_alive(self.pid, self.start):
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        except PermissionError:
            self._err(f"spot watch: not allowed to signal process {self.pid}")


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(body.decode("utf-8", errors="replace"))
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _print(line: str, stream: Any) -> None:
    with contextlib.suppress(OSError, ValueError):  # a closed stdout must not stop the watch
        print(line, file=stream, flush=True)


# ----------------------------------------------------------------------------------------- shell command


def shell_command(python: str, trainer_args: str, out: str, interval: float = 2.0) -> str:
    """One shell line (bash or POSIX sh) that runs the trainer with this watcher beside it.

    python: shell text for the interpreter, inserted as is (e.g. `"$PY"` or `python3`).
    trainer_args: shell text, the arguments of `trainer run` (e.g. `job.yaml --out out --backend numpy`),
      inserted as is: simple words only, no `;`, `&` or pipes (the trainer's pid must be `$!`).
    out: the trainer's --out folder as a plain path (quoted here; a leading `~/` stays the home folder).
    interval: seconds between IMDS polls (> 0).

    The line exits with the trainer's exit code; SIGTERM/SIGINT to its process group stop the trainer
    (checkpoint, exit 3) and the watcher, and the line still exits 3 (see the module docstring). The line
    is composed in one place, trainer.sidecars (which also adds the run store's uploader): this is it
    without a store.
    """
    from trainer.sidecars import shell_command as compose

    return compose(python, trainer_args, out, interval=interval)


# ------------------------------------------------------------------------------------------------- the CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.spot_watch",
        description="Poll EC2 instance metadata (IMDSv2) for a spot interruption notice; on one, record it "
        "in DIR/interruption.json, log it to DIR/train.log and SIGTERM the trainer (it checkpoints and "
        "exits 3). Exits 0 when the trainer's process ends, or at once off EC2.",
    )
    parser.add_argument("--pid", type=int, required=True, help="the trainer's process id")
    parser.add_argument("--out", type=Path, required=True, help="the trainer's --out folder")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between polls (default 2)")
    parser.add_argument(
        "--imds-url",
        help=f"IMDS base URL (default: ${IMDS_URL_ENV}, else {DEFAULT_IMDS_URL})",
    )
    parser.add_argument(
        "--stop-on-rebalance",
        action="store_true",
        help="also stop the trainer on a rebalance recommendation (default: only record it)",
    )
    parser.add_argument(
        "--token-ttl",
        type=int,
        default=MAX_TOKEN_TTL_S,
        help=f"seconds each IMDSv2 session token lives (1..{MAX_TOKEN_TTL_S}, default {MAX_TOKEN_TTL_S})",
    )
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)  # stopped with the job (its process group got the signal): nothing to clean up


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.pid <= 0 or not args.interval > 0:
        print("error: --pid must be a process id and --interval a number of seconds > 0", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _terminate)
    url = args.imds_url or os.environ.get(IMDS_URL_ENV) or DEFAULT_IMDS_URL
    try:
        client = ImdsClient(url, token_ttl=args.token_ttl)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return Watcher(client, args.pid, args.out, args.interval, args.stop_on_rebalance).run()
    except Exception as exc:  # never a traceback in the job's log: the trainer's run matters, not ours
        _print(f"spot watch: stopped by an unexpected error: {type(exc).__name__}: {exc}", sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
