"""AWS failures turned into ec2dbn's one-line errors, each saying what to do.

botocore raises ClientError (AWS said no) and BotoCoreError subclasses (no credentials, no network).
`translate` maps both onto `ec2dbn.errors`; the launch fallback chain also needs to tell capacity,
quota, spot-price and zone refusals apart, so those get their own codes and CloudError subclasses here.
A permission refusal names the IAM action that is missing (ec2dbn.aws.iam_policy knows which action each
call needs) and the way to grant it. Quota messages live in ec2dbn.aws.quotas.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

from ec2dbn.errors import CloudError, ConfigError, CredentialsError, Ec2dbnError

CREDENTIALS_HINT = (
    "set AWS_PROFILE to a profile from `aws configure` (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
)

#: EC2 error codes meaning "no capacity for this type here right now": try another AZ or type.
CAPACITY_CODES = frozenset(
    {"InsufficientInstanceCapacity", "InsufficientCapacity", "InsufficientHostCapacity"}
)
#: Quota refusals: another family (different quota) or the other market may still work.
QUOTA_CODES = frozenset({"VcpuLimitExceeded", "MaxSpotInstanceCountExceeded", "InstanceLimitExceeded"})
#: The spot market refused the price.
SPOT_PRICE_CODES = frozenset({"SpotMaxPriceTooLow"})
#: The zone cannot host this launch (type not offered there, subnet gone or full): try the next zone.
ZONE_CODES = frozenset(
    {
        "Unsupported",
        "InvalidSubnetID.NotFound",
        "InvalidSubnet",
        "InsufficientFreeAddressesInSubnet",
    }
)
_AUTH_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
    }
)
_EXPIRED_CODES = frozenset({"ExpiredToken", "ExpiredTokenException", "RequestExpired"})
_DENIED_CODES = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"})
_AMI_CODES = frozenset({"InvalidAMIID.NotFound", "InvalidAMIID.Malformed", "InvalidAMIID.Unavailable"})
POLICY_HINT = "attach the policy `ec2dbn iam-policy` prints to these credentials (README: First time on AWS)"

#: EC2's refusal when a spot request would create the Spot service-linked role and the caller may not.
SPOT_ROLE_CODE = "AuthFailure.ServiceLinkedRoleCreationNotPermitted"
#: How to get the Spot service-linked role: once per account, by an administrator or by ec2dbn's policy.
SPOT_ROLE_FIX = (
    "create it once with `aws iam create-service-linked-role --aws-service-name spot.amazonaws.com`, "
    "or attach the policy `ec2dbn iam-policy` prints (it may create exactly this role), or use --on-demand"
)


def spot_role_error(action: str, region: str) -> CloudError:
    """The one line for SPOT_ROLE_CODE, wherever it occurs (launch, train, a sweep's fleet)."""
    return CloudError(
        f"{action}: spot needs the service-linked role AWSServiceRoleForEC2Spot, which this account lacks "
        f"and these credentials may not create ({SPOT_ROLE_CODE} in {region}): {SPOT_ROLE_FIX}"
    )


_THROTTLE_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})


class CapacityError(CloudError):
    """EC2 has no capacity for the type in that AZ (InsufficientInstanceCapacity)."""


class QuotaError(CloudError):
    """An account vCPU / spot quota is exhausted; the message names the Service Quotas code."""


class SpotPriceError(CloudError):
    """The spot price is above the stack's max_price (SpotMaxPriceTooLow)."""


