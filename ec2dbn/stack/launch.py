"""`ec2dbn launch`: bring a stack up (or reuse it when it is free and what was asked for), then make it ready.

A launch that fails once something exists tears the stack down again, so nothing is left half-made. A
bootstrap that fails leaves the instance running (the user asked for it) and says how to remove it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from ec2dbn import aws
from ec2dbn.errors import Ec2dbnError
from ec2dbn.events import Reporter
from ec2dbn.results_layout import BOOTSTRAP_LOG
from ec2dbn.spec.stack import Stack
from ec2dbn.stack import lifecycle, state
from ec2dbn.stack.lease import check_free
from ec2dbn.stack.preflight import require_account
from ec2dbn.stack.ready import make_ready


def dry_run(stack: Stack, reporter: Reporter) -> tuple[aws.Plan, list[tuple[str, str]]]:
    """`launch --dry-run`: the plan and EC2's DryRun verdicts; creates nothing. Credentials and region are
    checked first, so the cause of a failure is said first."""
    require_account(stack.region)
    p = lifecycle.plan_stack(stack, reporter)
    return p, aws.dry_run(p, reporter=reporter)


def launch(
    stack: Stack,
    reporter: Reporter,
    source: str,
    *,
    bootstrap: bool = True,
    on_up: Callable[[lifecycle.Up], None] | None = None,
) -> lifecycle.Up:
    """Bring the stack up; tell `on_up` (the CLI prints it); with `bootstrap`, make it ready (its log in
    the stack's state folder). Raises StackBusyError when a run holds it, ConfigError when what runs is
    not what was asked, CloudError/RemoteError for the cloud's or the instance's failures."""
    up = _bring_up(stack, reporter, source)
    if on_up is not None:
        on_up(up)
    if bootstrap and stack.bootstrap:
        _make_ready(stack, up, reporter)
    return up


def _bring_up(stack: Stack, reporter: Reporter, source: str) -> lifecycle.Up:
    check_free(stack.name)
    require_account(stack.region)  # credentials and region first: the cause of a failure comes first
    existing = lifecycle.reusable_instance(stack)
    if existing is not None:
        return lifecycle.bring_up(stack, existing=existing, reporter=reporter, stack_source=source)
    launched: list[str] = []
    try:
        return lifecycle.bring_up(
            stack, reporter=reporter, stack_source=source, on_launched=lambda st: launched.append(st.name)
        )
    except BaseException:
        if launched:  # this call made an instance: remove the stack rather than leave it half-made
            with contextlib.suppress(Ec2dbnError, KeyboardInterrupt):
                lifecycle.tear_down(stack.name, stack.region, reporter=reporter)
        raise


def _make_ready(stack: Stack, up: lifecycle.Up, reporter: Reporter) -> None:
    st = up.state
    log = state.stack_dir(st.name) / BOOTSTRAP_LOG
    try:
        ready = make_ready(st, stack.bootstrap, log, reporter=reporter)
        ready.remote.close()
    except Ec2dbnError as exc:
        raise type(exc)(
            f"{exc} — {st.instance_id} is still running: `ec2dbn teardown {st.name} --yes` removes it"
        ) from None
    assert ready.bootstrap is not None
    reporter.step(f"bootstrapped in {ready.bootstrap.total_s:.1f}s (log: {log})")
