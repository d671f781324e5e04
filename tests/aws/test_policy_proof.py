"""The IAM policy judged by a real evaluator (Cloud Copilot's iam-simulate, on Node) the way AWS judges it:
per action and resource type of the Service Authorization Reference, with the request's tags.

The whole suite's calls are judged when the session ends (tests/support/moto_server.py); here, the flows
that reach every statement — check, plan, dry runs, a spot launch, the lease, a sweep's fleet, a bake and its
removal, teardown — are recorded and judged on their own, and then judged again with each statement taken
out: every statement must be needed by some request (a policy that lost one fails the proof). What the
policy must refuse (what is not ec2dbn's, an instance without IMDSv2, untagged snapshots, another service's
role) is judged too, so the proof cannot pass by allowing everything.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ec2dbn.aws import bakes, fleets, iam_policy, provision, run_role, store, teardown
from ec2dbn.aws.fleets import Pool
from ec2dbn.aws.tags import RUN_TAG
from ec2dbn.spec.stack import parse_stack
from ec2dbn.stack import lifecycle
from tests.aws.helpers import NOTHING, cli
from tests.aws.test_fleet import fleet_stack, launch
from tests.support import authz, authz_record, iam_eval, policy_proof
from tests.support.moto_server import CALLER_IP, MotoServer, tagged_resources

OURS = {"ec2dbn:managed": "true", "ec2dbn:stack": "t"}
BOUNDARY = iam_policy.boundary_arn("aws", authz.ACCOUNT_ID)
_FLOWS: list[dict[str, Any]] = []


@pytest.fixture
def evaluator() -> None:
    """The evaluator must be installed in CI; elsewhere its absence skips these tests, saying why."""
    iam_eval.require()


def run_flows(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """Every flow that needs a statement, as ec2dbn's clients sent it; what the recorder kept of it."""
    start = len(authz_record.RECORDED)
    assert cli(capsys, "check")[0] == 0
    assert cli(capsys, "plan", "examples/seed-mnist.yaml")[0] == 0
    assert cli(capsys, "launch", "--dry-run")[0] == 0  # no group yet: key pair and group dry runs
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0  # spot
    assert cli(capsys, "launch", "--dry-run")[0] == 0  # the group exists: RunInstances dry runs too
    (instance,) = tagged_resources(aws)["instances"]
    provision.tag_instance("us-east-1", instance, {RUN_TAG: "run-1"})  # the lease
    provision.untag_instance("us-east-1", instance, [RUN_TAG])
    image = bakes.start_image("us-east-1", instance, "ec2dbn-proof", "g4dn-spot", {"ec2dbn:bake": "h"})
    made = bakes.wait_available("us-east-1", image, timeout_s=30)
    # Tagged at creation (the test double accepts snapshot TagSpecifications, as EC2 does).
    (snap,) = aws.client("ec2").describe_snapshots(SnapshotIds=list(made.snapshot_ids))["Snapshots"]
    assert {"Key": "ec2dbn:managed", "Value": "true"} in snap["Tags"]
    assert not bakes.remove("us-east-1", [image]).errors
    launch(fleet_stack(), 2)  # a sweep's capacity
    assert cli(capsys, "teardown", "--all", "--yes")[0] == 0
    assert tagged_resources(aws) == NOTHING
    store_and_role_flows(aws)
    return copy.deepcopy(authz_record.RECORDED[start:])


def store_and_role_flows(aws: MotoServer) -> None:
    """The run store (made, written, read, listed, pulled, found, deleted, versioned too) and the instance's
    role (made, granted, launched with, removed by teardown)."""
    region = "us-east-1"
    ref = store.ensure_store(region, None)
    store.write_object(region, ref, "r1", "job.log", b"log")
    assert store.read_object(region, ref, "r1", "job.log", start=1) == b"og"
    assert store.list_store_runs(region, ref) == ["r1"]
    assert store.download_run(region, ref, "r1", Path(tempfile.mkdtemp(prefix="ec2dbn-proof-"))) == [
        "job.log"
    ]
    assert store.find_stores(region) == [ref]
    name = run_role.ensure_instance_profile("t", region)
    # A role made before the boundary existed gets it (PutRolePermissionsBoundary), then is removed.
    aws.client("iam").create_role(
        RoleName="ec2dbn-old-us-east-1",
        Path="/ec2dbn/",
        AssumeRolePolicyDocument="{}",
        Tags=[{"Key": "ec2dbn:managed", "Value": "true"}, {"Key": "ec2dbn:stack", "Value": "old"}],
    )
    run_role.ensure_instance_profile("old", region)
    assert run_role.remove_instance_profile("old", region)
    stack = parse_stack({"name": "t", "region": region, "instance_type": "g4dn.xlarge", "image": "ubuntu22"})
    launched = provision.launch(
        provision.plan(stack, cidr=f"{CALLER_IP}/32"),
        user_data="#cloud-config\n",
        instance_tags={},
        key_store=lifecycle.StateKeyStore("t"),
        instance_profile=name,
    )
    run_role.grant_run("t", region, ref, "r1", launched.instance.instance_id)
    assert teardown.teardown("t", region).removed_instance_profile == name
    assert store.delete_store(region, ref) == 1
    ref = store.ensure_store(region, None)
    aws.client("s3").put_bucket_versioning(Bucket=ref.bucket, VersioningConfiguration={"Status": "Enabled"})
    store.write_object(region, ref, "r1", "job.log", b"log")
    assert store.delete_store(region, ref) == 1


