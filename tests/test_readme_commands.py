"""Everything README tells a user to type is true (issue 27): each `ec2dbn …` line in its code blocks names a
verb the CLI has, with options that verb takes and arguments it accepts, parsed by the CLI's own parser and
its callbacks (so an example's or a stack's name must be one ec2dbn ships). Files the README writes as
placeholders (`job.yaml`, `e2e-stack.yaml`) are real examples copied under those names."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import click
import pytest

from ec2dbn import package_data
from ec2dbn.cli import cli
from ec2dbn.cli.verbs import load_all
from ec2dbn.errors import Ec2dbnError

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> list[str]:
    """Every `ec2dbn VERB …` command in README's fenced code blocks, without prompt, comment or redirect."""
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if not line.startswith("ec2dbn "):
                continue
            line = re.split(r"\s#\s|\s>\s|\s\|\s", line)[0]
            commands.extend(part.strip() for part in line.split(" / "))  # "ec2dbn logs --follow / ec2dbn ssh"
    return commands


def test_readme_has_commands_to_check() -> None:
    verbs = {shlex.split(c)[1] for c in readme_commands()}
    assert {"train", "launch", "teardown", "sweep", "bake", "check", "iam-policy"} <= verbs


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EC2DBN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    shutil.copy(package_data.examples_dir() / "seed-mnist5k.yaml", tmp_path / "job.yaml")
    shutil.copy(package_data.stacks_dir() / "g4dn-spot.yaml", tmp_path / "e2e-stack.yaml")
    (tmp_path / "results").mkdir()
    load_all()
    words = shlex.split(command)
    assert words[0] == "ec2dbn"
    verb = cli.commands.get(words[1])
    assert verb is not None, f"README names a verb the CLI lacks: {command}"
    try:
        verb.make_context(words[1], words[2:])
    except click.exceptions.Exit:
        pass  # --help and the like
    except (click.ClickException, Ec2dbnError) as e:
        pytest.fail(f"README's `{command}` is refused by the CLI: {e}")


def test_a_wrong_readme_command_would_be_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: a misspelt flag and an unknown example are refused by the same parse."""
    monkeypatch.chdir(tmp_path)
    load_all()
    with pytest.raises(click.NoSuchOption):
        cli.commands["train"].make_context("train", ["seed-mnist", "--kep"])
    with pytest.raises(Ec2dbnError, match="not found"):
        cli.commands["train"].make_context("train", ["seed-mnsit"])
