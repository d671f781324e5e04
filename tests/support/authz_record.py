"""The recorder: every AWS call ec2dbn's own clients make in the test session, with what AWS would see.

A botocore `before-parameter-build` hook (added to every client ec2dbn creates, by the `aws` fixture)
keeps the service, the operation, the client's region and the API parameters as ec2dbn passed them
(user-data dropped: large, and no part of authorization), plus — for calls that change something — the
tags moto holds at that moment for each existing resource the parameters name (read from moto's backend in
this process, no request), and for PutRolePolicy the permissions boundary moto holds for the role.
tests/support/authz.py turns the records into authorization requests;
tests/support/moto_server.py evaluates them all when the session ends.
"""

from __future__ import annotations

import copy
import re
import threading
from typing import Any

from tests.support.authz import ACCOUNT_ID, READ_PREFIXES

RECORDED: list[dict[str, Any]] = []
_LOCK = threading.Lock()
_ID = re.compile(r"^(i|sg|key|lt|fleet|sir|ami|snap|vol)-[0-9a-f-]+$")


def _strip(params: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy({k: v for k, v in params.items() if k != "Body"})  # S3 payloads: no part of it
    out.pop("UserData", None)
    if isinstance(out.get("LaunchTemplateData"), dict):
        out["LaunchTemplateData"].pop("UserData", None)
    return out


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def existing_tags(region: str, params: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The tags moto holds for every resource id (and key pair name) in `params`: {id or name: tags}."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[ACCOUNT_ID][region]
    out: dict[str, dict[str, str]] = {}
    for s in _strings(params):
        if _ID.match(s):
            out[s] = dict(backend.tags.get(s, {}))
    name = params.get("KeyName")
    if isinstance(name, str) and name in backend.key_pairs:
        out[name] = dict(backend.tags.get(backend.key_pairs[name].id, {}))
    return out


def launch_templates(region: str, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The default version's LaunchTemplateData of every launch template a CreateFleet names, as moto holds
    it ({template id: data}): what the fleet's instances are launched with (image, volumes and their tags)."""
    from moto.ec2.models import ec2_backends

    backend = ec2_backends[ACCOUNT_ID][region]
    out: dict[str, dict[str, Any]] = {}
    for config in params.get("LaunchTemplateConfigs") or []:
        tid = (config.get("LaunchTemplateSpecification") or {}).get("LaunchTemplateId")
        if tid in backend.launch_templates:
            data = backend.launch_templates[tid].default_version().data
            out[tid] = {k: copy.deepcopy(v) for k, v in data.items() if k != "UserData"}
    return out


def role_boundary(params: dict[str, Any]) -> str | None:
    """The permissions boundary moto holds for the role `params` names (iam:PermissionsBoundary of a call
    that changes an existing role's permissions), or None."""
    from moto.iam.models import iam_backends

    name = params.get("RoleName")
    if not isinstance(name, str):
        return None
    for role in iam_backends[ACCOUNT_ID]["aws"].roles.values():
        if role.name == name:
            return role.permissions_boundary_arn or None
    return None


def record(model: Any, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """The hook: keep one record of the call (see the module doc)."""
    service = model.service_model.signing_name
    region = context.get("client_region") or "us-east-1"
    entry: dict[str, Any] = {
        "service": service,
        "operation": model.name,
        "region": region,
        "params": _strip(params),
    }
    if service == "ec2" and not model.name.startswith(READ_PREFIXES):
        try:
            entry["tags"] = existing_tags(region, params)
            if model.name == "CreateFleet":
                entry["templates"] = launch_templates(region, params)
        except Exception as exc:  # never break the call being recorded; the proof reports it instead
            entry["tags_error"] = f"{type(exc).__name__}: {exc}"
    if service == "iam" and model.name == "PutRolePolicy":
        try:
            entry["role_boundary"] = role_boundary(params)
        except Exception as exc:  # as above
            entry["tags_error"] = f"{type(exc).__name__}: {exc}"
    with _LOCK:
        RECORDED.append(entry)