@pytest.fixture
def flows(aws: MotoServer, capsys: pytest.CaptureFixture[str], evaluator: None) -> Iterator[list[dict]]:
    """The flows' records, recorded once per module (later tests reuse them)."""
    if not _FLOWS:
        _FLOWS.extend(run_flows(aws, capsys))
    yield _FLOWS


def judged(evaluation: iam_eval.Evaluation) -> set[tuple[str, str]]:
    return {(r["action"], r["type"]) for r in evaluation.results}


def test_every_request_of_the_flows_is_allowed(flows: list[dict]) -> None:
    evaluation, undescribed, count = policy_proof.prove(flows, iam_policy.policies())
    assert undescribed == [] and evaluation.errors == []
    assert evaluation.lines() == [] and count > 50
    # The requests the issue found refused on AWS are among those judged (and allowed).
    assert {
        ("ec2:CreateFleet", "instance"),
        ("ec2:CreateFleet", "fleet"),
        ("ec2:CreateFleet", "launch-template"),
        ("ec2:CreateFleet", "volume"),
        ("ec2:CreateFleet", "image"),
        ("ec2:CreateImage", "snapshot"),
        ("ec2:CreateImage", "image"),
        ("ec2:CreateImage", "instance"),
        ("iam:CreateServiceLinkedRole", "role"),
        ("ec2:CreateKeyPair", "key-pair"),
        ("ec2:RunInstances", "security-group"),
        ("ec2:RunInstances", "spot-instances-request"),
        ("ec2:CreateTags", "snapshot"),
        ("ec2:DeleteSnapshot", "snapshot"),
        ("ec2:DeleteTags", "instance"),
        ("iam:GetRole", "role"),
        # the run store and the instance's role
        ("s3:CreateBucket", "bucket"),
        ("s3:PutBucketPolicy", "bucket"),
        ("s3:ListBucket", "bucket"),
        ("s3:PutObject", "object"),
        ("s3:GetObject", "object"),
        ("s3:DeleteObject", "object"),
        ("s3:DeleteObjectVersion", "object"),
        ("s3:ListAllMyBuckets", "*"),
        ("iam:CreateRole", "role"),
        ("iam:CreateInstanceProfile", "instance-profile"),
        ("iam:AddRoleToInstanceProfile", "instance-profile"),
        ("iam:PassRole", "role"),
        ("iam:PutRolePolicy", "role"),
        ("iam:PutRolePermissionsBoundary", "role"),
        ("iam:GetPolicy", "policy"),
        ("iam:DeleteRole", "role"),
    } <= judged(evaluation)


def without_statement(sid: str) -> list[dict[str, Any]]:
    (document,) = copy.deepcopy(iam_policy.policies())
    kept = [st for st in document["Statement"] if st["Sid"] != sid]
    assert len(kept) == len(document["Statement"]) - 1, sid
    return [{**document, "Statement": kept}]


@pytest.mark.parametrize("sid", [st["Sid"] for st in iam_policy.policy()["Statement"]])
def test_each_statement_is_needed_the_proof_fails_without_it(flows: list[dict], sid: str) -> None:
    evaluation, _, _ = policy_proof.prove(flows, without_statement(sid))
    assert evaluation.refused, f"statement {sid} allows nothing the flows need"


# ------------------------------------------------------------------------------ what it must refuse


def record(operation: str, params: dict[str, Any], tags: dict[str, dict[str, str]] | None = None) -> dict:
    return {"service": "ec2", "operation": operation, "region": "us-east-1", "params": params, "tags": tags}


