"""Stack ownership and teardown against moto as a real HTTP server: a running stack is reused only when it
is free and what was asked for; teardown removes only what ec2dbn tagged, one failure at a time.

Leases are checked from both sides: the `ec2dbn:run` tag on the instance (which outlives the state dir,
so it also protects from another machine) and the local lock (a run on this machine).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ec2dbn.aws.tags import RUN_TAG, TEARDOWN_TAG
from ec2dbn.run.results import claim_run_dir
from ec2dbn.stack import state
from ec2dbn.stack.lease import LocalLease
from tests.aws.helpers import NOTHING, cli
from tests.support.moto_server import MotoServer, count_calls, inject_error, tagged_resources


def instances(aws: MotoServer, stack: str = "g4dn-spot", states: tuple[str, ...] = ("running",)) -> list[Any]:
    resp = aws.client("ec2").describe_instances(
        Filters=[
            {"Name": "tag:ec2dbn:stack", "Values": [stack]},
            {"Name": "instance-state-name", "Values": list(states)},
        ]
    )
    return [i for r in resp["Reservations"] for i in r["Instances"]]


def tags(item: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in item.get("Tags", [])}


@pytest.mark.parametrize(
    ("flags", "difference"),
    [
        (("--on-demand",), "market spot (asked for on-demand)"),
        (("--instance-type", "g5.xlarge"), "instance type g4dn.xlarge (asked for g5.xlarge)"),
        (("--image", "ubuntu22"), "image dlami-ubuntu22 (asked for ubuntu22)"),
    ],
)
def test_launch_with_other_options_on_a_running_stack_is_refused(
    aws: MotoServer, capsys: pytest.CaptureFixture[str], flags: tuple[str, ...], difference: str
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    before = tagged_resources(aws)
    run_calls = count_calls("before-call.ec2.RunInstances")
    rc, out, err = cli(capsys, "launch", *flags, "--no-bootstrap")
    assert rc == 2, out + err
    (line,) = err.strip().splitlines()
    assert difference in line and "ec2dbn teardown g4dn-spot" in line and "--name" in line
    assert "reusing" not in out + err
    assert run_calls.calls == 0 and tagged_resources(aws) == before


def test_a_spot_stack_that_fell_back_to_on_demand_is_still_reused(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    inject_error(
        "RunInstances",
        "InsufficientInstanceCapacity",
        times=None,
        when=lambda p: "InstanceMarketOptions" in p,
    )
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0  # spot, fallback on-demand: it runs on-demand
    assert tags(instances(aws)[0])["ec2dbn:market"] == "on-demand"
    rc, out, _ = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 0 and "reusing" in out


def test_a_stack_leased_to_a_run_is_refused_even_without_local_state(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    (inst,) = instances(aws)
    aws.client("ec2").create_tags(
        Resources=[inst["InstanceId"]], Tags=[{"Key": RUN_TAG, "Value": "job-1-ab12"}]
    )
    shutil.rmtree(state.home())  # another machine, or the state dir lost: only the tag says who uses it
    rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 2
    (line,) = err.strip().splitlines()
    assert "in use by run job-1-ab12" in line and "ec2dbn logs g4dn-spot" in line and "--name" in line


def test_a_stack_leased_on_this_machine_is_refused(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = count_calls()
    with LocalLease("g4dn-spot", "job-2-cd34"):
        rc, _, err = cli(capsys, "launch", "--no-bootstrap")
    assert rc == 2 and "in use by run job-2-cd34" in err
    assert calls.calls == 0 and tagged_resources(aws) == NOTHING  # refused before any AWS call
    # Released: the same launch goes through.
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0


def test_teardown_marks_instances_before_terminating_them(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    (inst,) = instances(aws)
    assert cli(capsys, "teardown", "g4dn-spot", "--yes")[0] == 0
    (gone,) = [i for i in instances(aws, states=("terminated",)) if i["InstanceId"] == inst["InstanceId"]]
    assert TEARDOWN_TAG in tags(gone)  # what a run using it reads as "ended on purpose, don't relaunch"


def test_teardown_never_deletes_untagged_resources_that_local_state_names(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(capsys, "launch", "--no-bootstrap")[0] == 0
    ec2 = aws.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    foreign_sg = ec2.create_security_group(GroupName="someone-elses", Description="x", VpcId=vpc)["GroupId"]
    ec2.create_key_pair(KeyName="someone-elses-key", KeyType="ed25519")
    path = state.home() / "stacks" / "g4dn-spot" / "state.json"
    doc = json.loads(path.read_text())
    doc.update(security_group_id=foreign_sg, key_name="someone-elses-key")
    path.write_text(json.dumps(doc))

    rc, out, err = cli(capsys, "teardown", "g4dn-spot", "--yes")
    assert rc == 0, out + err
    assert tagged_resources(aws) == NOTHING
    assert ec2.describe_security_groups(GroupIds=[foreign_sg])["SecurityGroups"]
    assert ec2.describe_key_pairs(KeyNames=["someone-elses-key"])["KeyPairs"]
    assert f"left security group {foreign_sg} (not tagged for stack g4dn-spot) alone" in err
    assert "left key pair someone-elses-key (not tagged for stack g4dn-spot) alone" in err


def test_teardown_all_carries_on_past_a_stack_it_cannot_remove(
    aws: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("aaa", "bbb"):
        assert cli(capsys, "launch", "--name", name, "--no-bootstrap")[0] == 0
    ec2 = aws.client("ec2")
    stuck = [g["GroupId"] for g in ec2.describe_security_groups(GroupNames=["ec2dbn-aaa"])["SecurityGroups"]]
    inject_error(
        "DeleteSecurityGroup", "UnauthorizedOperation", times=None, when=lambda p: p.get("GroupId") in stuck
    )
    rc, out, err = cli(capsys, "teardown", "--all", "--yes")
    assert rc == 1
    error_lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(error_lines) == 1 and stuck[0] in error_lines[0]
    left = tagged_resources(aws)
    # Stack aaa lost its instance and key pair, only its security group is left; bbb is gone entirely.
    assert left["security_groups"] == stuck and left["instances"] == [] and left["key_pairs"] == []
    assert "bbb (us-east-1): " in out
    assert state.load("aaa") is not None  # what could not be removed is still recorded locally


def test_two_runs_started_in_the_same_second_get_their_own_folders(tmp_path: Path) -> None:
    job = tmp_path / "seed.yaml"
    seen = {claim_run_dir(tmp_path / "results", job) for _ in range(50)}
    ids = {run_id for run_id, _ in seen}
    assert len(ids) == 50 and all(i.startswith("seed-") for i in ids)
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(ids)