def profile_not_seen(exc: BaseException) -> bool:
    """EC2's refusal of an instance profile it cannot see (yet: IAM is eventually consistent): 'Value (…) for
    parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name'."""
    if not isinstance(exc, ClientError) or error_code(exc) != "InvalidParameterValue":
        return False
    msg = _message(exc).lower()
    return "instance profile" in msg or "iaminstanceprofile" in msg


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ('' for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def _message(exc: ClientError) -> str:
    return " ".join(str(exc.response.get("Error", {}).get("Message", "")).split())


def translate(exc: BaseException, *, region: str, action: str) -> Ec2dbnError:
    """A botocore exception as one of ours, with a one-line message saying what to do."""
    if isinstance(exc, Ec2dbnError):
        return exc
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return CredentialsError(f"no AWS credentials found: {CREDENTIALS_HINT}")
    if isinstance(exc, ProfileNotFound):
        return CredentialsError(f"{exc}: {CREDENTIALS_HINT}")
    if isinstance(exc, NoRegionError):
        return ConfigError("no AWS region: pass --region or set it in the stack")
    if isinstance(exc, EndpointConnectionError):
        return CloudError(f"{action}: cannot reach AWS ({exc}); check the network and AWS_ENDPOINT_URL")
    if isinstance(exc, ClientError):
        code, msg = error_code(exc), _message(exc)
        specific = _specific(exc, code, msg, region=region, action=action)
        if specific is not None:
            return specific
        if code in _THROTTLE_CODES:
            return CloudError(
                f"{action}: AWS kept throttling ({code}) after retries; wait a minute and rerun"
            )
        if code in CAPACITY_CODES:
            return CapacityError(f"{action}: {code}: {msg}")
        if code in SPOT_PRICE_CODES:
            return SpotPriceError(f"{action}: {code}: {msg}")
        if code in QUOTA_CODES:
            return QuotaError(f"{action}: {code}: {msg}")
        return CloudError(f"{action} failed in {region}: {code}: {msg}")
    if isinstance(exc, BotoCoreError):
        return CloudError(f"{action} failed: {exc}")
    return CloudError(f"{action} failed: {type(exc).__name__}: {exc}")


def _specific(exc: ClientError, code: str, msg: str, *, region: str, action: str) -> Ec2dbnError | None:
    """The refusals a first-time user meets, each with its own fix; None for the others."""
    if code == SPOT_ROLE_CODE:
        return spot_role_error(action, region)
    if code in _AUTH_CODES:
        return CredentialsError(f"AWS rejected the credentials ({code}: {msg}); {CREDENTIALS_HINT}")
    if code == "AuthFailure":
        return CredentialsError(
            f"AWS could not validate the credentials (AuthFailure: {msg}): the access key is wrong, "
            f"deactivated or for another partition; check `aws sts get-caller-identity`; {CREDENTIALS_HINT}"
        )
    if code in _EXPIRED_CODES:
        return CredentialsError(
            f"the AWS credentials have expired ({code}): refresh them (`aws sso login`, or new "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN) and rerun"
        )
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _DENIED_CODES or (code == "403" and status == 403):  # 403: a body botocore could not parse
        from ec2dbn.aws.iam_policy import required_action

        needed = required_action(getattr(exc, "operation_name", "") or "")
        what = f"they lack {needed}" if needed else "they lack a permission"
        shown = "AccessDenied, HTTP 403" if code == "403" else code
        return CloudError(f"{action}: AWS denied it in {region} ({shown}): {what}; {POLICY_HINT}")
    if code == "OptInRequired":
        return CloudError(
            f"{action}: {region} is not enabled for this account, or the account is not subscribed to EC2 "
            "(OptInRequired): enable the region under Account > AWS Regions in the console (or finish "
            "the account sign-up), or use --region with an enabled region"
        )
    if code == "PendingVerification":
        return CloudError(
            f"{action}: the AWS account is still being verified (PendingVerification): new accounts can "
            "launch instances once AWS finishes (usually minutes, at most 4 hours); rerun then, or ask "
            "AWS Support"
        )
    if code in _AMI_CODES:
        return ConfigError(
            f"{action}: the image does not exist in {region} ({code}: {msg}); AMI ids are regional: use an "
            "alias (dlami-ubuntu22, ubuntu22, ubuntu24) or an ami- id from this region (--image)"
        )
    return None


@contextmanager
def aws_errors(region: str, action: str) -> Iterator[None]:
    """Run AWS calls with their failures translated (`action` says what was being done)."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, region=region, action=action) from exc
