"""Verbs and views of the run store (S3): `pull`, a run's log for `logs RUN_ID`, detached runs for `status`,
removing a store for `teardown --store`."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from ec2dbn import aws
from ec2dbn.cli import cli, results_option
from ec2dbn.cli.options import region_option
from ec2dbn.cli.output import ConsoleReporter, cell, stdout, styled
from ec2dbn.errors import ConfigError, Ec2dbnError
from ec2dbn.events import Reporter
from ec2dbn.results_layout import RUN_FILE
from ec2dbn.run import run_store
from ec2dbn.run.instance_fate import instance_fate
from ec2dbn.run.results import RunRecord

#: A run id as `ec2dbn train` makes them (ec2dbn.run.results.new_run_id): `<job>-YYYYMMDD-HHMMSS-xxxx`.
RUN_ID_RE = re.compile(r"[A-Za-z0-9_.-]+-\d{8}-\d{6}-[0-9a-f]{4}")


def is_run(name: str, results_root: Path) -> bool:
    """Whether `logs NAME` means a run (its folder here, or a run id's shape) rather than a stack."""
    return (results_root / name / RUN_FILE).is_file() or bool(RUN_ID_RE.fullmatch(name))


def _check_run_id(run_id: str) -> str:
    if not RUN_ID_RE.fullmatch(run_id):
        raise ConfigError(f"{run_id!r} is not a run id (e.g. seed-mnist-20261207-120000-ab12)")
    return run_id


def _store_of(
    run_id: str, results_root: Path, store_uri: str | None, region: str | None
) -> run_store.RunStore:
    """Where run `run_id` is stored: --store/--region when given, else what its run.json here says."""
    results_dir = results_root / run_id
    if store_uri is not None:
        if region is None:
            raise ConfigError("--store needs --region (the bucket's region)")
        return run_store.RunStore(region, aws.parse_store_uri(store_uri), run_id)
    if not (results_dir / RUN_FILE).is_file():
        raise ConfigError(
            f"no run {run_id} in {results_root}: name its store, e.g. `ec2dbn pull {run_id} "
            "--store s3://ec2dbn-runs-ACCOUNT-REGION --region REGION`"
        )
    store = run_store.of_record(RunRecord.load(results_dir))
    if store is None:
        raise ConfigError(f"run {run_id} kept no files in a run store (its stack has `store: none`)")
    return store


@cli.command()
@click.argument("run_id", metavar="RUN_ID")
@results_option("Folder under which results/<run-id>/ is written.")
@click.option(
    "--store", "store_uri", metavar="S3_URI", help="The run store, when this machine has no record of it."
)
@region_option("The run store's region (with --store).")
def pull(run_id: str, results_root: Path, store_uri: str | None, region: str | None) -> int:
    """Bring run RUN_ID's files (checkpoint, logs, results, run.json) from its run store into
    results/<run-id>/, whether its instance still runs or not.

    \b
    Examples:
      ec2dbn pull seed-mnist-20261207-120000-ab12
      ec2dbn pull seed-mnist-20261207-120000-ab12 --region us-east-1 \
        --store s3://ec2dbn-runs-123456789012-us-east-1
    """
    store = _store_of(_check_run_id(run_id), results_root, store_uri, region)
    reporter = ConsoleReporter()
    record = run_store.pull(store, results_root / run_id, reporter)
    if record.status in ("running", "detached"):
        epoch = run_store.last_epoch(store)
        done = f"epoch {epoch} done" if epoch is not None else "no epoch done yet"
        stdout.print(f"run {run_id} is still running ({done}): pull again later for the rest")
        return 0
    where = results_root / run_id
    stdout.print(styled((record.status, "bold"), f" (exit {record.exit_code}) — results in {where}"))
    return 0 if record.status == "finished" else 1


def follow_run_log(run_id: str, results_root: Path, follow: bool, reporter: Reporter) -> None:
    """`ec2dbn logs RUN_ID`: from the instance while it runs the job, else (or once the instance is gone,
    as a detached run's ends itself) from the run store, without repeating a line."""
    from ec2dbn.run.instance_files import RemoteRun, load_pointer
    from ec2dbn.ssh import detached
    from ec2dbn.stack import state
    from ec2dbn.stack.connect import remote_for

    results_dir = results_root / run_id
    if not (results_dir / RUN_FILE).is_file():
        raise ConfigError(f"no run {run_id} in {results_root} (`ec2dbn pull {run_id} --store …` brings it)")
    record = RunRecord.load(results_dir)
    shown = 0

    def show(line: str) -> None:
        nonlocal shown
        shown += 1
        reporter.stream(line)

    st = state.load(record.stack) if record.stack else None
    pointer = load_pointer(st.name) if st is not None else None
    on_it = st is not None and st.instance_id == record.instance_id and pointer is not None
    if on_it and pointer.run_id == run_id and _instance_alive(record):  # type: ignore[union-attr]
        run = RemoteRun(pointer.remote_dir, run_id)  # type: ignore[union-attr]
        try:
            detached.follow_log(
                remote_for(st),  # type: ignore[arg-type]
                run.log,
                on_line=show,
                workdir=run.workdir if follow else None,
                reporter=reporter,
                on_disconnect=lambda _err: _instance_alive(record),
            )
            return
        except Ec2dbnError:
            if _instance_alive(record):
                raise
    store = run_store.of_record(record)
    if store is None:
        raise ConfigError(f"run {run_id}'s instance is gone and the run kept no files in a run store")
    reporter.step(f"reading the log of run {run_id} from {store.uri}")
    run_store.follow_log(store, show, follow=follow, is_over=lambda: not _instance_alive(record), skip=shown)


def _instance_alive(record: RunRecord) -> bool:
    """Whether EC2 says the run's (last) instance still runs; False when it cannot be asked."""
    if not record.region:
        return False
    return instance_fate(record.region, record.instance_id) == "alive"


def detached_rows(results_root: Path) -> list[tuple[str, str, str, str]]:
    """(run id, state, last epoch, note) for each detached run under results_root not known to be over."""
    rows = []
    for path in sorted(results_root.glob(f"*/{RUN_FILE}")) if results_root.is_dir() else []:
        try:
            record = RunRecord.load(path.parent)
        except ConfigError:
            continue
        store = run_store.of_record(record)
        if not record.detached or store is None or record.status not in ("running", "detached"):
            continue
        try:
            ended = run_store.outcome(store)
            epoch = run_store.last_epoch(store)
        except Ec2dbnError as exc:
            rows.append((record.run_id, "unknown", "-", f"store unreadable: {str(exc)[:60]}"))
            continue
        if ended == "interrupted":  # a spot notice: checkpointed, and its instance is gone
            note = f"interrupted: `ec2dbn train --resume {record.run_id}`"
        elif ended != "running":
            note = f"ended alone: `ec2dbn pull {record.run_id}`"
        elif _instance_alive(record):
            note = f"on {record.instance_id}"
        else:
            ended, note = "lost", f"instance gone: `ec2dbn train --resume {record.run_id}`"
        rows.append((record.run_id, ended, str(epoch) if epoch is not None else "-", note))
    return rows


def print_detached(results_root: Path) -> None:
    """The detached runs of `ec2dbn status`, one line each (never wrapped: the commands stay whole);
    nothing when there are none."""
    rows = detached_rows(results_root)
    if not rows:
        return
    stdout.print("detached runs (from the run store):")
    for run_id, ended, epoch, note in rows:
        stdout.print(cell(f"  {run_id}  {ended}  last epoch {epoch}  {note}"), soft_wrap=True)


def remove_stores(regions: list[str], yes: bool, reporter: Reporter) -> int:
    """`teardown --store`: empty and delete ec2dbn's run stores in `regions`, after asking."""
    found = [(r, ref) for r in regions for ref in aws.find_stores(r)]
    if not found:
        stdout.print(f"no ec2dbn run store in {', '.join(regions)}")
        return 0
    names = ", ".join(f"{ref.uri} ({r})" for r, ref in found)
    if not yes:
        if not sys.stdin.isatty():
            raise ConfigError(f"refusing to delete run stores without confirmation: pass --yes ({names})")
        if not click.confirm(f"Delete every run's files and the run store {names}?", err=True):
            raise Ec2dbnError("kept the run stores: nothing was removed")
    for r, ref in found:
        count = aws.delete_store(r, ref)
        reporter.step(f"deleted {ref.uri} ({r}): {count} objects")
    return 0
