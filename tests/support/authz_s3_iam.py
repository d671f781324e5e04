"""The run store's S3 calls and the instance role's IAM calls as the authorization requests AWS evaluates
(the part of tests/support/authz.py for S3 and IAM; its CONVERTERS takes these in).

Which IAM action an S3 or IAM operation needs is written here from the Service Authorization Reference and
the services' API references, independently of ec2dbn's own table (ec2dbn.aws.iam_policy.ACTION_OF), so a
wrong entry there fails the proof instead of agreeing with itself:

- S3: a bucket (`arn:…:s3:::<bucket>`) or an object (`…:<bucket>/<key>`) per call; HeadBucket and
  ListObjectsV2 are s3:ListBucket with `s3:prefix` (and `s3:delimiter`) from the request, ListObjectVersions
  s3:ListBucketVersions, HeadObject s3:GetObject, DeleteObjects one s3:DeleteObject (s3:DeleteObjectVersion
  with a version id) per key, PutPublicAccessBlock s3:PutBucketPublicAccessBlock, PutBucketEncryption
  s3:PutEncryptionConfiguration, ListBuckets s3:ListAllMyBuckets;
- IAM: the role (`role/<path><name>`) or instance profile it names, with `aws:RequestTag/*` from the
  Tags a Create* call puts on it; AddRoleToInstanceProfile asks iam:PassRole on the role too (the IAM API
  reference says so) and names no service; CreateRole and PutRolePermissionsBoundary carry
  iam:PermissionsBoundary from the request, PutRolePolicy the boundary the role has; RunInstances with an
  instance profile passes its role to EC2 (iam:PassedToService = ec2.amazonaws.com; ec2dbn's profile and
  role share the name, ec2dbn.aws.run_role).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.authz import SPOT_ROLE, Call, Resource, UnknownCall, request_tags

#: ec2dbn's IAM path (ec2dbn.aws.run_role.ROLE_PATH, without slashes) and its names' prefix there.
EC2DBN_PATH = "ec2dbn"
EC2_SERVICE = "ec2.amazonaws.com"


def bucket(name: str, context: dict[str, Any] | None = None) -> Resource:
    return {"type": "bucket", "ids": {"BucketName": name}, "context": dict(context or {})}


def obj(bucket_name: str, key: str) -> Resource:
    return {"type": "object", "ids": {"BucketName": bucket_name, "ObjectName": key}, "context": {}}


def role_path(name: str, path: str | None = None) -> str:
    """A role's or profile's name with its path as the ARN has it ('ec2dbn/ec2dbn-t-us-east-1')."""
    if path is not None:
        return f"{path.strip('/')}/{name}".lstrip("/")
    if name == SPOT_ROLE.rsplit("/", 1)[1]:
        return SPOT_ROLE
    return f"{EC2DBN_PATH}/{name}" if name.startswith("ec2dbn-") else name


def role(name: str, path: str | None = None, context: dict[str, Any] | None = None) -> Resource:
    return {
        "type": "role",
        "ids": {"RoleNameWithPath": role_path(name, path)},
        "context": dict(context or {}),
    }


def profile(name: str, path: str | None = None, context: dict[str, Any] | None = None) -> Resource:
    ids = {"InstanceProfileNameWithPath": role_path(name, path)}
    return {"type": "instance-profile", "ids": ids, "context": dict(context or {})}


def _on_bucket(action: str) -> Callable[[Call], list[dict]]:
    def convert(c: Call) -> list[dict]:
        return [c.request(action, [bucket(c.params["Bucket"])])]

    return convert


def _on_object(action: str) -> Callable[[Call], list[dict]]:
    def convert(c: Call) -> list[dict]:
        return [c.request(action, [obj(c.params["Bucket"], c.params["Key"])])]

    return convert


def _listing(action: str) -> Callable[[Call], list[dict]]:
    """A bucket listing: s3:prefix is always in the request context ("" when none is given)."""

    def convert(c: Call) -> list[dict]:
        ctx = {"s3:prefix": c.params.get("Prefix", "")}
        if c.params.get("Delimiter"):
            ctx["s3:delimiter"] = c.params["Delimiter"]
        return [c.request(action, [bucket(c.params["Bucket"])], ctx)]

    return convert


def _create_bucket(c: Call) -> list[dict]:
    where = (c.params.get("CreateBucketConfiguration") or {}).get("LocationConstraint")
    ctx = {"s3:locationconstraint": where} if where else {}
    return [c.request("s3:CreateBucket", [bucket(c.params["Bucket"], ctx)])]


def _delete_objects(c: Call) -> list[dict]:
    out = []
    for item in (c.params.get("Delete") or {}).get("Objects") or []:
        action = "s3:DeleteObjectVersion" if item.get("VersionId") else "s3:DeleteObject"
        out.append(c.request(action, [obj(c.params["Bucket"], item["Key"])]))
    if not out:
        raise UnknownCall("s3:DeleteObjects names no object")
    return out


def policy(arn: str) -> Resource:
    """A managed policy by its ARN ('arn:aws:iam::123:policy/ec2dbn/ec2dbn-run-boundary')."""
    return {"type": "policy", "ids": {"PolicyNameWithPath": arn.split(":policy/", 1)[1]}, "context": {}}


def _boundary(arn: str | None) -> dict[str, str]:
    """iam:PermissionsBoundary: present only when there is a boundary (AWS leaves the key out otherwise)."""
    return {"iam:PermissionsBoundary": arn} if arn else {}


def _create_role(c: Call) -> list[dict]:
    tags = {t["Key"]: t["Value"] for t in c.params.get("Tags") or []}
    new = role(c.params["RoleName"], c.params.get("Path", "/"), request_tags(tags))
    return [c.request("iam:CreateRole", [new], _boundary(c.params.get("PermissionsBoundary")))]


def _put_role_policy(c: Call) -> list[dict]:
    """Judged with the boundary the role has (the recorder read it from moto as the call was made)."""
    return [c.request("iam:PutRolePolicy", [role(c.params["RoleName"])], _boundary(c.role_boundary))]


def _put_role_boundary(c: Call) -> list[dict]:
    """Judged with the boundary it sets."""
    ctx = _boundary(c.params.get("PermissionsBoundary"))
    return [c.request("iam:PutRolePermissionsBoundary", [role(c.params["RoleName"])], ctx)]


def _create_profile(c: Call) -> list[dict]:
    tags = {t["Key"]: t["Value"] for t in c.params.get("Tags") or []}
    new = profile(c.params["InstanceProfileName"], c.params.get("Path", "/"), request_tags(tags))
    return [c.request("iam:CreateInstanceProfile", [new])]


def _on_role(action: str) -> Callable[[Call], list[dict]]:
    def convert(c: Call) -> list[dict]:
        return [c.request(action, [role(c.params["RoleName"])])]

    return convert


def _on_profile(action: str) -> Callable[[Call], list[dict]]:
    def convert(c: Call) -> list[dict]:
        return [c.request(action, [profile(c.params["InstanceProfileName"])])]

    return convert


def _add_role(c: Call) -> list[dict]:
    return [
        c.request("iam:AddRoleToInstanceProfile", [profile(c.params["InstanceProfileName"])]),
        c.request("iam:PassRole", [role(c.params["RoleName"])]),  # to no service
    ]


def pass_profile_role(c: Call) -> list[dict]:
    """RunInstances (or a launch template used by one) naming an instance profile: its role passed to EC2."""
    spec = c.params.get("IamInstanceProfile") or {}
    name = spec.get("Name") or str(spec.get("Arn", "")).rsplit("/", 1)[-1]
    if not name:
        return []
    return [c.request("iam:PassRole", [role(name)], {"iam:PassedToService": EC2_SERVICE})]


CONVERTERS: dict[str, Callable[[Call], list[dict]]] = {
    "s3:CreateBucket": _create_bucket,
    "s3:HeadBucket": _listing("s3:ListBucket"),
    "s3:ListObjectsV2": _listing("s3:ListBucket"),
    "s3:ListObjectVersions": _listing("s3:ListBucketVersions"),
    "s3:ListBuckets": lambda c: [c.request("s3:ListAllMyBuckets", [])],
    "s3:PutBucketTagging": _on_bucket("s3:PutBucketTagging"),
    "s3:GetBucketTagging": _on_bucket("s3:GetBucketTagging"),
    "s3:PutPublicAccessBlock": _on_bucket("s3:PutBucketPublicAccessBlock"),
    "s3:PutBucketEncryption": _on_bucket("s3:PutEncryptionConfiguration"),
    "s3:PutBucketPolicy": _on_bucket("s3:PutBucketPolicy"),
    "s3:GetBucketLocation": _on_bucket("s3:GetBucketLocation"),
    "s3:GetBucketVersioning": _on_bucket("s3:GetBucketVersioning"),
    "s3:DeleteBucket": _on_bucket("s3:DeleteBucket"),
    "s3:GetObject": _on_object("s3:GetObject"),
    "s3:HeadObject": _on_object("s3:GetObject"),
    "s3:PutObject": _on_object("s3:PutObject"),
    "s3:DeleteObject": _on_object("s3:DeleteObject"),
    "s3:DeleteObjects": _delete_objects,
    "iam:CreateRole": _create_role,
    "iam:GetRole": _on_role("iam:GetRole"),
    "iam:DeleteRole": _on_role("iam:DeleteRole"),
    "iam:PutRolePolicy": _put_role_policy,
    "iam:PutRolePermissionsBoundary": _put_role_boundary,
    "iam:GetPolicy": lambda c: [c.request("iam:GetPolicy", [policy(c.params["PolicyArn"])])],
    "iam:GetPolicyVersion": lambda c: [c.request("iam:GetPolicyVersion", [policy(c.params["PolicyArn"])])],
    "iam:DeleteRolePolicy": _on_role("iam:DeleteRolePolicy"),
    "iam:ListRolePolicies": _on_role("iam:ListRolePolicies"),
    "iam:CreateInstanceProfile": _create_profile,
    "iam:GetInstanceProfile": _on_profile("iam:GetInstanceProfile"),
    "iam:DeleteInstanceProfile": _on_profile("iam:DeleteInstanceProfile"),
    "iam:AddRoleToInstanceProfile": _add_role,
    "iam:RemoveRoleFromInstanceProfile": _on_profile("iam:RemoveRoleFromInstanceProfile"),
}