def verdicts(records: list[dict]) -> dict[tuple[str, str], str]:
    evaluation, undescribed, _ = policy_proof.prove(records, iam_policy.policies())
    assert undescribed == [] and evaluation.errors == []
    return {(r["action"], r["type"]): r["result"] for r in evaluation.results}


def tag_spec(*kinds: str, tags: dict[str, str] = OURS) -> list[dict[str, Any]]:
    return [{"ResourceType": k, "Tags": [{"Key": a, "Value": b} for a, b in tags.items()]} for k in kinds]


def run_params(**overrides: Any) -> dict[str, Any]:
    params = {
        "ImageId": "ami-12345678",
        "InstanceType": "g4dn.xlarge",
        "KeyName": "ec2dbn-t",
        "MetadataOptions": {"HttpTokens": "required"},
        "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"Encrypted": True}}],
        "NetworkInterfaces": [{"DeviceIndex": 0, "Groups": ["sg-0123"], "SubnetId": "subnet-01"}],
        "TagSpecifications": tag_spec("instance", "volume"),
    }
    return {**params, **overrides}


def test_it_refuses_what_is_not_ec2dbns(evaluator: None) -> None:
    mine = {"ec2-t": OURS, "sg-0123": OURS, "i-0aaa": OURS}
    assert (
        verdicts([record("RunInstances", run_params(), mine)])[("ec2:RunInstances", "instance")] == "Allowed"
    )
    refused = {
        # another's instance: terminate, image
        ("ec2:TerminateInstances", "instance"): record("TerminateInstances", {"InstanceIds": ["i-0bbb"]}, {}),
        ("ec2:CreateImage", "instance"): record(
            "CreateImage", {"InstanceId": "i-0bbb", "TagSpecifications": tag_spec("image", "snapshot")}, {}
        ),
        # snapshots left untagged at creation (the bake the issue found refused)
        ("ec2:CreateImage", "snapshot"): record(
            "CreateImage", {"InstanceId": "i-0aaa", "TagSpecifications": tag_spec("image")}, mine
        ),
        # no IMDSv2
        ("ec2:RunInstances", "instance"): record("RunInstances", run_params(MetadataOptions={}), mine),
        # the VPC's default group (a RunInstances naming no group)
        ("ec2:RunInstances", "security-group"): record(
            "RunInstances", run_params(NetworkInterfaces=[{"DeviceIndex": 0}]), mine
        ),
        # a fleet whose instances are not tagged ec2dbn's
        ("ec2:CreateFleet", "instance"): record(
            "CreateFleet",
            fleets.fleet_request("t", "lt-01", [Pool("g4dn.xlarge", "us-east-1a")], "on-demand", 1, {})
            | {"TagSpecifications": tag_spec("fleet")},
            {"lt-01": OURS},
        ),
        # a fleet from a template whose volumes are not encrypted
        ("ec2:CreateFleet", "volume"): {
            **record(
                "CreateFleet",
                fleets.fleet_request("t", "lt-01", [Pool("g4dn.xlarge", "us-east-1a")], "spot", 1, {}),
                {"lt-01": OURS},
            ),
            "templates": {
                "lt-01": {
                    "ImageId": "ami-12345678",
                    "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"Encrypted": False}}],
                    "TagSpecifications": tag_spec("volume"),
                }
            },
        },
        # tags other than the lease and teardown marks on an existing instance
        ("ec2:CreateTags", "instance"): record(
            "CreateTags", {"Resources": ["i-0aaa"], "Tags": [{"Key": "ec2dbn:stack", "Value": "x"}]}, mine
        ),
    }
    for (action, rtype), rec in refused.items():
        assert verdicts([rec])[(action, rtype)] == "ImplicitlyDenied", (action, rtype)


