"""The stack a launch-like command means: a stack file with the command line's flags (and a job's
`run.max_lifetime`) applied, validated like the file was, in the region `launch` chooses.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import ValidationError

from ec2dbn.errors import ConfigError
from ec2dbn.spec.stack import Stack, load_stack, one_line

#: The command-line flag (or job key) that sets each stack field: errors name what the user typed.
_FLAG_FOR_FIELD = {
    "name": "--name",
    "region": "--region",
    "instance_type": "--instance-type",
    "market": "--spot/--on-demand",
    "ssh_cidr": "--ssh-cidr",
    "image": "--image",
    "max_lifetime": "run.max_lifetime",
}


def apply_overrides(
    stack: Stack,
    *,
    name: str | None = None,
    region: str | None = None,
    instance_types: list[str] | tuple[str, ...] | None = None,
    market: str | None = None,
    ssh_cidr: str | None = None,
    image: str | None = None,
    max_lifetime: str | None = None,
) -> Stack:
    """The stack with command-line values (and a job's `run.max_lifetime`) replacing its own, validated like
    the file was.

    Changing the region drops the stack's availability_zones (they belong to the old region).
    Errors name the flag: "--ssh-cidr: '1.2.3.4/33' is not ...".
    """
    data = stack.model_dump()
    changes: dict[str, Any] = {
        "name": name,
        "region": region,
        "instance_type": list(instance_types) if instance_types else None,
        "market": market,
        "ssh_cidr": ssh_cidr,
        "image": image,
        "max_lifetime": max_lifetime,
    }
    changes = {k: v for k, v in changes.items() if v is not None}
    if "region" in changes and changes["region"] != stack.region:
        data["availability_zones"] = None
        if stack.vpc_id or stack.subnet_ids:  # VPCs and subnets are regional: they cannot follow
            raise ConfigError(
                f"--region: stack {stack.name}'s vpc_id/subnet_ids are in {stack.region}; "
                f"use a stack file for {changes['region']}, or leave --region out"
            )
    data.update(changes)
    try:
        return Stack.model_validate(data)
    except ValidationError as exc:
        loc = exc.errors()[0]["loc"]
        flag = _FLAG_FOR_FIELD.get(str(loc[0])) if loc else None
        raise one_line(exc, flag or f"stack {stack.name}", name_field=flag is None) from None


def launch_region(flag: str | None, stack: Stack) -> str:
    """Where `launch` puts the stack: --region, else $AWS_REGION, else the stack's region."""
    return flag or os.environ.get("AWS_REGION") or stack.region


def load_for_launch(
    ref: str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    region: str | None = None,
    spot: bool | None = None,
    instance_types: list[str] | tuple[str, ...] = (),
    ssh_cidr: str | None = None,
    image: str | None = None,
    max_lifetime: str | None = None,
) -> Stack:
    """The stack a launch-like command means: `ref` (bundled name or path, default DEFAULT_STACK) with the
    command-line flags applied and the region chosen by `launch_region`. `spot` None keeps the market;
    `max_lifetime` (a job's `run.max_lifetime`) None keeps the stack's."""
    stack = load_stack(ref)
    market = None if spot is None else ("spot" if spot else "on-demand")
    return apply_overrides(
        stack,
        name=name,
        region=launch_region(region, stack),
        instance_types=list(instance_types) or None,
        market=market,
        ssh_cidr=ssh_cidr,
        image=image,
        max_lifetime=max_lifetime,
    )
