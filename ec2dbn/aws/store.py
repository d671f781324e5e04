"""The run store: an S3 bucket (and prefix) where a run's files outlive its instance and the laptop.

Key layout (trainer/contract.py names the parts): `<prefix>runs/<run-id>/` holds job.yaml, job.log,
out/<name> (the trainer's --out files), run.json (written by ec2dbn only) and sync.json (the uploader's
manifest, written last). ec2dbn's own bucket is `ec2dbn-runs-<account>-<region>`, made on first use and
hardened before it is tagged (public access blocked, SSE-S3 by default, TLS-only bucket policy): the
`ec2dbn:managed` tag is written LAST, so a bucket with the tag is complete and one without it (a
creation cut short) is completed on the next use. A bucket the stack names is used as it is, never changed
and never deleted. The IAM policy (ec2dbn.aws.iam_policy) allows bucket-level calls only on ec2dbn-runs-*.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from ec2dbn.aws.account import identity
from ec2dbn.aws.errors import aws_errors, error_code, translate
from ec2dbn.aws.session import Aws
from ec2dbn.aws.tags import MANAGED_TAG, as_dict
from ec2dbn.errors import CloudError, ConfigError
from trainer.contract import STORE_OUT, STORE_RUNS

#: ec2dbn's own buckets: this prefix, the account id and the region (one per account and region).
BUCKET_PREFIX = "ec2dbn-runs-"
REGION_TAG = "ec2dbn:region"
#: The run record: written by ec2dbn on the laptop, so `download_run` never overwrites the local one.
RUN_RECORD = "run.json"
#: Bytes one read_object call returns at most unless asked otherwise.
READ_LIMIT = 16 * 1024 * 1024
#: A downloaded file's bound when the caller gives none (ssh/output.DEFAULT_PULL_LIMIT_MB's 8 GiB).
DEFAULT_MAX_BYTES = 8192 * 1024 * 1024
_CHUNK = 1024 * 1024
_BUCKET = re.compile(r"(?=.{3,63}\Z)[a-z0-9][a-z0-9.-]*[a-z0-9]")
_NO_BUCKET = ("404", "NoSuchBucket")
_NO_KEY = ("404", "NoSuchKey")


@dataclass(frozen=True)
class StoreRef:
    """Where runs are stored: a bucket and a key prefix ("" or ending in "/")."""

    bucket: str
    prefix: str = ""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_store_uri(text: str) -> StoreRef:
    """`s3://bucket/some/prefix` as a StoreRef (prefix "some/prefix/"). ConfigError, one line, for anything
    else: another scheme, a bucket name S3 would refuse, an empty or `..` path segment."""
    raw = text.strip()
    match = re.fullmatch(r"s3://([^/]+)(/.*)?", raw)
    if not match or not _BUCKET.fullmatch(match.group(1)) or ".." in match.group(1):
        raise ConfigError(
            f"store {raw[:80]!r} is not an S3 location: write s3://BUCKET or s3://BUCKET/PREFIX "
            "(bucket: 3-63 lowercase letters, digits, dots, hyphens), or auto, or none"
        )
    parts = (match.group(2) or "").strip("/")
    segments = parts.split("/") if parts else []
    if any(s in ("", ".", "..") for s in segments):
        raise ConfigError(f"store {raw[:80]!r}: the prefix has an empty, '.' or '..' part")
    return StoreRef(match.group(1), "".join(f"{s}/" for s in segments))


def default_bucket(account_id: str, region: str) -> str:
    """ec2dbn's bucket of an account and region (S3 bucket names are global: the account makes it ours)."""
    return f"{BUCKET_PREFIX}{account_id}-{region}"


def run_prefix(ref: StoreRef, run_id: str) -> str:
    """The key prefix of one run's files ('prefix/runs/<run-id>/')."""
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise ConfigError(f"run id {run_id[:80]!r} cannot name a folder of the store")
    return f"{ref.prefix}{STORE_RUNS}{run_id}/"


def _s3(region: str) -> Any:
    return Aws(region).client("s3")


