"""`ec2dbn logs SWEEP_ID/POINT`: one point's log — followed on its instance while it runs there, else
read from its results folder (a local point's trainer writes train.log there as it goes)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ec2dbn import aws
from ec2dbn.errors import ConfigError, Ec2dbnError
from ec2dbn.events import Reporter
from ec2dbn.results_layout import RUN_FILE
from ec2dbn.run.instance_files import RemoteRun, follow_run
from ec2dbn.stack import state
from ec2dbn.sweep.record import SweepRecord
from trainer.contract import TRAIN_LOG

#: Seconds between looks at a local point's growing log.
POLL_S = 0.5


def _run_json(folder: Path) -> dict[str, object]:
    try:
        data = json.loads((folder / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _instance_state(record: SweepRecord, group: int, instance_id: str) -> state.StackState | None:
    """How to reach the instance: its group's local state (key, pinned host key) and where EC2 says it is."""
    names = [g.get("stack") for g in record.groups if isinstance(g, dict)]
    name = names[group] if group < len(names) and names[group] else f"{record.sweep_id}-{group + 1}"
    base = state.load(str(name))
    if base is None:
        return None
    inst = aws.describe_instance(base.region, instance_id)
    if inst is None or inst.state not in aws.REUSABLE_STATES:
        return None
    return base.model_copy(
        update={"instance_id": instance_id, "public_ip": inst.public_ip, "public_dns": inst.public_dns}
    )


def follow_point(results_root: Path, name: str, reporter: Reporter, follow: bool) -> None:
    """Stream point `name` (SWEEP_ID/POINT) of a sweep under `results_root`; ConfigError when unknown."""
    sweep_id, _, point_id = name.partition("/")
    if not sweep_id or not point_id:
        raise ConfigError(f"{name!r}: expected SWEEP_ID/POINT, e.g. sweep-20261130-120000-ab12/p03")
    sweep_dir = results_root / sweep_id
    record = SweepRecord.load(sweep_dir)
    entry = record.point(point_id)
    folder = sweep_dir / point_id
    run = _run_json(folder)
    instance_id = run.get("instance_id") or entry.instance_id
    if record.mode == "ec2" and run.get("status") == "running" and isinstance(instance_id, str):
        try:
            st = _instance_state(record, entry.group, instance_id)
        except Ec2dbnError:
            st = None
        if st is not None:
            follow_run(st, RemoteRun(st.remote_dir, point_id), reporter, follow)
            return
    _follow_file(folder, reporter, follow)


def _follow_file(folder: Path, reporter: Reporter, follow: bool) -> None:
    """The point's log here (job.log, pulled from its instance; else train.log), until it ends."""
    path = folder / "job.log" if (folder / "job.log").is_file() else folder / TRAIN_LOG
    offset, pending = 0, b""
    while True:
        try:
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
        except FileNotFoundError:
            chunk = b""
        offset += len(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            reporter.stream(line.decode("utf-8", errors="replace"))
        if not follow or _run_json(folder).get("status") not in ("running", None):
            if pending:
                reporter.stream(pending.decode("utf-8", errors="replace"))
            if not follow and not path.is_file():
                raise ConfigError(f"no log yet in {folder}: the point has not started")
            return
        time.sleep(POLL_S)
