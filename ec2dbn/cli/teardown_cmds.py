"""`ec2dbn teardown`: remove a stack's resources (or every stack's, or baked images), found by tags.
Where it looks: ec2dbn.cli.stack_regions."""

from __future__ import annotations

import contextlib
import sys
from dataclasses import asdict

import click

from ec2dbn import aws
from ec2dbn.cli import bake_cmds, cli
from ec2dbn.cli.options import json_option, launched_stack, region_option
from ec2dbn.cli.output import ConsoleReporter, stdout, styled
from ec2dbn.cli.stack_regions import regions
from ec2dbn.errors import ConfigError, CredentialsError, Ec2dbnError
from ec2dbn.events import Reporter
from ec2dbn.spec.stack import DEFAULT_STACK
from ec2dbn.stack import lifecycle, state
from trainer.strict_json import dumps


def _confirm(what: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfigError(f"refusing to tear down {what} without confirmation: pass --yes")
    if not click.confirm(f"Terminate and delete everything ec2dbn created for {what}?", err=True):
        raise Ec2dbnError(f"kept {what}: nothing was removed")  # a refusal, exit 1 (130 stays for Ctrl-C)


def _print_report(rep: aws.TeardownReport) -> None:  # a clean one
    done = []
    if rep.cancelled_spot_requests:
        done.append(f"cancelled {', '.join(rep.cancelled_spot_requests)}")
    if rep.terminated:
        done.append(f"terminated {', '.join(rep.terminated)}")
    if rep.deleted_security_groups:
        done.append(f"deleted {', '.join(rep.deleted_security_groups)}")
    if rep.deleted_key_pairs:
        done.append(f"deleted key pair {', '.join(rep.deleted_key_pairs)}")
    if rep.removed_instance_profile:
        done.append(f"deleted instance profile and role {rep.removed_instance_profile}")
    if rep.removed_local_state:
        done.append("removed local state")
    summary = "; ".join(done) or "nothing to remove"
    stdout.print(styled(("✓", "bold green"), f" {rep.name} ({rep.region}): {summary}"))
    stdout.print(f"  verified: nothing tagged ec2dbn:stack={rep.name} remains in {rep.region}")


def _single_default() -> str:
    local = state.names()
    if len(local) == 1:
        return local[0]
    if not local:
        return DEFAULT_STACK
    raise ConfigError(f"several stacks have local state ({', '.join(local)}): name one, or pass --all")


@cli.command()
@launched_stack
@click.option("--all", "all_stacks", is_flag=True, help="Every ec2dbn stack (found by tags and local state).")
@region_option("Region to clean (default: where the stack is; with --all, every known one).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option("Print what was removed as JSON.")
@click.option("--images", is_flag=True, help="Remove baked images and their snapshots (not stacks).")
@click.option("--older-than", metavar="AGE", help="With --images: only bakes older than AGE (30d, 12h).")
@click.option(
    "--store",
    "stores",
    is_flag=True,
    help="Empty and delete ec2dbn's run store (S3) of the region, every run's files in it (asked).",
)
def teardown(
    name: str | None,
    all_stacks: bool,
    region: str | None,
    yes: bool,
    as_json: bool,
    images: bool,
    older_than: str | None,
    stores: bool,
) -> int:
    """Terminate a stack's instances, cancel spot requests, delete its security group, key pair and local
    state — all found by tags, so it works without the state dir — then verify nothing tagged remains.

    \b
    The run store (S3) is kept: runs' files outlive their stacks. --store empties and deletes it.

    \b
    Examples:
      ec2dbn teardown --stack g4dn-spot --yes
      ec2dbn teardown --all --yes
      ec2dbn teardown --images --older-than 30d --yes
      ec2dbn teardown --store --region us-east-1
    """
    reporter = ConsoleReporter()
    if name and all_stacks:
        raise ConfigError("give a stack NAME or --all, not both")
    if older_than and not images:
        raise ConfigError("--older-than goes with --images")
    if stores:
        if name or all_stacks or as_json or images:
            raise ConfigError("--store removes run stores only: no stack NAME, --all, --images or --json")
        from ec2dbn.cli.store_cmds import remove_stores

        return remove_stores(regions(None, region), yes, reporter)
    if images:
        if name or all_stacks or as_json:
            raise ConfigError("--images removes bakes only: give no stack NAME, --all or --json with it")
        where = regions(None, region)
        _confirm(f"baked images in {', '.join(where)}", yes)
        return bake_cmds.teardown_images(where, older_than, reporter)
    if all_stacks:
        where = regions(None, region)
        _confirm(f"ALL stacks in {', '.join(where)}", yes)
        return _teardown_all(where, reporter, as_json)
    target = state.check_name(name) if name else _single_default()
    r = regions(target, region)[0]
    if name:
        _check_known(target, r)
    _confirm(f"stack {target} in {r}", yes)
    rep = lifecycle.tear_down(target, r, reporter=reporter)
    if as_json:
        click.echo(dumps(asdict(rep), indent=2))
    else:
        _print_report(rep)
    return 0


def _check_known(name: str, region: str) -> None:
    """A stack NAME that neither AWS (by tags) nor local state knows, while others exist, is a typo:
    exit 2 naming the known ones, rather than "nothing to remove" beside the real stack still running."""
    known = lifecycle.stacks_in(region)
    if name in known or lifecycle.local_state(name) is not None or not known:
        return
    raise ConfigError(f"no stack {name} in {region} (known: {', '.join(known)})")


def _teardown_all(regions: list[str], reporter: Reporter, as_json: bool = False) -> int:
    """Every stack in every region, one failure at a time: a stack that can't be removed is reported and
    the rest still go; exit 1 at the end, listing what remains. With `as_json`, one JSON document
    (every stack's report, what remains per region, the failures) before that exit."""
    failures: list[str] = []
    reports: list[aws.TeardownReport] = []
    remaining: dict[str, str] = {}
    for r in regions:
        try:
            names = lifecycle.stacks_in(r)
        except CredentialsError:
            raise  # no region can be looked at: the same line as every verb gives for this cause
        except Ec2dbnError as exc:
            failures.append(f"could not look at {r} ({exc})")
            remaining[r] = "unknown"
            continue
        for n in names:
            try:
                reports.append(lifecycle.tear_down(n, r, reporter=reporter))
                if not as_json:
                    _print_report(reports[-1])
            except Ec2dbnError as exc:
                failures.append(str(exc))
                reporter.warn(str(exc))
        try:
            left = aws.verify_clean(r)
        except Ec2dbnError as exc:
            remaining[r] = "unknown"
            failures.append(f"could not verify {r} is clean ({exc})")
            continue
        remaining[r] = left
        if left != "nothing":
            failures.append(f"still tagged ec2dbn in {r}: {left}")
        elif not as_json:
            stdout.print(f"verified: nothing tagged ec2dbn:managed=true remains in {r}")
    if not as_json:
        with contextlib.suppress(Ec2dbnError):
            stdout.print(bake_cmds.kept_line(regions))
    if as_json:
        doc = {"stacks": [asdict(rep) for rep in reports], "remaining": remaining, "failures": failures}
        click.echo(dumps(doc, indent=2))
    if failures:
        raise Ec2dbnError(f"teardown --all is not complete: {' | '.join(failures)}")
    return 0