def _tls_only(partition: str, bucket: str) -> str:
    """A bucket policy refusing every request not made over TLS (AWS's recommended guard)."""
    from trainer import strict_json

    arn = f"arn:{partition}:s3:::{bucket}"
    return strict_json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "TlsOnly",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [arn, f"{arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


def _tags(s3: Any, bucket: str) -> dict[str, str]:
    try:
        return as_dict(s3.get_bucket_tagging(Bucket=bucket).get("TagSet"))
    except ClientError as exc:
        if error_code(exc) == "NoSuchTagSet":
            return {}
        raise


def _exists(s3: Any, bucket: str) -> bool:
    """HeadBucket: True when it exists and is ours to use; False when there is no such bucket."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) in _NO_BUCKET:
            return False
        raise
    return True


def ensure_store(region: str, ref: StoreRef | None) -> StoreRef:
    """The store to use. None: ec2dbn's bucket of this account and region, created and hardened on first use
    (idempotent: a tagged one is returned as it is). A named bucket: checked to exist, never changed.

    Raises ConfigError (a named bucket that does not exist) or CloudError (AWS refused; AccessDenied names
    the missing IAM action)."""
    aws = Aws(region)
    s3 = aws.client("s3")
    if ref is not None:
        with aws_errors(region, f"checking the run store {ref.uri}"):
            if not _exists(s3, ref.bucket):
                raise ConfigError(
                    f"the run store {ref.uri} does not exist: create the bucket, or use store: auto"
                )
        return ref
    bucket = default_bucket(identity(aws).account, region)
    with aws_errors(region, f"making the run store s3://{bucket}"):
        if _exists(s3, bucket) and _tags(s3, bucket).get(MANAGED_TAG) == "true":
            return StoreRef(bucket)
        _create(s3, bucket, region)
    return StoreRef(bucket)


def store_status(region: str, ref: StoreRef | None) -> tuple[StoreRef, bool]:
    """What `ensure_store` would use, without making anything: (the store, whether it exists and is ready;
    for ec2dbn's own bucket: made and tagged). For `ec2dbn check`."""
    aws = Aws(region)
    s3 = aws.client("s3")
    if ref is not None:
        with aws_errors(region, f"checking the run store {ref.uri}"):
            return ref, _exists(s3, ref.bucket)
    own = StoreRef(default_bucket(identity(aws).account, region))
    with aws_errors(region, f"checking the run store {own.uri}"):
        return own, _exists(s3, own.bucket) and _tags(s3, own.bucket).get(MANAGED_TAG) == "true"


def _create(s3: Any, bucket: str, region: str) -> None:
    """Create (or finish creating) ec2dbn's bucket; tagged last, so the tag means 'complete'."""
    params: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":  # us-east-1 refuses its own name as a LocationConstraint
        params["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**params)
    except ClientError as exc:
        if error_code(exc) != "BucketAlreadyOwnedByYou":  # a creation cut short: finish it
            raise
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}, "BucketKeyEnabled": True}
            ]
        },
    )
    s3.put_bucket_policy(Bucket=bucket, Policy=_tls_only(s3.meta.partition, bucket))
    tags = {MANAGED_TAG: "true", REGION_TAG: region}
    s3.put_bucket_tagging(
        Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}
    )


def run_files(region: str, ref: StoreRef, run_id: str) -> dict[str, tuple[int, str]]:
    """The run's files in the store: {key relative to the run prefix: (bytes, ETag without quotes)}."""
    prefix = run_prefix(ref, run_id)
    found: dict[str, tuple[int, str]] = {}
    with aws_errors(region, f"listing {ref.uri}{STORE_RUNS}{run_id}/"):
        for page in _s3(region).get_paginator("list_objects_v2").paginate(Bucket=ref.bucket, Prefix=prefix):
            for obj in page.get("Contents") or []:
                found[obj["Key"][len(prefix) :]] = (int(obj["Size"]), str(obj["ETag"]).strip('"'))
    return found


def read_object(
    region: str, ref: StoreRef, run_id: str, name: str, *, start: int = 0, limit: int = READ_LIMIT
) -> bytes | None:
    """At most `limit` bytes of the run's file `name` from byte `start` (b"" at or past its end); None when
    there is no such file (a log read by offset as it grows)."""
    if start < 0 or limit < 1:
        raise ValueError(f"read_object: start {start} and limit {limit} must be >= 0 and >= 1")
    key = run_prefix(ref, run_id) + name
    try:
        resp = _s3(region).get_object(Bucket=ref.bucket, Key=key, Range=f"bytes={start}-{start + limit - 1}")
        return bytes(resp["Body"].read())
    except ClientError as exc:
        code = error_code(exc)
        if code in _NO_KEY:
            return None
        if code == "InvalidRange":  # start at or past the end (or an empty file)
            return b""
        raise translate(exc, region=region, action=f"reading {ref.uri}{key[len(ref.prefix) :]}") from exc
    except BotoCoreError as exc:
        raise translate(exc, region=region, action=f"reading s3://{ref.bucket}/{key}") from exc


def write_object(region: str, ref: StoreRef, run_id: str, name: str, data: bytes) -> None:
    """Write the run's file `name` (e.g. run.json) in one PutObject."""
    key = run_prefix(ref, run_id) + name
    with aws_errors(region, f"writing s3://{ref.bucket}/{key}"):
        _s3(region).put_object(Bucket=ref.bucket, Key=key, Body=data)


def local_name(key: str) -> str:
    """Where a run's store key lands in its results folder: out/<name> → <name>, job.log → job.log.
    ConfigError for a key that would leave the folder or make one (a name from the store is untrusted)."""
    name = key[len(STORE_OUT) :] if key.startswith(STORE_OUT) else key
    if not name or "/" in name or "\\" in name or "\x00" in name or name in (".", ".."):
        raise CloudError(f"the run store holds {key[:120]!r}, which is not a file name of a run")
    return name


