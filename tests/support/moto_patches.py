"""Where moto (the test double) refuses what AWS accepts, taught in-process to accept it — never by
changing what ec2dbn sends.

- CreateImage with a `snapshot` entry in TagSpecifications: AWS tags the snapshots it makes at creation;
  moto 5.2 raises NotImplementedError (HTTP 500). Here the snapshot entry is taken out before moto's own
  create_image runs and its tags are put on the image's snapshot afterwards, as AWS would have.
- A bucket policy denying requests not made over TLS (`aws:SecureTransport` false, the run store's guard):
  moto ignores Bool conditions, so the Deny applied to every request; AWS applies it to plain-HTTP
  requests only, and boto3 always reaches AWS over HTTPS. Here a statement whose only condition is that
  one is left out of moto's evaluation (the test server speaks plain HTTP on loopback).
- With IAM enforced, moto authorizes an S3 request by its API operation's name (s3:HeadBucket,
  s3:ListObjectsV2, s3:PutBucketEncryption...), which are no IAM actions: AWS authorizes them as
  s3:ListBucket, s3:ListBucket, s3:PutEncryptionConfiguration... (Service Authorization Reference), the
  names `ec2dbn iam-policy` grants. Here moto is given the IAM action's name instead.

Where moto is kinder than AWS, the same entry point makes it as strict: an instant fleet's spot requests
one-time and closed with their instance (tests/support/ec2_strict.py).
"""

from __future__ import annotations

from typing import Any

_APPLIED = False


def apply() -> None:
    """Patch moto's EC2 backend (once per process; the threaded server serves from this process)."""
    global _APPLIED
    if _APPLIED:
        return
    from tests.support.ec2_strict import strict_spot_requests

    strict_spot_requests()
    from moto.ec2.models.amis import AmiBackend

    original = AmiBackend.create_image

    def create_image(
        self: Any, instance_id: str, name: str, description: str, tag_specifications: list[dict[str, Any]]
    ) -> Any:
        snapshot_tags = [
            t for spec in tag_specifications if spec["ResourceType"] == "snapshot" for t in spec["Tags"]
        ]
        others = [spec for spec in tag_specifications if spec["ResourceType"] != "snapshot"]
        ami = original(self, instance_id, name, description, others)
        snapshot = getattr(ami, "ebs_snapshot", None)
        if snapshot is not None and snapshot_tags:
            self.create_tags([snapshot.id], {t["Key"]: t["Value"] for t in snapshot_tags})
        return ami

    AmiBackend.create_image = create_image  # type: ignore[method-assign]
    _tls_requests()
    _s3_action_names()
    _APPLIED = True


#: S3 API operations whose IAM action is named otherwise (Service Authorization Reference).
S3_ACTIONS = {
    "HeadBucket": "ListBucket",
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "HeadObject": "GetObject",
    "DeleteObjects": "DeleteObject",
    "ListBuckets": "ListAllMyBuckets",
    "PutPublicAccessBlock": "PutBucketPublicAccessBlock",
    "GetPublicAccessBlock": "GetBucketPublicAccessBlock",
    "DeletePublicAccessBlock": "PutBucketPublicAccessBlock",
    "PutBucketEncryption": "PutEncryptionConfiguration",
    "GetBucketEncryption": "GetEncryptionConfiguration",
    "DeleteBucketEncryption": "PutEncryptionConfiguration",
}


def _s3_action_names() -> None:
    """moto authorizes an S3 request by its API operation's name: use the IAM action's (module doc)."""
    from moto.iam.access_control import S3IAMRequest

    original = S3IAMRequest.__init__

    def init(self: Any, *args: Any, action: str, **kwargs: Any) -> None:
        original(self, *args, action=S3_ACTIONS.get(action, action), **kwargs)

    S3IAMRequest.__init__ = init  # type: ignore[method-assign]


#: The condition of a statement that applies to plain-HTTP requests only.
_NOT_TLS = {"Bool": {"aws:SecureTransport": "false"}}


def _tls_requests() -> None:
    """Judge bucket policies as AWS judges an HTTPS request (see the module doc)."""
    import json

    from moto.iam.access_control import IAMPolicy, PermissionResult
    from moto.s3.models import FakeBucket

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        document = json.loads(self.policy)
        statements = document.get("Statement") or []
        if isinstance(statements, dict):
            statements = [statements]
        kept = [st for st in statements if st.get("Condition") != _NOT_TLS]
        if not kept:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({**document, "Statement": kept})).is_action_permitted(action, resource)

    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]
