"""Bakes without an instance: the hash that names them, `image: baked` with none made, the stack keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ec2dbn.errors import ConfigError
from ec2dbn.package_data import bootstrap_dir
from ec2dbn.spec.bake_inputs import bake_hash
from ec2dbn.spec.stack import parse_stack
from tests.aws.helpers import NOTHING, cli, stack_file
from tests.support.moto_server import MotoServer, tagged_resources

STEPS = ["base", "nvidia", "python", "check"]


def test_the_hash_changes_with_a_bootstrap_script_and_the_base_image(tmp_path: Path) -> None:
    scripts = tmp_path / "bootstrap"
    shutil.copytree(bootstrap_dir(), scripts)
    before = bake_hash("ami-0123456789abcdef0", STEPS, scripts)
    assert bake_hash("ami-0123456789abcdef0", STEPS, scripts) == before  # same inputs, same bake
    python_sh = scripts / "python.sh"
    python_sh.write_text(python_sh.read_text() + "\n# a changed line\n")
    after = bake_hash("ami-0123456789abcdef0", STEPS, scripts)
    assert after != before
    assert bake_hash("ami-0fedcba9876543210", STEPS, scripts) != after
    assert bake_hash("ami-0123456789abcdef0", STEPS[:3], scripts) != after
    (scripts / "_lib.sh").write_text((scripts / "_lib.sh").read_text() + "\n")  # helpers count too
    assert bake_hash("ami-0123456789abcdef0", STEPS, scripts) != after


def test_image_baked_without_a_bake_is_refused_and_creates_nothing(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = stack_file(tmp_path, "bk", image="baked", base_image="ubuntu22")
    rc, _out, err = cli(capsys, "launch", "--stack", stack, "--no-bootstrap")
    assert rc == 2
    assert "run `ec2dbn bake --stack bk`" in err and len(err.strip().splitlines()) == 1
    assert tagged_resources(aws) == NOTHING
    assert (
        aws.client("ec2").describe_images(
            Owners=["self"], Filters=[{"Name": "tag-key", "Values": ["ec2dbn:bake"]}]
        )["Images"]
        == []
    )


def test_bake_auto_without_a_bake_launches_the_base_image(
    aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack = stack_file(tmp_path, "ba", bake="auto")
    rc, _out, err = cli(capsys, "launch", "--stack", stack, "--no-bootstrap")
    assert rc == 0, err
    assert "no bake" in err
    (inst,) = [i for r in aws.client("ec2").describe_instances()["Reservations"] for i in r["Instances"]]
    assert inst["ImageId"] == aws.images[("us-east-1", "ubuntu22")]
    assert cli(capsys, "teardown", "ba", "--yes")[0] == 0


def test_stack_keys_for_bakes_are_checked() -> None:
    base = {"name": "s", "region": "us-east-1", "instance_type": "g4dn.xlarge"}
    assert parse_stack({**base, "image": "baked"}).source_image == "dlami-ubuntu22"
    assert parse_stack({**base, "image": "baked", "base_image": "ubuntu22"}).bake_mode == "required"
    assert parse_stack({**base, "bake": "auto"}).bake_mode == "auto"
    with pytest.raises(ConfigError, match="base_image"):
        parse_stack({**base, "base_image": "ubuntu22"})
    with pytest.raises(ConfigError, match="bake"):
        parse_stack({**base, "bake": "always"})
