"""`ec2dbn iam-policy`: the least-privilege policy. Three kinds of proof:

- every AWS operation ec2dbn's flows make is an action of the policy (recorded with botocore hooks here,
  and across the whole suite by tests/support/moto_server.py, which fails the run on a missing one);
- ec2dbn runs as an IAM user holding only this policy, with moto enforcing IAM, and fails in one line,
  leaving nothing, when one action is taken away (here for launch; tests/e2e/test_iam_enforced.py for train);
- where moto cannot judge (it checks actions, not resources or conditions: tests/support/iam.py), a real
  policy evaluator judges every authorization request of every recorded call, per action and resource type
  of the Service Authorization Reference (tests/support/policy_proof.py, tests/aws/test_policy_proof.py).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ec2dbn.aws import iam_policy
from ec2dbn.aws.tags import MANAGED_TAG, RUN_TAG, TEARDOWN_TAG
from tests.aws.helpers import NOTHING, cli
from tests.support.iam import IamHarness, without
from tests.support.moto_server import MotoServer, add_hook, inject_error, tagged_resources

#: Actions that change or remove what exists: only on what carries ec2dbn's tag.
CHANGES = {
    "ec2:TerminateInstances",
    "ec2:CancelSpotInstanceRequests",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:DeleteSecurityGroup",
    "ec2:DeleteKeyPair",
    "ec2:DeleteTags",
    "ec2:DeleteFleets",
    "ec2:DeleteLaunchTemplate",
    "ec2:DeregisterImage",
    "ec2:DeleteSnapshot",
}


def listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def grants(action: str) -> list[dict[str, Any]]:
    return [st for st in iam_policy.policy()["Statement"] if action in listed(st["Action"])]


# ----------------------------------------------------------------------------------------- the document


def test_the_cli_prints_the_policy_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = cli(capsys, "iam-policy")
    assert rc == 0 and json.loads(out) == iam_policy.policy()
    rc, out, _ = cli(capsys, "iam-policy", "--partition", "aws-cn")
    arns = [r for st in json.loads(out)["Statement"] for r in listed(st["Resource"]) if r != "*"]
    assert arns and all(r.startswith("arn:aws-cn:") for r in arns)


@pytest.mark.parametrize("partition", iam_policy.PARTITIONS)
def test_it_fits_a_managed_policy(partition: str) -> None:
    """IAM counts a managed policy's characters without white space; the limit is 6,144 (inline user
    policies: 2,048 in all, which is why README attaches it as a managed policy)."""
    (document,) = iam_policy.policies(partition)
    size = iam_policy.size(document)
    assert size == len(re.sub(r"\s", "", json.dumps(document)))
    assert 2048 < size <= 6144, size
    if partition == "aws":  # README says how large it is
        readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
        assert f"managed policy: {size:,} characters as IAM counts them" in readme


def test_only_allows_no_wildcard_actions_and_no_deny() -> None:
    for st in iam_policy.policy()["Statement"]:
        assert st["Effect"] == "Allow" and "NotAction" not in st and "NotResource" not in st
        assert all(
            re.fullmatch(r"(ec2|ssm|sts|servicequotas|pricing|iam|s3):[A-Z][A-Za-z]+", a)
            for a in listed(st["Action"])
        )


def test_what_it_changes_or_removes_must_carry_ec2dbns_tag() -> None:
    """The document's shape; what it allows and refuses per request is judged by the evaluator
    (tests/aws/test_policy_proof.py)."""
    for action in CHANGES:
        for st in grants(action):
            assert st["Condition"]["StringEquals"] == {f"ec2:ResourceTag/{MANAGED_TAG}": "true"}, st["Sid"]
    for st in grants("ec2:CreateTags"):
        cond = st["Condition"]
        on_create = cond.get("StringEquals", {}).get("ec2:CreateAction")
        later = cond.get("ForAllValues:StringEquals", {}).get("aws:TagKeys")
        if on_create:  # tag-on-create: only as part of the calls that create ec2dbn's resources
            assert set(on_create) == set(iam_policy.CREATE_ACTIONS) and not later
        else:  # afterwards: only ec2dbn's lease and teardown tags, only on its own instances
            assert set(later) <= {RUN_TAG, TEARDOWN_TAG} and cond["StringEquals"] == {
                f"ec2:ResourceTag/{MANAGED_TAG}": "true"
            }
    by_sid = {st["Sid"]: st for st in iam_policy.policy()["Statement"]}
    instances = by_sid["RunTaggedImdsV2Instances"]
    assert instances["Condition"]["StringEquals"]["ec2:MetadataHttpTokens"] == "required"
    assert by_sid["TaggedEncryptedVolumes"]["Condition"]["Bool"] == {"ec2:Encrypted": "true"}
    role = by_sid["SpotServiceLinkedRole"]
    assert role["Condition"] == {"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}}
    assert role["Resource"].endswith(":role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot")


def test_the_store_and_the_roles_are_scoped_by_name_and_path() -> None:
    """S3 only on ec2dbn-runs-* (the objects too: * spans '/'), IAM only under /ec2dbn/, PassRole of those
    roles only to EC2; what each allows and refuses per request: tests/aws/test_policy_proof.py."""
    for partition in iam_policy.PARTITIONS:
        for st in iam_policy.policy(partition)["Statement"]:
            acts = listed(st["Action"])
            scoped = [a for a in acts if a.startswith(("s3:", "iam:"))]
            wildcard = {"s3:ListAllMyBuckets", "iam:ListInstanceProfiles"}  # take no resource (the reference)
            if not scoped or set(scoped) <= wildcard:
                continue
            for arn in listed(st["Resource"]):
                assert (
                    arn == f"arn:{partition}:s3:::ec2dbn-runs-*"
                    or re.fullmatch(rf"arn:{partition}:iam::\*:(role|instance-profile)/ec2dbn/\*", arn)
                    or arn.endswith(":role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot")
                    or arn == f"arn:{partition}:iam::*:policy/ec2dbn/ec2dbn-run-boundary"  # reading it only
                ), (st["Sid"], arn)
            if "arn:" in str(st["Resource"]) and ":policy/" in str(st["Resource"]):
                assert {a for a in acts if a.startswith("iam:")} <= {
                    "iam:GetPolicy",
                    "iam:GetPolicyVersion",
                    "iam:GetRole",
                }, st["Sid"]
    # What gives a role permissions, only with ec2dbn's boundary on it.
    for action in ("iam:CreateRole", "iam:PutRolePolicy", "iam:PutRolePermissionsBoundary"):
        (st,) = grants(action)
        assert st["Condition"] == {
            "StringLike": {"iam:PermissionsBoundary": "arn:aws:iam::*:policy/ec2dbn/ec2dbn-run-boundary"}
        }, action
    (passing,) = grants("iam:PassRole")
    assert passing["Resource"] == "arn:aws:iam::*:role/ec2dbn/*"
    assert passing["Condition"] == {"StringEqualsIfExists": {"iam:PassedToService": "ec2.amazonaws.com"}}
    assert {"s3:ListAllMyBuckets", "iam:ListInstanceProfiles"} <= {
        a for st in iam_policy.policy()["Statement"] if st["Resource"] == "*" for a in listed(st["Action"])
    }


def test_the_boundary_is_printed_for_the_administrator(capsys: pytest.CaptureFixture[str]) -> None:
    """`--boundary` prints the instances' permissions boundary (named buckets added with --bucket); it fits a
    managed policy and allows nothing beyond the run store's objects and terminating ec2dbn's instances."""
    rc, out, _ = cli(capsys, "iam-policy", "--boundary")
    assert rc == 0 and json.loads(out) == iam_policy.boundary_policy()
    rc, out, _ = cli(capsys, "iam-policy", "--boundary", "--bucket", "team-data", "--partition", "aws-cn")
    document = json.loads(out)
    assert document == iam_policy.boundary_policy("aws-cn", ("team-data",))
    resources = {r for st in document["Statement"] for r in listed(st["Resource"])}
    assert {"arn:aws-cn:s3:::team-data/*", "arn:aws-cn:s3:::team-data"} <= resources
    assert iam_policy.actions(document) == {
        "s3:PutObject",
        "s3:GetObject",
        "s3:ListBucket",
        "ec2:TerminateInstances",
    }
    (ending,) = [st for st in document["Statement"] if st["Action"] == "ec2:TerminateInstances"]
    assert ending["Condition"] == {"StringEquals": {f"ec2:ResourceTag/{MANAGED_TAG}": "true"}}
    assert iam_policy.size(document) < 6144
    # --bucket alone, or a name S3 would refuse: one line, exit 2.
    assert cli(capsys, "iam-policy", "--bucket", "team-data")[0] == 2
    rc, _, err = cli(capsys, "iam-policy", "--boundary", "--bucket", "Bad_Name")
    assert rc == 2 and "Bad_Name" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------ every call is covered


def test_every_operation_of_the_flows_is_an_action_of_the_policy(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: set[str] = set()
    add_hook(
        "before-parameter-build",
        # the IAM action each call is authorized as (S3's HeadBucket is s3:ListBucket, ...)
        lambda model, **_: seen.add(iam_policy.action_of(model.service_model.signing_name, model.name)),
    )
    seed = "examples/seed-mnist.yaml"
    assert cli(capsys, "check")[0] == 0
    assert cli(capsys, "plan", seed)[0] == 0
    assert cli(capsys, "launch", "--dry-run")[0] == 0
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0  # reused: the group's ingress reconciled
    assert cli(capsys, "status")[0] == 0
    assert cli(capsys, "catalog", "--gpu", "--live")[0] == 0
    assert cli(capsys, "teardown", "--all", "--yes")[0] == 0
    inject_error("RunInstances", "VcpuLimitExceeded", "over quota", times=None)
    assert cli(capsys, "launch", "--on-demand", "--no-bootstrap")[0] == 1  # reads the quota to ask for
    essential = {
        "sts:GetCallerIdentity",
        "ssm:GetParameter",
        "servicequotas:GetServiceQuota",
        "ec2:RunInstances",
        "ec2:CreateKeyPair",
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:TerminateInstances",
        "ec2:DeleteSecurityGroup",
        "ec2:DeleteKeyPair",
        "ec2:CreateTags",
        "ec2:DescribeSubnets",
        "ec2:DescribeSpotPriceHistory",
    }
    assert essential <= seen, essential - seen  # the flows really made these calls
    assert seen <= iam_policy.actions(), seen - iam_policy.actions()
    assert "ec2:RunInstances" in seen - iam_policy.actions(without(iam_policy.policy(), "ec2:RunInstances"))


# ---------------------------------------------------------------------- enforced by moto: only this policy


def test_launch_status_check_teardown_as_a_user_with_only_the_policy(
    iam: IamHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    with iam.only(iam_policy.policy()):
        assert cli(capsys, "check")[0] == 0
        assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
        assert cli(capsys, "status")[0] == 0
        assert cli(capsys, "teardown", "--yes")[0] == 0
    assert tagged_resources(iam.server) == NOTHING


def test_moto_really_enforces_the_policy(iam: IamHarness, capsys: pytest.CaptureFixture[str]) -> None:
    """The harness is not a no-op: a user with an empty policy is refused at the first call."""
    nothing = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "ec2:DescribeRegions", "Resource": "*"}],
    }
    with iam.only(nothing, name="nobody"):
        rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 1 and "they lack ec2:DescribeAvailabilityZones" in err


@pytest.mark.parametrize(
    "action",
    [
        "ec2:RunInstances",
        "ec2:CreateSecurityGroup",
        "ec2:AuthorizeSecurityGroupIngress",
        "ec2:DescribeSubnets",
        "ssm:GetParameter",
    ],
)
def test_one_action_less_fails_in_one_line_and_leaves_nothing(
    action: str, iam: IamHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    with iam.only(without(iam_policy.policy(), action)):
        rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    (line,) = [ln for ln in err.strip().splitlines() if ln.startswith("error: ")]
    assert rc == 1 and "(AccessDenied" in line  # moto answers SSM's JSON calls in XML: botocore sees a 403
    assert f"they lack {action}; attach the policy `ec2dbn iam-policy` prints" in line
    assert tagged_resources(iam.server) == NOTHING
