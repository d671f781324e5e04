"""The run store (ec2dbn.aws.store) against the moto server with real boto3: the bucket ec2dbn makes on
first use and how it is hardened, a named bucket used as it is, a run's files written, listed, read by
offset and pulled into a results folder, and deletion only of ec2dbn's own bucket."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from ec2dbn import aws as face
from ec2dbn.aws import iam_policy, run_role, store
from ec2dbn.aws.store import StoreRef
from ec2dbn.errors import CloudError, ConfigError
from tests.support.iam import IamHarness, without
from tests.support.moto_server import ACCOUNT_ID, MotoServer, inject_error

REGION = "us-east-1"
BUCKET = f"ec2dbn-runs-{ACCOUNT_ID}-{REGION}"


# ------------------------------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("s3://b-1", StoreRef("b-1", "")),
        ("s3://b-1/", StoreRef("b-1", "")),
        ("s3://my.bucket/some/prefix", StoreRef("my.bucket", "some/prefix/")),
        ("  s3://abc/p/  ", StoreRef("abc", "p/")),
    ],
)
def test_a_store_uri_is_a_bucket_and_a_prefix_ending_in_a_slash(text: str, want: StoreRef) -> None:
    assert store.parse_store_uri(text) == want
    assert want.uri == f"s3://{want.bucket}/{want.prefix}"


@pytest.mark.parametrize(
    "text",
    ["", "bucket", "s3:/b", "http://b/p", "s3://B/p", "s3://ab", "s3://b/a//c", "s3://b/../x", "s3://-b"],
)
def test_junk_is_one_config_error_line(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        store.parse_store_uri(text)
    assert "\n" not in str(err.value)


def test_names_of_the_default_bucket_and_a_run_prefix() -> None:
    assert store.default_bucket("123456789012", "eu-west-1") == "ec2dbn-runs-123456789012-eu-west-1"
    assert store.run_prefix(StoreRef("b", "p/q/"), "r1") == "p/q/runs/r1/"
    assert store.run_prefix(StoreRef("b"), "r1") == "runs/r1/"
    with pytest.raises(ConfigError):
        store.run_prefix(StoreRef("b"), "../r1")
    assert face.ensure_store is store.ensure_store and face.StoreRef is StoreRef


# ----------------------------------------------------------------------------------- the bucket


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_the_default_bucket_is_made_once_hardened_and_tagged(aws: MotoServer, region: str) -> None:
    ref = store.ensure_store(region, None)
    bucket = f"ec2dbn-runs-{ACCOUNT_ID}-{region}"
    assert ref == StoreRef(bucket, "")
    s3 = aws.client("s3", region)
    location = s3.get_bucket_location(Bucket=bucket)["LocationConstraint"]
    assert (location or "us-east-1") == region
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {"ec2dbn:managed": "true", "ec2dbn:region": region}
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256" and rule["BucketKeyEnabled"]
    (deny,) = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(deny["Resource"]) == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    # Again: returned as it is, nothing re-made (no CreateBucket).
    creates = inject_error("CreateBucket", "ShouldNotBeCalled", service="s3", times=None)
    assert store.ensure_store(region, None) == ref
    assert creates.calls == 0
    assert store.find_stores(region) == [ref]
    other = "eu-west-1" if region == "us-east-1" else "us-east-1"
    assert store.find_stores(other) == []


def test_a_creation_cut_short_is_finished_on_the_next_use(aws: MotoServer) -> None:
    """The tag is written last: a bucket without it (the policy step failed) is completed, not trusted."""
    inject_error("PutBucketPolicy", "InternalError", "we had a problem", service="s3", times=1)
    with pytest.raises(CloudError, match="making the run store"):
        store.ensure_store(REGION, None)
    s3 = aws.client("s3")
    assert s3.head_bucket(Bucket=BUCKET)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert store.find_stores(REGION) == []  # untagged: not (yet) a store
    assert store.ensure_store(REGION, None) == StoreRef(BUCKET)
    assert s3.get_bucket_policy(Bucket=BUCKET)["Policy"]
    assert store.find_stores(REGION) == [StoreRef(BUCKET)]


def test_a_named_bucket_is_checked_and_never_changed(aws: MotoServer) -> None:
    s3 = aws.client("s3")
    _bucket(aws, "ec2dbn-runs-team")
    ref = StoreRef("ec2dbn-runs-team", "ml/")
    assert store.ensure_store(REGION, ref) == ref
    with pytest.raises(Exception, match="NoSuchTagSet"):  # not tagged, no policy: untouched
        s3.get_bucket_tagging(Bucket="ec2dbn-runs-team")
    with pytest.raises(ConfigError, match=r"s3://ec2dbn-runs-none/ does not exist"):
        store.ensure_store(REGION, StoreRef("ec2dbn-runs-none"))


def test_access_denied_names_the_missing_action(aws: MotoServer) -> None:
    inject_error("HeadBucket", "AccessDenied", "Access Denied", service="s3", status=403)
    with pytest.raises(CloudError) as err:
        store.ensure_store(REGION, StoreRef("ec2dbn-runs-team"))
    line = str(err.value)
    assert "they lack s3:ListBucket" in line and "ec2dbn iam-policy" in line and "\n" not in line


# ------------------------------------------------------------------------------------ a run's files


def test_files_written_listed_and_read_by_offset(aws: MotoServer) -> None:
    _bucket(aws, "ec2dbn-runs-team")
    ref = store.ensure_store(REGION, StoreRef("ec2dbn-runs-team", "p/"))
    store.write_object(REGION, ref, "r1", "job.log", b"epoch 1\nepoch 2\n")
    store.write_object(REGION, ref, "r1", "out/checkpoint.npz", b"\x00" * 10)
    store.write_object(REGION, ref, "r2", "job.log", b"")
    files = store.run_files(REGION, ref, "r1")
    assert set(files) == {"job.log", "out/checkpoint.npz"}
    # (bytes, ETag): a single-part upload's ETag is its MD5, which the uploader's verification relies on
    assert files["job.log"] == (16, hashlib.md5(b"epoch 1\nepoch 2\n").hexdigest())
    assert store.read_object(REGION, ref, "r1", "job.log") == b"epoch 1\nepoch 2\n"
    assert store.read_object(REGION, ref, "r1", "job.log", start=8) == b"epoch 2\n"
    assert store.read_object(REGION, ref, "r1", "job.log", start=8, limit=5) == b"epoch"
    assert store.read_object(REGION, ref, "r1", "job.log", start=16) == b""  # nothing new yet
    assert store.read_object(REGION, ref, "r2", "job.log") == b""  # empty
    assert store.read_object(REGION, ref, "r1", "train.log") is None
    assert store.list_store_runs(REGION, ref) == ["r1", "r2"]
    assert store.list_store_runs(REGION, StoreRef("ec2dbn-runs-team", "other/")) == []
    # Keys really sit under prefix/runs/<run>/.
    keys = [o["Key"] for o in aws.client("s3").list_objects_v2(Bucket="ec2dbn-runs-team")["Contents"]]
    assert sorted(keys) == ["p/runs/r1/job.log", "p/runs/r1/out/checkpoint.npz", "p/runs/r2/job.log"]


def _bucket(aws: MotoServer, name: str) -> None:
    """A bucket that is not ec2dbn's (a team's, untagged), made with plain boto3. Named ec2dbn-runs-*: the
    IAM policy grants S3 on those names only (any other named store is the user's to grant), and the
    session's policy proof judges every call ec2dbn makes."""
    aws.client("s3").create_bucket(Bucket=name)


def test_download_run_writes_the_results_layout_and_never_run_json(aws: MotoServer, tmp_path: Path) -> None:
    ref = store.ensure_store(REGION, None)
    for name, data in {
        "job.yaml": b"name: j\n",
        "job.log": b"log\n",
        "sync.json": b"{}",
        "run.json": b'{"from": "store"}',
        "out/model.npz": b"m" * 3000,
        "out/metrics.jsonl": b"{}\n",
    }.items():
        store.write_object(REGION, ref, "r1", name, data)
    dest = tmp_path / "results" / "r1"
    dest.mkdir(parents=True)
    (dest / "run.json").write_text('{"from": "laptop"}')
    got = store.download_run(REGION, ref, "r1", dest)
    assert sorted(got) == ["job.log", "job.yaml", "out/metrics.jsonl", "out/model.npz", "sync.json"]
    assert sorted(p.name for p in dest.iterdir()) == [
        "job.log",
        "job.yaml",
        "metrics.jsonl",
        "model.npz",
        "run.json",
        "sync.json",
    ]
    assert (dest / "model.npz").read_bytes() == b"m" * 3000
    assert json.loads((dest / "run.json").read_text()) == {"from": "laptop"}
    # Only the names asked; a name the store lacks is skipped.
    other = tmp_path / "other"
    assert store.download_run(REGION, ref, "r1", other, ["out/model.npz", "out/nope"]) == ["out/model.npz"]
    assert [p.name for p in other.iterdir()] == ["model.npz"]
    assert store.download_run(REGION, ref, "r1", dest, ["run.json"]) == []  # not even when asked
    assert json.loads((dest / "run.json").read_text()) == {"from": "laptop"}
    # Bounded: a file over the limit is refused before anything is written.
    small = tmp_path / "small"
    with pytest.raises(CloudError, match=r"out/model\.npz has 3,000 bytes, over the pull limit"):
        store.download_run(REGION, ref, "r1", small, max_bytes=1000)
    assert not small.exists() or list(small.iterdir()) == []


@pytest.mark.parametrize("key", ["out/a/b", "out/..", "out/", "x/../../y"])
def test_download_run_refuses_names_that_leave_the_folder(aws: MotoServer, tmp_path: Path, key: str) -> None:
    ref = store.ensure_store(REGION, None)
    aws.client("s3").put_object(Bucket=ref.bucket, Key=f"runs/r1/{key}", Body=b"x")
    with pytest.raises(CloudError, match="not a file name of a run"):
        store.download_run(REGION, ref, "r1", tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_a_failed_download_leaves_no_partial_file(aws: MotoServer, tmp_path: Path) -> None:
    ref = store.ensure_store(REGION, None)
    store.write_object(REGION, ref, "r1", "out/model.npz", b"m" * 100)
    dest = tmp_path / "d"
    inject_error("GetObject", "InternalError", "boom", service="s3", times=None)
    with pytest.raises(CloudError, match="downloading"):
        store.download_run(REGION, ref, "r1", dest)
    assert list(dest.iterdir()) == []


# ---------------------------------------------------------------------------------------- deletion


def test_delete_store_empties_and_removes_only_ec2dbns_bucket(aws: MotoServer) -> None:
    ref = store.ensure_store(REGION, None)
    for i in range(3):
        store.write_object(REGION, ref, f"r{i}", "job.log", b"x")
    assert store.delete_store(REGION, ref) == 3
    assert BUCKET not in [b["Name"] for b in aws.client("s3").list_buckets()["Buckets"]]
    assert store.find_stores(REGION) == []
    _bucket(aws, "ec2dbn-runs-team")
    aws.client("s3").put_object(Bucket="ec2dbn-runs-team", Key="k", Body=b"x")
    with pytest.raises(CloudError, match="deletes only its own stores"):
        store.delete_store(REGION, StoreRef("ec2dbn-runs-team"))
    assert aws.client("s3").head_object(Bucket="ec2dbn-runs-team", Key="k")


def test_delete_store_removes_every_version_of_a_versioned_bucket(aws: MotoServer) -> None:
    ref = store.ensure_store(REGION, None)
    s3 = aws.client("s3")
    s3.put_bucket_versioning(Bucket=ref.bucket, VersioningConfiguration={"Status": "Enabled"})
    store.write_object(REGION, ref, "r1", "job.log", b"1")
    store.write_object(REGION, ref, "r1", "job.log", b"2")
    s3.delete_object(Bucket=ref.bucket, Key="runs/r1/job.log")  # a delete marker
    assert store.delete_store(REGION, ref) == 3
    assert ref.bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


# ------------------------------------------------------------------ as a user holding only the policy


def test_the_store_and_the_role_work_with_only_the_policy(iam: IamHarness, tmp_path: Path) -> None:
    """moto enforcing IAM (actions only: tests/support/iam.py) on every S3 and IAM call of the store and
    the role; the resources and conditions are judged by the session's policy proof."""
    with iam.only(iam_policy.policy()):
        ref = store.ensure_store(REGION, None)
        store.write_object(REGION, ref, "r1", "job.log", b"log")
        assert store.read_object(REGION, ref, "r1", "job.log") == b"log"
        assert store.download_run(REGION, ref, "r1", tmp_path / "d") == ["job.log"]
        assert store.find_stores(REGION) == [ref]
        run_role.ensure_instance_profile("t", REGION)
        run_role.grant_run("t", REGION, ref, "r1", "i-0123456789abcdef0")
        assert run_role.remove_instance_profile("t", REGION) is True
        assert store.delete_store(REGION, ref) == 1


def test_without_s3_put_object_a_write_fails_in_one_line(iam: IamHarness) -> None:
    ref = store.ensure_store(REGION, None)
    with iam.only(without(iam_policy.policy(), "s3:PutObject")), pytest.raises(CloudError) as err:
        store.write_object(REGION, ref, "r1", "job.log", b"log")
    line = str(err.value)
    assert "they lack s3:PutObject" in line and "\n" not in line
