"""Whether a run's instance is still there: asked of EC2, never guessed from the error that arrived.

EC2's API is eventually consistent: an instance that was just taken back (a spot reclaim without a
notice, a host failure) can still be described as running for a while after its SSH went silent. A
failure is therefore judged once EC2's word can be trusted: while EC2 says the instance runs and its
SSH does not answer, the pipeline waits (at most SETTLE_S) for one of the two to change — EC2 saying it
is gone (a recovery) or SSH answering again (the failure was the run's own).
"""

from __future__ import annotations

import contextlib
from typing import Literal

from ec2dbn import aws
from ec2dbn.errors import Ec2dbnError, RemoteError
from ec2dbn.events import Reporter
from ec2dbn.ssh.remote import Remote

#: 'alive', 'lost', 'torn-down' (marked by `ec2dbn teardown`), 'unknown' (EC2 can't be asked) or
#: 'none' (nothing launched yet).
Fate = Literal["alive", "lost", "torn-down", "unknown", "none"]

#: The longest a failure waits, with EC2 saying "running" and SSH silent, for one of them to change.
SETTLE_S = 60.0


def instance_fate(region: str, instance_id: str | None) -> Fate:
    """What EC2 says about the instance now."""
    if not instance_id:
        return "none"
    try:
        inst = aws.describe_instance(region, instance_id)
    except Ec2dbnError:
        return "unknown"
    if inst is not None and inst.torn_down:
        return "torn-down"
    if inst is not None and inst.state in aws.REUSABLE_STATES:
        return "alive"
    return "lost"


def settled_fate(
    region: str, instance_id: str | None, remote: Remote | None, reporter: Reporter | None = None
) -> Fate:
    """What EC2 says about the instance once its word can be trusted after a failure.

    'alive' with an SSH that answers (or no connection to ask) is final at once; 'alive' with an SSH
    that does not is asked again until SSH answers, EC2 says otherwise, or SETTLE_S pass.
    """
    fate = instance_fate(region, instance_id)
    if fate != "alive" or remote is None:
        return fate
    remote.close()  # a fresh connection: the failed one may be half-dead
    with contextlib.suppress(RemoteError):  # unreachable or gone: EC2 is asked once more below
        remote.wait_until_reachable(
            SETTLE_S, reporter, still_there=lambda: instance_fate(region, instance_id) != "lost"
        )
    return instance_fate(region, instance_id)
