"""The least-privilege IAM policy ec2dbn needs, as `ec2dbn iam-policy` prints it.

Every AWS call ec2dbn makes is allowed here, and proven so: the test suite records every call its flows
make, turns each into the authorization requests AWS evaluates for it (one per action and resource type of
the Service Authorization Reference, with the request's tags) and evaluates them all under this policy with
a real IAM policy evaluator (tests/support/policy_proof.py). Every action that changes or removes something
is scoped by ec2dbn's tag, so credentials holding only this policy cannot terminate, open or delete what
ec2dbn did not create:

- creating: RunInstances, CreateKeyPair, CreateSecurityGroup, CreateLaunchTemplate, CreateFleet (its
  instances too) and CreateImage (the image and its snapshots) only when the request tags what it creates
  `ec2dbn:managed=true` (aws:RequestTag), and CreateTags only as part of those calls (ec2:CreateAction:
  tag-on-create); RunInstances' instances must require IMDSv2 and their volumes be encrypted;
- using: RunInstances, CreateFleet and CreateImage only with key pairs, security groups, launch templates
  and instances that carry the tag (ec2:ResourceTag); any AMI, subnet and VPC (ec2dbn tags none of them);
- changing or removing: TerminateInstances, CancelSpotInstanceRequests, Authorize/Revoke ingress,
  DeleteSecurityGroup, DeleteKeyPair, DeleteFleets, DeleteLaunchTemplate, DeregisterImage, DeleteSnapshot
  only on resources tagged `ec2dbn:managed=true`; tagging existing instances only with ec2dbn's lease and
  teardown tags (aws:TagKeys) on instances that carry the tag;
- spot: the first spot request in an account creates the Spot service-linked role as the caller, so
  iam:CreateServiceLinkedRole is allowed for that role only (iam:AWSServiceName = spot.amazonaws.com), and
  iam:GetRole on it (`ec2dbn check` says whether it exists);
- reading: Describe* (EC2 supports no resource-level permissions for them), the public AMI-alias
  parameters under /aws/service/, Service Quotas' GetServiceQuota, STS' GetCallerIdentity and the Price
  List API's GetProducts (like Describe*, no resource-level permissions), and the two listings that take
  no resource (S3's ListAllMyBuckets, IAM's ListInstanceProfiles);
- the run store (ec2dbn.aws.store): S3 only on buckets named ec2dbn-runs-* and their objects (make,
  harden, tag, list, read, write, empty and delete them); a bucket the stack names is the user's to grant;
- the instance's role (ec2dbn.aws.run_role): IAM roles and instance profiles only under the path /ec2dbn/
  (read, delete the inline policy, add and remove the role, delete), and iam:PassRole only of those
  roles, only to EC2 (iam:PassedToService; IfExists, because AddRoleToInstanceProfile passes the role to
  no service and asks for PassRole all the same). What gives a role permissions — CreateRole,
  PutRolePolicy, PutRolePermissionsBoundary — only with ec2dbn's permissions boundary on the role
  (iam:PermissionsBoundary): a managed policy an administrator creates once from `boundary_policy`, which
  this policy cannot create or change. Whoever holds this policy can therefore give an instance no more
  than the boundary allows (the run store's objects, terminating ec2dbn's instances), whatever inline
  policy they write; iam:GetPolicy and GetPolicyVersion on the boundary let ec2dbn say, before
  launching, whether it exists and lets instances write to the run store's bucket.

It is one managed policy: IAM counts a managed policy's characters without white space, at most 6,144
(tests/aws/test_iam_policy.py holds it under that). Statements whose actions share a condition are merged
to stay there; a merged statement grants an action only on the resource types the reference lists for it,
with the condition keys that apply to each (a key that does not apply is absent, and the condition fails).
"""

from __future__ import annotations

import re
from typing import Any

from ec2dbn.aws.tags import MANAGED_TAG, RUN_TAG, TEARDOWN_TAG
from trainer import strict_json

PARTITIONS = ("aws", "aws-cn", "aws-us-gov")

#: Read-only EC2 actions; Describe* supports no resource-level permissions ("Resource": "*").
EC2_READ = (
    "DescribeAvailabilityZones",
    "DescribeFleets",
    "DescribeImages",
    "DescribeInstanceTypeOfferings",
    "DescribeInstanceTypes",
    "DescribeInstances",
    "DescribeSnapshots",
    "DescribeKeyPairs",
    "DescribeLaunchTemplateVersions",
    "DescribeLaunchTemplates",
    "DescribeSecurityGroups",
    "DescribeSpotInstanceRequests",
    "DescribeSpotPriceHistory",
    "DescribeSubnets",
    "DescribeVpcs",
)

