"""Options shared by several verbs."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from ec2dbn.errors import ConfigError
from ec2dbn.spec.stack import DEFAULT_STACK

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


Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def region_option(help: str = "Override the region (else $AWS_REGION, else the stack's).") -> Decorator:
    """`--region REGION`, handed to the command as `region` (None: the verb's default)."""
    return click.option("--region", help=help)


def json_option(help: str = "Machine-readable output.") -> Decorator:
    """`--json`, handed to the command as `as_json`: what a script reads, on stdout alone."""
    return click.option("--json", "as_json", is_flag=True, help=help)


def ssh_cidr_option(help: str = "Who may SSH in (default: the stack's, usually your IP /32).") -> Decorator:
    """`--ssh-cidr CIDR|auto`, handed to the command as `ssh_cidr` (None: the stack's)."""
    return click.option("--ssh-cidr", metavar="CIDR|auto", help=help)


def name_option(help: str = "Stack name to use (default: the stack file's `name`).") -> Decorator:
    """`--name NAME`: the stack's name for this launch, handed to the command as `name`."""
    return click.option("--name", help=help)


def image_option(
    help: str = "Override the image (dlami-ubuntu22, ubuntu22, ubuntu24, ami-...).",
) -> Decorator:
    """`--image ALIAS|AMI`, handed to the command as `image` (None: the stack's)."""
    return click.option("--image", metavar="ALIAS|AMI", help=help)


def backend_option(help: str = "Override the job's backend.") -> Decorator:
    """`--backend auto|numpy|cupy`, handed to the command as `backend`: applied to the job when it is
    validated (ec2dbn.run.validate.with_backend)."""
    return click.option("--backend", type=click.Choice(["auto", "numpy", "cupy"]), help=help)


def dry_run_option(help: str) -> Decorator:
    """`--dry-run`: say what would happen, create nothing; handed to the command as `dry_run`."""
    return click.option("--dry-run", is_flag=True, help=help)


def launched_stack(command: Callable[..., Any]) -> Callable[..., Any]:
    """The launched stack a verb acts on: `--stack NAME`, as in launch/train/check, or a positional NAME
    (kept as an alias); handed to the command as `name` (None: the only one, or the verb's default).
    Both given and different is a usage error (exit 2), not a guess."""

    @click.argument("name", required=False, metavar="[NAME]")
    @click.option("--stack", "stack_flag", metavar="NAME", help="The launched stack (same as NAME).")
    @functools.wraps(command)
    def wrapper(*args: Any, name: str | None, stack_flag: str | None, **kwargs: Any) -> Any:
        if name and stack_flag and name != stack_flag:
            raise ConfigError(f"two stacks named: {name} and --stack {stack_flag}; give one")
        return command(*args, name=name or stack_flag, **kwargs)

    return wrapper
