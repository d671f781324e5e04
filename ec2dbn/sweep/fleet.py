"""A sweep's capacity on EC2: one fleet per kind of hardware, its instances made ready, replacements.

Each hardware group (the points that share a stack and instance type) becomes a stack of its own, named
`<sweep-id>-<n>`: a key pair, a /32 security group, a launch template and ONE instant EC2 Fleet
(ec2dbn.aws.fleet_launch), all tagged with the stack and `ec2dbn:sweep=<sweep-id>`, so `ec2dbn status`
and `ec2dbn teardown --all` see them like any stack. One SSH host key is generated per group and
pinned for every instance of it (a launch template's user-data is shared; see ec2dbn.aws.templates).

Every instance is made ready once, in its own thread: running, reachable over SSH with the pinned key,
bootstrapped. Only then do its slots go to the pool. An instance that is lost in any phase (reclaimed,
gone before it ran, terminated before SSH answered or while it bootstrapped, lost under a point) is gone
for the pool, and in the same step (ec2dbn.sweep.slots.SlotPool.gone) this group's `_may_replace` decides
whether a replacement comes: while points of the group remain, the deadline is ahead and --max-cost allows
one more instance, from another instant fleet over the same launch template, up to the stack's
`max_recoveries` per group. Whether an instance is gone is what EC2 says (describe_instances), asked by
every wait for it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ec2dbn import aws
from ec2dbn.aws import InstanceRecord
from ec2dbn.aws.tags import SWEEP_TAG
from ec2dbn.errors import Ec2dbnError
from ec2dbn.events import Reporter
from ec2dbn.results_layout import instance_bootstrap_log
from ec2dbn.spec import catalog, cost
from ec2dbn.spec.stack import Stack
from ec2dbn.stack import lifecycle, state
from ec2dbn.stack.ready import make_ready
from ec2dbn.sweep.budget import Budget
from ec2dbn.sweep.slots import Slot, SlotPool


def slots_of(instance_type: str) -> int:
    """Slots an instance gives: one per GPU, or one on a CPU type."""
    return max(1, catalog.lookup(instance_type).gpu_count or 0)


@dataclass
class Member:
    """The group's account of one instance: the instance as EC2 last said (the one InstanceRecord: as
    CreateFleet answered, then as it runs), its price (USD/h), when it lived, and where it stands."""

    instance: InstanceRecord
    price: catalog.Price
    launched_at: datetime
    slots: int
    status: str = "starting"  # starting | ready | lost | failed
    ended_at: datetime | None = None
    reason: str | None = None


class FleetGroup:
    """One hardware group's capacity, feeding `pool` with slots as its instances become ready."""

    def __init__(
        self,
        index: int,
        stack: Stack,
        sweep_id: str,
        sweep_dir: Path,
        pool: SlotPool,
        budget: Budget,
        reporter: Reporter,
        work_left: Callable[[int], bool],
        requirements: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.index = index
        self.requirements = tuple(requirements)  # what the points' data sets need: installed at bootstrap
        self.stack = stack
        self.sweep_id = sweep_id
        self.sweep_dir = sweep_dir
        self.pool = pool
        self.budget = budget
        self.reporter = reporter
        self.work_left = work_left
        self.members: dict[str, Member] = {}
        self.fleet_ids: list[str] = []
        self.template_id: str | None = None
        self.replacements = 0
        self.asked = 0
        self.errors: list[str] = []
        self._plan: aws.Plan | None = None
        self._base: state.StackState | None = None
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._prices: dict[tuple[str, str, str | None], catalog.Price] = {}
        pool.govern(index, self._may_replace)

    @property
    def name(self) -> str:
        return self.stack.name

    # -- launching -------------------------------------------------------------------------------

    def plan(self, reporter: Reporter | None = None) -> aws.Plan:
        """What the fleet would be (offerings, image, prices). Creates nothing."""
        if self._plan is None:
            self._plan = lifecycle.plan_stack(self.stack, reporter)
        return self._plan

    def launch(self, count: int) -> int:
        """Key pair, security group, launch template and one instant fleet of up to `count` instances;
        returns how many EC2 gave (partial capacity is accepted). Raises the explained CloudError when
        it gave none."""
        p = self.plan(self.reporter)
        self.asked = count
        new = lifecycle.new_instances(self.stack, p, sweep=self.sweep_id)
        self._base = new.state
        state.save(self._base)  # first: whatever happens next, `teardown` knows the stack's region
        launched = aws.launch_fleet(
            p,
            count=count,
            user_data=new.user_data,
            instance_tags=new.instance_tags,
            sweep_tags={SWEEP_TAG: self.sweep_id},
            key_store=new.key_store,
            reporter=self.reporter,
        )
        self._base.security_group_id = launched.security_group.group_id
        self.template_id = launched.template.template_id
        state.save(self._base)
        self._add(launched.answers)
        got = len(launched.instances)
        if got < count:
            self.reporter.warn(
                f"{self.name}: EC2 gave {got} of {count} instance(s) (partial capacity): the sweep runs "
                f"its points on fewer slots ({aws.fleet_errors(launched.errors)})"
            )
        return got

    def _add(self, answers: list[aws.FleetAnswer]) -> None:
        for answer in answers:
            if answer.fleet_id:
                self.fleet_ids.append(answer.fleet_id)
            self.errors.extend(f"{e.market} {e.instance_type} {e.zone}: {e.outcome}" for e in answer.errors)
            for inst in answer.instances:
                self._track(inst)

    def _track(self, inst: InstanceRecord) -> None:
        """A new instance: priced, counted against the budget, made ready in its own thread."""
        pool = (inst.instance_type, inst.market, inst.availability_zone)
        if pool not in self._prices:  # one price look-up per pool, not per instance
            self._prices[pool] = aws.instance_prices(self.stack.region, *pool, None)[0]
        paid = self._prices[pool]
        member = Member(inst, paid, state.utc_now(), slots_of(inst.instance_type))
        with self._lock:
            self.members[inst.instance_id] = member
        self.budget.add_instance(paid.usd_per_hour)
        self.pool.coming(self.index, inst.instance_id)
        self.reporter.step(
            f"{self.name}: {inst.instance_id} ({inst.instance_type}, {inst.market}, "
            f"{inst.availability_zone or '?'}, {member.slots} slot(s))"
        )
        thread = threading.Thread(target=self._prepare, args=(member,), name=f"prepare-{inst.instance_id}")
        thread.daemon = True
        self._threads.append(thread)
        thread.start()

    def _prepare(self, member: Member) -> None:
        """Wait for the instance to run and answer SSH with the pinned key, bootstrap it, free its slots."""
        iid = member.instance.instance_id
        try:
            running = aws.wait_running(self.stack.region, iid)
            member.instance = replace(
                member.instance,
                public_ip=running.public_ip,
                public_dns=running.public_dns,
                image_id=running.image_id,
                state=running.state,
            )
            st = self.instance_state(iid)
            self._pin()
            ready = make_ready(
                st,
                self.stack.bootstrap,
                self._log(iid),
                requirements=self.requirements,
                still_there=lambda: self._alive(iid),
            )
            ready.remote.close()
        except Exception as exc:  # any way an instance fails to become usable: it is not used
            replacing = self._drop(iid, "failed", str(exc) if isinstance(exc, Ec2dbnError) else repr(exc))
            with contextlib.suppress(Ec2dbnError):
                aws.terminate(self.stack.region, [iid])
            if replacing:
                self._replace()
            return
        with self._lock:
            if member.status != "starting":
                return
            member.status = "ready"
        self.reporter.step(f"{self.name}: {iid} is ready ({member.slots} slot(s))")
        gpus = catalog.lookup(member.instance.instance_type).gpu_count or 0
        slots = [
            Slot(f"{iid}/{k}" if member.slots > 1 else iid, self.index, iid, k if gpus else None)
            for k in range(member.slots)
        ]
        self.pool.add(iid, slots, self.index)

    def _alive(self, iid: str) -> bool:
        try:
            inst = aws.describe_instance(self.stack.region, iid)
        except Ec2dbnError:
            return True  # EC2 cannot be asked: keep trying until the SSH timeout
        return inst is not None and inst.state in aws.REUSABLE_STATES

    def _log(self, iid: str) -> Path:
        return instance_bootstrap_log(self.sweep_dir, iid)

    def _pin(self) -> None:
        """Pin the group's host key for every address its instances are reached by."""
        if self._base is None:
            return
        with self._lock:
            members = list(self.members)
        lifecycle.pin_host_key([self.instance_state(iid) for iid in members])

    # -- slots -----------------------------------------------------------------------------------

    def instance_state(self, iid: str) -> state.StackState:
        """The group's state for one instance: what connecting to it needs."""
        assert self._base is not None
        m = self.members[iid]
        return self._base.model_copy(
            update={
                "instance_id": iid,
                "instance_type": m.instance.instance_type,
                "market": m.instance.market,
                "availability_zone": m.instance.availability_zone,
                "public_ip": m.instance.public_ip,
                "public_dns": m.instance.public_dns,
                "image_id": m.instance.image_id,
                "launched_at": state.iso(m.launched_at),
            }
        )

    def slot_state(self, slot: Slot) -> state.StackState:
        """A point's view of its slot: the instance, from now, at its share of the instance's price."""
        assert slot.instance_id is not None
        m = self.members[slot.instance_id]
        share = replace(
            m.price,
            usd_per_hour=m.price.usd_per_hour / m.slots,
            source=f"{m.price.source}, 1/{m.slots} of the instance" if m.slots > 1 else m.price.source,
            market=m.instance.market,
        )
        st = self.instance_state(slot.instance_id)
        st.launched_at, st.price = state.iso(state.utc_now()), share
        return st

    def bootstrap_log(self, slot: Slot) -> Path | None:
        return self._log(slot.instance_id) if slot.instance_id else None

    def instance_lost(self, instance_id: str, reason: str) -> None:
        if self._drop(instance_id, "lost", reason):
            self._replace()

    def _drop(self, iid: str, status: str, reason: str) -> bool:
        """The instance is gone (status "lost" or "failed"): recorded here, and gone for the pool in the
        same step as its replacement is asked for. True: a replacement was asked; launch it."""
        with self._lock:
            m = self.members.get(iid)
            if m is None or m.status in ("lost", "failed"):
                return False
            m.status, m.reason, m.ended_at = status, reason, state.utc_now()
        if status == "failed":
            self.reporter.warn(f"{self.name}: {iid} did not become usable ({reason})")
        else:
            self.reporter.warn(f"{self.name}: lost {iid} ({reason})")
        return self.pool.gone(iid)

    def _may_replace(self) -> str | None:
        """The group's replacement policy (asked by the pool under its lock, see SlotPool.gone): None
        when one more instance may be launched, counted here; else why not. Calls nothing of the pool."""
        why: str | None = None
        if self.template_id is None or self._base is None:
            why = "the group's fleet was never launched"
        elif not self.work_left(self.index):
            why = "no point of the group is left"
        elif self._base.deadline and state.parse_iso(self._base.deadline) <= state.utc_now():
            why = "past the fleet's max_lifetime"
        elif self.replacements >= self.stack.max_recoveries:
            why = f"max_recoveries ({self.stack.max_recoveries}) spent"
        elif not self.budget.instance_fits(self.actual_usd(), self.plan().hourly.usd_per_hour):
            why = "--max-cost would be exceeded"
        if why is not None:
            self.reporter.warn(f"{self.name}: no replacement: {why}")
            return why
        with self._lock:
            self.replacements += 1
        return None

    def _replace(self) -> None:
        """Launch the replacement the pool asked for (one instance from another instant fleet over the
        group's launch template); while EC2 gives none, the pool asks again as the policy allows."""
        again = True
        while again:
            launched: list[str] = []
            try:
                answers = aws.request_capacity(
                    self.plan(), str(self.template_id), 1, {SWEEP_TAG: self.sweep_id}, self.reporter
                )
                self._add(answers)  # each instance it got is coming (`_track`)
                launched = [i.instance_id for a in answers for i in a.instances]
                if not launched:
                    self.reporter.warn(f"{self.name}: no replacement instance could be launched")
            except Exception as exc:  # any way the request fails: the pool must hear its answer
                what = str(exc) if isinstance(exc, Ec2dbnError) else repr(exc)
                self.reporter.warn(f"{self.name}: the replacement fleet failed: {what}")
            again = self.pool.answered(self.index, launched)

    # -- the bill and the end ----------------------------------------------------------------------

    def segments(self) -> list[cost.InstanceSegment]:
        with self._lock:
            members = list(self.members.values())
        return [
            cost.InstanceSegment(
                m.instance.instance_id,
                m.instance.instance_type,
                m.instance.market,
                m.price.usd_per_hour,
                m.launched_at,
                m.ended_at,
            )
            for m in members
        ]

    def actual_usd(self) -> float:
        return cost.actual_cost(self.segments()).total_usd

    def ended(self) -> None:
        """Everything was torn down: the instances' bills stop now."""
        now = state.utc_now()
        with self._lock:
            for m in self.members.values():
                m.ended_at = m.ended_at or now

    def to_dict(self) -> dict[str, Any]:
        """The group as sweep.json records it."""
        with self._lock:
            members = list(self.members.values())
        return {
            "stack": self.name,
            "region": self.stack.region,
            "instance_types": self.stack.candidates,
            "market": self.stack.market,
            "instances_asked": self.asked,
            "replacements": self.replacements,
            "fleet_ids": list(self.fleet_ids),
            "launch_template_id": self.template_id,
            "errors": list(self.errors),
            "instances": [
                {
                    "instance_id": m.instance.instance_id,
                    "instance_type": m.instance.instance_type,
                    "market": m.instance.market,
                    "availability_zone": m.instance.availability_zone,
                    "slots": m.slots,
                    "usd_per_hour": m.price.usd_per_hour,
                    "price_source": m.price.source,
                    "status": m.status,
                    "reason": m.reason,
                    "launched_at": state.iso(m.launched_at),
                    "ended_at": state.iso(m.ended_at) if m.ended_at else None,
                }
                for m in members
            ],
        }