#: The calls that create ec2dbn's resources, and so may tag them as they do (tag-on-create).
CREATE_ACTIONS = (
    "RunInstances",
    "CreateSecurityGroup",
    "CreateKeyPair",
    "CreateLaunchTemplate",
    "CreateFleet",
    "CreateImage",
)

#: Tags ec2dbn puts on its own running instances after launch: the lease and the teardown mark.
LATER_TAGS = (RUN_TAG, TEARDOWN_TAG)

#: The Spot service-linked role (IAM creates it for the first spot request in an account).
SPOT_SERVICE = "spot.amazonaws.com"
SPOT_ROLE = "AWSServiceRoleForEC2Spot"
SPOT_ROLE_PATH = f"aws-service-role/{SPOT_SERVICE}/{SPOT_ROLE}"


#: The run store's buckets (ec2dbn.aws.store.BUCKET_PREFIX) and what ec2dbn does with them and their objects.
STORE_BUCKETS = "ec2dbn-runs-*"
STORE_ACTIONS = (
    "CreateBucket",
    "PutBucketTagging",
    "GetBucketTagging",
    "PutBucketPublicAccessBlock",
    "PutEncryptionConfiguration",
    "PutBucketPolicy",
    "GetBucketLocation",
    "GetBucketVersioning",
    "ListBucket",
    "ListBucketVersions",
    "GetObject",
    "PutObject",
    "DeleteObject",
    "DeleteObjectVersion",
    "DeleteBucket",
)
#: The instance roles' path (ec2dbn.aws.run_role uses it) and what ec2dbn does with roles and profiles.
ROLE_PATH = "/ec2dbn/"
ROLE_ACTIONS = (
    "GetRole",
    "DeleteRole",
    "DeleteRolePolicy",
    "ListRolePolicies",
    "CreateInstanceProfile",
    "GetInstanceProfile",
    "DeleteInstanceProfile",
    "AddRoleToInstanceProfile",
    "RemoveRoleFromInstanceProfile",
)
#: What gives a role its permissions: allowed only with ec2dbn's permissions boundary on the role (see
#: boundary_policy), so no policy written on an /ec2dbn/ role grants more than the boundary does.
BOUNDED_ROLE_ACTIONS = ("CreateRole", "PutRolePolicy", "PutRolePermissionsBoundary")
#: The boundary's name (under ROLE_PATH). An administrator creates it once (`ec2dbn iam-policy --boundary`);
#: ec2dbn's own policy can neither create nor change a managed policy.
BOUNDARY_NAME = "ec2dbn-run-boundary"

#: API operations whose IAM action has another name ("s3:HeadBucket" is authorized as s3:ListBucket).
ACTION_OF = {
    "s3:HeadBucket": "s3:ListBucket",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjectVersions": "s3:ListBucketVersions",
    "s3:HeadObject": "s3:GetObject",
    "s3:DeleteObjects": "s3:DeleteObject",
    "s3:ListBuckets": "s3:ListAllMyBuckets",
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketEncryption": "s3:PutEncryptionConfiguration",
}


def action_of(service: str, operation: str) -> str:
    """The IAM action an API call needs ('s3', 'ListObjectsV2' → 's3:ListBucket')."""
    name = f"{service}:{operation}"
    return ACTION_OF.get(name, name)


def boundary_arn(partition: str, account: str = "*") -> str:
    """The permissions boundary's ARN (`*`: any account, as the user's policy names it)."""
    return f"arn:{partition}:iam::{account}:policy{ROLE_PATH}{BOUNDARY_NAME}"


