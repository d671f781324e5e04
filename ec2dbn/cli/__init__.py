"""The `ec2dbn` command: the only place that prints or exits.

Verbs live in sibling modules (one per family) and register on `cli` when imported, which happens only
for the verb being run (ec2dbn.cli.verbs: `--help` and `--version` import none of them). Errors below
`Ec2dbnError` become one line on stderr and their exit code; anything else is a bug: one line and exit
code 1, the traceback only with --debug.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ec2dbn import __version__
from ec2dbn.cli.verbs import LazyGroup, load_all
from ec2dbn.errors import Ec2dbnError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def results_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--results DIR` (default results/), passed to the verb as `results_root`."""
    return click.option(
        "--results",
        "results_root",
        type=click.Path(file_okay=False, path_type=Path),
        default=Path("results"),
        show_default=True,
        help=help_text,
    )


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="ec2dbn")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Run GPU training jobs on AWS EC2 as code.

    \b
    Typical session:
      ec2dbn examples                      # the example jobs shipped with ec2dbn
      ec2dbn train --local seed-mnist5k    # an example by name (or a job file); no AWS needed
      ec2dbn launch --spot                 # a tagged, self-terminating GPU box
      ec2dbn train seed-mnist              # ship, run, stream, pull, tear down
      ec2dbn teardown --all --yes          # remove everything ec2dbn created
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _register_commands() -> None:
    """Every verb registered on `cli` now (a run imports only the verb it runs: ec2dbn.cli.verbs)."""
    load_all()


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: returns the process exit code (setuptools wraps it in sys.exit).

    A verb signals a non-zero outcome by raising an `Ec2dbnError` or by returning an int.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = cli.main(args=args, prog_name="ec2dbn", standalone_mode=False)
    except Ec2dbnError as exc:
        if "--debug" in args:
            raise
        _print_error(str(exc))
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except Exception as exc:  # a bug: still one line (and a final run.json), the traceback on --debug
        if "--debug" in args:
            raise
        _print_error(
            f"unexpected {type(exc).__name__}: {exc} — a bug in ec2dbn; rerun with --debug for the traceback"
        )
        return 1
    return result if isinstance(result, int) else 0


def _print_error(message: str) -> None:
    """One line on stderr. Messages quote remote output and file contents: shown as text (controls escaped,
    no markup), and on one line."""
    from ec2dbn.cli.output import stderr, styled

    with contextlib.suppress(OSError):  # the terminal may be gone (SIGHUP)
        stderr.print(styled(("error:", "bold red"), " ", " ".join(message.splitlines())))