def test_it_refuses_other_buckets_roles_and_services(evaluator: None) -> None:
    """S3 only on ec2dbn-runs-*, IAM only under /ec2dbn/, PassRole of those roles only to EC2."""

    def iam_record(operation: str, params: dict[str, Any]) -> dict:
        return {"service": "iam", "operation": operation, "region": "us-east-1", "params": params}

    def s3_record(operation: str, params: dict[str, Any]) -> dict:
        return {"service": "s3", "operation": operation, "region": "us-east-1", "params": params}

    ours = "ec2dbn-t-us-east-1"
    bounded = {"RoleName": ours, "Path": "/ec2dbn/", "PermissionsBoundary": BOUNDARY}
    allowed = {
        ("s3:PutObject", "object"): s3_record(
            "PutObject", {"Bucket": "ec2dbn-runs-1-us-east-1", "Key": "runs/r/x"}
        ),
        ("iam:CreateRole", "role"): iam_record("CreateRole", bounded),
        ("iam:PassRole", "role"): record(
            "RunInstances", run_params(IamInstanceProfile={"Name": ours}), {"ec2dbn-t": OURS, "sg-0123": OURS}
        ),
    }
    refused = {
        ("s3:PutObject", "object"): s3_record("PutObject", {"Bucket": "someone-else", "Key": "runs/r/x"}),
        ("s3:DeleteBucket", "bucket"): s3_record("DeleteBucket", {"Bucket": "someone-else"}),
        ("iam:CreateRole", "role"): iam_record("CreateRole", {"RoleName": "admin", "Path": "/"}),
        ("iam:PutRolePolicy", "role"): iam_record("PutRolePolicy", {"RoleName": "admin"}),
        ("iam:PassRole", "role"): record(
            "RunInstances",
            run_params(IamInstanceProfile={"Name": "admin"}),
            {"ec2dbn-t": OURS, "sg-0123": OURS},
        ),
    }
    for (action, rtype), rec in allowed.items():
        assert verdicts([rec])[(action, rtype)] == "Allowed", (action, rtype)
    for (action, rtype), rec in refused.items():
        assert verdicts([rec])[(action, rtype)] == "ImplicitlyDenied", (action, rtype)
    # One of ec2dbn's roles passed to another service than EC2.
    (passing,) = [
        r for r in authz.requests_for(allowed[("iam:PassRole", "role")]) if r["action"] == "iam:PassRole"
    ]
    to_lambda = copy.deepcopy(passing)
    to_lambda["context"]["iam:PassedToService"] = "lambda.amazonaws.com"
    for req, want in ((passing, "Allowed"), (to_lambda, "ImplicitlyDenied")):
        (result,) = iam_eval.evaluate(iam_policy.policies(), [{**req, "id": "x"}]).results
        assert result["result"] == want


def test_a_role_gets_permissions_only_under_ec2dbns_boundary(evaluator: None) -> None:
    """CreateRole, PutRolePolicy and PutRolePermissionsBoundary on /ec2dbn/ roles only with ec2dbn's
    boundary on the role; nothing takes a boundary off. So no policy written there outgrows the boundary."""

    def iam_record(operation: str, params: dict[str, Any], boundary: str | None = None) -> dict:
        rec = {"service": "iam", "operation": operation, "region": "us-east-1", "params": params}
        return {**rec, "role_boundary": boundary} if operation == "PutRolePolicy" else rec

    ours = {"RoleName": "ec2dbn-t-us-east-1", "Path": "/ec2dbn/"}
    admin = "arn:aws:iam::aws:policy/AdministratorAccess"
    policy = {"RoleName": ours["RoleName"], "PolicyName": "ec2dbn-run", "PolicyDocument": "{}"}
    cases = {
        "create bounded": (iam_record("CreateRole", {**ours, "PermissionsBoundary": BOUNDARY}), "Allowed"),
        "create unbounded": (iam_record("CreateRole", ours), "ImplicitlyDenied"),
        "create under another boundary": (
            iam_record("CreateRole", {**ours, "PermissionsBoundary": admin}),
            "ImplicitlyDenied",
        ),
        "write a bounded role's policy": (iam_record("PutRolePolicy", policy, BOUNDARY), "Allowed"),
        "write an unbounded role's policy": (iam_record("PutRolePolicy", policy), "ImplicitlyDenied"),
        "write a policy under another boundary": (
            iam_record("PutRolePolicy", policy, admin),
            "ImplicitlyDenied",
        ),
        "set ec2dbn's boundary": (
            iam_record("PutRolePermissionsBoundary", {**ours, "PermissionsBoundary": BOUNDARY}),
            "Allowed",
        ),
        "set another boundary": (
            iam_record("PutRolePermissionsBoundary", {**ours, "PermissionsBoundary": admin}),
            "ImplicitlyDenied",
        ),
    }
    action = {"Create": "iam:CreateRole", "PutRolePolicy": "iam:PutRolePolicy"}
    for what, (rec, want) in cases.items():
        name = rec["operation"]
        key = action.get(name, action.get(name[:6], f"iam:{name}"))
        assert verdicts([rec])[(key, "role")] == want, what
    # Taking a boundary off is not allowed at all, nor is making or changing a managed policy (the boundary).
    granted = iam_policy.actions()
    assert not {"iam:DeleteRolePermissionsBoundary", "iam:CreatePolicy", "iam:CreatePolicyVersion"} & granted
    assert not {"iam:AttachRolePolicy", "iam:UpdateAssumeRolePolicy", "iam:SetDefaultPolicyVersion"} & granted