def boundary_policy(partition: str = "aws", buckets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The most an instance role may ever do, whatever its inline policy says: read and write objects and
    list in the run store's buckets (ec2dbn-runs-*, plus `buckets` the stacks name in `store:`), and
    terminate instances ec2dbn tagged. Each run's inline policy narrows it to its own prefix and instance."""
    if partition not in PARTITIONS:
        raise ValueError(f"unknown partition {partition!r}; one of {', '.join(PARTITIONS)}")
    names = [STORE_BUCKETS, *buckets]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RunStoreObjects",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:GetObject"],
                "Resource": [f"arn:{partition}:s3:::{name}/*" for name in names],
            },
            {
                "Sid": "RunStoreListing",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": [f"arn:{partition}:s3:::{name}" for name in names],
            },
            {
                "Sid": "TerminateEc2dbnInstances",
                "Effect": "Allow",
                "Action": "ec2:TerminateInstances",
                "Resource": f"arn:{partition}:ec2:*:*:instance/*",
                "Condition": {"StringEquals": {f"ec2:ResourceTag/{MANAGED_TAG}": "true"}},
            },
        ],
    }


def _arn(partition: str, kind: str, *, account: bool = True) -> str:
    """An EC2 resource ARN pattern; images and snapshots have no account in theirs."""
    return f"arn:{partition}:ec2:*:{'*' if account else ''}:{kind}/*"


