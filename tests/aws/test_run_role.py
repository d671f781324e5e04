"""The instance's role and profile (ec2dbn.aws.run_role) against the moto server with real boto3, and the
role's per-run policy judged by the real IAM evaluator (tests/support/iam_eval.py): the instance may read
and write its own run's prefix only, list only under it, and terminate only itself."""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

import pytest

from ec2dbn import aws as face
from ec2dbn.aws import iam_policy, instances, provision, run_role, teardown
from ec2dbn.aws.store import StoreRef
from ec2dbn.errors import CloudError
from ec2dbn.events import RecordingReporter
from ec2dbn.spec.stack import parse_stack
from ec2dbn.stack import lifecycle
from tests.aws.helpers import NOTHING, cli
from tests.support import iam_eval
from tests.support.moto_server import ACCOUNT_ID, CALLER_IP, MotoServer, inject_error, tagged_resources

REGION = "us-east-1"
NAME = "ec2dbn-t-us-east-1"
OURS = {"ec2dbn:managed": "true", "ec2dbn:stack": "t", "ec2dbn:region": REGION}
BOUNDARY = f"arn:aws:iam::{ACCOUNT_ID}:policy/ec2dbn/ec2dbn-run-boundary"


def tags(items: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items or []}


def test_names_carry_stack_and_region_and_fit_iam() -> None:
    assert run_role.profile_name("t", "us-east-1") == NAME
    long = run_role.profile_name("a-very-long-stack-name-that-goes-on-and-on-and-on", "ap-southeast-2")
    assert len(long) == 64 and long.startswith("ec2dbn-a-very-long-stack")
    assert long != run_role.profile_name(
        "a-very-long-stack-name-that-goes-on-and-on-and-on", "ap-southeast-1"
    )
    assert face.profile_name is run_role.profile_name


def test_role_and_profile_are_made_once_tagged_under_the_path(aws: MotoServer) -> None:
    assert run_role.ensure_instance_profile("t", REGION) == NAME
    iam = aws.client("iam")
    role = iam.get_role(RoleName=NAME)["Role"]
    assert role["Path"] == "/ec2dbn/" and tags(role.get("Tags")) == OURS
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    (st,) = trust["Statement"]
    assert st["Principal"] == {"Service": "ec2.amazonaws.com"} and st["Action"] == "sts:AssumeRole"
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == BOUNDARY
    profile = iam.get_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]
    assert profile["Path"] == "/ec2dbn/" and tags(profile.get("Tags")) == OURS
    assert [r["RoleName"] for r in profile["Roles"]] == [NAME]
    # Again: nothing made twice.
    creates = [
        inject_error(op, "ShouldNotBeCalled", service="iam", times=None)
        for op in ("CreateRole", "CreateInstanceProfile", "AddRoleToInstanceProfile")
    ]
    assert run_role.ensure_instance_profile("t", REGION) == NAME
    assert [c.calls for c in creates] == [0, 0, 0]
    assert run_role.find_instance_profiles(REGION) == [NAME]
    assert run_role.find_instance_profiles(None) == [NAME]
    assert run_role.find_instance_profiles("eu-west-1") == []
    assert run_role.profile_stacks(REGION) == ["t"]


def test_a_profile_cut_short_gets_its_role_on_the_next_try(aws: MotoServer) -> None:
    inject_error("AddRoleToInstanceProfile", "ServiceFailure", "try again", service="iam", times=1)
    with pytest.raises(CloudError, match="making the instance role and profile"):
        run_role.ensure_instance_profile("t", REGION)
    assert run_role.ensure_instance_profile("t", REGION) == NAME
    profile = aws.client("iam").get_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == [NAME]


def test_a_role_of_that_name_not_tagged_for_the_stack_is_left_alone(aws: MotoServer) -> None:
    iam = aws.client("iam")
    iam.create_role(RoleName=NAME, Path="/ec2dbn/", AssumeRolePolicyDocument="{}")
    with pytest.raises(CloudError, match="not tagged for stack t"):
        run_role.ensure_instance_profile("t", REGION)
    assert run_role.remove_instance_profile("t", REGION) is False
    assert iam.get_role(RoleName=NAME)["Role"]["RoleName"] == NAME


