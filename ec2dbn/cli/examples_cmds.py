"""The example jobs shipped with ec2dbn: `ec2dbn examples`, and JOB arguments that accept their names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ec2dbn.cli import cli
from ec2dbn.cli.options import json_option
from ec2dbn.cli.output import printable, stdout
from ec2dbn.spec.jobfiles import bundled_examples, job_path


class JobFile(click.ParamType):
    """A job YAML: a file path, or the name of a bundled example (`ec2dbn examples`)."""

    name = "job"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Path:
        return value if isinstance(value, Path) else job_path(str(value))


JOB_FILE = JobFile()


@cli.command()
@click.argument("name", required=False)
@json_option("List them as JSON (name, description, path).")
def examples(name: str | None, as_json: bool) -> None:
    """List the example jobs shipped with ec2dbn, or print example NAME (to copy and edit).

    Wherever a job file is expected, an example's name works too.

    \b
    Examples:
      ec2dbn examples
      ec2dbn train --local seed-mnist5k
      ec2dbn examples seed-mnist > my-job.yaml
      ec2dbn examples --json | jq -r '.[].name'
    """
    if name is not None and as_json:
        raise click.UsageError("--json lists the examples: give no NAME with it")
    if name is not None:
        click.echo(job_path(name).read_text(encoding="utf-8"), nl=False)
        return
    found = bundled_examples()
    if as_json:
        from trainer.strict_json import dumps

        doc = [{"name": e.name, "description": e.description, "path": str(e.path)} for e in found]
        click.echo(dumps(doc, indent=2))
        return
    width = max((len(e.name) for e in found), default=0)
    for example in found:
        stdout.print(printable(f"{example.name.ljust(width)}  {example.description}"))
