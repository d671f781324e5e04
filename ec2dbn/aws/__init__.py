"""The AWS layer's face: the verbs and records the rest of ec2dbn may use (in the spirit of SkyPilot's
sky/provision/__init__.py). Callers import these names from `ec2dbn.aws`, not the modules behind them.

Every verb is keyed by a region and a stack name, finds what exists by tags (so it is safe to re-run after
any failure), takes plain values and returns plain records. Nothing here prints, writes local state, opens
SSH or computes a bake's hash (it is handed one: `plan(..., bake_name=...)`). The names resolve when first
used, so importing the face loads no boto3 (`ec2dbn --help` stays light).

    plan, dry_run, refused, instance_prices, instance_spec  the plan phase (offerings, image, prices)
    launch, wait_running, allow_ssh                          one stack's instance (the fallback chain)
    launch_fleet, request_capacity, terminate                a sweep's instant EC2 Fleets
    describe_instance, live_instances, inventory,            what exists, by tags
    tag_instance, untag_instance
    teardown_stack, stacks_in, verify_clean                  removal by tags
    find_bakes, start_image, wait_available, remove_bakes,   baked images
    bakes_by_name, orphan_snapshots
    resolve_cidr                                             the caller's /32
    ensure_store, parse_store_uri, default_bucket, run_prefix,  the run store (S3)
    run_files, read_object, write_object, download_run,
    list_store_runs, find_stores, delete_store, StoreRef
    ensure_instance_profile, grant_run, profile_name,        the instance's role (IAM)
    remove_instance_profile, find_instance_profiles
    InstanceRecord, Plan, CandidatePlan, Launched, FleetAnswer, TeardownReport, BakeRecord, Removal,
    Inventory, REUSABLE_STATES, SKIPPED                      the records
"""

from __future__ import annotations

import importlib
from typing import Any

#: name on the face → (module under ec2dbn.aws, its name there)
FACE: dict[str, tuple[str, str]] = {
    # plan
    "plan": ("planning", "plan"),
    "dry_run": ("planning", "dry_run"),
    "refused": ("planning", "refused"),
    "instance_prices": ("planning", "prices"),
    "instance_spec": ("planning", "instance_spec"),
    "Plan": ("planning", "Plan"),
    "CandidatePlan": ("planning", "CandidatePlan"),
    "SKIPPED": ("planning", "SKIPPED"),
    # one instance
    "launch": ("provision", "launch"),
    "wait_running": ("provision", "wait_running"),
    "allow_ssh": ("provision", "allow_ssh"),
    "describe_instance": ("provision", "describe_instance"),
    "live_instances": ("provision", "live_instances"),
    "inventory": ("provision", "inventory"),
    "tag_instance": ("provision", "tag_instance"),
    "untag_instance": ("provision", "untag_instance"),
    "Launched": ("provision", "Launched"),
    "REUSABLE_STATES": ("provision", "REUSABLE_STATES"),
    "InstanceRecord": ("instances", "InstanceRecord"),
    "resolve_cidr": ("network", "resolve_cidr"),
    # fleets
    "launch_fleet": ("fleet_launch", "launch_fleet"),
    "request_capacity": ("fleet_launch", "request_capacity"),
    "terminate": ("fleet_launch", "terminate"),
    "FleetAnswer": ("fleets", "FleetAnswer"),
    "fleet_errors": ("fleets", "summary"),
    # removal
    "teardown_stack": ("teardown", "teardown"),
    "stacks_in": ("teardown", "stacks_in"),
    "verify_clean": ("teardown", "verify_clean"),
    "TeardownReport": ("teardown", "TeardownReport"),
    "Inventory": ("discovery", "Inventory"),
    # bakes
    "find_bakes": ("bakes", "find"),
    "start_image": ("bakes", "start_image"),
    "wait_available": ("bakes", "wait_available"),
    "remove_bakes": ("bakes", "remove"),
    "bakes_by_name": ("bakes", "by_name"),
    "orphan_snapshots": ("bakes", "orphan_snapshots"),
    "BakeRecord": ("bakes", "BakeRecord"),
    "Removal": ("bakes", "Removal"),
    # the run store
    "StoreRef": ("store", "StoreRef"),
    "parse_store_uri": ("store", "parse_store_uri"),
    "default_bucket": ("store", "default_bucket"),
    "ensure_store": ("store", "ensure_store"),
    "store_status": ("store", "store_status"),
    "run_prefix": ("store", "run_prefix"),
    "run_files": ("store", "run_files"),
    "read_object": ("store", "read_object"),
    "write_object": ("store", "write_object"),
    "download_run": ("store", "download_run"),
    "list_store_runs": ("store", "list_store_runs"),
    "find_stores": ("store", "find_stores"),
    "delete_store": ("store", "delete_store"),
    # the instance's role
    "profile_name": ("run_role", "profile_name"),
    "boundary_status": ("run_role", "boundary_status"),
    "boundary_hint": ("run_role", "boundary_hint"),
    "ensure_instance_profile": ("run_role", "ensure_instance_profile"),
    "grant_run": ("run_role", "grant_run"),
    "remove_instance_profile": ("run_role", "remove_instance_profile"),
    "find_instance_profiles": ("run_role", "find_instance_profiles"),
}

__all__ = sorted(FACE)


def __getattr__(name: str) -> Any:
    """The face's name, looked up in its module each time (a test's monkeypatch there is seen here too)."""
    try:
        module, attr = FACE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr)