def test_a_role_from_before_the_boundary_gets_it(aws: MotoServer) -> None:
    """A stack's role made by an ec2dbn without the boundary: bounded on its next run, nothing made again."""
    iam = aws.client("iam")
    iam.create_role(
        RoleName=NAME,
        Path="/ec2dbn/",
        AssumeRolePolicyDocument="{}",
        Tags=[{"Key": k, "Value": v} for k, v in OURS.items()],
    )
    creates = inject_error("CreateRole", "ShouldNotBeCalled", service="iam", times=None)
    assert run_role.ensure_instance_profile("t", REGION) == NAME
    assert creates.calls == 0
    assert iam.get_role(RoleName=NAME)["Role"]["PermissionsBoundary"]["PermissionsBoundaryArn"] == BOUNDARY


def test_without_the_boundary_nothing_is_made_and_the_error_says_how(aws: MotoServer) -> None:
    """Until an administrator made the boundary, no role can be made (the user's policy requires it): one
    line with the administrator's commands, and nothing in IAM."""
    iam = aws.client("iam")
    iam.delete_policy(PolicyArn=BOUNDARY)
    assert run_role.boundary_status(REGION) == (BOUNDARY, "does not exist")
    with pytest.raises(CloudError) as err:
        run_role.ensure_instance_profile("t", REGION)
    said = str(err.value)
    assert "\n" not in said and BOUNDARY in said
    assert "ec2dbn iam-policy --boundary > boundary.json" in said
    assert "aws iam create-policy --path /ec2dbn/ --policy-name ec2dbn-run-boundary" in said
    assert iam.list_roles(PathPrefix="/ec2dbn/")["Roles"] == []
    assert iam.list_instance_profiles(PathPrefix="/ec2dbn/")["InstanceProfiles"] == []


def test_a_named_bucket_the_boundary_leaves_out_stops_the_run_until_it_is_added(aws: MotoServer) -> None:
    """`store: s3://team-data/...`: the boundary must let instances write there, or every upload would be
    refused on the instance; the error gives the administrator's commands for a new default version."""
    team = StoreRef("team-data", "ml/")
    with pytest.raises(CloudError) as err:
        run_role.ensure_instance_profile("t", REGION, team)
    said = str(err.value)
    assert f"{BOUNDARY} does not let instances write to s3://team-data/ml/" in said
    assert "ec2dbn iam-policy --boundary --bucket team-data > boundary.json" in said
    assert f"aws iam create-policy-version --policy-arn {BOUNDARY} --set-as-default" in said
    assert aws.client("iam").list_roles(PathPrefix="/ec2dbn/")["Roles"] == []
    assert (
        run_role.ensure_instance_profile("t", REGION, StoreRef("ec2dbn-runs-123456789012-us-east-1")) == NAME
    )
    aws.client("iam").create_policy_version(  # the administrator, as told
        PolicyArn=BOUNDARY,
        PolicyDocument=json.dumps(iam_policy.boundary_policy("aws", ("team-data",))),
        SetAsDefault=True,
    )
    assert run_role.boundary_status(REGION, team) == (BOUNDARY, None)
    assert run_role.ensure_instance_profile("t", REGION, team) == NAME


def test_the_boundary_document_is_read_as_iam_gives_it() -> None:
    """IAM gives a policy version's document URL-encoded (boto3 may have decoded it): both read the same, and
    what it lets instances write is read from its Allow statements and their wildcards."""
    doc = iam_policy.boundary_policy("aws", ("team-data",))
    assert run_role._document(urllib.parse.quote(json.dumps(doc))) == doc == run_role._document(doc)
    own = "arn:aws:s3:::ec2dbn-runs-123456789012-us-east-1/runs/r/job.log"
    assert run_role._lets_write(doc, own) and run_role._lets_write(doc, "arn:aws:s3:::team-data/ml/runs/r/x")
    assert not run_role._lets_write(doc, "arn:aws:s3:::other/runs/r/x")
    assert not run_role._lets_write(iam_policy.boundary_policy("aws"), "arn:aws:s3:::team-data/runs/r/x")


