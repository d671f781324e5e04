"""The least-privilege IAM policy ec2dbn needs, as `ec2dbn iam-policy` prints it.

Every AWS call ec2dbn makes is an action here (the test suite records every call its flows make and fails
when one is missing), and every action that changes or removes something is scoped by ec2dbn's tag where
EC2 supports resource-level permissions, so credentials holding only this policy cannot terminate, open
or delete what ec2dbn did not create:

- creating: RunInstances, CreateKeyPair, CreateSecurityGroup and (for sweeps) CreateLaunchTemplate and
  CreateFleet only when the request tags what it creates `ec2dbn:managed=true` (aws:RequestTag), and
  CreateTags only as part of those calls (ec2:CreateAction: tag-on-create); instances must require IMDSv2
  and volumes be encrypted;
- using: RunInstances (and a sweep's CreateFleet) only with a key pair, security group and launch
  template that carry the tag (ec2:ResourceTag);
- changing or removing: TerminateInstances, CancelSpotInstanceRequests, Authorize/Revoke ingress,
  DeleteSecurityGroup, DeleteKeyPair, DeleteFleets, DeleteLaunchTemplate only on resources tagged
  `ec2dbn:managed=true`; tagging existing
  instances only with ec2dbn's lease and teardown tags (aws:TagKeys) on instances that carry the tag;
- baking: CreateImage only of instances carrying the tag and only when the image is tagged at creation;
  tagging the image only as part of CreateImage; its snapshots afterwards only as ec2dbn's, with ec2dbn's
  tag keys (moto refuses snapshot tags at creation). AWS has no condition tying a snapshot to the image
  that made it, so a holder of this policy could mark a snapshot of its own account as ec2dbn's and then
  delete it; DeregisterImage and DeleteSnapshot only on images and snapshots tagged `ec2dbn:managed=true`;
- reading: Describe* (EC2 supports no resource-level permissions for them), the public AMI-alias
  parameters under /aws/service/, Service Quotas' GetServiceQuota, STS' GetCallerIdentity and the Price
  List API's GetProducts (on-demand prices of types the bundled table lacks; like Describe*, it supports
  no resource-level permissions).

Resource types, ARN forms and condition keys per action follow AWS's Service Authorization Reference
("Actions, resources, and condition keys for Amazon EC2"); tests/aws/test_iam_policy.py holds the rows used.
"""

from __future__ import annotations

from typing import Any

from ec2dbn.aws.tags import BAKE_TAG, BASE_IMAGE_TAG, MANAGED_TAG, RUN_TAG, STACK_TAG, TEARDOWN_TAG

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
)

#: Tags a bake's snapshots get once CreateImage names them (moto refuses them at creation; AWS takes both).
SNAPSHOT_TAGS = (MANAGED_TAG, STACK_TAG, BAKE_TAG, BASE_IMAGE_TAG, "Name")

#: Tags ec2dbn puts on its own running instances after launch: the lease and the teardown mark.
LATER_TAGS = (RUN_TAG, TEARDOWN_TAG)


def _arn(partition: str, kind: str, *, account: bool = True) -> str:
    """An EC2 resource ARN pattern; images and snapshots have no account in theirs."""
    return f"arn:{partition}:ec2:*:{'*' if account else ''}:{kind}/*"


