"""The first day's papercuts (issue 14): each answer is one line with the cause first, and the right exit
code — against moto as a real server, with the CLI run in this process."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from tests.aws.helpers import cli
from tests.support.moto_server import MotoServer, count_calls, tagged_resources

REPO = Path(__file__).resolve().parents[2]
SEED = str(REPO / "examples" / "seed-mnist.yaml")


@pytest.mark.parametrize("verb", ["logs", "ssh"])
def test_logs_and_ssh_for_an_unknown_stack_name_the_known_ones(
    verb: str, aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    rc, _, err = cli(capsys, verb, "g4dn-spto")
    assert rc == 2
    (line,) = err.strip().splitlines()
    assert "no launched stack g4dn-spto" in line and "g4dn-spot" in line


def test_teardown_of_a_misspelled_stack_is_refused_naming_the_real_ones(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    before = tagged_resources(aws)
    rc, out, err = cli(capsys, "teardown", "g4dn-spto", "--yes")
    assert rc == 2 and "nothing to remove" not in out
    (line,) = err.strip().splitlines()
    assert line == "error: no stack g4dn-spto in us-east-1 (known: g4dn-spot)"
    assert tagged_resources(aws) == before
    # The real name still works, and a second teardown of it (nothing left anywhere) is plain success.
    assert cli(capsys, "teardown", "g4dn-spot", "--yes")[0] == 0
    rc, out, _ = cli(capsys, "teardown", "g4dn-spot", "--yes")
    assert rc == 0 and "nothing to remove" in out


def test_declining_the_teardown_prompt_is_exit_1(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    rc, _, err = cli(capsys, "teardown", "g4dn-spot")
    assert rc == 1 and "kept stack g4dn-spot" in err
    assert len(tagged_resources(aws)["instances"]) == 1


def test_train_without_credentials_says_so_first_and_nothing_else(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    rc, _, err = cli(capsys, "train", SEED, "--results", str(tmp_path / "results"))
    assert rc == 2
    lines = [x for x in err.strip().splitlines() if not x.startswith("failed (exit")]
    assert lines[0].startswith("error: no AWS credentials found"), err
    assert "may still be running" not in err and "estimated cost" not in err and "teardown" not in err


def test_plan_works_without_knowing_the_public_ip(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EC2DBN_CALLER_IP")
    from ec2dbn.aws import network

    monkeypatch.setattr(network, "CHECKIP_URL", "http://127.0.0.1:9/")  # nothing answers there
    rc, out, err = cli(capsys, "plan", SEED)
    assert rc == 0, err
    assert "TCP 22 from your public IP as /32 (resolved at launch) only" in out


def test_train_and_plan_take_ssh_cidr(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = cli(capsys, "plan", SEED, "--ssh-cidr", "198.51.100.7/32")
    assert rc == 0 and "TCP 22 from 198.51.100.7/32 only" in out
    calls = count_calls()
    rc, _, err = cli(capsys, "train", SEED, "--ssh-cidr", "not-a-cidr")
    assert rc == 2 and "--ssh-cidr" in err and calls.calls == 0