def download_run(
    region: str,
    ref: StoreRef,
    run_id: str,
    dest: Path,
    names: Iterable[str] | None = None,
    *,
    max_bytes: int | None = None,
) -> list[str]:
    """Write the run's files (all but run.json, or the keys `names`) into `dest` with the results layout
    (`local_name`), each atomically (complete or absent). Returns the keys written.

    A file over `max_bytes` (the caller's EC2DBN_MAX_PULL_MB; default 8 GiB) is refused before a byte is
    read: CloudError naming it. A bad key name: CloudError."""
    limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    files = run_files(region, ref, run_id)
    asked = files if names is None else [k for k in names if k in files]
    wanted = [k for k in asked if k != RUN_RECORD]  # the laptop's record is never overwritten
    for key in wanted:
        local_name(key)
        if files[key][0] > limit:
            raise CloudError(
                f"{ref.uri}{STORE_RUNS}{run_id}/{key} has {files[key][0]:,} bytes, over the pull limit of "
                f"{limit:,} (EC2DBN_MAX_PULL_MB)"
            )
    dest.mkdir(parents=True, exist_ok=True)
    s3 = _s3(region)
    prefix = run_prefix(ref, run_id)
    for key in wanted:
        target = dest / local_name(key)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=dest)
        try:
            with (
                os.fdopen(fd, "wb") as out,
                aws_errors(region, f"downloading s3://{ref.bucket}/{prefix}{key}"),
            ):
                body = s3.get_object(Bucket=ref.bucket, Key=prefix + key)["Body"]
                written = 0
                while chunk := body.read(_CHUNK):
                    written += len(chunk)
                    if written > limit:  # it grew since it was listed
                        raise CloudError(
                            f"{key} grew past the pull limit of {limit:,} bytes while downloading"
                        )
                    out.write(chunk)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return wanted


def list_store_runs(region: str, ref: StoreRef) -> list[str]:
    """The run ids with files in the store, sorted."""
    runs: list[str] = []
    with aws_errors(region, f"listing the runs in {ref.uri}"):
        pages = _s3(region).get_paginator("list_objects_v2")
        for page in pages.paginate(Bucket=ref.bucket, Prefix=ref.prefix + STORE_RUNS, Delimiter="/"):
            runs += [
                p["Prefix"][len(ref.prefix + STORE_RUNS) :].rstrip("/")
                for p in page.get("CommonPrefixes") or []
            ]
    return sorted(runs)


def _bucket_region(s3: Any, bucket: str) -> str:
    where = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    return {None: "us-east-1", "": "us-east-1", "EU": "eu-west-1"}.get(where, str(where))


def find_stores(region: str) -> list[StoreRef]:
    """ec2dbn's buckets in `region`: named ec2dbn-runs-* and tagged ec2dbn:managed=true (the policy lets
    ec2dbn read no other bucket's tags)."""
    aws = Aws(region)
    s3 = aws.client("s3")
    found: list[StoreRef] = []
    with aws_errors(region, "listing ec2dbn's run stores"):
        for b in s3.list_buckets().get("Buckets") or []:
            name = str(b["Name"])
            if not name.startswith(BUCKET_PREFIX) or _bucket_region(s3, name) != region:
                continue
            if _tags(s3, name).get(MANAGED_TAG) == "true":
                found.append(StoreRef(name))
    return found


def delete_store(region: str, ref: StoreRef) -> int:
    """Empty and delete one of ec2dbn's buckets (tagged ec2dbn:managed=true; any other is refused with
    CloudError): every object, and every version and delete marker if it was ever versioned. Returns the
    number of objects (versions) deleted."""
    s3 = _s3(region)
    deleted = 0
    with aws_errors(region, f"deleting the run store s3://{ref.bucket}"):
        if _tags(s3, ref.bucket).get(MANAGED_TAG) != "true":
            raise CloudError(
                f"s3://{ref.bucket} is not tagged {MANAGED_TAG}=true: ec2dbn deletes only its own stores"
            )
        versioned = bool(s3.get_bucket_versioning(Bucket=ref.bucket).get("Status"))
        if versioned:
            pages = s3.get_paginator("list_object_versions").paginate(Bucket=ref.bucket)
            batches = [
                [
                    {"Key": v["Key"], "VersionId": v["VersionId"]}
                    for v in [*p.get("Versions", []), *p.get("DeleteMarkers", [])]
                ]
                for p in pages
            ]
        else:
            pages = s3.get_paginator("list_objects_v2").paginate(Bucket=ref.bucket)
            batches = [[{"Key": o["Key"]} for o in p.get("Contents") or []] for p in pages]
        for batch in (b for b in batches if b):  # a page holds at most 1,000: DeleteObjects' limit
            resp = s3.delete_objects(Bucket=ref.bucket, Delete={"Objects": batch, "Quiet": True})
            errors = resp.get("Errors") or []
            if errors:
                first = errors[0]
                raise CloudError(
                    f"S3 did not delete {len(errors)} object(s) of s3://{ref.bucket}, e.g. "
                    f"{first.get('Key')}: {first.get('Code')}: {first.get('Message')}"
                )
            deleted += len(batch)
        s3.delete_bucket(Bucket=ref.bucket)
    return deleted