def policy(partition: str = "aws") -> dict[str, Any]:
    """The policy document (IAM JSON) for `partition` (aws, aws-cn, aws-us-gov)."""
    if partition not in PARTITIONS:
        raise ValueError(f"unknown partition {partition!r}; one of {', '.join(PARTITIONS)}")

    def arn(kind: str) -> str:
        return _arn(partition, kind)

    ours = {"StringEquals": {f"ec2:ResourceTag/{MANAGED_TAG}": "true"}}
    tagged_on_create = {f"aws:RequestTag/{MANAGED_TAG}": "true"}
    statements: list[dict[str, Any]] = [
        {"Sid": "Read", "Effect": "Allow", "Action": [f"ec2:{a}" for a in EC2_READ], "Resource": "*"},
        {
            "Sid": "IdentityAndQuotas",
            "Effect": "Allow",
            "Action": ["sts:GetCallerIdentity", "servicequotas:GetServiceQuota"],
            "Resource": "*",
        },
        {"Sid": "PriceList", "Effect": "Allow", "Action": "pricing:GetProducts", "Resource": "*"},
        {
            "Sid": "ImageAliases",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": f"arn:{partition}:ssm:*:*:parameter/aws/service/*",
        },
        {
            "Sid": "CreateTaggedKeyPairAndSecurityGroup",
            "Effect": "Allow",
            "Action": ["ec2:CreateKeyPair", "ec2:CreateSecurityGroup"],
            "Resource": [arn("key-pair"), arn("security-group")],
            "Condition": {"StringEquals": tagged_on_create},
        },
        {
            "Sid": "CreateTaggedLaunchTemplates",
            "Effect": "Allow",
            "Action": "ec2:CreateLaunchTemplate",
            "Resource": arn("launch-template"),
            "Condition": {"StringEquals": tagged_on_create},
        },
        {
            "Sid": "CreateTaggedFleets",
            "Effect": "Allow",
            "Action": "ec2:CreateFleet",
            "Resource": arn("fleet"),
            "Condition": {"StringEquals": tagged_on_create},
        },
        {
            "Sid": "FleetsFromOurLaunchTemplates",
            "Effect": "Allow",
            "Action": ["ec2:CreateFleet", "ec2:RunInstances"],
            "Resource": arn("launch-template"),
            "Condition": ours,
        },
        {
            "Sid": "CreateSecurityGroupInAVpc",
            "Effect": "Allow",
            "Action": "ec2:CreateSecurityGroup",
            "Resource": arn("vpc"),
        },
        {
            "Sid": "RunTaggedImdsV2Instances",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": arn("instance"),
            "Condition": {"StringEquals": {**tagged_on_create, "ec2:MetadataHttpTokens": "required"}},
        },
        {
            "Sid": "RunWithTaggedEncryptedVolumes",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
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
            "Sid": "RunWithOurKeyPairAndSecurityGroup",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": [arn("key-pair"), arn("security-group")],
            "Condition": ours,
        },
        {
            "Sid": "RunFromAnyImageInAnySubnet",
            "Effect": "Allow",
            "Action": "ec2:RunInstances",
            "Resource": [
                _arn(partition, "image", account=False),
                _arn(partition, "snapshot", account=False),
                arn("subnet"),
                arn("network-interface"),
            ],
        },
        {
            "Sid": "TagOnlyWhileCreating",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": [
                arn("instance"),
                arn("volume"),
                arn("spot-instances-request"),
                arn("security-group"),
                arn("key-pair"),
                arn("launch-template"),
                arn("fleet"),
            ],
            "Condition": {"StringEquals": {"ec2:CreateAction": list(CREATE_ACTIONS)}},
        },
        {
            "Sid": "LeaseAndTeardownTagsOnOurInstances",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": arn("instance"),
            "Condition": {**ours, "ForAllValues:StringEquals": {"aws:TagKeys": list(LATER_TAGS)}},
        },
        {
            "Sid": "ReleaseLeaseOnOurInstances",
            "Effect": "Allow",
            "Action": "ec2:DeleteTags",
            "Resource": arn("instance"),
            "Condition": {**ours, "ForAllValues:StringEquals": {"aws:TagKeys": [RUN_TAG]}},
        },
        {
            "Sid": "BakeTaggedImagesOfOurInstances",
            "Effect": "Allow",
            "Action": "ec2:CreateImage",
            "Resource": arn("instance"),
            "Condition": ours,
        },
        {
            "Sid": "BakeOnlyTaggedImages",
            "Effect": "Allow",
            "Action": "ec2:CreateImage",
            "Resource": [_arn(partition, "image", account=False), _arn(partition, "snapshot", account=False)],
            "Condition": {"StringEquals": tagged_on_create},
        },
        {
            "Sid": "TagImagesWhileCreating",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": _arn(partition, "image", account=False),
            "Condition": {"StringEquals": {"ec2:CreateAction": ["CreateImage"]}},
        },
        {
            "Sid": "TagBakeSnapshotsAsOurs",
            "Effect": "Allow",
            "Action": "ec2:CreateTags",
            "Resource": _arn(partition, "snapshot", account=False),
            "Condition": {
                "StringEquals": tagged_on_create,
                "ForAllValues:StringEquals": {"aws:TagKeys": list(SNAPSHOT_TAGS)},
            },
        },
        {
            "Sid": "RemoveOnlyOurBakes",
            "Effect": "Allow",
            "Action": ["ec2:DeregisterImage", "ec2:DeleteSnapshot"],
            "Resource": [_arn(partition, "image", account=False), _arn(partition, "snapshot", account=False)],
            "Condition": ours,
        },
        {
            "Sid": "ChangeAndRemoveOnlyOurs",
            "Effect": "Allow",
            "Action": [
                "ec2:TerminateInstances",
                "ec2:CancelSpotInstanceRequests",
                "ec2:AuthorizeSecurityGroupIngress",
                "ec2:RevokeSecurityGroupIngress",
                "ec2:DeleteSecurityGroup",
                "ec2:DeleteKeyPair",
                "ec2:DeleteFleets",
                "ec2:DeleteLaunchTemplate",
            ],
            "Resource": [
                arn("instance"),
                arn("spot-instances-request"),
                arn("security-group"),
                arn("key-pair"),
                arn("fleet"),
                arn("launch-template"),
            ],
            "Condition": ours,
        },
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def actions(document: dict[str, Any] | None = None) -> set[str]:
    """Every action the policy allows ('ec2:RunInstances', ...)."""
    found: set[str] = set()
    for st in (document or policy())["Statement"]:
        acts = st["Action"]
        found.update([acts] if isinstance(acts, str) else acts)
    return found


def required_action(operation: str) -> str | None:
    """The IAM action an API operation ('RunInstances') needs, when it is one ec2dbn calls."""
    for action in actions():
        if action.split(":", 1)[1] == operation:
            return action
    return None
