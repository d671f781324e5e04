"""`results/<sweep-id>/sweep.json`: what the sweep is, and where each of its points stands.

The folder holds sweep.json, job.yaml (the job without its `sweep:` section, what every point starts
from), one folder per point exactly as `ec2dbn train` writes a run's (`results/<sweep-id>/<point-id>/`),
then summary.md and the plot. sweep.json is rewritten atomically as points move, so a sweep stopped any
way (Ctrl-C, a crash, a closed terminal) leaves a readable record that `ec2dbn sweep --resume` continues.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ec2dbn.errors import ConfigError
from ec2dbn.results_layout import SWEEP_FILE
from ec2dbn.run.results import claim_dir
from trainer.strict_json import write_json

#: Point states that `--resume` leaves alone: the point has its answer (a diverged one would diverge again).
DONE_STATES = ("finished", "diverged")


def new_sweep_id(now: datetime | None = None) -> str:
    """`sweep-<UTC timestamp>-<4 hex>`: sortable, and also a valid stack name prefix (it names the
    fleet's resources, `<sweep-id>-<n>`)."""
    now = now or datetime.now(timezone.utc)
    return f"sweep-{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def claim_sweep_dir(results_root: Path) -> tuple[str, Path]:
    """A new sweep id and its folder, created exclusively (never shared with another sweep)."""
    return claim_dir(results_root, new_sweep_id)


@dataclass
class PointEntry:
    """One point in sweep.json. status: pending | running | finished | failed | diverged | interrupted
    | torn-down | skipped (never started: the sweep stopped first). A resumed point's times are its last
    run's."""

    point_id: str
    values: dict[str, Any]
    group: int = 0
    status: str = "pending"
    slot: str | None = None
    instance_id: str | None = None
    error: str | None = None
    started_s: float | None = None  # seconds after the sweep started: when it took its slot
    ended_s: float | None = None  # ... and when it gave the slot back (else when its run ended)


@dataclass
class SweepRecord:
    """The contents of sweep.json. USD for money, seconds for durations, ISO-8601 UTC for instants."""

    sweep_id: str
    job: str
    mode: str  # "ec2" or "local"
    keys: list[str]
    points: list[PointEntry]
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    finished_at: str | None = None
    status: str = "running"  # running | finished | failed | interrupted | stopped (max-cost, no capacity)
    exit_code: int | None = None
    stop_reason: str | None = None
    stack_ref: str | None = None
    region: str | None = None  # --region and --spot/--on-demand as given (None: the stack's), for --resume
    spot: bool | None = None
    max_cost_usd: float | None = None
    cost_usd: float | None = None
    elapsed_s: float | None = None
    capacity_s: float | None = None  # seconds from the start until every fleet was torn down
    parallel: int | None = None
    groups: list[dict[str, Any]] = field(default_factory=list)

    def save(self, sweep_dir: Path) -> Path:
        return write_json(sweep_dir / SWEEP_FILE, asdict(self))

    @classmethod
    def load(cls, sweep_dir: Path) -> SweepRecord:
        """The sweep in `sweep_dir`; ConfigError when there is none or it is unreadable."""
        try:
            data = json.loads((sweep_dir / SWEEP_FILE).read_text(encoding="utf-8"))
            data["points"] = [PointEntry(**p) for p in data["points"]]
            return cls(**data)
        except FileNotFoundError:
            raise ConfigError(f"no sweep in {sweep_dir} (no {SWEEP_FILE})") from None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"{sweep_dir / SWEEP_FILE} is unreadable ({exc})") from None

    def point(self, point_id: str) -> PointEntry:
        for p in self.points:
            if p.point_id == point_id:
                return p
        known = ", ".join(p.point_id for p in self.points)
        raise ConfigError(f"sweep {self.sweep_id} has no point {point_id} (it has {known})")

    def unfinished(self) -> list[PointEntry]:
        """The points `--resume` runs: all but those with their answer (finished, diverged)."""
        return [p for p in self.points if p.status not in DONE_STATES]

    def finish(self, exit_code: int, status: str, reason: str | None = None) -> None:
        self.exit_code, self.status, self.stop_reason = exit_code, status, reason
        self.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
