"""The instance's credentials the way EC2 gives them: a role and an instance profile per stack and region.

The instance reads the role's temporary credentials from IMDS with boto3's standard chain; no key is ever
copied to it. What the role may do is set per run (`grant_run`): read and write its own run's prefix of the
store, list only under it, and terminate only the instance it runs on (ec2:SourceInstanceARN is the ARN of
the instance whose credentials sign the request). IAM is global, so the names carry the region; role and
profile live under the path /ec2dbn/ (the user's IAM policy allows IAM changes there only) and are tagged
ec2dbn:managed, ec2dbn:stack and ec2dbn:region, so teardown by tags finds them without local state.
Every role carries ec2dbn's permissions boundary (iam_policy.boundary_policy, made once by an
administrator): the user's policy writes a role's permissions only with it, so no inline policy, ec2dbn's
or anyone's, gives an instance more than the boundary does.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import urllib.parse
from typing import Any

from botocore.exceptions import ClientError

from ec2dbn.aws.account import identity
from ec2dbn.aws.errors import aws_errors, error_code
from ec2dbn.aws.iam_policy import BOUNDARY_NAME, ROLE_PATH, boundary_arn
from ec2dbn.aws.session import Aws
from ec2dbn.aws.store import BUCKET_PREFIX, StoreRef, run_prefix
from ec2dbn.aws.tags import MANAGED_TAG, STACK_TAG, as_dict
from ec2dbn.errors import CloudError
from trainer import strict_json

REGION_TAG = "ec2dbn:region"
#: The one inline policy of the role, replaced for each run.
RUN_POLICY = "ec2dbn-run"
EC2_SERVICE = "ec2.amazonaws.com"
_MAX_NAME = 64  # a role name's limit (an instance profile's is 128)


def profile_name(stack: str, region: str) -> str:
    """'ec2dbn-<stack>-<region>', the role's and the profile's name; a hash keeps a long one under 64."""
    name = f"ec2dbn-{stack}-{region}"
    if len(name) <= _MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: _MAX_NAME - 9]}-{digest}"


def _tags(stack: str, region: str) -> list[dict[str, str]]:
    tags = {MANAGED_TAG: "true", STACK_TAG: stack, REGION_TAG: region}
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _ours(tags: Any, stack: str | None = None) -> bool:
    d = as_dict(tags)
    return d.get(MANAGED_TAG) == "true" and (stack is None or d.get(STACK_TAG) == stack)


def _iam(region: str) -> Any:
    return Aws(region).client("iam")


def _trust() -> str:
    statement = {"Effect": "Allow", "Principal": {"Service": EC2_SERVICE}, "Action": "sts:AssumeRole"}
    return strict_json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _get(call: Any, key: str, **params: str) -> dict[str, Any] | None:
    try:
        return dict(call(**params)[key])
    except ClientError as exc:
        if error_code(exc) == "NoSuchEntity":
            return None
        raise


def boundary_status(region: str, store: StoreRef | None = None) -> tuple[str, str | None]:
    """(the permissions boundary's ARN in this account, what keeps a stored run from working with it: None
    when it exists and, given the run `store`, lets instances write its runs there). Raises CloudError."""
    aws = Aws(region)
    iam = aws.client("iam")
    arn = boundary_arn(iam.meta.partition, identity(aws).account)
    with aws_errors(region, f"looking for the permissions boundary {BOUNDARY_NAME}"):
        found = _get(iam.get_policy, "Policy", PolicyArn=arn)
        if found is None:
            return arn, "does not exist"
        if store is None:
            return arn, None
        version = iam.get_policy_version(PolicyArn=arn, VersionId=found["DefaultVersionId"])["PolicyVersion"]
    a_run = f"arn:{iam.meta.partition}:s3:::{store.bucket}/{run_prefix(store, 'r')}job.log"
    if not _lets_write(_document(version["Document"]), a_run):
        return arn, f"does not let instances write to {store.uri}"
    return arn, None


def _document(raw: Any) -> dict[str, Any]:
    """A policy version's document: boto3 gives it decoded, or as IAM's URL-encoded JSON."""
    if isinstance(raw, dict):
        return raw
    return dict(json.loads(urllib.parse.unquote(str(raw))))


def _lets_write(document: dict[str, Any], object_arn: str) -> bool:
    """Whether an Allow statement grants s3:PutObject on `object_arn` (its wildcards matched as IAM does;
    conditions and denies aside: a check before launching, not an evaluator)."""

    def listed(value: Any) -> list[str]:
        return [value] if isinstance(value, str) else [str(v) for v in value or []]

    statements = document.get("Statement") or []
    for st in [statements] if isinstance(statements, dict) else statements:
        if st.get("Effect") != "Allow":
            continue
        if any(fnmatch.fnmatchcase("s3:putobject", a.lower()) for a in listed(st.get("Action"))) and any(
            fnmatch.fnmatchcase(object_arn, r) for r in listed(st.get("Resource"))
        ):
            return True
    return False


def boundary_hint(partition: str, store: StoreRef | None = None, replace_arn: str | None = None) -> str:
    """The administrator's commands that make the boundary (README says the same), or with `replace_arn`
    give the existing one a new default version; `store`: the run store of the stack (a bucket it names in
    `store:` is added with --bucket)."""
    flags = "" if partition == "aws" else f" --partition {partition}"
    if store is not None and not store.bucket.startswith(BUCKET_PREFIX):
        flags += f" --bucket {store.bucket}"
    if replace_arn:
        make = f"aws iam create-policy-version --policy-arn {replace_arn} --set-as-default"
    else:
        make = f"aws iam create-policy --path {ROLE_PATH} --policy-name {BOUNDARY_NAME}"
    return f"`ec2dbn iam-policy --boundary{flags} > boundary.json && {make} --policy-document file://boundary.json`"


def ensure_instance_profile(stack: str, region: str, store: StoreRef | None = None) -> str:
    """The stack's role (trusting EC2 only, bounded by ec2dbn's permissions boundary) and instance profile of
    the same name, the role in the profile; created when missing, left as they are when they exist and are
    the stack's (a role from before the boundary gets it). Returns the profile's name.

    Raises CloudError when the boundary does not exist or does not let instances write to the run `store`
    (an administrator makes or widens it: the error says how), when a role or profile of that name exists
    but is not tagged for the stack (it is not ec2dbn's to use), or AWS refuses."""
    iam = _iam(region)
    name = profile_name(stack, region)
    boundary, problem = boundary_status(region, store)
    if problem is not None:
        exists = problem != "does not exist"
        hint = boundary_hint(iam.meta.partition, store, boundary if exists else None)
        raise CloudError(f"the permissions boundary {boundary} {problem}: an IAM administrator runs {hint}")
    with aws_errors(region, f"making the instance role and profile {name}"):
        role = _get(iam.get_role, "Role", RoleName=name)
        if role is None:
            iam.create_role(
                RoleName=name,
                Path=ROLE_PATH,
                AssumeRolePolicyDocument=_trust(),
                Description=f"ec2dbn stack {stack} in {region}: its run's store prefix, terminate itself",
                PermissionsBoundary=boundary,
                Tags=_tags(stack, region),
            )
        elif not _ours(role.get("Tags"), stack):
            raise CloudError(
                f"IAM role {name} exists but is not tagged for stack {stack}: ec2dbn leaves it alone"
            )
        elif (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn") != boundary:
            iam.put_role_permissions_boundary(RoleName=name, PermissionsBoundary=boundary)
        profile = _get(iam.get_instance_profile, "InstanceProfile", InstanceProfileName=name)
        if profile is None:
            profile = iam.create_instance_profile(
                InstanceProfileName=name, Path=ROLE_PATH, Tags=_tags(stack, region)
            )["InstanceProfile"]
        elif not _ours(profile.get("Tags"), stack):
            raise CloudError(f"instance profile {name} exists but is not tagged for stack {stack}")
        if name not in [r["RoleName"] for r in profile.get("Roles") or []]:
            iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return name


def run_policy(
    partition: str, account: str, region: str, ref: StoreRef, run_id: str, instance_id: str
) -> dict[str, Any]:
    """The role's inline policy for one run on one instance (see the module doc)."""
    prefix = run_prefix(ref, run_id)
    bucket = f"arn:{partition}:s3:::{ref.bucket}"
    instance = f"arn:{partition}:ec2:{region}:{account}:instance/{instance_id}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OwnRunFiles",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject"],
                "Resource": f"{bucket}/{prefix}*",
            },
            {
                "Sid": "ListOwnRun",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": bucket,
                "Condition": {"StringLike": {"s3:prefix": f"{prefix}*"}},
            },
            {
                "Sid": "TerminateItself",
                "Effect": "Allow",
                "Action": "ec2:TerminateInstances",
                "Resource": instance,
                "Condition": {"ArnEquals": {"ec2:SourceInstanceARN": instance}},
            },
        ],
    }


