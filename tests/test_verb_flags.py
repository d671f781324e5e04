"""One convention for verbs and flags (issue 27, item 5): README's table of verbs × flags is what the CLI
has, `--stack` names the launched stack wherever a positional NAME does, and the renamed flags keep their
old spelling working."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ec2dbn.cli import cli, main
from ec2dbn.cli.verbs import load_all

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EC2DBN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def _readme_table() -> tuple[list[str], dict[str, list[bool]]]:
    """(flag columns, verb -> ticks) of README's verbs × flags table."""
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| verb |"))
    head = [c.strip() for c in lines[start].strip("|").split("|")][1:]
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = [c == "✓" for c in cells[1:]]
    return head, rows


def _options(verb: str) -> set[str]:
    return {o for p in cli.commands[verb].params if not getattr(p, "hidden", False) for o in p.opts}


def test_readme_table_of_verbs_and_flags_is_the_cli() -> None:
    load_all()
    head, rows = _readme_table()
    assert set(rows) == set(cli.commands)  # every verb, no other
    for verb, ticks in rows.items():
        have = _options(verb)
        for column, ticked in zip(head, ticks, strict=True):
            flags = re.findall(r"`(--[a-z-]+)`", column)
            assert flags, column
            assert all(f in have for f in flags) == ticked, (verb, column)


@pytest.mark.parametrize("verb", ["status", "logs", "ssh", "teardown"])
def test_the_launched_stack_is_stack_or_name(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    load_all()
    assert {"--stack"} <= _options(verb)
    # Both spellings reach the same check: an invalid name is refused the same way.
    extra = ["--yes"] if verb == "teardown" else []
    assert main([verb, "BadName", *extra]) == 2
    by_name = capsys.readouterr().err
    assert main([verb, "--stack", "BadName", *extra]) == 2
    assert capsys.readouterr().err == by_name and "BadName" in by_name
    assert main([verb, "a-stack", "--stack", "b-stack", *extra]) == 2
    assert "two stacks named: a-stack and --stack b-stack" in capsys.readouterr().err


def test_bench_writes_under_results_and_out_still_works() -> None:
    load_all()
    params = {p.name: p for p in cli.commands["bench"].params}
    assert "--results" in params["results_root"].opts and params["out_dir"].hidden
    assert "--out" in params["out_dir"].opts


def test_bench_region_goes_with_its_stack(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "seed-mnist", "--local", "--region", "us-west-2"]) == 2
    assert "--region goes with --stack" in capsys.readouterr().err


def test_sweep_takes_the_shared_market_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", "seed-mnist5k", "--spot", "--on-demand", "--grid", "model.epochs=1,2"]) == 2
    assert "--spot and --on-demand contradict each other" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "seed-mnist"],
        ["plan", "seed-mnist"],
        ["bake"],
        ["sweep", "seed-mnist", "--grid", "model.epochs=1,2", "--dry-run"],
        ["bench", "seed-mnist", "--stack", "g4dn-spot"],
    ],
)
def test_region_is_taken_and_checked_before_anything(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--region", "us-esat-1"]) == 2
    err = capsys.readouterr().err
    assert "'us-esat-1' is not an AWS region; did you mean us-east-1?" in err and len(err.splitlines()) == 1


def test_train_and_sweep_json_print_their_record_alone_on_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    job = tmp_path / "tiny.yaml"
    job.write_text("data: {name: digits}\nmodel: {layers: [64, 20, 10], epochs: 1}\nbackend: numpy\n")
    assert main(["train", "--local", str(job), "--json"]) == 0
    out, err = capsys.readouterr()
    run = json.loads(out)  # nothing else on stdout: the trainer's lines went to stderr
    assert run["status"] == "finished" and Path(run["results_dir"], "run.json").is_file()
    assert "Epoch 1:" in err
    assert main(["sweep", str(job), "--local", "--grid", "model.learn_rates=0.1,0.3", "--json"]) == 0
    out, err = capsys.readouterr()
    sweep = json.loads(out)
    assert sweep["status"] == "finished" and [p["status"] for p in sweep["points"]] == ["finished"] * 2
    assert "finished (exit 0)" in err
