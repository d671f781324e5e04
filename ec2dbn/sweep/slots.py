"""Slots: where a sweep point runs. An instance gives one slot per GPU, or one on a CPU type; here
(`--local --parallel K`) there are K.

`SlotPool` is each hardware group's capacity as one state machine, under one lock: every instance of the
group is `coming` (launched, being made ready), `ready` (a slot of it is free), `busy` (all its slots
taken) or `gone`. Marking an instance gone and asking for its replacement are one step (`gone`): the
group's `ReplacementPolicy` is asked under the same lock, so no waiting point can ever see "nothing
alive, nothing coming" between the loss and the request. When is a group exhausted, so that a waiting
point gives up with NoSlotError (and stays resumable)? Only when nothing of it is coming, ready or busy
AND its last replacement was refused: its recovery budget (the stack's max_recoveries) or `--max-cost`
spent, its deadline past — `SlotPool._exhausted`, the one place that says so.

`SlotCapacity` is a sweep point's `ec2dbn.run.capacity.Capacity`: the pipeline gets its slot's instance as
given, never tears it down, and on a loss hands the instance back to the fleet and waits (ahead of points
not started yet) for another slot — the pipeline's own recovery then resumes the point there from its
last checkpoint.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ec2dbn.errors import Ec2dbnError
from ec2dbn.events import Reporter
from ec2dbn.results_layout import BOOTSTRAP_LOG
from ec2dbn.stack import lifecycle, state

if TYPE_CHECKING:
    from ec2dbn.run.validate import Validated

COMING, READY, BUSY, GONE = "coming", "ready", "busy", "gone"

#: Asked (under the pool's lock) when an instance of a group is gone or a replacement request came back
#: empty: None when one replacement may be requested (the policy has counted it against the group's
#: recovery budget), else why not ("max_recoveries (2) spent", "--max-cost would be exceeded", ...).
#: It must not call the pool.
ReplacementPolicy = Callable[[], "str | None"]


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


@dataclass
class _Group:
    """One hardware group: its instances' states, its free slots, replacements asked and not answered."""

    policy: ReplacementPolicy | None = None
    states: dict[str, str] = field(default_factory=dict)  # instance id -> coming | ready | busy | gone
    free: list[Slot] = field(default_factory=list)
    requested: int = 0  # replacements asked of EC2, not answered yet: coming, without an id so far
    refused: str | None = None  # why the group can have no more instances (None: it still may)

    def live(self) -> bool:
        return self.requested > 0 or any(s != GONE for s in self.states.values())


