"""Reaching a stack's instance: the one `Remote` with the host key pinned at launch.

Never trust-on-first-use: without a pinned key there is no connection. The address is the instance's
public IP on port 22, or `EC2DBN_SSH_ENDPOINT` (a tunnel, a bastion's forwarded port, a test's sshd), or
the instance's own line in the `EC2DBN_SSH_ENDPOINTS` file (one tunnel per instance, e.g. a sweep's).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from ec2dbn.errors import RemoteError
from ec2dbn.ssh.remote import Remote
from ec2dbn.stack import state

#: Seconds between looks at $EC2DBN_SSH_ENDPOINTS while an instance is not listed there yet.
ENDPOINT_POLL_S = 0.1

#: Seconds between asking EC2 whether the instance is still there while its endpoint is missing.
STATE_POLL_S = 2.0

#: Seconds to wait for sshd on a fresh instance (boot plus cloud-init); EC2DBN_SSH_TIMEOUT overrides.
DEFAULT_SSH_TIMEOUT_S = 600.0


def ssh_timeout_s() -> float:
    return float(os.environ.get("EC2DBN_SSH_TIMEOUT", DEFAULT_SSH_TIMEOUT_S))


def remote_for(
    st: state.StackState, wait_s: float = 0.0, still_there: Callable[[], bool] | None = None
) -> Remote:
    """The SSH target for a launched stack, with the host key pinned at launch.

    wait_s: how long to wait for the instance's line in $EC2DBN_SSH_ENDPOINTS (its tunnel coming up);
    RemoteError when it is still missing then. still_there: asked (at the first miss, then every
    STATE_POLL_S) whether EC2 still has the instance running or pending (its describe_instances state);
    False ends the wait at once with RemoteError: a terminated instance's tunnel never comes.
    """
    if not st.host_public_key:
        raise RemoteError(
            f"no pinned host key for stack {st.name}: refusing to SSH; "
            f"`ec2dbn teardown {st.name}` and relaunch"
        )
    give_up = time.monotonic() + wait_s
    next_look = time.monotonic()
    while True:
        try:
            host, port = st.ssh_endpoint()
            break
        except state.EndpointPending as exc:
            now = time.monotonic()
            if still_there is not None and now >= next_look:
                if not still_there():
                    raise RemoteError(
                        f"no SSH address: the instance {st.instance_id or '?'} is gone (EC2 says so; {exc})"
                    ) from None
                next_look = now + STATE_POLL_S
            if now >= give_up:
                raise RemoteError(f"no SSH address: {exc}") from None
            time.sleep(ENDPOINT_POLL_S)
    return Remote(host, port, st.ssh_user, str(st.private_key()), st.host_public_key)
