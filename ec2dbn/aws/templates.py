"""A fleet's launch template: today's secure instance settings, written once for every instance of a fleet.

The template carries what `run_instances` passes on each launch (ec2dbn.aws.instances.secure_settings):
IMDSv2 required, an encrypted gp3 root volume deleted with the instance, OS shutdown = terminate, the
stack's key pair and security group, and the user-data with the self-terminating deadline and the pinned
SSH host key; plus tags for the instances and volumes it launches. EC2 wants a template's user-data in
base64 (run_instances encodes it itself).

A template's user-data is shared by every instance launched from it, so they all get the same SSH host key:
one host key per fleet, pinned for each of its instances. That is the trade-off `ec2dbn sweep` accepts —
the instances are the same user's, in the same sweep, and the key still stops a network attacker (who
does not have it); what it does not do is tell one of the sweep's instances from another.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ec2dbn.aws.errors import aws_errors
from ec2dbn.aws.instances import LaunchSpec, secure_settings
from ec2dbn.aws.session import Aws
from ec2dbn.aws.tags import tag_specs


@dataclass(frozen=True)
class LaunchTemplate:
    template_id: str
    name: str


def template_data(spec: LaunchSpec) -> dict[str, Any]:
    """LaunchTemplateData for `spec`: the secure settings, base64 user-data, instance and volume tags, and
    one network interface asking for a public IP.

    The interface (DeviceIndex 0, AssociatePublicIpAddress, the stack's group) is what makes a fleet's
    instances reachable in a subnet that does not auto-assign public IPs, as run_instances' own interface
    does. It names no subnet: each fleet override's SubnetId gives it ("Any parameters that you specify
    override the same parameters in the launch template", EC2 API LaunchTemplateConfig.Overrides), and the
    groups move onto it ("If you specify a network interface, you must specify any security groups as part
    of the network interface", RequestLaunchTemplateData.SecurityGroupIds; botocore's EC2 model).
    """
    data = secure_settings(spec)
    groups = data.pop("SecurityGroupIds", [])
    data["NetworkInterfaces"] = [
        {"DeviceIndex": 0, "AssociatePublicIpAddress": True, "DeleteOnTermination": True, "Groups": groups}
    ]
    data["UserData"] = base64.b64encode(spec.user_data.encode()).decode("ascii")
    tags = tag_specs(["instance", "volume"], spec.stack, spec.user_tags)
    extra = [{"Key": k, "Value": v} for k, v in spec.instance_tags.items()]
    data["TagSpecifications"] = [{"ResourceType": t["ResourceType"], "Tags": t["Tags"] + extra} for t in tags]
    return data


def create(aws: Aws, name: str, spec: LaunchSpec, tags: Mapping[str, str]) -> LaunchTemplate:
    """Create the launch template `name` for `spec`, itself tagged for the stack plus `tags`."""
    own = tag_specs(["launch-template"], spec.stack, {**spec.user_tags, **tags})
    with aws_errors(aws.region, f"creating launch template {name}"):
        resp = aws.ec2.create_launch_template(
            LaunchTemplateName=name, LaunchTemplateData=template_data(spec), TagSpecifications=own
        )
    return LaunchTemplate(resp["LaunchTemplate"]["LaunchTemplateId"], name)


def delete(aws: Aws, template_id: str) -> None:
    """Delete the launch template (every version)."""
    with aws_errors(aws.region, f"deleting launch template {template_id}"):
        aws.ec2.delete_launch_template(LaunchTemplateId=template_id)
