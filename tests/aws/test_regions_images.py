"""Regions, endpoints and images: boto3's default chain decides where ec2dbn talks to, the stack (or
--region / AWS_REGION) decides where it launches, and images resolve through public SSM parameters."""

from __future__ import annotations

import json

import pytest

from ec2dbn.stack import state
from tests.aws.helpers import NOTHING, cli
from tests.support.moto_server import MotoServer, tagged_resources


def test_per_service_endpoint_variables_are_honoured(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The global endpoint is dead; only the per-service ones lead to moto.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", aws.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SSM", aws.url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", aws.url)  # launch asks STS who the credentials are first
    monkeypatch.setenv("AWS_ENDPOINT_URL_IAM", aws.url)  # teardown removes the stack's instance profile
    rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 0, err
    assert len(tagged_resources(aws)["instances"]) == 1
    assert cli(capsys, "teardown", "--yes")[0] == 0
    assert tagged_resources(aws) == NOTHING


def test_a_dead_endpoint_is_a_one_line_cloud_error(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    rc, _, err = cli(capsys, "status")
    assert rc == 1
    assert "cannot reach AWS" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("how", ["flag", "env"])
def test_region_from_flag_or_aws_region(
    how: str, aws: MotoServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    aws.seed_images(("us-west-2",))
    if how == "flag":
        rc, _, err = cli(capsys, "launch", "--region", "us-west-2", "--no-bootstrap")
    else:
        monkeypatch.setenv("AWS_REGION", "us-west-2")
        rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 0, err
    assert len(tagged_resources(aws, "us-west-2")["instances"]) == 1
    assert tagged_resources(aws, "us-east-1") == NOTHING
    st = state.load("g4dn-spot")
    assert st is not None and st.region == "us-west-2" and st.availability_zone.startswith("us-west-2")
    monkeypatch.delenv("AWS_REGION", raising=False)
    # status and teardown follow the local state to the stack's region.
    rc, out, _ = cli(capsys, "status", "--json")
    assert [r["region"] for r in json.loads(out)] == ["us-west-2"]
    assert cli(capsys, "teardown", "--yes")[0] == 0
    assert tagged_resources(aws, "us-west-2") == NOTHING


def test_image_alias_missing_in_region(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli(capsys, "launch", "--region", "eu-west-1", "--no-bootstrap")
    assert rc == 1
    assert "SSM parameter /aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04" in err
    assert tagged_resources(aws, "eu-west-1") == NOTHING


def test_explicit_ami_ids(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = cli(capsys, "launch", "--image", "ami-0123456789abcdef0", "--dry-run")
    assert rc == 2 and "image ami-0123456789abcdef0 does not exist in us-east-1" in err
    ami = aws.images[("us-east-1", "ubuntu24")]
    rc, _, err = cli(capsys, "launch", "--image", ami, "--no-bootstrap")
    assert rc == 0, err
    (inst,) = [i for r in aws.client("ec2").describe_instances()["Reservations"] for i in r["Instances"]]
    assert inst["ImageId"] == ami


def test_volume_smaller_than_the_image_is_refused(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    path = tmp_path / "small.yaml"
    path.write_text("region: us-east-1\ninstance_type: g4dn.xlarge\nimage: ubuntu22\nvolume_gb: 8\n")
    rc, _, err = cli(capsys, "launch", "--stack", str(path), "--no-bootstrap")
    assert rc == 2 and "volume_gb 8 is smaller than image" in err
    assert tagged_resources(aws) == NOTHING