class SlotPool:
    """Every hardware group's capacity (see the module doc): free slots, instance states, replacements."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._groups: dict[int, _Group] = {}
        self._waiting_first = 0  # points that lost their instance wait ahead of new ones
        self._closed: str | None = None
        #: slot name -> time.monotonic() of its last give_back: when its point let it go
        self.released_at: dict[str, float] = {}

    def _group(self, group: int) -> _Group:
        return self._groups.setdefault(group, _Group())

    # -- the state machine ---------------------------------------------------------------------------

    def govern(self, group: int, policy: ReplacementPolicy) -> None:
        """`policy` decides whether an instance of `group` that is gone gets a replacement."""
        with self._cond:
            self._group(group).policy = policy

    def coming(self, group: int, instance_id: str) -> None:
        """An instance of `group` was launched: it is coming (being made ready)."""
        with self._cond:
            self._group(group).states.setdefault(instance_id, COMING)
            self._cond.notify_all()

    def add(self, instance_id: str | None, slots: Iterable[Slot], group: int = 0) -> None:
        """An instance is ready: its slots are free. (`instance_id` None: local slots, never gone.)
        An instance already gone stays gone."""
        with self._cond:
            g = self._group(group)
            iid = instance_id or f"local-{group}"
            if g.states.get(iid) == GONE:
                return
            g.states[iid] = READY
            g.free.extend(slots)
            self._cond.notify_all()

    def gone(self, instance_id: str) -> bool:
        """ONE step: the instance is gone (its free slots with it, those in use never come back) and,
        when the group's policy allows, one replacement is requested. True: the caller must launch it,
        then report with `answered`. False: no replacement (or the instance was already gone)."""
        with self._cond:
            for g in self._groups.values():
                if g.states.get(instance_id, GONE) != GONE:
                    g.states[instance_id] = GONE
                    g.free = [s for s in g.free if s.instance_id != instance_id]
                    asked = self._ask(g)
                    self._cond.notify_all()
                    return asked
            return False

    def answered(self, group: int, launched: Iterable[str]) -> bool:
        """A replacement request came back with the instances in `launched` (coming from now on). None
        launched: the replacement is asked for again in the same step, if the policy allows (True: launch
        again)."""
        with self._cond:
            g = self._group(group)
            got = list(launched)
            for iid in got:
                g.states.setdefault(iid, COMING)
            g.requested = max(0, g.requested - 1)
            asked = self._ask(g) if not got else False
            self._cond.notify_all()
            return asked

    def give_up(self, group: int, reason: str) -> None:
        """Nothing will ever come for `group` (EC2 gave its fleet nothing, or it has no points)."""
        with self._cond:
            g = self._group(group)
            g.refused = g.refused or reason
            self._cond.notify_all()

    def _ask(self, g: _Group) -> bool:
        refused = g.policy() if g.policy is not None else "no replacement policy"
        if refused is None:
            g.requested += 1
            return True
        g.refused = refused
        return False

    def exhausted(self, group: int) -> bool:
        with self._cond:
            return self._exhausted(self._group(group))

    @staticmethod
    def _exhausted(g: _Group) -> bool:
        """THE rule, stated once: a group is exhausted when nothing of it is coming, ready or busy (no
        replacement on its way either) AND it may have no more (its last replacement was refused: the
        recovery budget or --max-cost spent, the deadline past — or its fleet got nothing)."""
        return not g.live() and g.refused is not None

    def state_of(self, group: int) -> dict[str, str]:
        """Instance id -> coming | ready | busy | gone (a copy, for records and tests)."""
        with self._cond:
            return dict(self._group(group).states)

    # -- slots ---------------------------------------------------------------------------------------

    def give_back(self, slot: Slot) -> None:
        with self._cond:
            self.released_at[slot.name] = time.monotonic()
            g = self._group(slot.group)
            iid = slot.instance_id or f"local-{slot.group}"
            if g.states.get(iid, READY) != GONE:
                g.free.append(slot)
                g.states[iid] = READY
                self._cond.notify_all()

    def close(self, reason: str) -> None:
        """No more slots for anyone (the sweep is stopping): every waiter gets NoSlotError."""
        with self._cond:
            self._closed = self._closed or reason
            self._cond.notify_all()

    def take(self, group: int = 0, *, first: bool = False, timeout_s: float | None = None) -> Slot | None:
        """A free slot of `group`, waiting for one; None after `timeout_s`. `first`: a point that lost
        its instance, served before points not started yet. Raises NoSlotError once closed or when the
        group is exhausted."""
        with self._cond:
            if first:
                self._waiting_first += 1
            try:
                ready = self._cond.wait_for(lambda: self._ready(group, first), timeout=timeout_s)
                return self._pop(self._group(group)) if ready else None
            finally:
                if first:
                    self._waiting_first -= 1

    @staticmethod
    def _pop(g: _Group) -> Slot:
        slot = g.free.pop(0)
        iid = slot.instance_id or f"local-{slot.group}"
        if not any((s.instance_id or f"local-{s.group}") == iid for s in g.free):
            g.states[iid] = BUSY
        return slot

    def _ready(self, group: int, first: bool) -> bool:
        g = self._group(group)
        if self._closed is not None:
            raise NoSlotError(f"no slot: the sweep is stopping ({self._closed})")
        if self._exhausted(g):
            raise NoSlotError(
                f"no slot: every instance of this hardware is gone and none can replace them ({g.refused})"
            )
        return bool(g.free) and (first or self._waiting_first == 0)


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
    stores_runs = False  # a fleet's instances carry no instance profile: a sweep's points are not stored

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
        *,
        instance_profile: str | None = None,
    ) -> lifecycle.Up:
        if self.slot is None:
            self.slot = self.source.pool.take(self.group, first=True)
        slot = self.slot
        assert slot is not None
        st = self.source.slot_state(slot)
        on_launched(st)
        log = self.source.bootstrap_log(slot)
        if log is not None and log.is_file():
            shutil.copyfile(log, self.results_dir / BOOTSTRAP_LOG)
        env = {"CUDA_VISIBLE_DEVICES": str(slot.gpu)} if slot.gpu is not None else {}
        return lifecycle.Up(state=st, reused=True, bootstrapped=True, env=env)

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
