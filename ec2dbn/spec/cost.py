"""Cost: estimates before a run, and the actual bill after it.

Prices are USD per hour; durations are seconds. Pure arithmetic: live spot prices come from
`ec2dbn.aws.prices`, list prices from the bundled catalog.

The actual cost of a run is the sum over its instance segments (one per instance it ran on: the first
launch plus one per spot recovery) of billed seconds × price / 3600. EC2 bills Linux instances per
second with a one-minute minimum per instance, so a segment shorter than a minute is billed as one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ec2dbn.errors import ConfigError
from ec2dbn.spec.catalog import InstanceType, Price

#: EC2's minimum billed duration per instance (Linux, per-second billing).
MINIMUM_BILLED_S = 60.0

# A rough, clearly labelled guess of fine-tuning + pre-training seconds per epoch for the seed's
# 784-800-800-10 DBN on ~47k MNIST images with the CuPy backend, by GPU model. Replace it with a measured
# figure (`ec2dbn bench`, or a previous run's metrics) through `seconds_per_epoch=`. H100 is measured
# (2026-11-26: 0.07 s/epoch with the CUDA-graph step, plus the per-epoch test score); the other rows
# predate that step and are likely several times too high, which errs on the side of a higher estimate.
GUESS_S_PER_EPOCH_BY_GPU: dict[str, float] = {
    "NVIDIA T4": 2.0,
    "NVIDIA Tesla M60": 4.0,
    "NVIDIA A10G": 1.2,
    "NVIDIA L4": 1.3,
    "NVIDIA L40S": 0.8,
    "NVIDIA V100": 1.0,
    "NVIDIA A100": 0.7,
    "NVIDIA H100": 0.1,
}
#: The same guess for the NumPy backend on one vCPU; divided by vCPUs**0.8 (BLAS scales sub-linearly).
GUESS_CPU_S_PER_EPOCH_ONE_VCPU = 40.0
#: Launch, boot, bootstrap, shipping and pulling results: billed time outside the training loop.
GUESS_OVERHEAD_S = 300.0


# --------------------------------------------------------------------------------------------------
# Estimates


def estimate(price: Price, seconds: float) -> float:
    """USD for `seconds` of one instance at `price` (no minimum applied: this is a rate × time)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"a duration must be a non-negative number of seconds, got {seconds!r}")
    return price.usd_per_hour * seconds / 3600.0


@dataclass(frozen=True)
class JobEstimate:
    """What a run is expected to cost: `seconds` of instance time at `price` → `usd`.

    `basis` says in words how the duration was obtained, so it can be printed next to the figure.
    """

    usd: float
    seconds: float
    price: Price
    epochs: int
    seconds_per_epoch: float
    overhead_s: float
    basis: str

    def describe(self) -> str:
        """One line for `train`/`plan` output, e.g. 'estimated cost ~$0.0365 (...)'."""
        return (
            f"estimated cost ~{format_usd(self.usd)}: {self.epochs} epoch{'' if self.epochs == 1 else 's'} "
            f"× {self.seconds_per_epoch:g} s"
            f" + {self.overhead_s:g} s overhead at {format_usd(self.price.usd_per_hour)}/h"
            f" {self.price.market} ({self.basis}; price: {self.price.source})"
        )


def guess_seconds_per_epoch(instance: InstanceType) -> float:
    """A labelled guess of s/epoch for the seed's DBN on this instance (GPU model, or vCPU count)."""
    if instance.gpu_model:
        return GUESS_S_PER_EPOCH_BY_GPU.get(instance.gpu_model, GUESS_S_PER_EPOCH_BY_GPU["NVIDIA T4"])
    return round(GUESS_CPU_S_PER_EPOCH_ONE_VCPU / max(1, instance.vcpus) ** 0.8, 1)


def estimate_job(
    instance: InstanceType,
    price: Price,
    epochs: int,
    seconds_per_epoch: float | None = None,
    overhead_s: float = GUESS_OVERHEAD_S,
) -> JobEstimate:
    """Expected cost of training `epochs` epochs on `instance` at `price`.

    Duration = epochs × seconds_per_epoch + overhead_s (launch, bootstrap, shipping, pulling). Without
    `seconds_per_epoch` a per-GPU-model guess is used and `basis` says so; pass a measured value
    (from `ec2dbn bench` or an earlier run) for a better figure.
    """
    if int(epochs) != epochs or epochs < 0:
        raise ConfigError(f"epochs must be a non-negative whole number, got {epochs!r}")
    if seconds_per_epoch is None:
        spe = guess_seconds_per_epoch(instance)
        what = instance.gpu_model or f"{instance.vcpus} vCPUs"
        basis = f"guess for the seed's 784-800-800-10 DBN on {what}"
    else:
        spe = float(seconds_per_epoch)
        basis = "measured s/epoch"
    seconds = int(epochs) * spe + overhead_s
    return JobEstimate(
        usd=estimate(price, seconds),
        seconds=seconds,
        price=price,
        epochs=int(epochs),
        seconds_per_epoch=spe,
        overhead_s=float(overhead_s),
        basis=basis,
    )


# --------------------------------------------------------------------------------------------------
# Actual cost


def _utc(t: datetime) -> datetime:
    # Naive datetimes are taken as UTC (what state files store), so naive and aware ones can mix.
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t


@dataclass(frozen=True)
class InstanceSegment:
    """One instance's share of a run: from `started_at` (launch) to `ended_at` (termination).

    `ended_at` None means still running (costed up to `now`). `market` is "spot" or "on-demand";
    `usd_per_hour` is the price it ran at.
    """

    instance_id: str
    instance_type: str
    market: str
    usd_per_hour: float
    started_at: datetime
    ended_at: datetime | None = None


