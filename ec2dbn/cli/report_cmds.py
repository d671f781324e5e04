"""Verbs that measure and compare: bench (CPU vs GPU by network size) and report (runs side by side)."""

from __future__ import annotations

import signal
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import click

from ec2dbn.cli import cli, results_option
from ec2dbn.cli.examples_cmds import JOB_FILE
from ec2dbn.cli.options import json_option, region_option
from ec2dbn.cli.output import ConsoleReporter, printable, stdout, styled
from ec2dbn.cli.tables import Column, print_fitted
from ec2dbn.errors import ConfigError, JobFailedError
from ec2dbn.insight import bench as bench_mod
from ec2dbn.insight import bench_plot
from ec2dbn.insight import report as report_mod
from ec2dbn.package_data import trainer_argv
from trainer.contract import BENCH_FILE, EXIT_BAD, EXIT_STOPPED
from trainer.strict_json import dumps

#: trainer.bench's exit codes other than 0 (done), and what they mean here.
_BENCH_EXIT = {
    EXIT_BAD: "bad job or arguments",
    EXIT_STOPPED: f"stopped by a signal ({BENCH_FILE} holds the rows measured)",
}


def _check_widths(text: str) -> list[int]:
    """The trainer's own parser, its JobError turned into our one-line ConfigError."""
    from trainer.bench import parse_widths
    from trainer.errors import TrainerError

    try:
        return parse_widths(text)
    except TrainerError as exc:
        raise ConfigError(str(exc)) from None


def _check_job(job: Path) -> None:
    """The job is valid and has hidden layers to vary (the trainer's checks, as ConfigErrors)."""
    from trainer.bench import layers_for
    from trainer.config import load_job
    from trainer.errors import TrainerError

    if not job.is_file():
        raise ConfigError(f"job file {job} not found")
    try:
        layers_for(load_job(job).model.layers, 1)
    except TrainerError as exc:
        raise ConfigError(f"{job}: {exc}") from None


