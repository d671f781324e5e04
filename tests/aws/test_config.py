"""Stack files: strict validation with one-line errors, bundled stacks, overrides and region precedence.

No AWS here: everything in this file must be decided before any AWS call.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ec2dbn.cli import main
from ec2dbn.errors import ConfigError
from ec2dbn.spec.overrides import apply_overrides, launch_region, load_for_launch
from ec2dbn.spec.stack import (
    DEFAULT_STACK,
    bundled_stacks,
    load_stack,
    parse_lifetime,
    parse_stack,
)

GOOD = {
    "name": "t",
    "region": "us-east-1",
    "instance_type": "g4dn.xlarge",
}


def write(tmp_path: Path, text: str, name: str = "stack.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(data: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_stack(data, "s.yaml")
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_bundled_stacks_load_and_say_what_issue_3_asks() -> None:
    assert {"g4dn-spot", "g4dn-ondemand", "g5-spot", "cpu-ondemand"} <= set(bundled_stacks())
    spot = load_stack("g4dn-spot")
    assert (spot.candidates, spot.market, spot.fallback) == (["g4dn.xlarge"], "spot", "on-demand")
    assert load_stack().name == DEFAULT_STACK == "g4dn-spot"
    assert load_stack("g4dn-ondemand").market == "on-demand"
    g5 = load_stack("g5-spot")
    assert g5.candidates[0] == "g5.xlarge" and g5.market == "spot"
    cpu = load_stack("cpu-ondemand")
    assert cpu.image == "ubuntu22" and "nvidia" not in cpu.bootstrap
    for name in bundled_stacks():
        s = load_stack(name)
        assert s.name == name
        assert s.ssh_cidr == "auto"
        assert s.max_recoveries == 3


def test_defaults_and_derived_values() -> None:
    s = parse_stack(GOOD)
    assert s.candidates == ["g4dn.xlarge"]
    assert s.market == "spot" and s.fallback == "on-demand" and s.max_price is None
    assert s.lifetime_minutes == 180 and s.key_name == "ec2dbn-t"
    assert s.max_recoveries == 3 and s.bootstrap == ["base", "nvidia", "python", "check"]


@pytest.mark.parametrize(
    ("text", "minutes"), [("3h", 180), ("90m", 90), ("1h30m", 90), ("2d", 2880), ("1d2h", 1560)]
)
def test_lifetimes(text: str, minutes: int) -> None:
    assert parse_lifetime(text) == minutes


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"colour": "blue"}, "colour", "unknown key"),
        ({"volume_gb": "100"}, "volume_gb", "valid integer"),
        ({"volume_gb": 100.5}, "volume_gb", "valid integer"),
        ({"volume_gb": 0}, "volume_gb", "outside 8"),
        ({"market": "cheap"}, "market", "'spot' or 'on-demand'"),
        ({"fallback": "spot"}, "fallback", "'on-demand' or 'none'"),
        ({"max_price": -1}, "max_price", "not a price"),
        ({"max_price": "0.3"}, "max_price", "valid number"),
        ({"max_lifetime": "0h"}, "max_lifetime", "outside"),
        ({"max_lifetime": "three hours"}, "max_lifetime", "not a duration"),
        ({"max_lifetime": 3}, "max_lifetime", "valid string"),
        ({"ssh_cidr": "1.2.3.4/33"}, "ssh_cidr", "not 'auto' or a CIDR"),
        ({"ssh_cidr": "1.2.3.4/24"}, "ssh_cidr", "host bits"),
        ({"image": "windows"}, "image", "neither an alias"),
        ({"region": "mars-1"}, "region", "not an AWS region"),
        ({"availability_zones": ["us-west-2a"]}, "availability_zones", "not in region us-east-1"),
        ({"availability_zones": []}, "availability_zones", "empty"),
        ({"bootstrap": ["base", "rootkit"]}, "bootstrap", "unknown script 'rootkit'"),
        ({"tags": {"ec2dbn:stack": "x"}}, "tags", "set by ec2dbn"),
        ({"tags": {"team": 1}}, "tags.team", "valid string"),
        ({"name": "Bad Name"}, "name", "lowercase"),
        ({"instance_type": []}, "instance_type", "non-empty list"),
        ({"instance_type": ["g4dn.xlarge", "g4dn.xlarge"]}, "instance_type", "twice"),
        ({"instance_type": "g2.2xlarge"}, "instance_type", "g4dn.xlarge"),
        ({"instance_type": "banana"}, "instance_type", "not an instance type name"),
        ({"instance_type": "g4dn xlarge"}, "instance_type", "not an instance type name"),
        ({"instance_type": "g2.4xlarge"}, "instance_type", "compute capability 3.0"),
        ({"vpc_id": "vpc-xyz"}, "vpc_id", "not a VPC id"),
        ({"subnet_ids": []}, "subnet_ids", "empty"),
        ({"subnet_ids": ["subnet-0123456789abcdef0", "sg-12345678"]}, "subnet_ids", "not a subnet id"),
        ({"subnet_ids": ["subnet-01234567", "subnet-01234567"]}, "subnet_ids", "twice"),
        ({"subnet_ids": ["subnet-01234567"], "subnet_tags": {"a": "b"}}, "subnet_tags", "not both"),
        ({"subnet_tags": {}}, "subnet_tags", "empty"),
        ({"max_recoveries": -1}, "max_recoveries", "outside 0"),
        ({"remote_dir": "relative/dir"}, "remote_dir", "must be"),
        ({"remote_dir": "/tmp/$(rm -rf ~)"}, "remote_dir", "must be"),
    ],
)
def test_bad_values_are_one_line_naming_the_field(change: dict, field: str, words: str) -> None:
    msg = error_of({**GOOD, **change})
    assert msg.startswith(f"s.yaml: {field}: "), msg
    assert words in msg


def test_missing_required_field() -> None:
    msg = error_of({"name": "t", "region": "us-east-1"})
    assert msg == "s.yaml: instance_type: is required"


def test_types_outside_the_catalog_pass_validation_for_ec2_to_describe() -> None:
    # Refused offline only when malformed or retired; EC2 says what c5.xlarge and p5e.48xlarge are at plan.
    s = parse_stack({**GOOD, "instance_type": ["C5.XLarge", "p5e.48xlarge", "p6-b200.48xlarge"]})
    assert s.candidates == ["c5.xlarge", "p5e.48xlarge", "p6-b200.48xlarge"]


def test_network_keys_are_optional_and_kept() -> None:
    s = parse_stack(
        {**GOOD, "vpc_id": "vpc-0123456789abcdef0", "subnet_ids": ["subnet-01234567", "subnet-89abcdef"]}
    )
    assert s.vpc_id == "vpc-0123456789abcdef0" and s.subnet_ids == ["subnet-01234567", "subnet-89abcdef"]
    assert parse_stack({**GOOD, "subnet_tags": {"tier": "public"}}).subnet_tags == {"tier": "public"}
    plain = parse_stack(GOOD)
    assert (plain.vpc_id, plain.subnet_ids, plain.subnet_tags) == (None, None, None)


def test_a_region_override_cannot_carry_regional_network_ids() -> None:
    s = parse_stack({**GOOD, "subnet_ids": ["subnet-01234567"]})
    with pytest.raises(ConfigError, match=r"^--region: stack t's vpc_id/subnet_ids are in us-east-1"):
        apply_overrides(s, region="us-west-2")
    assert apply_overrides(parse_stack(GOOD), region="us-west-2").region == "us-west-2"


def test_g2_is_refused_with_the_catalog_reason() -> None:
    msg = error_of({**GOOD, "instance_type": ["g4dn.xlarge", "g2.2xlarge"]})
    assert "g2.2xlarge" in msg and "compute capability" in msg and "g4dn.xlarge" in msg


def test_explicit_world_cidr_is_accepted_by_the_model() -> None:
    # Honoured when asked for explicitly; the launch path warns loudly (see test_launch).
    assert parse_stack({**GOOD, "ssh_cidr": "0.0.0.0/0"}).ssh_cidr == "0.0.0.0/0"
    assert parse_stack({**GOOD, "ssh_cidr": "2001:db8::1/128"}).ssh_cidr == "2001:db8::1/128"


def test_file_loading(tmp_path: Path) -> None:
    path = write(tmp_path, "region: us-west-2\ninstance_type: [g5.xlarge, g4dn.xlarge]\n", "my-box.yaml")
    s = load_stack(str(path))
    assert s.name == "my-box"  # from the file name
    assert s.candidates == ["g5.xlarge", "g4dn.xlarge"]


def test_malformed_yaml_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: t\nregion: [us-east-1\n")
    with pytest.raises(ConfigError, match=r"stack\.yaml:\d+:\d+: invalid YAML: ") as exc:
        load_stack(str(path))
    assert "\n" not in str(exc.value)


def test_not_a_mapping_and_missing_stack(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_stack(str(write(tmp_path, "- a\n- b\n")))
    with pytest.raises(ConfigError, match=r"no stack 'nope'.*g4dn-spot"):
        load_stack("nope")


def test_overrides_are_validated_and_name_the_flag() -> None:
    s = load_stack("g4dn-spot")
    t = apply_overrides(
        s, market="on-demand", instance_types=["g5.xlarge"], name="other", ssh_cidr="198.51.100.9/32"
    )
    assert (t.market, t.candidates, t.name, t.ssh_cidr) == (
        "on-demand",
        ["g5.xlarge"],
        "other",
        "198.51.100.9/32",
    )
    with pytest.raises(ConfigError, match=r"^--ssh-cidr: .*not 'auto' or a CIDR"):
        apply_overrides(s, ssh_cidr="everyone")
    with pytest.raises(ConfigError, match=r"^--instance-type: g2.2xlarge is a retired"):
        apply_overrides(s, instance_types=["g2.2xlarge"])


def test_region_override_drops_zones_of_the_old_region() -> None:
    s = parse_stack({**GOOD, "availability_zones": ["us-east-1a"]})
    t = apply_overrides(s, region="eu-west-1")
    assert t.region == "eu-west-1" and t.availability_zones is None


def test_region_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    s = parse_stack(GOOD)
    monkeypatch.delenv("AWS_REGION", raising=False)
    assert launch_region(None, s) == "us-east-1"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert launch_region(None, s) == "eu-west-1"
    assert launch_region("us-west-2", s) == "us-west-2"
    assert load_for_launch("g4dn-spot", spot=False).region == "eu-west-1"


@pytest.mark.parametrize(
    "text",
    [
        "name: t\nregion: us-east-1\ninstance_type: g4dn.xlarge\nsurprise: 1\n",
        "name: t\nregion: us-east-1\ninstance_type: g4dn.xlarge\nvolume_gb: lots\n",
        "name: t\nregion: us-east-1\ninstance_type: g4dn.xlarge\nvolume_gb: 1\n",
        "name: t\nregion: [us-east-1\n",
        "name: t\nregion: us-east-1\ninstance_type: g2.2xlarge\n",
    ],
)
def test_cli_bad_stack_exits_2_with_one_line(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A dead endpoint: had anything tried AWS, the error would be a connection failure (exit 1).
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("EC2DBN_HOME", str(tmp_path / "home"))
    path = write(tmp_path, text)
    rc = main(["launch", "--stack", str(path), "--no-bootstrap"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert "Traceback" not in err
