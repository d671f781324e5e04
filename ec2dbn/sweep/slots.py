"""Slots: where a sweep point runs. An instance gives one slot per GPU, or one on a CPU type; here
(`--local --parallel K`) there are K.

`SlotPool` hands free slots to points and takes them back; when an instance is lost its slots go with it,
and a point that was on one waits (ahead of points not started yet) for a slot elsewhere. When a kind of
hardware has no instance left and none on its way, waiting is over: NoSlotError, and the point stays
resumable. `SlotCapacity` is a sweep point's `ec2dbn.capacity.Capacity`: the pipeline gets its slot's
instance as given, never tears it down, and on a loss hands the instance back to the fleet and waits for
another slot — the pipeline's own recovery then resumes the point there from its last checkpoint.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ec2dbn import stacks, state
from ec2dbn.errors import Ec2dbnError
from ec2dbn.events import Reporter

if TYPE_CHECKING:
    from ec2dbn.validation import Validated


@dataclass(frozen=True)
class Slot:
    """One place to run a point: `gpu` is its CUDA_VISIBLE_DEVICES index (None: no GPU or local)."""

    name: str
    group: int = 0
    instance_id: str | None = None
    gpu: int | None = None


class NoSlotError(Ec2dbnError):
    """The sweep has no slot left for this point (stopped, or its hardware is all gone)."""

    #: A point ended by this is resumable: `ec2dbn sweep --resume` runs it again from its checkpoint.
    run_status = "interrupted"


class SlotPool:
    """Free slots by hardware group, and how many instances of each group are alive or on their way."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._free: dict[int, list[Slot]] = {}
        self._coming: dict[int, int] = {}  # instances launched or being prepared, per group
        self._alive: dict[str, int] = {}  # instance id -> group, while it is usable
        self._waiting_first = 0  # points that lost their instance wait ahead of new ones
        self._closed: str | None = None
        #: slot name -> time.monotonic() of its last give_back: when its point let it go
        self.released_at: dict[str, float] = {}

    def expect(self, group: int, count: int = 1) -> None:
        """`count` instances of `group` are on their way (launched, not ready yet)."""
        with self._cond:
            self._coming[group] = self._coming.get(group, 0) + count
            self._cond.notify_all()

    def add(self, instance_id: str | None, slots: Iterable[Slot], group: int = 0) -> None:
        """An instance is ready: its slots are free. (`instance_id` None: local slots.)"""
        with self._cond:
            if instance_id is not None:
                self._coming[group] = max(0, self._coming.get(group, 0) - 1)
            self._alive[instance_id or f"local-{group}"] = group  # local slots never go away
            self._free.setdefault(group, []).extend(slots)
            self._cond.notify_all()

    def failed(self, group: int) -> None:
        """An instance on its way never became ready."""
        with self._cond:
            self._coming[group] = max(0, self._coming.get(group, 0) - 1)
            self._cond.notify_all()

    def lost(self, instance_id: str) -> None:
        """The instance is gone: its free slots go, and those in use are not given back."""
        with self._cond:
            group = self._alive.pop(instance_id, None)
            if group is not None:
                self._free[group] = [s for s in self._free.get(group, []) if s.instance_id != instance_id]
            self._cond.notify_all()

    def give_back(self, slot: Slot) -> None:
        with self._cond:
            self.released_at[slot.name] = time.monotonic()
            if slot.instance_id is None or slot.instance_id in self._alive:
                self._free.setdefault(slot.group, []).append(slot)
                self._cond.notify_all()

    def close(self, reason: str) -> None:
        """No more slots for anyone (the sweep is stopping): every waiter gets NoSlotError."""
        with self._cond:
            self._closed = self._closed or reason
            self._cond.notify_all()

    def exhausted(self, group: int) -> bool:
        """No free slot, no live instance and none on its way: nothing will ever be free again."""
        with self._cond:
            return self._exhausted(group)

    def _exhausted(self, group: int) -> bool:
        busy = any(g == group for g in self._alive.values())
        return not self._free.get(group) and not busy and not self._coming.get(group)

    def take(self, group: int = 0, *, first: bool = False, timeout_s: float | None = None) -> Slot | None:
        """A free slot of `group`, waiting for one; None after `timeout_s`. `first`: a point that lost
        its instance, served before points not started yet. Raises NoSlotError once closed or when the
        group has nothing left."""
        with self._cond:
            if first:
                self._waiting_first += 1
            try:
                ready = self._cond.wait_for(lambda: self._ready(group, first), timeout=timeout_s)
                return self._free[group].pop(0) if ready else None
            finally:
                if first:
                    self._waiting_first -= 1

    def _ready(self, group: int, first: bool) -> bool:
        if self._closed is not None:
            raise NoSlotError(f"no slot: the sweep is stopping ({self._closed})")
        if self._exhausted(group):
            raise NoSlotError("no slot: every instance of this hardware is gone and none can replace them")
        return bool(self._free.get(group)) and (first or self._waiting_first == 0)


class SlotSource(Protocol):
    """What a sweep's capacity (ec2dbn.sweep.fleet) offers a point on one of its slots."""

    pool: SlotPool

    def slot_state(self, slot: Slot) -> state.StackState:
        """The slot's instance as the pipeline knows a stack: addresses, pinned key, price share."""

    def bootstrap_log(self, slot: Slot) -> Path | None:
        """The instance's bootstrap log (run once per instance), copied into each point's results."""

    def instance_lost(self, instance_id: str, reason: str) -> None:
        """A point saw the instance go: the fleet forgets it and may launch a replacement."""


class SlotCapacity:
    """A sweep point's capacity: the slot it was given, then (after a loss) whichever comes free."""

    minimum_billed_s = 0.0  # a share of an instance; EC2's minimum is counted once for the instance
    bake: str | None = None  # the fleet's instances run from its stack's image; a point does not choose

    def __init__(self, source: SlotSource, slot: Slot, results_dir: Path) -> None:
        self.source = source
        self.slot: Slot | None = slot
        self.group = slot.group
        self.results_dir = results_dir

    def plan(self, v: Validated, reporter: Reporter, run_id: str) -> None:
        reporter.step(f"point {run_id}: slot {self.slot.name if self.slot else '?'} of stack {v.stack.name}")

    def acquire(
        self,
        reporter: Reporter,
        avoid_zones: Iterable[str],
        on_launched: Callable[[state.StackState], None],
    ) -> stacks.Up:
        if self.slot is None:
            self.slot = self.source.pool.take(self.group, first=True)
        slot = self.slot
        assert slot is not None
        st = self.source.slot_state(slot)
        on_launched(st)
        log = self.source.bootstrap_log(slot)
        if log is not None and log.is_file():
            shutil.copyfile(log, self.results_dir / "bootstrap.log")
        env = {"CUDA_VISIBLE_DEVICES": str(slot.gpu)} if slot.gpu is not None else {}
        return stacks.Up(state=st, reused=True, bootstrapped=True, env=env)

    def lost(self, reporter: Reporter, reason: str) -> None:
        if self.slot is not None and self.slot.instance_id:
            self.source.instance_lost(self.slot.instance_id, reason)
        self.slot = None

    def release(self, reporter: Reporter, st: state.StackState | None, *, keep: bool, run_id: str) -> None:
        if self.slot is not None:
            self.source.pool.give_back(self.slot)
            self.slot = None

    def close(self) -> None:
        pass
