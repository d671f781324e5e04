"""The test double as strict as EC2 (tests/support/ec2_strict.py): an instant fleet's spot requests are
one-time and close with their instance, so `tagged_resources` sees a request left only where EC2 would."""

from __future__ import annotations

from tests.support.moto_server import MotoServer, tagged_resources

TAGS = [{"Key": "ec2dbn:managed", "Value": "true"}, {"Key": "ec2dbn:stack", "Value": "strict"}]


def test_an_instant_fleets_spot_requests_are_one_time_and_close_with_their_instance(aws: MotoServer) -> None:
    ec2 = aws.client("ec2")
    template = ec2.create_launch_template(
        LaunchTemplateName="strict",
        LaunchTemplateData={
            "ImageId": aws.images[("us-east-1", "ubuntu22")],
            "InstanceType": "g4dn.xlarge",
            "TagSpecifications": [{"ResourceType": "instance", "Tags": TAGS}],
        },
    )["LaunchTemplate"]["LaunchTemplateId"]
    fleet = ec2.create_fleet(
        Type="instant",
        LaunchTemplateConfigs=[
            {"LaunchTemplateSpecification": {"LaunchTemplateId": template, "Version": "$Latest"}}
        ],
        TargetCapacitySpecification={
            "TotalTargetCapacity": 2,
            "SpotTargetCapacity": 2,
            "DefaultTargetCapacityType": "spot",
        },
    )
    ids = [i for answer in fleet["Instances"] for i in answer["InstanceIds"]]
    assert len(ids) == 2
    requests = ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
    assert sorted(r["InstanceId"] for r in requests) == sorted(ids)
    assert {(r["Type"], r["State"]) for r in requests} == {("one-time", "active")}
    assert len(tagged_resources(aws)["spot_requests"]) == 2  # running instances: their requests are live

    ec2.terminate_instances(InstanceIds=ids[:1])
    states = {r["InstanceId"]: r for r in ec2.describe_spot_instance_requests()["SpotInstanceRequests"]}
    assert states[ids[0]]["State"] == "closed"
    assert states[ids[0]]["Status"]["Code"] == "instance-terminated-by-user"
    assert states[ids[1]]["State"] == "active"
    assert tagged_resources(aws)["spot_requests"] == [states[ids[1]]["SpotInstanceRequestId"]]

    ec2.delete_fleets(FleetIds=[fleet["FleetId"]], TerminateInstances=True)
    ec2.delete_launch_template(LaunchTemplateId=template)
    assert not any(tagged_resources(aws).values())