def policy(partition: str = "aws") -> dict[str, Any]:
    """The policy document (IAM JSON) for `partition` (aws, aws-cn, aws-us-gov)."""
    if partition not in PARTITIONS:
        raise ValueError(f"unknown partition {partition!r}; one of {', '.join(PARTITIONS)}")

    def arn(*kinds: str) -> list[str]:
        return [_arn(partition, k, account=k not in ("image", "snapshot")) for k in kinds]

    def ec2(*names: str) -> list[str]:
        return [f"ec2:{n}" for n in names]

    ours = {"StringEquals": {f"ec2:ResourceTag/{MANAGED_TAG}": "true"}}
    tagged_on_create = {f"aws:RequestTag/{MANAGED_TAG}": "true"}
    spot_role = f"arn:{partition}:iam::*:role/{SPOT_ROLE_PATH}"
    statements: list[dict[str, Any]] = [
        {"Sid": "Read", "Effect": "Allow", "Action": ec2(*EC2_READ), "Resource": "*"},
        {
            "Sid": "IdentityQuotasPrices",
            "Effect": "Allow",
            "Action": [
                "sts:GetCallerIdentity",
                "servicequotas:GetServiceQuota",
                "pricing:GetProducts",
                "s3:ListAllMyBuckets",
                "iam:ListInstanceProfiles",
            ],
            "Resource": "*",
        },
        {
            "Sid": "ImageAliases",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": f"arn:{partition}:ssm:*:*:parameter/aws/service/*",
        },
        {
            "Sid": "CreateOnlyTagged",
            "Effect": "Allow",
            "Action": ec2(
                "CreateKeyPair", "CreateSecurityGroup", "CreateLaunchTemplate", "CreateFleet", "CreateImage"
            ),
            "Resource": arn("key-pair", "security-group", "launch-template", "fleet", "image", "snapshot"),
            "Condition": {"StringEquals": tagged_on_create},
        },
        {  # apart: CreateImage must never be allowed on an instance by the image's own tags
            "Sid": "FleetInstancesTagged",
            "Effect": "Allow",
            "Action": "ec2:CreateFleet",
            "Resource": arn("instance"),
            "Condition": {"StringEquals": tagged_on_create},
        },
        {
            "Sid": "UseOnlyOurs",
            "Effect": "Allow",
            "Action": ec2("RunInstances", "CreateFleet", "CreateImage"),
            "Resource": arn("key-pair", "security-group", "launch-template", "instance"),
            "Condition": ours,
        },
        {
            "Sid": "AnyImageSubnetVpc",
            "Effect": "Allow",
            "Action": ec2("RunInstances", "CreateFleet", "CreateSecurityGroup"),
            "Resource": arn("image", "snapshot", "subnet", "network-interface", "vpc"),
        },
        {
            "Sid": "RunTaggedImdsV2Instances",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": arn("instance"),
            "Condition": {"StringEquals": {**tagged_on_create, "ec2:MetadataHttpTokens": "required"}},
        },
        {
            "Sid": "TaggedEncryptedVolumes",
            "Effect": "Allow",
            "Action": ec2("RunInstances", "CreateFleet"),
            "Resource": arn("volume"),
            "Condition": {"StringEquals": tagged_on_create, "Bool": {"ec2:Encrypted": "true"}},
        },
        {
            "Sid": "RunTaggedSpotRequests",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": arn("spot-instances-request"),
            "Condition": {"StringEquals": tagged_on_create},
        },
        {
            "Sid": "TagOnlyWhileCreating",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            # Whatever those calls create: only they may tag, and each is allowed above only on its own terms.
            "Resource": f"arn:{partition}:ec2:*:*:*",
            "Condition": {"StringEquals": {"ec2:CreateAction": list(CREATE_ACTIONS)}},
        },
        {
            "Sid": "LeaseAndTeardownTags",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": arn("instance"),
            "Condition": {**ours, "ForAllValues:StringEquals": {"aws:TagKeys": list(LATER_TAGS)}},
        },
        {
            "Sid": "ReleaseLease",
            "Effect": "Allow",
            "Action": "ec2:DeleteTags",
            "Resource": arn("instance"),
            "Condition": {**ours, "ForAllValues:StringEquals": {"aws:TagKeys": [RUN_TAG]}},
        },
        {
            "Sid": "ChangeAndRemoveOnlyOurs",
            "Effect": "Allow",
            "Action": ec2(
                "TerminateInstances",
                "CancelSpotInstanceRequests",
                "AuthorizeSecurityGroupIngress",
                "RevokeSecurityGroupIngress",
                "DeleteSecurityGroup",
                "DeleteKeyPair",
                "DeleteFleets",
                "DeleteLaunchTemplate",
                "DeregisterImage",
                "DeleteSnapshot",
            ),
            # Every EC2 resource, as far as the tag goes: each action applies only to its own types (the
            # Service Authorization Reference), and what carries ec2dbn's tag is all it may touch.
            "Resource": f"arn:{partition}:ec2:*:*:*",
            "Condition": ours,
        },
        {
            "Sid": "SpotServiceLinkedRole",
            "Effect": "Allow",
            "Action": "iam:CreateServiceLinkedRole",
            "Resource": spot_role,
            "Condition": {"StringEquals": {"iam:AWSServiceName": SPOT_SERVICE}},
        },
        {  # GetRole: does the Spot role exist; GetPolicy(Version): does the boundary, with which buckets
            "Sid": "SpotRoleAndBoundaryExist",
            "Effect": "Allow",
            "Action": ["iam:GetRole", "iam:GetPolicy", "iam:GetPolicyVersion"],
            "Resource": [spot_role, boundary_arn(partition)],
        },
        {
            "Sid": "RunStore",
            "Effect": "Allow",
            "Action": [f"s3:{a}" for a in STORE_ACTIONS],
            "Resource": f"arn:{partition}:s3:::{STORE_BUCKETS}",  # * spans "/": the objects too
        },
        {
            "Sid": "InstanceRoles",
            "Effect": "Allow",
            "Action": [f"iam:{a}" for a in ROLE_ACTIONS],
            "Resource": [
                f"arn:{partition}:iam::*:{kind}{ROLE_PATH}*" for kind in ("role", "instance-profile")
            ],
        },
        {
            "Sid": "InstanceRolesBounded",
            "Effect": "Allow",
            "Action": [f"iam:{a}" for a in BOUNDED_ROLE_ACTIONS],
            "Resource": f"arn:{partition}:iam::*:role{ROLE_PATH}*",
            "Condition": {"StringLike": {"iam:PermissionsBoundary": boundary_arn(partition)}},
        },
        {
            "Sid": "PassRolesToEc2",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": f"arn:{partition}:iam::*:role{ROLE_PATH}*",
            "Condition": {"StringEqualsIfExists": {"iam:PassedToService": "ec2.amazonaws.com"}},
        },
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def size(document: dict[str, Any]) -> int:
    """The policy's size as IAM counts it against a managed policy's 6,144: characters without white space."""
    return len(re.sub(r"\s", "", strict_json.dumps(document)))


def actions(document: dict[str, Any] | None = None) -> set[str]:
    """Every action the policy allows ('ec2:RunInstances', ...)."""
    found: set[str] = set()
    for st in (document or policy())["Statement"]:
        acts = st["Action"]
        found.update([acts] if isinstance(acts, str) else acts)
    return found


def required_action(operation: str) -> str | None:
    """The IAM action an API operation ('RunInstances') needs, when it is one ec2dbn calls."""
    for call, action in ACTION_OF.items():
        if call.split(":", 1)[1] == operation:
            return action
    for action in actions():
        if action.split(":", 1)[1] == operation:
            return action
    return None


def policies(partition: str = "aws") -> list[dict[str, Any]]:
    """The managed policies a user attaches (one today: it fits IAM's 6,144 characters)."""
    return [policy(partition)]