def test_it_creates_the_spot_role_only(evaluator: None) -> None:
    (spot,) = [
        r
        for r in authz.requests_for(
            record("RunInstances", run_params(InstanceMarketOptions={"MarketType": "spot"}))
        )
        if r["action"] == "iam:CreateServiceLinkedRole"
    ]
    other = copy.deepcopy(spot)
    other["context"]["iam:AWSServiceName"] = "ec2.amazonaws.com"
    other["resources"][0]["ids"]["RoleNameWithPath"] = (
        "aws-service-role/ec2.amazonaws.com/AWSServiceRoleForEC2"
    )
    for req, want in ((spot, "Allowed"), (other, "ImplicitlyDenied")):
        (result,) = iam_eval.evaluate(iam_policy.policies(), [{**req, "id": "x"}]).results
        assert result["result"] == want


# ------------------------------------------------------------------------------ the converter itself


def test_a_fleet_is_its_fleet_instances_template_subnets_tags_and_the_spot_role() -> None:
    pools = [Pool("g4dn.xlarge", "us-east-1a", subnet="subnet-0a"), Pool("g4dn.xlarge", "us-east-1b")]
    params = fleets.fleet_request("t", "lt-01", pools, "spot", 2, {"ec2dbn:sweep": "s"})
    reqs = authz.requests_for(record("CreateFleet", params, {"lt-01": OURS}))
    (fleet,) = [r for r in reqs if r["action"] == "ec2:CreateFleet"]
    by_type = {r["type"]: r for r in fleet["resources"]}
    assert set(by_type) == {"fleet", "instance", "launch-template", "subnet"}
    assert by_type["instance"]["context"]["aws:RequestTag/ec2dbn:managed"] == "true"
    assert by_type["launch-template"]["context"]["ec2:ResourceTag/ec2dbn:managed"] == "true"
    assert by_type["subnet"]["ids"] == {"SubnetId": "subnet-0a"} and by_type["subnet"]["context"] == {}
    tagging = [r for r in reqs if r["action"] == "ec2:CreateTags"]
    assert {r["resources"][0]["type"] for r in tagging} == {"fleet", "instance"}
    assert all(r["context"]["ec2:CreateAction"] == "CreateFleet" for r in tagging)
    (role,) = [r for r in reqs if r["action"] == "iam:CreateServiceLinkedRole"]
    assert role["context"]["iam:AWSServiceName"] == "spot.amazonaws.com"


def test_a_mutating_call_it_cannot_describe_fails_the_proof() -> None:
    with pytest.raises(authz.UnknownCall):
        authz.requests_for(record("ModifyInstanceAttribute", {"InstanceId": "i-0aaa"}))
    _, undescribed = authz.batch([record("ModifyInstanceAttribute", {"InstanceId": "i-0aaa"})])
    assert undescribed and "ModifyInstanceAttribute" in undescribed[0]


def test_a_required_resource_type_left_undescribed_is_an_error(evaluator: None) -> None:
    """The resource types come from the reference, not from the converter: one it leaves out is reported."""
    req = {
        "id": "r",
        "action": "ec2:RunInstances",
        "region": "us-east-1",
        "account": authz.ACCOUNT_ID,
        "resources": [],
        "context": {},
    }
    evaluation = iam_eval.evaluate(iam_policy.policies(), [req])
    assert any("requires resource type image" in e for e in evaluation.errors)
    assert any("requires resource type instance" in e for e in evaluation.errors)


@pytest.mark.parametrize("ci", ["", "true"])
def test_without_the_evaluator_the_proof_is_skipped_outside_ci_and_fails_in_it(
    ci: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(iam_eval.shutil, "which", lambda name: None)  # no node on this machine
    monkeypatch.setattr(authz_record, "RECORDED", [record("DeleteKeyPair", {"KeyName": "k"}, {})])
    verdict = policy_proof.verdict()
    if ci:
        assert verdict.skipped is None and verdict.failures == [
            "node is not installed (Debian: apt-get install nodejs npm)"
        ]
    else:
        assert verdict.skipped == "node is not installed (Debian: apt-get install nodejs npm)"
        assert verdict.failures == []