def test_grant_run_replaces_the_one_inline_policy(aws: MotoServer) -> None:
    run_role.ensure_instance_profile("t", REGION)
    ref = StoreRef("ec2dbn-runs-x", "p/")
    run_role.grant_run("t", REGION, ref, "r1", "i-0123456789abcdef0")
    run_role.grant_run("t", REGION, ref, "r2", "i-0fedcba9876543210")
    iam = aws.client("iam")
    assert iam.list_role_policies(RoleName=NAME)["PolicyNames"] == ["ec2dbn-run"]
    doc = iam.get_role_policy(RoleName=NAME, PolicyName="ec2dbn-run")["PolicyDocument"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    assert doc == run_role.run_policy("aws", ACCOUNT_ID, REGION, ref, "r2", "i-0fedcba9876543210")


def test_removal_takes_everything_and_is_idempotent(aws: MotoServer) -> None:
    run_role.ensure_instance_profile("t", REGION)
    run_role.grant_run("t", REGION, StoreRef("ec2dbn-runs-x"), "r1", "i-0123456789abcdef0")
    assert run_role.remove_instance_profile("t", REGION) is True
    iam = aws.client("iam")
    assert iam.list_instance_profiles(PathPrefix="/ec2dbn/")["InstanceProfiles"] == []
    assert iam.list_roles(PathPrefix="/ec2dbn/")["Roles"] == []
    assert run_role.remove_instance_profile("t", REGION) is False
    assert run_role.find_instance_profiles(None) == []


def test_a_role_left_without_its_profile_is_removed_too(aws: MotoServer) -> None:
    inject_error("CreateInstanceProfile", "ServiceFailure", "no", service="iam", times=1)
    with pytest.raises(CloudError):
        run_role.ensure_instance_profile("t", REGION)
    assert aws.client("iam").get_role(RoleName=NAME)
    assert run_role.remove_instance_profile("t", REGION) is True
    assert aws.client("iam").list_roles(PathPrefix="/ec2dbn/")["Roles"] == []


# ------------------------------------------------------------------- the role's policy, judged by IAM


@pytest.fixture
def evaluator() -> None:
    iam_eval.require()


MINE = "i-0123456789abcdef0"
OTHER = "i-0fedcba9876543210"


def instance_arn(iid: str) -> str:
    return f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:instance/{iid}"


def request(action: str, resource: dict[str, Any], context: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": f"{action} {resource['ids']} {context}",
        "action": action,
        "region": REGION,
        "account": ACCOUNT_ID,
        "partition": "aws",
        "resources": [resource],
        "context": {"aws:RequestedRegion": REGION, **(context or {})},
    }


def obj(key: str) -> dict[str, Any]:
    return {"type": "object", "ids": {"BucketName": "ec2dbn-runs-x", "ObjectName": key}, "context": {}}


def bucket() -> dict[str, Any]:
    return {"type": "bucket", "ids": {"BucketName": "ec2dbn-runs-x"}, "context": {}}


def instance(iid: str) -> dict[str, Any]:
    return {"type": "instance", "ids": {"InstanceId": iid}, "context": {}}


def test_the_role_may_touch_only_its_run_and_end_only_itself(evaluator: None) -> None:
    policy = run_role.run_policy("aws", ACCOUNT_ID, REGION, StoreRef("ec2dbn-runs-x", "p/"), "r1", MINE)
    from_mine = {"ec2:SourceInstanceARN": instance_arn(MINE)}
    cases = {
        "put own checkpoint": (request("s3:PutObject", obj("p/runs/r1/out/checkpoint.npz")), "Allowed"),
        "get own job": (request("s3:GetObject", obj("p/runs/r1/job.yaml")), "Allowed"),
        "list own run": (request("s3:ListBucket", bucket(), {"s3:prefix": "p/runs/r1/"}), "Allowed"),
        "put another run's file": (
            request("s3:PutObject", obj("p/runs/r2/out/checkpoint.npz")),
            "ImplicitlyDenied",
        ),
        "get another run's file": (request("s3:GetObject", obj("p/runs/r2/job.yaml")), "ImplicitlyDenied"),
        "put beside the runs": (request("s3:PutObject", obj("p/runs/r1x/job.log")), "ImplicitlyDenied"),
        "list another run": (
            request("s3:ListBucket", bucket(), {"s3:prefix": "p/runs/r2/"}),
            "ImplicitlyDenied",
        ),
        "list every run": (request("s3:ListBucket", bucket(), {"s3:prefix": "p/runs/"}), "ImplicitlyDenied"),
        "delete own file": (request("s3:DeleteObject", obj("p/runs/r1/job.log")), "ImplicitlyDenied"),
        "terminate itself": (request("ec2:TerminateInstances", instance(MINE), from_mine), "Allowed"),
        "terminate another": (
            request("ec2:TerminateInstances", instance(OTHER), from_mine),
            "ImplicitlyDenied",
        ),
        "terminate it from elsewhere": (
            request("ec2:TerminateInstances", instance(MINE), {"ec2:SourceInstanceARN": instance_arn(OTHER)}),
            "ImplicitlyDenied",
        ),
        "terminate it without instance credentials": (
            request("ec2:TerminateInstances", instance(MINE)),
            "ImplicitlyDenied",
        ),
    }
    evaluation = iam_eval.evaluate([policy], [req for req, _ in cases.values()])
    assert evaluation.errors == []
    got = {r["id"]: r["result"] for r in evaluation.results}
    for what, (req, want) in cases.items():
        assert got[req["id"]] == want, what


def test_the_boundary_caps_whatever_inline_policy_the_role_gets(evaluator: None) -> None:
    """Whoever holds ec2dbn's policy can write any inline policy on an /ec2dbn/ role, but each role carries
    the boundary: even `*` on `*` leaves an instance the run store's objects and ending ec2dbn's instances."""
    everything = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    tagged = {**instance(MINE), "context": {"ec2:ResourceTag/ec2dbn:managed": "true"}}
    named = {"type": "object", "ids": {"BucketName": "team-data", "ObjectName": "runs/r1/job.log"}}
    cases = {
        "put a store object": (request("s3:PutObject", obj("p/runs/r2/job.log")), "Allowed"),
        "list the store": (request("s3:ListBucket", bucket(), {"s3:prefix": ""}), "Allowed"),
        "terminate an ec2dbn instance": (request("ec2:TerminateInstances", tagged), "Allowed"),
        "terminate another's instance": (
            request("ec2:TerminateInstances", instance(OTHER)),
            "ImplicitlyDenied",
        ),
        "delete a store object": (request("s3:DeleteObject", obj("p/runs/r2/job.log")), "ImplicitlyDenied"),
        "put into another bucket": (request("s3:PutObject", {**named, "context": {}}), "ImplicitlyDenied"),
        "make a role": (
            request("iam:CreateRole", {"type": "role", "ids": {"RoleNameWithPath": "admin"}, "context": {}}),
            "ImplicitlyDenied",
        ),
        "launch an instance": (
            request("ec2:RunInstances", {**instance("i-0aaaaaaaaaaaaaaaa"), "context": {}}),
            "ImplicitlyDenied",
        ),
    }
    boundary = iam_policy.boundary_policy("aws")
    evaluation = iam_eval.evaluate([everything], [req for req, _ in cases.values()], boundary=boundary)
    assert evaluation.errors == [] or all("requires resource type" in e for e in evaluation.errors)
    got = {r["id"]: r["result"] for r in evaluation.results}
    for what, (req, want) in cases.items():
        assert got[req["id"]] == want, what
    # A bucket a stack names is the administrator's to add (`ec2dbn iam-policy --boundary --bucket NAME`).
    with_named = iam_policy.boundary_policy("aws", ("team-data",))
    req = request("s3:PutObject", {**named, "context": {}})
    (result,) = iam_eval.evaluate([everything], [req], boundary=with_named).results
    assert result["result"] == "Allowed"


def test_under_the_boundary_a_run_keeps_exactly_its_grant(evaluator: None) -> None:
    """The run's own policy, bounded: still its prefix and itself, nothing the boundary alone would add."""
    policy = run_role.run_policy("aws", ACCOUNT_ID, REGION, StoreRef("ec2dbn-runs-x", "p/"), "r1", MINE)
    from_mine = {"ec2:SourceInstanceARN": instance_arn(MINE)}
    mine = {**instance(MINE), "context": {"ec2:ResourceTag/ec2dbn:managed": "true"}}
    other = {**instance(OTHER), "context": {"ec2:ResourceTag/ec2dbn:managed": "true"}}
    cases = {
        "put own checkpoint": (request("s3:PutObject", obj("p/runs/r1/out/checkpoint.npz")), "Allowed"),
        "put another run's file": (request("s3:PutObject", obj("p/runs/r2/job.log")), "ImplicitlyDenied"),
        "terminate itself": (request("ec2:TerminateInstances", mine, from_mine), "Allowed"),
        "terminate another ec2dbn instance": (
            request("ec2:TerminateInstances", other, from_mine),
            "ImplicitlyDenied",
        ),
    }
    boundary = iam_policy.boundary_policy("aws")
    evaluation = iam_eval.evaluate([policy], [req for req, _ in cases.values()], boundary=boundary)
    assert evaluation.errors == []
    got = {r["id"]: r["result"] for r in evaluation.results}
    for what, (req, want) in cases.items():
        assert got[req["id"]] == want, what


# ------------------------------------------------------------------------- launch and teardown with it


def launch_with_profile(profile: str | None) -> provision.Launched:
    stack = parse_stack({"name": "t", "region": REGION, "instance_type": "g4dn.xlarge", "image": "ubuntu22"})
    plan = provision.plan(stack, cidr=f"{CALLER_IP}/32")
    reporter = RecordingReporter()
    launched = provision.launch(
        plan,
        user_data="#cloud-config\n",
        instance_tags={},
        key_store=lifecycle.StateKeyStore(stack.name),
        reporter=reporter,
        instance_profile=profile,
    )
    LAUNCH_LINES[:] = reporter.lines("step")
    return launched


LAUNCH_LINES: list[str] = []
#: EC2's answer to a profile it cannot see (yet), as AWS words it.
NOT_SEEN = "Value ({}) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name"


def test_an_instance_gets_the_profile_waiting_while_ec2_does_not_see_it(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IAM is eventually consistent: EC2 refuses a profile made seconds ago, and the launch waits it out."""
    monkeypatch.setattr(instances, "PROFILE_WAIT", (30.0, 0.01))
    name = run_role.ensure_instance_profile("t", REGION)
    runs = inject_error("RunInstances", "InvalidParameterValue", NOT_SEEN.format(name), times=2)
    launched = launch_with_profile(name)
    assert runs.calls == 3 and runs.injected == 2
    tokens = {p["ClientToken"] for p in runs.params}
    assert len(tokens) == 3  # each try a new request
    assert all(p["IamInstanceProfile"] == {"Name": name} for p in runs.params)
    (said,) = [ln for ln in LAUNCH_LINES if "does not see instance profile" in ln]
    assert name in said and "30 s" in said
    (inst,) = [
        i
        for r in aws.client("ec2").describe_instances(InstanceIds=[launched.instance.instance_id])[
            "Reservations"
        ]
        for i in r["Instances"]
    ]
    assert inst["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/ec2dbn/{name}")


def test_a_profile_ec2_never_sees_fails_in_one_line(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instances, "PROFILE_WAIT", (0.05, 0.01))
    runs = inject_error("RunInstances", "InvalidParameterValue", NOT_SEEN.format(NAME), times=None)
    with pytest.raises(CloudError) as err:
        launch_with_profile(run_role.ensure_instance_profile("t", REGION))
    assert "InvalidParameterValue" in str(err.value) and "\n" not in str(err.value)
    assert runs.calls >= 2
    assert tagged_resources(aws) == NOTHING  # the key pair and group this launch made are gone again


def test_other_invalid_parameters_are_not_retried(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(instances, "PROFILE_WAIT", (30.0, 0.01))
    runs = inject_error(
        "RunInstances", "InvalidParameterValue", "Invalid value for instance type", times=None
    )
    with pytest.raises(CloudError):
        launch_with_profile(run_role.ensure_instance_profile("t", REGION))
    assert runs.calls == 1


def test_teardown_removes_the_profile_and_role_and_keeps_the_store(aws: MotoServer) -> None:
    from ec2dbn.aws import store

    ref = store.ensure_store(REGION, None)
    store.write_object(REGION, ref, "r1", "job.log", b"kept")
    name = run_role.ensure_instance_profile("t", REGION)
    launched = launch_with_profile(name)
    run_role.grant_run("t", REGION, ref, "r1", launched.instance.instance_id)
    report = teardown.teardown("t", REGION)
    assert report.clean and report.removed_instance_profile == name
    assert report.terminated == [launched.instance.instance_id]
    iam = aws.client("iam")
    assert iam.list_instance_profiles(PathPrefix="/ec2dbn/")["InstanceProfiles"] == []
    assert iam.list_roles(PathPrefix="/ec2dbn/")["Roles"] == []
    assert tagged_resources(aws) == NOTHING
    assert store.read_object(REGION, ref, "r1", "job.log") == b"kept"
    assert teardown.teardown("t", REGION).removed_instance_profile == ""  # again: nothing to remove


def test_teardown_all_finds_a_stack_that_has_only_its_profile_left(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    run_role.ensure_instance_profile("lonely", REGION)
    assert teardown.stacks_in(REGION) == ["lonely"]
    rc, _, err = cli(capsys, "teardown", "--all", "--yes")
    assert rc == 0, err
    assert run_role.find_instance_profiles(None) == []
    assert aws.client("iam").list_roles(PathPrefix="/ec2dbn/")["Roles"] == []
