"""Who the credentials are and whether the region takes them: the cheap checks that run before anything else.

`identity` is STS GetCallerIdentity (it needs no permission, so it fails only for credentials that are
missing, wrong or expired). `zones` asks the region itself (DescribeAvailabilityZones), after checking its
name against the regions botocore knows offline, so a typo is not sent to a host that does not exist and
a region the account has not enabled answers OptInRequired. `spot_role` says whether the account has the
Spot service-linked role (a first spot request must otherwise create it, as the caller).
"""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import ClientError

from ec2dbn.aws.errors import aws_errors, error_code, translate
from ec2dbn.aws.session import Aws
from ec2dbn.spec import catalog


@dataclass(frozen=True)
class Identity:
    """The caller as STS reports it: 12-digit account id and the principal's ARN."""

    account: str
    arn: str


def identity(aws: Aws) -> Identity:
    """Who the credentials are. Raises CredentialsError (missing, rejected, expired) or CloudError."""
    with aws_errors(aws.region, "checking the AWS credentials (sts get-caller-identity)"):
        resp = aws.sts.get_caller_identity()
    return Identity(account=str(resp["Account"]), arn=str(resp["Arn"]))


def zones(aws: Aws) -> list[str]:
    """The region's available zones. ConfigError for a region name AWS does not have; CloudError when the
    region is not enabled for the account (OptInRequired) or cannot be reached."""
    catalog.check_region(aws.region)  # offline first: a typo is not sent to a host that does not exist
    with aws_errors(aws.region, f"listing the availability zones of {aws.region}"):
        found = aws.ec2.describe_availability_zones(Filters=[{"Name": "state", "Values": ["available"]}])[
            "AvailabilityZones"
        ]
    return sorted(z["ZoneName"] for z in found)


#: The Spot service-linked role: IAM creates it, as the caller, for the first spot request in an account.
SPOT_ROLE = "AWSServiceRoleForEC2Spot"


def spot_role(aws: Aws) -> bool | None:
    """Whether the account has the Spot service-linked role (iam:GetRole); None when the credentials may not
    ask. Raises CloudError for other failures."""
    try:
        aws.client("iam").get_role(RoleName=SPOT_ROLE)
    except ClientError as exc:
        code = error_code(exc)
        if code == "NoSuchEntity":
            return False
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            return None
        raise translate(exc, region=aws.region, action=f"looking up the IAM role {SPOT_ROLE}") from exc
    return True
