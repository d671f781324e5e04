"""One answer per cause (issue 27): no credentials, expired ones and rejected ones give the same line and
the same exit code in every verb that asks AWS; `status` still shows what the state dir knows, marked as
not confirmed. Against moto as a real server, the CLI run in this process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from tests.aws.helpers import cli
from tests.support.moto_server import MotoServer, add_hook

SEED = str(Path(__file__).resolve().parents[2] / "examples" / "seed-mnist.yaml")
VERBS = [
    ["plan", SEED],
    ["launch", "--no-bootstrap"],
    ["status"],
    ["check"],
    ["teardown", "--all", "--yes"],
    ["teardown", "--stack", "g4dn-spot", "--yes"],
    ["catalog", "--live"],
]


def _refuse_every_call(code: str) -> None:
    """Every AWS call of every service answers `code` (as AWS does for expired or unknown keys)."""

    def handler(**_: Any) -> Any:
        body = {"Error": {"Code": code, "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return AWSResponse("http://injected", 400, {}, None), body

    add_hook("before-call", handler)


@pytest.mark.parametrize("cause", ["missing", "ExpiredToken", "InvalidClientTokenId"])
def test_every_verb_gives_the_same_line_and_exit_code_for_a_credentials_cause(
    cause: str, aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    if cause == "missing":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    else:
        _refuse_every_call(cause)
    answers = set()
    for verb in VERBS:
        rc, out, err = cli(capsys, *verb)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (verb, err)
        assert "left resources behind" not in err and "skipped" not in out
        answers.add((rc, lines[0]))
    assert len(answers) == 1, answers
    ((rc, line),) = answers
    assert rc == 2 and ("credentials" in line and "AWS_" in line)


def test_status_without_credentials_shows_the_state_dir_marked_unconfirmed(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    rc, out, _ = cli(capsys, "status", "--json")
    (online,) = json.loads(out)
    assert rc == 0 and online["state"] == "running" and "not confirmed" not in online["note"]
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    rc, out, err = cli(capsys, "status", "--json")
    (offline,) = json.loads(out)
    assert rc == 2 and err.strip().startswith("error: no AWS credentials found")
    assert offline["name"] == "g4dn-spot" and offline["state"] == "running?"
    assert offline["instance_id"] == online["instance_id"]
    assert offline["note"] == "not confirmed with AWS (no AWS credentials found): local state only"

    rc, out, err = cli(capsys, "status")
    assert rc == 2 and "g4dn-spot" in out and "running?" in out and "not confirmed" in out
    assert len(err.strip().splitlines()) == 1


def test_teardown_all_says_what_it_could_not_look_at(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.support.moto_server import inject_error

    inject_error("DescribeInstances", "RequestLimitExceeded", "slow down", times=None)
    rc, _, err = cli(capsys, "teardown", "--all", "--yes")
    (line,) = err.strip().splitlines()
    assert rc == 1 and "left resources behind" not in line
    assert line.startswith("error: teardown --all is not complete: could not look at us-east-1 (")
