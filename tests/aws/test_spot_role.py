"""The Spot service-linked role (AWSServiceRoleForEC2Spot): IAM creates it, as the caller, for the first spot
request in an account. `ec2dbn check` says whether it exists, with the fix; EC2's refusal when the caller may
not create it (AuthFailure.ServiceLinkedRoleCreationNotPermitted) is one line naming the role and the fix,
from launch and from a sweep's fleet; and a fleet error that is no lack of capacity says what it is."""

from __future__ import annotations

import json

import pytest

from ec2dbn.aws import fleets
from ec2dbn.aws.errors import CapacityError
from ec2dbn.aws.instances import Attempt
from tests.aws.helpers import NOTHING, cli
from tests.aws.test_fleet import fleet_stack, launch
from tests.support.fleet_faults import short_fleets
from tests.support.moto_server import MotoServer, inject_error, tagged_resources

CODE = "AuthFailure.ServiceLinkedRoleCreationNotPermitted"
AWS_SAYS = "The provided credentials do not have permission to create the service-linked role for Spot."
FIX = "aws iam create-service-linked-role --aws-service-name spot.amazonaws.com"


def make_spot_role(aws: MotoServer) -> None:
    """The role as AWS names it (moto's create_service_linked_role calls it AWSServiceRoleForspot)."""
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "spot.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
    aws.client("iam").create_role(
        RoleName="AWSServiceRoleForEC2Spot",
        Path="/aws-service-role/spot.amazonaws.com/",
        AssumeRolePolicyDocument=json.dumps(trust),
    )


def check_line(out: str, name: str = "service-linked role") -> tuple[str, list[str]]:
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if name in line)
    return lines[i], lines[i + 1 : i + 2]


def test_check_says_the_role_exists(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    make_spot_role(aws)
    _, out, _ = cli(capsys, "check")
    line, _ = check_line(out)
    assert line.startswith("✓") and "AWSServiceRoleForEC2Spot exists" in line


def test_check_says_the_role_is_missing_and_how_to_get_it(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = cli(capsys, "check")
    line, (fix,) = check_line(out)
    assert line.startswith("!") and "AWSServiceRoleForEC2Spot does not exist yet" in line
    assert "iam:CreateServiceLinkedRole" in line and FIX in fix
    assert "can launch" in out.splitlines()[-1]  # a warning: the first spot request may create it


def test_check_when_the_credentials_may_not_ask(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    inject_error("GetRole", "AccessDenied", "not allowed", service="iam", status=403, times=None)
    _, out, _ = cli(capsys, "check")
    line, (fix,) = check_line(out)
    assert line.startswith("!") and "could not tell whether AWSServiceRoleForEC2Spot exists" in line
    assert FIX in fix


def test_check_skips_the_role_for_an_on_demand_stack(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = cli(capsys, "check", "--stack", "cpu-ondemand")
    line, _ = check_line(out)
    assert line.startswith("-") and "on-demand stack" in line


def test_launch_names_the_role_and_the_fix_in_one_line(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    inject_error("RunInstances", CODE, AWS_SAYS, times=None)
    rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    (line,) = [ln for ln in err.strip().splitlines() if ln.startswith("error: ")]
    assert rc == 1 and "AWSServiceRoleForEC2Spot" in line and CODE in line and FIX in line
    assert "no capacity" not in line and "Traceback" not in err
    assert tagged_resources(aws) == NOTHING


def test_a_fleet_names_the_role_and_the_fix(aws: MotoServer) -> None:
    short_fleets(spot=0, on_demand=0, code=CODE)
    with pytest.raises(Exception) as caught:
        launch(fleet_stack(), 2)
    message = str(caught.value)
    assert "AWSServiceRoleForEC2Spot" in message and FIX in message and "no capacity" not in message
    assert not isinstance(caught.value, CapacityError)
    assert tagged_resources(aws) == NOTHING


def test_an_unknown_fleet_error_is_its_code_and_awss_message() -> None:
    errors = [Attempt("g4dn.xlarge", "us-east-1a", "spot", "InvalidParameterValue", "bad subnet")]
    err = fleets.explain("us-east-1", errors, ["spot"])
    assert not isinstance(err, CapacityError)
    where = "in us-east-1 (spot g4dn.xlarge in us-east-1a)"
    assert str(err) == f"EC2 refused the fleet {where}: InvalidParameterValue: bad subnet"
    capacity = [Attempt("g4dn.xlarge", "us-east-1a", "spot", "InsufficientInstanceCapacity", "none")]
    assert isinstance(fleets.explain("us-east-1", capacity, ["spot"]), CapacityError)
