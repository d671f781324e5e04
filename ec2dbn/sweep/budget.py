"""`--max-cost USD`: what a sweep has committed to spend, and whether one more point (or instance) fits.

Committed spend = max(actual, floor + admitted):
- actual: the fleet's instances so far (per-second billing, EC2's one-minute minimum per instance);
- floor: every instance launched, billed for at least that minute the moment it exists;
- admitted: the estimate of every point started so far — its epochs × the s/epoch guess `train` uses for
  its estimate (ec2dbn.spec.cost) × its share of the instance's price.

The sweep starts a point only while committed + the point's estimate stays within the limit, launches a
replacement instance only while its minute fits, and once the actual spend itself reaches the limit it
stops the points still running the way Ctrl-C does (a checkpoint each; `--resume` continues them).
Estimates are fixed when a point starts, so which points fit does not depend on how fast they run.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ec2dbn.spec import catalog, cost


def point_estimate_usd(job: Any, instance_type: str, usd_per_hour: float, slots: int) -> float:
    """A point's expected share of its instance: epochs × guessed s/epoch × price ÷ slots per instance."""
    seconds = cost.job_epochs(job) * cost.guess_seconds_per_epoch(catalog.lookup(instance_type))
    return seconds * usd_per_hour / 3600.0 / max(1, slots)


def instance_floor_usd(usd_per_hour: float) -> float:
    """What an instance costs the moment it exists: EC2's minimum billed minute."""
    return cost.MINIMUM_BILLED_S * usd_per_hour / 3600.0


@dataclass
class Budget:
    """The sweep's spending limit (None: no limit) and what is committed against it. Thread-safe."""

    max_cost_usd: float | None
    floor_usd: float = 0.0
    admitted_usd: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def committed(self, actual_usd: float) -> float:
        return max(actual_usd, self.floor_usd + self.admitted_usd)

    def _fits(self, actual_usd: float, extra_usd: float) -> bool:
        return self.max_cost_usd is None or self.committed(actual_usd) + extra_usd <= self.max_cost_usd

    def add_instance(self, usd_per_hour: float) -> None:
        """An instance exists now: its minimum is spent, whether it was admitted or not."""
        with self._lock:
            self.floor_usd += instance_floor_usd(usd_per_hour)

    def instance_fits(self, actual_usd: float, usd_per_hour: float) -> bool:
        """May one more instance be launched (a replacement)? (`add_instance` counts it once it exists.)"""
        with self._lock:
            return self._fits(actual_usd, instance_floor_usd(usd_per_hour))

    def admit_point(self, actual_usd: float, estimate_usd: float) -> bool:
        """May one more point start? Counts its estimate when it may."""
        with self._lock:
            if not self._fits(actual_usd, estimate_usd):
                return False
            self.admitted_usd += estimate_usd
            return True

    def exhausted(self, actual_usd: float) -> bool:
        """The actual spend has reached the limit: stop what runs."""
        return self.max_cost_usd is not None and actual_usd >= self.max_cost_usd
