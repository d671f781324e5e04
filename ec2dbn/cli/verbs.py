"""Which module defines each verb, and its one-line help: what `ec2dbn --help` lists without importing them.

A verb's module (and what it imports: boto3, paramiko, NumPy, rich) is loaded only when that verb runs, so
`ec2dbn --help`, `--version` and a mistyped verb answer at once (click's lazy-group pattern). The summary
here must be the first sentence of the verb's docstring; tests/test_startup.py checks that it does
and that every verb a module defines is listed.
"""

from __future__ import annotations

import importlib

import click

#: verb -> (module that registers it on `cli`, the first sentence of its docstring).
VERBS: dict[str, tuple[str, str]] = {
    "bake": (
        "ec2dbn.cli.bake_cmds",
        "Make (or find) the stack's baked image: launch its instance, run its bootstrap, cache the data "
        "sets, strip the builder's keys, image it, terminate it.",
    ),
    "bench": (
        "ec2dbn.cli.report_cmds",
        "Time JOB's network at several hidden widths on NumPy (CPU) and CuPy (GPU).",
    ),
    "catalog": (
        "ec2dbn.cli.catalog_cmds",
        "List instance types: GPU, vCPUs, memory, on-demand price (bundled, dated) and spot price (--live).",
    ),
    "check": (
        "ec2dbn.cli.check_cmds",
        "Check that the stack can launch from these credentials in this region: credentials and account, "
        "region, instance types, vCPU quotas, VPC and subnets, zones, image, spot price, the Spot "
        "service-linked role, the run store.",
    ),
    "examples": (
        "ec2dbn.cli.examples_cmds",
        "List the example jobs shipped with ec2dbn, or print example NAME (to copy and edit).",
    ),
    "iam-policy": (
        "ec2dbn.cli.check_cmds",
        "Print the least-privilege IAM policy (JSON) ec2dbn needs: EC2 scoped to resources tagged "
        "ec2dbn:managed=true, the public AMI-alias SSM parameters, Service Quotas, STS and Price List reads, "
        "the Spot service-linked role (created by a first spot request), the run store's ec2dbn-runs-* "
        "buckets and the instances' roles under /ec2dbn/ (passed to EC2 only).",
    ),
    "launch": (
        "ec2dbn.cli.stack_cmds",
        "Launch a stack (or reuse it if it is up): a tagged key pair, a security group admitting only "
        "your IP on port 22, and a self-terminating spot or on-demand instance.",
    ),
    "logs": (
        "ec2dbn.cli.train_cmds",
        "Show the log of the job running on stack NAME (re-attach after a disconnect), of run RUN_ID (from "
        "its instance, else from its run store), or of one point of a sweep (NAME = SWEEP_ID/POINT).",
    ),
    "plan": (
        "ec2dbn.cli.train_cmds",
        "Dry run of `ec2dbn train JOB`: validate job and stack, resolve the image and prices, run EC2's "
        "DryRun permission checks and estimate the cost.",
    ),
    "pull": (
        "ec2dbn.cli.store_cmds",
        "Bring run RUN_ID's files (checkpoint, logs, results, run.json) from its run store into "
        "results/<run-id>/, whether its instance still runs or not.",
    ),
    "report": (
        "ec2dbn.cli.report_cmds",
        "Finished runs side by side: backend, device, instance, s/epoch, speedup, accuracy, cost.",
    ),
    "ssh": (
        "ec2dbn.cli.train_cmds",
        "Open a shell on stack NAME's instance, with the host key pinned at launch.",
    ),
    "status": (
        "ec2dbn.cli.stack_cmds",
        "Show stacks as AWS reports them (by tags), reconciled with local state: state, type, market, "
        "zone, address, lifetime left, price and cost so far.",
    ),
    "sweep": (
        "ec2dbn.cli.sweep_cmds",
        "Run JOB at many points — a grid, a random search — each point a full `train` run, side by side.",
    ),
    "teardown": (
        "ec2dbn.cli.teardown_cmds",
        "Terminate a stack's instances, cancel spot requests, delete its security group, key pair and "
        "local state — all found by tags, so it works without the state dir — then verify nothing tagged "
        "remains.",
    ),
    "train": (
        "ec2dbn.cli.train_cmds",
        "Train JOB (a job YAML or an example's name) on EC2 — or here with --local — and collect the "
        "results.",
    ),
}


def load_all() -> None:
    """Import every verb's module (tests, and anything that wants `cli.commands` complete)."""
    for module, _ in VERBS.values():
        importlib.import_module(module)


class LazyGroup(click.Group):
    """A click group whose verbs are imported when used; `--help` lists them from VERBS."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *VERBS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in VERBS:
            importlib.import_module(VERBS[cmd_name][0])  # its decorators register it on this group
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Like click's, from the summaries in VERBS (a verb not listed there is imported, as click would)."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(n) for n in names), default=0)
        rows = []
        for name in names:
            summary = VERBS[name][1] if name in VERBS else ""
            if summary:
                rows.append((name, click.Command(name, help=summary).get_short_help_str(limit)))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