@dataclass(frozen=True)
class SegmentCost:
    segment: InstanceSegment
    seconds: float  # wall-clock seconds the instance ran
    billed_seconds: float  # after EC2's one-minute minimum
    usd: float


@dataclass(frozen=True)
class CostBreakdown:
    """The actual cost of a run: per segment and in total (USD, seconds)."""

    segments: tuple[SegmentCost, ...] = field(default_factory=tuple)

    @property
    def total_usd(self) -> float:
        return math.fsum(s.usd for s in self.segments)

    @property
    def total_seconds(self) -> float:
        return math.fsum(s.seconds for s in self.segments)

    @property
    def recoveries(self) -> int:
        """Instances launched after the first one (spot interruptions recovered from)."""
        return max(0, len(self.segments) - 1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for run.json."""
        return {
            "total_usd": round(self.total_usd, 6),
            "total_seconds": round(self.total_seconds, 3),
            "recoveries": self.recoveries,
            "segments": [
                {
                    "instance_id": s.segment.instance_id,
                    "instance_type": s.segment.instance_type,
                    "market": s.segment.market,
                    "usd_per_hour": s.segment.usd_per_hour,
                    "started_at": _utc(s.segment.started_at).isoformat(),
                    "ended_at": _utc(s.segment.ended_at).isoformat() if s.segment.ended_at else None,
                    "seconds": round(s.seconds, 3),
                    "billed_seconds": round(s.billed_seconds, 3),
                    "usd": round(s.usd, 6),
                }
                for s in self.segments
            ],
        }


def actual_cost(
    segments: Iterable[InstanceSegment],
    now: datetime | None = None,
    minimum_billed_s: float = MINIMUM_BILLED_S,
) -> CostBreakdown:
    """Σ billed seconds × price / 3600 over the run's instance segments.

    A segment still running (ended_at None) is costed up to `now` (default: the current UTC time).
    Raises ValueError for a segment that ends before it starts or has a negative price (a bug upstream).
    """
    end_default = _utc(now) if now else datetime.now(timezone.utc)
    out: list[SegmentCost] = []
    for seg in segments:
        start = _utc(seg.started_at)
        end = _utc(seg.ended_at) if seg.ended_at else end_default
        seconds = (end - start).total_seconds()
        if seconds < 0:
            raise ValueError(f"segment {seg.instance_id} ends before it starts ({start} > {end})")
        if seg.usd_per_hour < 0:
            raise ValueError(f"segment {seg.instance_id} has a negative price {seg.usd_per_hour}")
        billed = max(seconds, minimum_billed_s)
        out.append(SegmentCost(seg, seconds, billed, seg.usd_per_hour * billed / 3600.0))
    return CostBreakdown(tuple(out))


def format_usd(x: float) -> str:
    """Dollars for people: '$0.0123' under a dollar (cents would hide small runs), '$1,234.57' above."""
    if not math.isfinite(x):
        return f"${x}"
    sign = "-" if x < 0 else ""
    a = abs(x)
    if a == 0:
        return "$0.00"
    if a < 0.00005:
        return f"{sign}<$0.0001"
    if round(a, 4) < 1:
        return f"{sign}${a:.4f}"
    return f"{sign}${a:,.2f}"


# --------------------------------------------------------------------------------------------------
# A job on a stack


def job_epochs(job: Any) -> int:
    """All epochs a trainer job trains (fine-tuning plus each layer's pretraining), for estimates."""
    pretrain = job.model.epochs_pretrain
    pretrain_epochs = sum(pretrain) if isinstance(pretrain, (tuple, list)) else int(pretrain or 0)
    return int(job.model.epochs) + pretrain_epochs


UNKNOWN_PRICE = "price unknown"


def stack_estimate(
    stack: Any, epochs: int, price: Price | None = None, instance: InstanceType | None = None
) -> tuple[JobEstimate, str]:
    """The cost estimate before launch: the stack's first candidate (`instance`, default its catalog entry)
    at `price` (default: its on-demand list price, or the stack's spot max_price), and a note when that is
    an upper bound ("" otherwise). A type without a known price is priced at 0 from UNKNOWN_PRICE: its time
    estimate holds, its cost does not (`price_known` says which)."""
    from ec2dbn.spec import catalog

    itype = instance.name if instance is not None else stack.candidates[0]
    instance = instance or catalog.lookup(itype)
    bound = ""
    if price is None and catalog.bundled_price(itype, stack.region) is not None:
        price = catalog.on_demand_price(itype, stack.region)
        if stack.market == "spot":
            bound = " (an upper bound: spot usually costs less)"
            if stack.max_price is not None:
                price = Price(stack.max_price, "the stack's spot max_price", price.date, stack.region, "spot")
    if price is None:
        price = Price(0.0, UNKNOWN_PRICE, "", stack.region)
        bound = f" (no bundled price for {itype} in {stack.region})"
    return estimate_job(instance, price, epochs), bound


def price_known(estimate: JobEstimate) -> bool:
    return estimate.price.source != UNKNOWN_PRICE


def estimate_line(
    stack: Any, epochs: int, price: Price | None = None, instance: InstanceType | None = None
) -> str:
    """The cost estimate printed before launch (`stack_estimate` in one line)."""
    est, note = stack_estimate(stack, epochs, price, instance)
    if price_known(est):
        return f"{est.describe()}{note}"
    return (
        f"estimated time ~{est.seconds:g} s: {est.epochs} epoch{'' if est.epochs == 1 else 's'} × "
        f"{est.seconds_per_epoch:g} s + {est.overhead_s:g} s overhead ({est.basis}); "
        f"cost: price unknown{note}"
    )