def grant_run(stack: str, region: str, ref: StoreRef, run_id: str, instance_id: str) -> None:
    """Let the stack's role write run `run_id`'s files and terminate `instance_id` (and nothing else): its
    one inline policy, replaced. Raises CloudError."""
    aws = Aws(region)
    iam = aws.client("iam")
    name = profile_name(stack, region)
    account = identity(aws).account
    document = run_policy(iam.meta.partition, account, region, ref, run_id, instance_id)
    with aws_errors(region, f"granting run {run_id} to the role {name}"):
        iam.put_role_policy(RoleName=name, PolicyName=RUN_POLICY, PolicyDocument=strict_json.dumps(document))


def remove_instance_profile(stack: str, region: str) -> bool:
    """Remove the stack's instance profile and role (the role out of the profile, the profile, the role's
    inline policies, the role); parts already gone are fine, parts not tagged for the stack are left.
    Returns whether anything was removed. Raises CloudError."""
    iam = _iam(region)
    name = profile_name(stack, region)
    removed = False
    with aws_errors(region, f"removing the instance role and profile {name}"):
        profile = _get(iam.get_instance_profile, "InstanceProfile", InstanceProfileName=name)
        if profile is not None and _ours(profile.get("Tags"), stack):
            for role in profile.get("Roles") or []:
                iam.remove_role_from_instance_profile(InstanceProfileName=name, RoleName=role["RoleName"])
            iam.delete_instance_profile(InstanceProfileName=name)
            removed = True
        role = _get(iam.get_role, "Role", RoleName=name)
        if role is not None and _ours(role.get("Tags"), stack):
            for page in iam.get_paginator("list_role_policies").paginate(RoleName=name):
                for policy in page["PolicyNames"]:
                    iam.delete_role_policy(RoleName=name, PolicyName=policy)
            iam.delete_role(RoleName=name)
            removed = True
    return removed


