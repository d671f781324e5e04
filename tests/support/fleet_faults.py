"""EC2 Fleet answers moto never gives: short capacity, as EC2 reports it.

An instant fleet that cannot fill every pool still answers 200: the instances it launched, and one
`Errors` entry per pool that failed (its overrides, lifecycle, code and message). moto always fills the
request, so `short_fleets` hooks ec2dbn's own clients (tests/support/moto_server.add_hook): before the
request is built it lowers the target capacity to what "EC2 has", so moto really launches only that
many, and after the call it adds the per-pool errors to the parsed answer, as EC2 would.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from tests.support.moto_server import add_hook


@dataclass
class Shortage:
    """How many instances of each market EC2 has left in total (None: plenty), and what was asked."""

    spot: int | None = None
    on_demand: int | None = None
    code: str = "InsufficientInstanceCapacity"
    asked: list[tuple[str, int]] = field(default_factory=list)
    given: list[tuple[str, int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, market: str, asked: int) -> int:
        with self._lock:
            left = self.spot if market == "spot" else self.on_demand
            give = asked if left is None else min(asked, left)
            if market == "spot" and self.spot is not None:
                self.spot -= give
            if market == "on-demand" and self.on_demand is not None:
                self.on_demand -= give
            self.asked.append((market, asked))
            self.given.append((market, give))
            return give


def short_fleets(
    spot: int | None = None, on_demand: int | None = None, code: str = "InsufficientInstanceCapacity"
) -> Shortage:
    """From now on, CreateFleet launches at most `spot` spot and `on_demand` on-demand instances in all
    (None: as many as asked), and reports each pool it could not fill with `code`."""
    shortage = Shortage(spot, on_demand, code)
    key = f"ec2dbn-test-fleet-{id(shortage)}"

    def before(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        target = params["TargetCapacitySpecification"]
        market = target.get("DefaultTargetCapacityType", "on-demand")
        asked = int(target["TotalTargetCapacity"])
        give = shortage.take(market, asked)
        field_name = "SpotTargetCapacity" if market == "spot" else "OnDemandTargetCapacity"
        target["TotalTargetCapacity"] = give
        target[field_name] = give
        context[key] = (market, asked, give, params["LaunchTemplateConfigs"][0])

    def after(parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if key not in context:
            return
        market, asked, give, config = context[key]
        if give >= asked:
            return
        parsed["Errors"] = [
            {
                "LaunchTemplateAndOverrides": {
                    "LaunchTemplateSpecification": config["LaunchTemplateSpecification"],
                    "Overrides": {k: o[k] for k in ("InstanceType", "AvailabilityZone") if k in o},
                },
                "Lifecycle": market,
                "ErrorCode": shortage.code,
                "ErrorMessage": f"There is no {market} capacity for the requested pool (injected).",
            }
            for o in config["Overrides"]
        ]

    add_hook("before-parameter-build.ec2.CreateFleet", before)
    add_hook("after-call.ec2.CreateFleet", after)
    return shortage
