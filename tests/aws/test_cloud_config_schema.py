"""The user-data every bundled stack launches with passes cloud-init's own schema check.

cloud-init logs "Invalid cloud-config" and finishes with a recoverable error (status exit code 2) on a
config its schema rejects, so a key it would act on anyway can still leave every boot marked degraded.
The check here is cloud-init's, not ours: see tests/support/cloud_init.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml

from ec2dbn.spec.stack import bundled_stacks, load_stack
from ec2dbn.stack import userdata
from tests.support.cloud_init import SchemaResult, cloud_init_schema

__all__ = ["cloud_init_schema"]  # the fixture, imported so pytest finds it here

Validate = Callable[[str], SchemaResult]


def _rendered(stack_name: str) -> str:
    """The user-data `ec2dbn launch` renders for a stack (as ec2dbn/aws/provision.py does)."""
    stack = load_stack(stack_name)
    host_key = userdata.generate_host_key(f"ec2dbn-{stack.name}")
    deadline = userdata.deadline_after(stack.lifetime_minutes)
    return userdata.render(host_key, deadline, stack=stack.name)


def test_the_check_rejects_what_cloud_init_rejects(cloud_init_schema: Validate) -> None:
    # The check itself can fail: the user-data ec2dbn rendered before this fix (an empty
    # ssh_genkeytypes list) and a file without a path are refused, with cloud-init's reason.
    doc = yaml.safe_load(_rendered("g4dn-spot"))
    doc["ssh_genkeytypes"] = []
    old = cloud_init_schema("#cloud-config\n" + yaml.safe_dump(doc))
    assert not old.valid
    assert "ssh_genkeytypes: [] is too short" in old.output

    no_path = cloud_init_schema("#cloud-config\nwrite_files:\n  - content: x\n")
    assert not no_path.valid and "'path' is a required property" in no_path.output


@pytest.mark.parametrize("stack_name", bundled_stacks())
def test_every_bundled_stack_renders_valid_cloud_config(stack_name: str, cloud_init_schema: Validate) -> None:
    result = cloud_init_schema(_rendered(stack_name))
    assert result.valid, result.output
    assert "Valid cloud-config" in result.output


def test_bundled_stacks_are_all_checked() -> None:
    # The parametrisation above covers whatever stacks/ holds; this pins that it is not empty.
    assert {"g4dn-spot", "g4dn-ondemand", "g5-spot", "cpu-ondemand"} <= set(bundled_stacks())