def _profiles(region: str | None) -> dict[str, dict[str, str]]:
    """ec2dbn's instance profiles (path /ec2dbn/, tagged ec2dbn:managed=true), of `region` or of all:
    {name: tags}."""
    where = region or "us-east-1"
    iam = _iam(where)
    found: dict[str, dict[str, str]] = {}
    with aws_errors(where, "listing ec2dbn's instance profiles"):
        for page in iam.get_paginator("list_instance_profiles").paginate(PathPrefix=ROLE_PATH):
            for p in page["InstanceProfiles"]:
                # IAM's listings may leave the tags out (its documentation says so): read each profile.
                name = str(p["InstanceProfileName"])
                full = _get(iam.get_instance_profile, "InstanceProfile", InstanceProfileName=name) or {}
                tags = as_dict(full.get("Tags"))
                if _ours(full.get("Tags")) and (region is None or tags.get(REGION_TAG) == region):
                    found[name] = tags
    return found


def find_instance_profiles(region: str | None) -> list[str]:
    """ec2dbn's instance profiles (path /ec2dbn/, tagged ec2dbn:managed=true), of `region` or of all."""
    return sorted(_profiles(region))


def profile_stacks(region: str) -> list[str]:
    """The stacks with an instance profile in `region` (teardown --all finds them by this)."""
    return sorted({tags[STACK_TAG] for tags in _profiles(region).values() if tags.get(STACK_TAG)})
