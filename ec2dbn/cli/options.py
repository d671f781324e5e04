"""Options shared by several verbs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from ec2dbn.config import DEFAULT_STACK
from ec2dbn.errors import ConfigError

#: `--stack NAME|PATH`, handed to the command as `stack_ref` (None: the default stack).
stack_option = click.option(
    "--stack",
    "stack_ref",
    metavar="NAME|PATH",
    help=f"Bundled stack or YAML file [default: {DEFAULT_STACK}].",
)


def market_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--spot` / `--on-demand`, handed to the command as `spot`: True, False, or None (the stack's market).

    Two flags rather than click's `--spot/--on-demand` pair, which silently keeps the last one given:
    both on one command line contradict each other, and that is a usage error (exit 2), not a guess.
    """

    @click.option("--spot", "market_spot", is_flag=True, help="Use spot instances (overrides the stack).")
    @click.option(
        "--on-demand", "market_on_demand", is_flag=True, help="Use on-demand instances (overrides the stack)."
    )
    @functools.wraps(command)
    def wrapper(*args: Any, market_spot: bool, market_on_demand: bool, **kwargs: Any) -> Any:
        if market_spot and market_on_demand:
            raise ConfigError("--spot and --on-demand contradict each other: give one of them")
        return command(*args, spot=True if market_spot else (False if market_on_demand else None), **kwargs)

    return wrapper
