"""Bad input through the `ec2dbn` command, as a user types it: exit code 2, exactly one `error:` line, no
traceback, and not one request sent to AWS (moto's server counts none and holds nothing tagged).

Hostile YAML (alias bombs, recursive aliases, deep nesting) is refused on its shape before it is expanded
(tests/trainer/test_safe_yaml.py checks the loader itself); a network too large for the GPU or RAM it would
train in is refused with the figures; a corrupt state.json does not stop `teardown`, which works from tags.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ec2dbn.cli import main
from ec2dbn.stack import state
from tests.aws.helpers import NOTHING
from tests.support.moto_server import MotoServer, count_calls, tagged_resources
from tests.trainer.test_safe_yaml import billion_laughs

REPO = Path(__file__).resolve().parents[2]
SEED_JOB = REPO / "examples" / "seed-mnist.yaml"
STACK = {"name": "t", "region": "us-east-1", "instance_type": "g4dn.xlarge", "image": "ubuntu22"}


def refused(capsys: pytest.CaptureFixture[str], aws: MotoServer, *argv: str) -> str:
    """Run `ec2dbn ARGV`; assert it is refused as bad input without touching AWS; return the error line."""
    calls = count_calls()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == 2, (rc, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in out + err
    assert calls.calls == 0, f"{calls.calls} AWS requests sent"
    assert tagged_resources(aws) == NOTHING
    return err


def write_yaml(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def job_file(tmp_path: Path, **model: object) -> Path:
    return write_yaml(
        tmp_path / "job.yaml", {"data": {"name": "digits"}, "model": {"layers": [64, 10], **model}}
    )


# ------------------------------------------------------------------------------ trailing newlines


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "nl\n"),
        ("region", "us-east-1\n"),
        ("image", "ami-0123456789abcdef0\n"),
        ("ssh_user", "ubuntu\n"),
        ("remote_dir", "~/ec2dbn\n"),
        ("availability_zones", ["us-east-1a\n"]),
        ("max_lifetime", "3h\n"),
    ],
)
def test_a_stack_field_ending_in_a_newline_is_refused(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], field: str, value: object
) -> None:
    stack = write_yaml(tmp_path / "stack.yaml", {**STACK, field: value})
    err = refused(capsys, aws, "launch", "--stack", str(stack), "--no-bootstrap")
    assert f".{field}" in err or f": {field}" in err, err


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--name", "nl\n"), ("--region", "us-east-1\n"), ("--image", "ami-0123456789abcdef0\n")],
)
def test_a_flag_ending_in_a_newline_is_refused(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    err = refused(capsys, aws, "launch", flag, value, "--no-bootstrap")
    assert err.startswith(f"error: {flag}: {value!r}"), err


@pytest.mark.parametrize("verb", [["teardown", "nl\n", "--yes"], ["status", "nl\n"]])
def test_a_stack_name_ending_in_a_newline_is_refused_by_every_verb(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], verb: list[str]
) -> None:
    assert "'nl\\n' is not a stack name" in refused(capsys, aws, *verb)


# ---------------------------------------------------------------------------------------- regions


@pytest.mark.parametrize(
    "argv",
    [
        ["launch", "--region", "us-east-9", "--no-bootstrap"],
        ["launch", "--region", "us-east-9", "--dry-run"],
        ["status", "--region", "us-east-9"],
        ["teardown", "--all", "--region", "us-east-9", "--yes"],
        ["catalog", "--region", "us-east-9"],
        ["plan", str(SEED_JOB), "--stack", "REGION_STACK"],
    ],
)
def test_a_region_that_does_not_exist_is_named_as_such(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    stack = write_yaml(tmp_path / "stack.yaml", {**STACK, "region": "us-east-9"})
    err = refused(capsys, aws, *[str(stack) if a == "REGION_STACK" else a for a in argv])
    assert "'us-east-9' is not an AWS region; did you mean us-east-1 or us-east-2?" in err


@pytest.mark.parametrize(
    "region", ["af-south-1", "me-central-1", "ap-southeast-7", "il-central-1", "us-gov-west-1"]
)
def test_opt_in_and_partition_regions_are_regions(region: str) -> None:
    from ec2dbn.spec.stack import parse_stack

    assert parse_stack({**STACK, "region": region}).region == region


def test_an_unknown_region_in_the_environment_is_refused_too(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-9")
    assert "'us-east-9' is not an AWS region" in refused(capsys, aws, "status")


@pytest.mark.parametrize(
    "argv",
    [
        ["launch", "--spot", "--on-demand", "--no-bootstrap"],
        ["launch", "--on-demand", "--spot", "--dry-run"],
        ["plan", str(SEED_JOB), "--spot", "--on-demand"],
        ["train", str(SEED_JOB), "--on-demand", "--spot"],
    ],
)
def test_spot_and_on_demand_together_is_a_usage_error(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert "--spot and --on-demand contradict each other" in refused(capsys, aws, *argv)


# ----------------------------------------------------------------------------------- hostile YAML


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (f"data: {{name: digits}}\nmodel:\n  layers: {billion_laughs()}\n", "more than 10,000 values"),
        (
            f"data: {{name: digits}}\nmodel: {{layers: [64, 10]}}\nrun: {billion_laughs()}\n",
            "more than 10,000",
        ),
        ("data: {name: digits}\nmodel: &m {layers: [64, 10], x: *m}\n", "contains itself"),
        ("data: {name: digits}\nmodel: {layers: " + "[" * 20_000 + "]" * 20_000 + "}\n", "nested deeper"),
        ("x: " + "[" * 200_000 + "]" * 200_000 + "\n", "larger than 64 KiB"),
    ],
)
def test_a_hostile_job_file_is_refused(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, words: str
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(text)
    assert words in refused(capsys, aws, "plan", str(job))
    assert words in refused(capsys, aws, "train", str(job), "--local", "--results", str(tmp_path / "r"))
    assert not (tmp_path / "r").exists()


def test_a_hostile_stack_file_is_refused(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(f"name: t\nregion: us-east-1\ninstance_type: g4dn.xlarge\ntags: {billion_laughs()}\n")
    assert "more than 10,000 values" in refused(capsys, aws, "launch", "--stack", str(stack))
    stack.write_text("name: t\nregion: us-east-1\ninstance_type: &t [g4dn.xlarge, *t]\n")
    assert "contains itself" in refused(capsys, aws, "launch", "--stack", str(stack), "--dry-run")


# ---------------------------------------------------------------------------- the job's own values


@pytest.mark.parametrize(
    ("job", "words"),
    [
        ({"data": {"name": "digits", "seed": 2**32}}, "data.seed: expected an integer from 0 to 4294967295"),
        ({"data": {"name": "mnsit"}}, "data.name: unknown data set 'mnsit' (did you mean 'mnist'?)"),
        (
            {"data": {"name": "digits"}, "run": {"max_hours": 2}},
            "run.max_hours: unknown key (allowed: max_lifetime)",
        ),
        (
            {"data": {"name": "digits"}, "run": {"max_lifetime": "3x"}},
            "run.max_lifetime: '3x' is not a duration",
        ),
        ({"data": {"name": "digits"}, "stack": 5}, "stack: expected a stack name"),
    ],
)
def test_bad_job_values_are_refused(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], job: dict, words: str
) -> None:
    path = write_yaml(tmp_path / "job.yaml", {"model": {"layers": [64, 10]}, **job})
    assert words in refused(capsys, aws, "plan", str(path))
    assert words in refused(capsys, aws, "train", str(path), "--local", "--results", str(tmp_path / "r"))


def test_the_jobs_max_lifetime_replaces_the_stacks(aws: MotoServer, tmp_path: Path, capsys) -> None:
    job = write_yaml(
        tmp_path / "job.yaml", {**yaml.safe_load(SEED_JOB.read_text()), "run": {"max_lifetime": "45m"}}
    )
    assert main(["plan", str(job)]) == 0
    assert "lifetime   45m: the instance terminates itself" in capsys.readouterr().out


# ------------------------------------------------------------------------------ networks too large


def test_a_network_too_large_for_the_gpu_is_refused_with_the_figures(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = write_yaml(
        tmp_path / "job.yaml", {"data": {"name": "mnist"}, "model": {"layers": [784, 100_000_000, 10]}}
    )
    for argv in (["plan", str(job)], ["train", str(job)]):
        err = refused(capsys, aws, *argv)
        assert "model.layers [784, 100000000, 10] needs at least " in err
        assert "weights 296.5 GiB" in err  # W0 alone: 784 x 10**8 float32 = 292 GiB
        assert "but g4dn.xlarge's NVIDIA T4 has 16.0 GiB; use narrower layers" in err
    # the seed network fits the same GPU
    assert main(["plan", str(SEED_JOB)]) == 0


def test_a_cpu_stack_is_checked_against_its_ram_and_refuses_cupy(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wide = {"data": {"name": "digits"}, "model": {"layers": [64, 50_000_000, 10]}}
    job = write_yaml(tmp_path / "job.yaml", wide)
    err = refused(capsys, aws, "plan", str(job), "--stack", "cpu-ondemand")
    assert "has (RAM; it trains on the CPU)" in err
    job = write_yaml(tmp_path / "job.yaml", {**wide, "model": {"layers": [64, 10]}, "backend": "cupy"})
    assert "backend: cupy needs a GPU" in refused(capsys, aws, "plan", str(job), "--stack", "cpu-ondemand")


def test_a_network_too_large_for_this_machine_is_refused_before_training(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ec2dbn.spec.memory import local_memory_bytes

    ram = local_memory_bytes()
    assert ram is not None
    width = ram // (4 * 64) + 1  # W0 alone (64 x width float32) is larger than this machine's RAM
    job = write_yaml(
        tmp_path / "job.yaml", {"data": {"name": "digits"}, "model": {"layers": [64, width, 10]}}
    )
    err = refused(capsys, aws, "train", str(job), "--local", "--results", str(tmp_path / "r"))
    assert "but this machine has " in err and "or train on EC2" in err
    assert not (tmp_path / "r").exists()


# -------------------------------------------------------------------------------- corrupt state.json


@pytest.mark.parametrize(
    "content",
    [
        b"[" * 100_000 + b"]" * 100_000,  # past Python's recursion limit in json
        b'{"name": "g4dn-spot", "region": "us-east-1", "x": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
        b"\x00\xff garbage",
        b"[]",
        b'{"name": 5}',
    ],
)
def test_teardown_works_from_tags_whatever_state_json_holds(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], content: bytes
) -> None:
    assert main(["launch", "--spot", "--no-bootstrap"]) == 0
    assert tagged_resources(aws)["instances"]
    path = state.stack_dir("g4dn-spot") / "state.json"
    path.write_bytes(content)
    capsys.readouterr()
    assert main(["status"]) == 0
    assert main(["teardown", "g4dn-spot", "--yes"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert tagged_resources(aws) == NOTHING
    assert not path.exists()  # the corrupt local state went with the stack


def test_json_state_nesting_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ec2dbn.errors import Ec2dbnError

    monkeypatch.setenv("EC2DBN_HOME", str(tmp_path))
    state.stack_dir("t").joinpath("state.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(Ec2dbnError) as err:
        state.load("t")
    assert "\n" not in str(err.value) and "works from tags" in str(err.value)
    state.stack_dir("t").joinpath("state.json").write_text(json.dumps({"name": "t"}) + " " * (2 << 20))
    with pytest.raises(Ec2dbnError, match="larger than 1024 KiB"):
        state.load("t")


def test_no_pattern_in_the_code_can_end_before_a_newline() -> None:
    """Guarantee by structure: `$` also matches before a trailing newline, so no regular expression in
    ec2dbn/ or trainer/ may use it as an end anchor (validators use fullmatch, or \\Z)."""
    import ast
    import re

    offenders = []
    for path in [*REPO.joinpath("ec2dbn").rglob("*.py"), *REPO.joinpath("trainer").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "re"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and re.search(r"(?<!\\)\$", node.args[0].value)
            ):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not offenders, offenders
