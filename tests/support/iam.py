"""Pytest plugin: run ec2dbn as an IAM user that holds only a given policy, with moto enforcing IAM.

`iam` (function fixture, request it before `fake_cloud`): makes an admin IAM user for the test harness's
own clients (moto, once enforcing, refuses the default keys too), and `iam.only(document)` creates the
user ec2dbn runs as, with `document` attached as a managed policy (as README tells users to), puts its
access key in the environment and turns moto's enforcement on until the block ends.

What moto's enforcement checks (moto 5.2.5, read in moto/core/responses.py and moto/iam/access_control.py):
the Action of every request against the caller's policies, with Deny winning. It does not do what AWS
does with Resource and Condition: EC2 requests are checked against the resource "*" only, and identity
policies' conditions are not evaluated (no request context is passed). A resource-scoped Allow would
never match there, so `moto_view` widens each statement's Resource to "*" and keeps everything else.
The scoping itself (ARNs, condition keys per action and resource type) is judged by a real policy
evaluator over every recorded request instead (tests/support/policy_proof.py).
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.moto_server import DEFAULT_CREDENTIALS, MotoServer


def moto_view(document: dict[str, Any]) -> dict[str, Any]:
    """`document` as moto can enforce it: every statement's Resource widened to "*" (see module doc)."""
    view = copy.deepcopy(document)
    for st in view["Statement"]:
        st["Resource"] = "*"
    return view


def without(document: dict[str, Any], action: str) -> dict[str, Any]:
    """`document` with `action` taken out of every statement (statements left empty are dropped)."""
    out = copy.deepcopy(document)
    kept = []
    for st in out["Statement"]:
        acts = [st["Action"]] if isinstance(st["Action"], str) else list(st["Action"])
        acts = [a for a in acts if a != action]
        if acts:
            kept.append({**st, "Action": acts})
    out["Statement"] = kept
    return out


class IamHarness:
    def __init__(self, server: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.server = server
        self.monkeypatch = monkeypatch
        self.client = server.client("iam")
        admin = self._user(
            "harness-admin",
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
        )
        server.use_credentials(*admin)
        self.client = server.client("iam")

    def _user(self, name: str, document: dict[str, Any]) -> tuple[str, str]:
        self.client.create_user(UserName=name)
        arn = self.client.create_policy(PolicyName=f"{name}-policy", PolicyDocument=json.dumps(document))[
            "Policy"
        ]["Arn"]
        self.client.attach_user_policy(UserName=name, PolicyArn=arn)
        key = self.client.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    @contextlib.contextmanager
    def only(self, document: dict[str, Any], name: str = "ec2dbn-user") -> Iterator[None]:
        """Within the block, ec2dbn (boto3's default chain) runs as a user holding only `document`
        (in its moto view), and moto enforces IAM on every request."""
        key, secret = self._user(name, moto_view(document))
        self.monkeypatch.setenv("AWS_ACCESS_KEY_ID", key)
        self.monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        self.server.enforce_iam(True)
        try:
            yield
        finally:
            self.server.enforce_iam(False)


@pytest.fixture
def iam(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[IamHarness]:
    harness = IamHarness(aws, monkeypatch)
    try:
        yield harness
    finally:
        aws.enforce_iam(False)
        aws.use_credentials(*DEFAULT_CREDENTIALS)
