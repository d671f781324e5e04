"""A run's files in the run store (S3): what a run on EC2 keeps there, and reading it back.

The instance writes the run's files under `<store>/runs/<run-id>/` itself (trainer.store_sync, beside the
trainer), with an instance profile whose role may touch only that prefix (ec2dbn.aws.run_role), so the files
outlive the instance and do not need this machine: a laptop that sleeps, a spot reclaim, a run that ends
while nobody follows it (`train --detach`). ec2dbn itself writes only run.json there. This module is the
user's side: which store a stack's runs use, the record, and reading a run back for `logs`, `pull`,
`status` and `--resume`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ec2dbn import aws
from ec2dbn.errors import ConfigError, Ec2dbnError
from ec2dbn.events import Reporter
from ec2dbn.results_layout import RUN_FILE
from ec2dbn.run.results import RunRecord
from ec2dbn.spec.stack import STORE_AUTO, STORE_NONE, Stack
from ec2dbn.ssh.detached import LOG_NAME
from ec2dbn.ssh.output import pull_limit_bytes, split_long
from trainer.contract import (
    CHECKPOINT_FILE,
    METRICS_JSONL,
    RESUME_FILES,
    STORE_MANIFEST,
    STORE_OUT,
    run_status,
)
from trainer.strict_json import dumps

#: Seconds between two reads of a stored log while following it.
FOLLOW_POLL_S = 2.0
#: The most of a stored log read in one request.
_READ_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True)
class RunStore:
    """One run's place in a run store: region, bucket and prefix, run id."""

    region: str
    ref: Any  # aws.StoreRef
    run_id: str

    @property
    def prefix(self) -> str:
        return str(aws.run_prefix(self.ref, self.run_id))

    @property
    def uri(self) -> str:
        return f"s3://{self.ref.bucket}/{self.prefix}"

    def read(self, name: str, *, start: int = 0, limit: int = _READ_LIMIT) -> bytes | None:
        """The object `name` (relative to the run's prefix) from byte `start`; None when there is none."""
        return aws.read_object(self.region, self.ref, self.run_id, name, start=start, limit=limit)

    def manifest(self) -> dict[str, Any] | None:
        """The uploader's sync.json when it says the run ended (an exit code; every file is in the
        store), else None: none yet, or the marker a resumed run leaves over its previous segment's."""
        raw = self.read(STORE_MANIFEST, limit=1024 * 1024)
        if raw is None:
            return None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("exit_code"), int) else None

    def reopen(self) -> None:
        """A resumed run goes on: its previous segment's manifest no longer says how the run ended."""
        aws.write_object(self.region, self.ref, self.run_id, STORE_MANIFEST, b'{"status": "running"}')


def stack_store_ref(stack: Stack) -> Any:
    """The stack's `store:` as a StoreRef (None: `auto`, ec2dbn's bucket for the account and region)."""
    if stack.store == STORE_NONE:
        raise ValueError("stack has no run store")
    return None if stack.store == STORE_AUTO else aws.parse_store_uri(stack.store)


def open_store(stack: Stack, run_id: str, reporter: Reporter) -> RunStore:
    """The run store of `stack`'s runs, made on first use (`auto`), with this run's place in it."""
    ref = aws.ensure_store(stack.region, stack_store_ref(stack))
    store = RunStore(stack.region, ref, run_id)
    reporter.step(f"run store: {store.uri} (checkpoints, logs and results outlive the instance)")
    return store


def of_record(record: RunRecord) -> RunStore | None:
    """The run store a run's record names, or None (run without one)."""
    if not record.store or not record.region:
        return None
    return RunStore(record.region, aws.parse_store_uri(record.store), record.run_id)


def save_record(store: RunStore, record: RunRecord, reporter: Reporter) -> bool:
    """Put the run's record (run.json) beside its files in the store; a failure is a warning."""
    try:
        data = dumps(dataclasses.asdict(record)).encode()
        aws.write_object(store.region, store.ref, store.run_id, RUN_FILE, data)
    except Ec2dbnError as exc:
        reporter.warn(f"could not write run.json to the run store ({exc})")
        return False
    return True


# ---------------------------------------------------------------------------------------------- reading


def fetch_resume_files(store: RunStore, results_dir: Path, reporter: Reporter) -> bool:
    """Bring the store's checkpoint and logs so far into `results_dir`, where `--resume` takes them from:
    the store's copy is the instance's own and never older than what this machine pulled. True when the
    store had a checkpoint."""
    try:
        names = [STORE_OUT + n for n in RESUME_FILES]
        got = aws.download_run(
            store.region, store.ref, store.run_id, results_dir, names, max_bytes=pull_limit_bytes()
        )
    except Ec2dbnError as exc:
        reporter.warn(f"could not read the run store ({exc}); resuming from this machine's copy")
        return False
    if any(name.endswith(CHECKPOINT_FILE) for name in got):
        reporter.step(f"took the newest checkpoint from the run store ({store.uri})")
        return True
    return False


