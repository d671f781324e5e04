"""The sweep's loop: each free slot takes the next point; the sweep ends in one place, whatever ends it.

    capacity (fleets / local workers) → free slot → next point (if --max-cost allows) → its run in a thread
    → the point's answer into sweep.json → ... → stop → teardown → summary

The guarantees, in `Sweep.run`:
- nothing left billing: one `finally` tears every fleet down (by tags) on every way out — the last point
  done, --max-cost reached, no capacity left, Ctrl-C, SIGTERM, SIGHUP, a bug.
- a stop (Ctrl-C, a closed terminal, --max-cost's actual spend) stops each running point as Ctrl-C stops
  `train` (the trainer checkpoints, what exists is pulled): finished points are kept, the others resume
  with `ec2dbn sweep --resume SWEEP_ID`. A second Ctrl-C skips the wait and goes straight to teardown.
- a point that fails is recorded `failed` and the sweep goes on; one torn down by `ec2dbn teardown` stops
  the sweep (that was the user's intent).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ec2dbn.events import Reporter
from ec2dbn.run import signals
from ec2dbn.run.results import RunRecord
from ec2dbn.sweep.budget import Budget
from ec2dbn.sweep.live import Board, PointReporter
from ec2dbn.sweep.points import ValidPoint
from ec2dbn.sweep.record import DONE_STATES, SweepRecord
from ec2dbn.sweep.slots import NoSlotError, Slot, SlotPool

#: Seconds between looks at the pool, the budget and the points while waiting.
TICK_S = 0.05
#: Seconds a stopped point gets to checkpoint and pull before the sweep tears down anyway.
STOP_WAIT_S = 120.0


class Runner(Protocol):
    """Where the points run: EC2 fleets (on_ec2.Ec2Runner) or local workers (on_local.LocalRunner)."""

    mode: str
    pool: SlotPool

    def start_capacity(self, reporter: Reporter) -> None: ...
    def run_point(self, vp: ValidPoint, slot: Slot, reporter: Reporter) -> tuple[RunRecord, str | None]: ...
    def stop_point(self, pid: str) -> None: ...
    def estimate_usd(self, vp: ValidPoint, slot: Slot) -> float: ...
    def actual_usd(self) -> float: ...
    def end(self, reporter: Reporter) -> list[str]: ...
    def capacity_record(self) -> list[dict[str, Any]]: ...


@dataclass
class Running:
    vp: ValidPoint
    thread: threading.Thread
    reporter: PointReporter
    outcome: tuple[RunRecord | None, str | None] = (None, None)
    ended_s: float | None = None


class Sweep:
    """Runs `points` (validated; each with its hardware group) on `runner`'s slots."""

    def __init__(
        self,
        record: SweepRecord,
        sweep_dir: Path,
        points: list[ValidPoint],
        groups: dict[str, int],
        runner_factory: Callable[[Callable[[int], bool]], Runner],
        budget: Budget,
        board: Board,
        reporter: Reporter,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.record = record
        self.sweep_dir = sweep_dir
        self.points = points
        self.groups = groups
        self.budget = budget
        self.board = board
        self.reporter = reporter
        self.echo = echo
        self.pending: deque[ValidPoint] = deque(points)
        self.running: dict[str, Running] = {}
        self.stop_reason: str | None = None
        self._stopped = threading.Event()
        self._changed = threading.Event()
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.runner = runner_factory(self._work_left)

    def _work_left(self, group: int) -> bool:
        """Points of `group` not done yet (a replacement instance would have work)."""
        with self._lock:
            return any(
                self.groups[v.point.point_id] == group for v in (*self.pending, *self._running_points())
            )

    def _running_points(self) -> list[ValidPoint]:
        return [r.vp for r in self.running.values()]

    # -- the guarantee -----------------------------------------------------------------------------

    def run(self) -> int:
        """Run the sweep to its end; returns the exit code (0 every point has its answer, 1 some have
        not, 128+N stopped by signal N). Whatever happens, the capacity is torn down and sweep.json final."""
        self.record.save(self.sweep_dir)
        with signals.on_signals(signals.raise_interrupted):
            try:
                self.runner.start_capacity(self.reporter)
                self.record.groups = self.runner.capacity_record()  # `ec2dbn logs` finds the instances
                self.record.save(self.sweep_dir)
                self._loop()
                return self._exit_code()
            except KeyboardInterrupt as exc:
                code, why = signals.exit_code(exc)
                self.stop_reason = f"interrupted ({why})"
                self.reporter.warn(f"{self.stop_reason}: stopping every running point (they checkpoint)")
                self._stop_all()
                self._finish(code, "interrupted")
                return int(self.record.exit_code or code)
            except BaseException as exc:
                self.stop_reason = self.stop_reason or f"{type(exc).__name__}: {exc}"
                self._stop_all()
                self._finish(1, "failed")
                raise
            finally:
                self._end()

    def _exit_code(self) -> int:
        done = all(e.status in DONE_STATES for e in self.record.points)
        status = "finished" if done and not self.stop_reason else "stopped" if self.stop_reason else "failed"
        self._finish(0 if done else 1, status)
        return 0 if done else 1

    def _finish(self, exit_code: int, status: str) -> None:
        if self.record.exit_code is None:
            self.record.finish(exit_code, status, self.stop_reason)

    # -- the loop ----------------------------------------------------------------------------------

    def _loop(self) -> None:
        while self.pending or self.running:
            self._reap()
            self._watch_budget()
            started = False
            if self.pending and self.stop_reason is None:
                started = self._start_next()
            if not started:
                self._changed.wait(TICK_S)
                self._changed.clear()

    def _start_next(self) -> bool:
        """Start every pending point a free slot (and the budget) allows; True if one started."""
        for group in dict.fromkeys(self.groups[v.point.point_id] for v in self.pending):
            try:
                slot = self.runner.pool.take(group, timeout_s=0)
            except NoSlotError as exc:
                why = getattr(self.runner, "unlaunched", {}).get(group)  # EC2 gave the fleet nothing
                self._skip_group(group, f"no instance: {why}" if why else str(exc))
                return True
            if slot is None:
                continue
            vp = next(v for v in self.pending if self.groups[v.point.point_id] == group)
            if not self.budget.admit_point(self.runner.actual_usd(), self.runner.estimate_usd(vp, slot)):
                self.runner.pool.give_back(slot)
                self._stop_launching(f"--max-cost ${self.budget.max_cost_usd:g} reached")
                return True
            with self._lock:
                self.pending.remove(vp)
            self._start(vp, slot)
            return True
        return False

    def _start(self, vp: ValidPoint, slot: Slot) -> None:
        pid = vp.point.point_id
        entry = self.record.point(pid)
        entry.status, entry.slot, entry.error = "running", slot.name, None
        entry.instance_id = slot.instance_id
        entry.started_s, entry.ended_s = round(time.monotonic() - self.started, 3), None
        self.board.update(pid, state="running", slot=slot.name)
        self.record.save(self.sweep_dir)
        reporter = PointReporter(
            self.board, pid, self.sweep_dir / pid / "pipeline.log", self.reporter, self.echo
        )
        run = Running(vp, threading.Thread(target=lambda: None), reporter)

        def work() -> None:
            try:
                run.outcome = self.runner.run_point(vp, slot, reporter)
            except BaseException as exc:  # never lose a point's end, whatever its runner raised
                run.outcome = (None, f"unexpected {type(exc).__name__}: {exc}")
            finally:
                run.ended_s = round(time.monotonic() - self.started, 3)
                self._changed.set()

        run.thread = threading.Thread(target=work, name=f"point-{pid}", daemon=True)
        with self._lock:
            self.running[pid] = run
        run.thread.start()

    def _reap(self) -> None:
        """Record the points whose runs ended."""
        for pid, run in list(self.running.items()):
            if run.thread.is_alive():
                continue
            with self._lock:
                del self.running[pid]
            run.reporter.close()
            record, error = run.outcome
            entry = self.record.point(pid)
            released = self.runner.pool.released_at.get(entry.slot or "")
            started = self.started + (entry.started_s or 0.0)
            entry.ended_s = (
                round(released - self.started, 3) if released and released >= started else run.ended_s
            )
            entry.status = record.status if record is not None else "failed"
            entry.error = error
            if record is not None:
                entry.instance_id = record.instance_id or entry.instance_id
            self.board.update(pid, state=entry.status, cost_usd=record.cost_usd if record else None)
            if entry.status != "finished":
                self.reporter.warn(f"{pid} {entry.status}" + (f": {error}" if error else ""))
            if entry.status == "torn-down":
                self._stop_launching("its capacity was torn down by `ec2dbn teardown`")
            self.record.save(self.sweep_dir)

    def _watch_budget(self) -> None:
        actual = self.runner.actual_usd()
        self.board.cost_usd = actual
        if self.budget.exhausted(actual) and not self._stopped.is_set():
            self._stop_launching(f"--max-cost ${self.budget.max_cost_usd:g} spent")
            self.reporter.warn("the actual spend reached --max-cost: stopping the running points")
            self._stopped.set()
            for pid in list(self.running):
                self.runner.stop_point(pid)

    def _stop_launching(self, reason: str) -> None:
        """No new point starts; those not started stay pending (`--resume` runs them)."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.reporter.warn(f"{reason}: no new point starts; {len(self.pending)} left for --resume")
        self._skip(list(self.pending), reason)

    def _skip_group(self, group: int, reason: str) -> None:
        self._skip([v for v in self.pending if self.groups[v.point.point_id] == group], reason)

    def _skip(self, points: list[ValidPoint], reason: str) -> None:
        for vp in points:
            with self._lock:
                if vp in self.pending:
                    self.pending.remove(vp)
            entry = self.record.point(vp.point.point_id)
            entry.status, entry.error = "skipped", reason
            self.board.update(vp.point.point_id, state="skipped")
        self.record.save(self.sweep_dir)

    # -- the end -----------------------------------------------------------------------------------

    def _stop_all(self) -> None:
        """Ask every running point to stop (checkpoint and pull), then wait for them, bounded; a second
        Ctrl-C stops waiting."""
        self._skip(list(self.pending), self.stop_reason or "stopped")
        self.runner.pool.close(self.stop_reason or "stopping")
        for pid in list(self.running):
            self.runner.stop_point(pid)
        give_up = time.monotonic() + STOP_WAIT_S
        try:
            while self.running and time.monotonic() < give_up:
                self._reap()
                time.sleep(TICK_S)
        except KeyboardInterrupt:
            self.reporter.warn("interrupted again: tearing down without waiting for the points")

    def _end(self) -> None:
        """Tear down, cost, and the final sweep.json (never lets a teardown problem hide the sweep's own)."""
        self.runner.pool.close(self.stop_reason or "the sweep is over")
        problems = self.runner.end(self.reporter)
        self.record.capacity_s = round(time.monotonic() - self.started, 3)
        for pid, run in list(self.running.items()):  # runs that outlived the wait: not answered
            entry = self.record.point(pid)
            entry.status, entry.error = "interrupted", "the sweep ended before this point did"
            run.reporter.close()
        self.record.cost_usd = round(self.runner.actual_usd(), 6)
        self.board.cost_usd = self.record.cost_usd
        self.record.elapsed_s = round(time.monotonic() - self.started, 3)
        self.record.groups = self.runner.capacity_record()
        self._finish(1, "failed")
        if problems:
            self.reporter.warn(
                f"teardown did not finish ({'; '.join(problems)}): run `ec2dbn teardown --all --yes`"
            )
        self.record.save(self.sweep_dir)
        try:
            from ec2dbn.sweep.summary import write_summary

            write_summary(self.sweep_dir, self.reporter)
        except Exception as exc:  # the summary is a bonus; the points' results are safe on disk
            self.reporter.warn(f"no sweep summary: {exc}")
