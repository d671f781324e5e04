"""What a first-time user meets, injected on ec2dbn's real clients: each refusal is one line with its
fix and exit code, nothing is left behind, and `train`/`launch` ask about credentials and region first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.aws.helpers import NOTHING, cli
from tests.support.moto_server import MotoServer, add_hook, inject_error, tagged_resources

SEED = str(Path(__file__).resolve().parents[2] / "examples" / "seed-mnist.yaml")


def error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("service", "operation", "code", "rc", "words"),
    [
        (
            "ssm",
            "GetParameter",
            "ExpiredTokenException",
            2,
            "the AWS credentials have expired (ExpiredTokenException): refresh them (`aws sso login`",
        ),
        ("sts", "GetCallerIdentity", "ExpiredToken", 2, "the AWS credentials have expired (ExpiredToken)"),
        (
            "ssm",
            "GetParameter",
            "AccessDeniedException",
            1,
            "(AccessDeniedException): they lack ssm:GetParameter; attach the policy `ec2dbn iam-policy`",
        ),
        (
            "ec2",
            "DescribeAvailabilityZones",
            "AuthFailure",
            2,
            "AWS could not validate the credentials (AuthFailure",
        ),
        (
            "ec2",
            "DescribeAvailabilityZones",
            "OptInRequired",
            1,
            "us-east-1 is not enabled for this account, or the account is not subscribed to EC2 "
            "(OptInRequired): enable the region",
        ),
        (
            "ec2",
            "RunInstances",
            "PendingVerification",
            1,
            "the AWS account is still being verified (PendingVerification)",
        ),
        (
            "ec2",
            "RunInstances",
            "InvalidAMIID.NotFound",
            2,
            "the image does not exist in us-east-1 (InvalidAMIID.NotFound",
        ),
        (
            "ec2",
            "RunInstances",
            "UnauthorizedOperation",
            1,
            "(UnauthorizedOperation): they lack ec2:RunInstances",
        ),
        ("ec2", "CreateSecurityGroup", "UnauthorizedOperation", 1, "they lack ec2:CreateSecurityGroup"),
    ],
)
def test_first_time_refusals_are_one_line_with_the_fix(
    service: str,
    operation: str,
    code: str,
    rc: int,
    words: str,
    aws: MotoServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    inject_error(operation, code, "injected", times=None, service=service)
    got, _, err = cli(capsys, "launch", "--no-bootstrap")
    assert got == rc
    assert words in error_line(err)
    assert tagged_resources(aws) == NOTHING  # what the failed launch created is gone again


@pytest.mark.parametrize("verb", [["launch", "--no-bootstrap"], ["train", SEED], ["plan", SEED]])
def test_credentials_and_region_are_asked_first(
    verb: list[str],
    aws: MotoServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # the failed train's results/<run-id>/ goes here, not into the checkout
    calls: list[str] = []
    add_hook("before-send", lambda request, **_: calls.append(_operation(request)))
    inject_error("DescribeAvailabilityZones", "OptInRequired", "not subscribed", times=None)
    rc, _, err = cli(capsys, *verb)
    assert rc == 1 and "(OptInRequired)" in error_line(err)
    # STS, then the region's zones; nothing about instances, images, keys or groups was asked.
    assert calls == ["GetCallerIdentity"], calls  # the injected call short-circuits before sending


def _operation(request: Any) -> str:
    body = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
    target = request.headers.get("X-Amz-Target", b"")
    if target:
        return (target.decode() if isinstance(target, bytes) else target).split(".")[-1]
    return next((p.split("=", 1)[1] for p in body.split("&") if p.startswith("Action=")), "?")
