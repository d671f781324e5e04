"""Where a stack lives, for the verbs that look for one (`status`, `teardown`): --region, else the region in
its local state, else $AWS_REGION, else the region of the bundled stack of that name (or of the default).
"""

from __future__ import annotations

import os

from ec2dbn.errors import ConfigError, Ec2dbnError
from ec2dbn.spec.catalog import check_region
from ec2dbn.spec.stack import DEFAULT_STACK, load_stack
from ec2dbn.stack import lifecycle, state


def default_region() -> str:
    """$AWS_REGION, else the default stack's region."""
    return os.environ.get("AWS_REGION") or load_stack(DEFAULT_STACK).region


def region_of(name: str) -> str:
    """Where stack `name` lives: its local state, else $AWS_REGION, else its bundled file, else default."""
    try:
        st = state.load(name)
    except Ec2dbnError:
        st = None
    if st is not None:
        return st.region
    if os.environ.get("AWS_REGION"):
        return os.environ["AWS_REGION"]
    try:
        return load_stack(name).region
    except ConfigError:
        return default_region()


def regions(name: str | None, flag: str | None) -> list[str]:
    """The regions to look in: the --region flag, else where `name` lives, else every known one."""
    if flag:
        return [check_region(flag)]
    if name:
        return [region_of(name)]
    return sorted({*lifecycle.local_regions().values(), default_region()})