def has_checkpoint(store: RunStore) -> bool:
    """Whether the store holds the run's checkpoint (one listing, nothing downloaded)."""
    return STORE_OUT + CHECKPOINT_FILE in aws.run_files(store.region, store.ref, store.run_id)


def last_epoch(store: RunStore) -> int | None:
    """The last finished epoch the store's metrics.jsonl records (None: none yet)."""
    raw = store.read(STORE_OUT + METRICS_JSONL)
    if not raw:
        return None
    for line in reversed(raw.decode("utf-8", errors="replace").splitlines()):
        with contextlib.suppress(ValueError):
            row = json.loads(line)
            if isinstance(row, dict) and isinstance(row.get("epoch"), int):
                return int(row["epoch"])
    return None


def outcome(store: RunStore) -> str:
    """A detached run's state as its store tells it: finished/failed/... (ended) or running."""
    manifest = store.manifest()
    if manifest is None:
        return "running"
    code = manifest.get("exit_code")
    return run_status(code) if isinstance(code, int) else "failed"


def follow_log(
    store: RunStore,
    on_line: Callable[[str], None],
    *,
    follow: bool,
    is_over: Callable[[], bool] | None = None,
    skip: int = 0,
) -> None:
    """Print the run's job.log from the store (its first `skip` lines were shown already, from the
    instance); with `follow`, keep reading until the run's manifest says it ended (the uploader writes
    job.log in full before the manifest) or `is_over()` says nobody will write more."""
    offset, pending = 0, b""

    def emit(piece: str) -> None:
        nonlocal skip
        if skip > 0:
            skip -= 1
        else:
            on_line(piece)

    while True:
        done = store.manifest() is not None or (is_over is not None and is_over())
        chunk = store.read(LOG_NAME, start=offset) or b""
        offset += len(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            for piece in split_long(line.decode("utf-8", errors="replace").rstrip("\r")):
                emit(piece)
        if len(chunk) >= _READ_LIMIT:
            continue
        if not follow or done:
            if pending:
                emit(pending.decode("utf-8", errors="replace"))
            return
        time.sleep(FOLLOW_POLL_S)


def pull(store: RunStore, results_dir: Path, reporter: Reporter) -> RunRecord:
    """`ec2dbn pull`: the run's files from the store into results_dir, and its record brought up to date
    from the manifest (how it ended) when the run is over. Returns the record."""
    results_dir.mkdir(parents=True, exist_ok=True)
    got = aws.download_run(store.region, store.ref, store.run_id, results_dir, max_bytes=pull_limit_bytes())
    if not got:
        raise ConfigError(f"the run store has nothing for run {store.run_id} ({store.uri})")
    record = _record(store, results_dir)
    manifest = store.manifest()
    if manifest is not None and record.status in ("running", "detached"):
        code = manifest.get("exit_code")
        code = code if isinstance(code, int) else 1
        record.finish(0 if code == 0 else 1, run_status(code))
        finished = manifest.get("finished_at")
        if isinstance(finished, str):
            record.finished_at = finished
        record.save(results_dir)
    reporter.step(f"pulled {len(got)} files of run {store.run_id} from {store.uri} into {results_dir}")
    return record


def _record(store: RunStore, results_dir: Path) -> RunRecord:
    """This machine's run.json, else the store's (a laptop that lost the folder), else a minimal one."""
    if (results_dir / RUN_FILE).is_file():
        return RunRecord.load(results_dir)
    raw = store.read(RUN_FILE, limit=1024 * 1024)
    if raw is not None:
        (results_dir / RUN_FILE).write_bytes(raw)
        with contextlib.suppress(ConfigError):
            return RunRecord.load(results_dir)
    record = RunRecord(store.run_id, "job.yaml", "ec2", region=store.region, store=store.ref.uri)
    record.save(results_dir)
    return record


def refuse_ended(record: RunRecord | None, results_dir: Path) -> None:
    """`--resume` of a run its instance finished alone (the store's manifest says it ended): refused with
    the command that brings its results, before anything is launched. A store that cannot be read refuses
    nothing (the resume then finds out itself)."""
    store = of_record(record) if record is not None else None
    if store is None:
        return
    try:
        ended = outcome(store)
    except Ec2dbnError:
        return
    if ended in ("finished", "diverged"):
        raise ConfigError(
            f"run {store.run_id} ended on its instance ({ended}); `ec2dbn pull {store.run_id}` brings its "
            f"results into {results_dir}"
        )
