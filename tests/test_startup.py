"""Start-up (issue 27): `ec2dbn --help` lists every verb with its own short help while importing none of
the verbs' modules nor boto3, NumPy, rich or pydantic; a verb still runs by name. The time itself is
measured by benchmarks/bench_startup.py, not here (no test depends on the machine's speed)."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from ec2dbn.cli import cli, main
from ec2dbn.cli.verbs import VERBS, load_all

HEAVY = ("boto3", "botocore", "numpy", "rich", "pydantic", "paramiko", "matplotlib")


def _fresh(code: str) -> str:
    """`code` run in a new interpreter (nothing imported yet); its stdout."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["-h"]])
def test_help_and_version_import_no_verb_and_nothing_heavy(argv: list[str]) -> None:
    out = _fresh(
        "import json, sys\n"
        "from ec2dbn.cli import main\n"
        f"rc = main({argv!r})\n"
        "print(json.dumps([rc, sorted(m for m in sys.modules if m.startswith('ec2dbn.cli.'))]))\n"
    )
    rc, loaded = json.loads(out.splitlines()[-1])
    assert rc == 0 and loaded == ["ec2dbn.cli.verbs"]
    heavy = _fresh(
        f"import sys\nfrom ec2dbn.cli import main\nmain({argv!r})\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    assert heavy.splitlines()[-1] == "[]"


def test_help_lists_every_verb_with_its_own_short_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out.split("Commands:\n", 1)[1].splitlines()
    load_all()
    assert set(cli.commands) == set(VERBS)  # a new verb is added to VERBS too
    assert [line.split()[0] for line in listed] == sorted(cli.commands)
    # At any width, the list reads exactly as click's own, made from every verb's docstring.
    ctx = click.Context(cli, info_name="ec2dbn")
    for width in (60, 80, 100, 300):
        ours, clicks = click.HelpFormatter(width=width), click.HelpFormatter(width=width)
        cli.format_commands(ctx, ours)
        click.Group.format_commands(cli, ctx, clicks)
        assert ours.getvalue() == clicks.getvalue()


def test_a_verb_runs_by_name_and_a_typo_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examples"]) == 0 and "seed-mnist5k" in capsys.readouterr().out
    assert main(["trian"]) == 2
    assert "No such command 'trian'" in capsys.readouterr().err
