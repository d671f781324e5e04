"""Where a run's results live and how its record (run.json) is written.

Every `ec2dbn train`, local or on EC2, gets a run id and a folder `results/<run-id>/` holding what the
trainer produced plus `run.json`: where it ran, what it cost, and how long each phase took.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ec2dbn.errors import ConfigError
from ec2dbn.results_layout import RUN_FILE
from ec2dbn.untrusted_json import read_object
from trainer.contract import METRICS_JSON
from trainer.strict_json import dumps, write_json


def new_run_id(job_path: Path, now: datetime | None = None) -> str:
    """`<job stem>-<UTC timestamp>-<4 hex digits>`: sortable by time, readable, and distinct for runs of
    one job started in the same second (on this machine or another)."""
    now = now or datetime.now(timezone.utc)
    return f"{job_path.stem}-{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def load_run(results_root: Path, run_id: str) -> tuple[RunRecord, Path]:
    """Run `run_id`'s record and folder (`--resume`). ConfigError when there is no such run or its
    run.json is not a run's record."""
    results_dir = results_root / run_id
    if not (results_dir / RUN_FILE).is_file():
        raise ConfigError(f"no run {run_id} in {results_root} (no {results_dir / 'run.json'})")
    return RunRecord.load(results_dir), results_dir


def claim_run_dir(results_root: Path, job_path: Path) -> tuple[str, Path]:
    """A new run id and its results folder, created here and now (see `claim_dir`)."""
    return claim_dir(results_root, lambda: new_run_id(job_path))


def claim_dir(results_root: Path, new_id: Callable[[], str]) -> tuple[str, Path]:
    """A new id and its folder under results_root, created here and now: a folder that exists already
    (another run or sweep took that id) is never shared, a new id is drawn instead."""
    results_root.mkdir(parents=True, exist_ok=True)
    while True:
        run_id = new_id()
        try:
            (results_root / run_id).mkdir()
        except FileExistsError:
            continue
        return run_id, results_root / run_id


@dataclass
class RunRecord:
    """The contents of run.json. Seconds for durations, USD for money, ISO-8601 UTC for instants."""

    run_id: str
    job: str
    mode: str  # "local" or "ec2"
    started_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    finished_at: str | None = None
    status: str = "running"  # running | finished | failed | interrupted | diverged (trainer.contract)
    exit_code: int | None = None
    stack: str | None = None
    stack_ref: str | None = None  # what --stack / the job's `stack:` named: `--resume` loads it again
    region: str | None = None
    availability_zone: str | None = None
    instance_id: str | None = None
    instance_type: str | None = None
    market: str | None = None
    price_usd_per_hour: float | None = None
    price_source: str | None = None
    cost_usd: float | None = None
    cost_estimate_usd: float | None = None
    phases: dict[str, float | None] = field(default_factory=dict)  # None: a non-finite time was written
    image_id: str | None = None
    bake: str | None = None  # the bake hash when the instance booted from a bake (`ec2dbn bake`)
    bootstrap: dict[str, str] = field(default_factory=dict)  # step -> its last line ("already done", ...)
    recoveries: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    store: str | None = None  # the run store (s3://bucket/prefix) the run's files go to; None: none
    detached: bool = False  # `train --detach`: the instance finishes the run alone and ends itself

    def save(self, results_dir: Path) -> Path:
        """Write run.json atomically (it is rewritten as phases finish, so a crash leaves a valid file), as
        strict JSON (a non-finite number, e.g. a cost from a NaN price, is written as null)."""
        results_dir.mkdir(parents=True, exist_ok=True)
        return write_json(results_dir / RUN_FILE, asdict(self))

    @classmethod
    def load(cls, results_dir: Path) -> RunRecord:
        """results_dir/run.json read back. Fields it does not know (a newer ec2dbn's) are ignored.

        Raises ConfigError, one line naming the file, when it is missing or malformed, or is not a run's
        record (a field missing or of another type than declared here).
        """
        from pydantic import ValidationError

        path = results_dir / RUN_FILE
        data = read_object(path, RUN_FILE)
        try:  # strict, from JSON: a string is no number, a number no string, a list no object
            return _record_schema().validate_json(dumps(data), strict=True)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "the record"
            raise ConfigError(f"{path}: not a run record ({where}: {first['msg'].lower()})") from None

    def finish(self, exit_code: int, status: str) -> None:
        self.exit_code = exit_code
        self.status = status
        self.finished_at = datetime.now(timezone.utc).isoformat(timespec="seconds")


@functools.cache
def _record_schema() -> Any:
    """RunRecord's pydantic validator (built once: building it takes milliseconds)."""
    from pydantic import TypeAdapter

    return TypeAdapter(RunRecord)


@contextmanager
def timed_phase(record: RunRecord, name: str) -> Iterator[None]:
    """Time one phase into `record.phases[name]` (accumulating, so a phase re-run after a recovery adds up).

    The time is recorded even when the phase fails: a failed run's record still says where time went.
    """
    start = time.monotonic()
    try:
        yield
    finally:
        record.phases[name] = round((record.phases.get(name) or 0.0) + time.monotonic() - start, 3)


def plot_run(results_dir: Path) -> Path | None:
    """Draw the run's learning curve (learning_curve.png) when it has metrics and matplotlib is there.

    Returns the PNG path, or None without metrics.json; raises ConfigError when it cannot plot.
    """
    from ec2dbn.insight.plots import plot_learning_curve

    metrics = results_dir / METRICS_JSON
    if not metrics.is_file():
        return None
    return plot_learning_curve(metrics, results_dir / "learning_curve.png")