def run_local_bench(
    job: Path, out_dir: Path, widths: list[int], epochs: int, backends: str, reporter: ConsoleReporter
) -> int:
    """`python -m trainer.bench` here, as a child process, its output streamed; returns its exit code."""
    cmd = [
        *trainer_argv("trainer.bench"),
        str(job),
        "--out",
        str(out_dir),
        "--widths",
        ",".join(map(str, widths)),
        "--epochs",
        str(epochs),
        "--backends",
        backends,
    ]
    reporter.step(f"benchmarking {job} locally into {out_dir}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            reporter.stream(line.rstrip("\n"))
        return proc.wait()
    except KeyboardInterrupt:  # the child got SIGINT too (same process group): let it write bench.json
        proc.send_signal(signal.SIGINT)
        return proc.wait()


def run_remote_bench(
    job: Path,
    stack_ref: str,
    out_dir: Path,
    widths: list[int],
    epochs: int,
    backends: str,
    reporter: ConsoleReporter,
    region: str | None = None,
) -> tuple[bench_mod.Price, str]:
    """`trainer.bench` on the stack's instance through the train flow (launch, bootstrap, ship, run
    detached, follow, pull bench.json, tear down); returns the instance's price for $/epoch."""
    from ec2dbn.run.pipeline import Pipeline
    from ec2dbn.run.validate import validate

    args = f"--widths {','.join(map(str, widths))} --epochs {epochs} --backends {backends}"
    bench_line = f'exec "$PY" -u -m trainer.bench job.yaml --out out {args}'
    v = validate(
        job,
        stack_ref=stack_ref,
        region=region,
        results_dir=out_dir,
        run_command=lambda run, _resume: run.python() + bench_line,
        result_files=(bench_mod.BENCH_FILE,),
    )
    stack = v.stack
    flow = Pipeline(v, reporter)
    flow.run()
    record = flow.record
    st_price = record.price_usd_per_hour
    if st_price is None:
        raise JobFailedError(f"bench on {stack.name} recorded no instance price; see {out_dir / 'run.json'}")
    source = record.price_source or "instance price"
    price = bench_mod.Price(st_price, source, "", stack.region, record.market or "")
    return price, f"{record.instance_type} {record.market} at ${st_price:.4f}/h ({record.price_source})"


@cli.command("bench")
@click.argument("job", type=JOB_FILE)
@click.option(
    "--widths",
    default="100,300,800,1600,3200",
    show_default=True,
    help="Hidden layer widths to time, comma-separated.",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Epochs per width and backend; the first is an untimed warm-up when there are 2 or more.",
)
@click.option("--backends", default="numpy,cupy", show_default=True, help="Backends to time.")
@click.option("--local", is_flag=True, help="Run here (CuPy rows are skipped without a GPU).")
@click.option(
    "--stack",
    "stack_ref",
    metavar="NAME|PATH",
    help="Run on this stack's instance (launched, then torn down).",
)
@region_option("Region to bench in, with --stack (else $AWS_REGION, else the stack's).")
@results_option("Folder under which bench-<UTC timestamp>/ is written.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    hidden=True,  # the older spelling: the exact output folder
    help="The exact output folder (instead of --results' bench-<UTC timestamp>/).",
)
@click.option(
    "--price-per-hour",
    type=float,
    help="USD/hour to price a --local run at (default: $0, this machine is not billed).",
)
@click.option("--no-plot", is_flag=True, help="Skip bench.png (no matplotlib needed).")
@json_option("Print the priced summary as JSON (the trainer's output goes to stderr).")
def bench_cmd(
    job: Path,
    widths: str,
    epochs: int,
    backends: str,
    local: bool,
    stack_ref: str | None,
    region: str | None,
    results_root: Path,
    out_dir: Path | None,
    price_per_hour: float | None,
    no_plot: bool,
    as_json: bool,
) -> int:
    """Time JOB's network at several hidden widths on NumPy (CPU) and CuPy (GPU).

    Every hidden layer is set to each width in turn (784-800-800-10 → 784-w-w-10); same data, same seed,
    warm-up excluded. Writes bench.json (s/epoch, samples/s, test accuracy per width and backend),
    summary.md ($/epoch, speedup, break-even width) and bench.png into the output folder.

    \b
    Examples:
      ec2dbn bench seed-fashion --local --widths 100,300 --epochs 2
      ec2dbn bench seed-fashion --local --price-per-hour 0.34
      ec2dbn bench seed-fashion --stack g4dn-spot --region us-west-2
    """
    width_list = _check_widths(widths)
    if stack_ref and local:
        raise ConfigError("--local and --stack exclude each other: bench here, or on the stack's instance")
    if not local and not stack_ref:
        raise ConfigError("say where to bench: --local (this machine) or --stack NAME (an EC2 instance)")
    if region and local:
        raise ConfigError("--region goes with --stack: a --local bench runs on this machine")
    from trainer.bench import parse_backends
    from trainer.errors import TrainerError

    try:
        parse_backends(backends)
    except TrainerError as exc:
        raise ConfigError(str(exc)) from None
    price, note = bench_mod.local_price(price_per_hour)  # validates --price-per-hour before any work
    _check_job(job)
    if out_dir is None:
        out_dir = results_root / f"bench-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"

    reporter = ConsoleReporter(streams_to_stderr=as_json)  # stdout is the JSON's alone
    if stack_ref:
        price, note = run_remote_bench(
            job, stack_ref, out_dir, width_list, epochs, backends, reporter, region=region
        )
        code = 0
    else:
        code = run_local_bench(job, out_dir, width_list, epochs, backends, reporter)
    if code != 0:
        what = _BENCH_EXIT.get(code, "crashed")
        raise (ConfigError if code == EXIT_BAD else JobFailedError)(
            f"bench {what} (exit {code}); see the output above"
        )

    summary = bench_mod.summarize(bench_mod.load_bench(out_dir), price, note)
    measured = any(r.ok for r in summary.rows)
    if not measured:
        reporter.warn("no (width, backend) row was measured (all skipped or failed): no plot")
    written = bench_plot.write_outputs(out_dir, summary, plot=measured and not no_plot)
    if as_json:
        doc = {**summary.to_dict(), "out_dir": str(out_dir)}
        doc["written"] = [str(out_dir / bench_mod.BENCH_FILE), *map(str, written)]
        click.echo(dumps(doc, indent=2))
        return 0
    for r in summary.rows:
        if r.ok:
            reporter.step(
                f"width {r.width:,} {r.backend}: {r.seconds_per_epoch:.3f} s/epoch, "
                f"{(r.samples_per_second or 0):,.0f} samples/s, test accuracy {r.test_accuracy or 0:.4f}"
            )
    reporter.step(f"break-even: {summary.break_even.describe()}")
    reporter.step(f"price: {note}")
    reporter.step(f"wrote {out_dir / bench_mod.BENCH_FILE}, " + ", ".join(str(p) for p in written))
    return 0


@cli.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path))
@json_option("Print JSON instead of a table.")
@click.option("--markdown", is_flag=True, help="Print a markdown table (for a README or an issue).")
def report_cmd(results: tuple[Path, ...], as_json: bool, markdown: bool) -> int:
    """Finished runs side by side: backend, device, instance, s/epoch, speedup, accuracy, cost.

    Each RESULTS is a run folder (results/<run-id>/) or a folder of them (results/).

    \b
    Examples:
      ec2dbn report results/seed-fashion-20261126-101500 results/seed-fashion-20261126-113000
      ec2dbn report results/ --markdown
    """
    if as_json and markdown:
        raise ConfigError("--json and --markdown exclude each other: pick one")
    if len(results) == 1 and report_mod.is_sweep(results[0]) and not as_json:
        return _sweep_report(results[0], markdown)
    report = report_mod.build_report(list(results))
    if as_json:
        click.echo(dumps(report.to_dict(), indent=2))
        return 0
    if markdown:
        click.echo(report_mod.to_markdown(report), nl=False)
        return 0
    columns = [_REPORT_COLUMNS[h] for h in report_mod.headers()]
    rows = [report_mod.cells(r) for r in report.rows]
    print_fitted(columns, rows, title="ec2dbn runs", notes=report_mod.notes(report))
    return 0


#: How `report` shows each column; at narrow widths the highest priority numbers are left out first.
#: The run and its status always stay (a failed or diverged run must never read as a result).
_REPORT_COLUMNS = {
    c.header: c
    for c in (
        Column("run", keep=True),
        Column("status", keep=True, wrap=True),
        Column("s/epoch", 1, justify="right"),
        Column("test acc", 2, justify="right"),
        Column("speedup", 3, justify="right"),
        Column("backend", 4),
        Column("cost", 5, justify="right"),
        Column("instance", 6),
        Column("device", 7, wrap=True),
        Column("$/epoch", 8, justify="right"),
        Column("epochs", 9, justify="right"),
        Column("data", 10, wrap=True),
        Column("layers", 11, wrap=True),
        Column("market", 12),
    )
}


def _sweep_report(sweep_dir: Path, markdown: bool) -> int:
    """One sweep: its points by test accuracy, with the swept values (what summary.md holds)."""
    from ec2dbn.sweep.summary import rows, to_markdown

    record, table = rows(sweep_dir)
    text = printable(to_markdown(record, table), newlines=True)  # point values come from results files
    if markdown:
        click.echo(text, nl=False)
    else:
        stdout.print(styled(text), end="")
    return 0
