"""Where a run's instance comes from: the strategy the pipeline asks for capacity.

`ec2dbn train` runs on a stack of its own: the pipeline leases the stack, launches (or reuses) its
instance, tears it down when a recovery needs a new one and when the run ends. A sweep point runs on a
slot of a fleet the sweep owns: the instance is given, the point never tears the fleet down, and losing the
instance hands the point back to the sweep's scheduler. The pipeline only talks to a `Capacity`:

    plan(...)       the plan phase: take what the run needs (a lease), say what it will cost
    acquire(...)    the provision phase: an instance that runs, its host key pinned
    lost(...)       a recovery: the instance the run had is gone; clear up after it
    release(...)    the end (the pipeline's one `finally`): tear down, or hand back

`StackCapacity` is today's behaviour of `train`, `train --resume`, `bench --stack`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

from ec2dbn.events import Reporter
from ec2dbn.run.plan import Planned, plan_stack
from ec2dbn.spec import cost
from ec2dbn.stack import lifecycle, state
from ec2dbn.stack.lease import LocalLease

if TYPE_CHECKING:
    from ec2dbn.run.validate import Validated


class Capacity(Protocol):
    """What the pipeline needs from wherever its instance comes from."""

    #: EC2's minimum billed seconds per instance segment (0 for a share of an instance billed elsewhere).
    minimum_billed_s: float
    #: The bake (ec2dbn:bake hash) the planned instance boots from, once `plan` ran; None: a base image.
    bake: str | None
    #: Whether its instances can carry a run store's instance profile (a stack's own: yes; a fleet's: no).
    stores_runs: bool

    def plan(self, v: Validated, reporter: Reporter, run_id: str) -> None:
        """The plan phase: take what the run needs and report what it will cost. Creates nothing."""

    def acquire(
        self,
        reporter: Reporter,
        avoid_zones: Iterable[str],
        on_launched: Callable[[state.StackState], None],
        *,
        instance_profile: str | None = None,
    ) -> lifecycle.Up:
        """An instance that runs, with its host key pinned. `on_launched` is told as soon as it exists.
        instance_profile: what a new instance is launched with (only where `stores_runs`)."""

    def lost(self, reporter: Reporter, reason: str) -> None:
        """The run's instance is gone (a recovery follows): clear up after it."""

    def release(self, reporter: Reporter, st: state.StackState | None, *, keep: bool, run_id: str) -> None:
        """The run ends (any way out): tear down what `acquire` gave, or hand it back. Raises Ec2dbnError
        (or KeyboardInterrupt) when that fails; the pipeline then tells the user what may be left."""

    def close(self) -> None:
        """Always last: drop what `plan` took (a lease). Never raises."""


class StackCapacity:
    """A stack of the run's own: leased to it, launched or reused, torn down at the end."""

    minimum_billed_s = cost.MINIMUM_BILLED_S
    stores_runs = True

    def __init__(self, v: Validated) -> None:
        self.v = v
        self.stack = v.stack
        self._lease: LocalLease | None = None
        #: what `plan` found: the instance to reuse or the plan of a new one (None once `acquire` took it)
        self.planned: Planned | None = None
        self.bake: str | None = None
        self._run_id: str | None = None

    def plan(self, v: Validated, reporter: Reporter, run_id: str) -> None:
        self._run_id = run_id
        self._lease = LocalLease(self.stack.name, run_id).acquire()
        self.planned, estimate = plan_stack(v, reporter, run_id)
        if self.planned.plan is not None:
            self.bake = self.planned.plan.image.bake_hash
        candidates = ", ".join(self.stack.candidates)
        reporter.step(f"stack {self.stack.name}: {candidates} ({self.stack.market}) in {self.stack.region}")
        reporter.step(estimate)

    def acquire(
        self,
        reporter: Reporter,
        avoid_zones: Iterable[str],
        on_launched: Callable[[state.StackState], None],
        *,
        instance_profile: str | None = None,
    ) -> lifecycle.Up:
        planned, self.planned = self.planned, None  # a recovery plans afresh (other zones, prices)
        return lifecycle.bring_up(
            self.stack,
            plan=planned.plan if planned else None,
            existing=planned.existing if planned else None,
            run_id=self._run_id,
            reporter=reporter,
            avoid_zones=avoid_zones,
            stack_source=self.v.stack_ref or "",
            on_launched=on_launched,
            instance_profile=instance_profile,
        )

    def lost(self, reporter: Reporter, reason: str) -> None:
        lifecycle.tear_down(self.stack.name, self.stack.region, reporter=reporter)

    def release(self, reporter: Reporter, st: state.StackState | None, *, keep: bool, run_id: str) -> None:
        if keep:
            if st is None:
                return
            lifecycle.release(st, run_id)
            reporter.step(
                f"--keep: {st.instance_id} is still running; `ec2dbn teardown {self.stack.name}` removes it"
            )
            return
        report = lifecycle.tear_down(self.stack.name, self.stack.region, reporter=reporter)
        reporter.step(f"teardown: {report.remaining} ec2dbn-tagged remains for {self.stack.name}")

    def close(self) -> None:
        if self._lease is not None:
            self._lease.release()
