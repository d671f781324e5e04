"""Reaching a stack's instance: the one `Remote` with the host key pinned at launch.

Never trust-on-first-use: without a pinned key there is no connection. The address is the instance's
public IP on port 22, or `EC2DBN_SSH_ENDPOINT` (a tunnel, a bastion's forwarded port, a test's sshd).
"""

from __future__ import annotations

import os

from ec2dbn import state
from ec2dbn.errors import RemoteError
from ec2dbn.remote import Remote

#: Seconds to wait for sshd on a fresh instance (boot plus cloud-init); EC2DBN_SSH_TIMEOUT overrides.
DEFAULT_SSH_TIMEOUT_S = 600.0


def ssh_timeout_s() -> float:
    return float(os.environ.get("EC2DBN_SSH_TIMEOUT", DEFAULT_SSH_TIMEOUT_S))


def remote_for(st: state.StackState) -> Remote:
    """The SSH target for a launched stack, with the host key pinned at launch."""
    if not st.host_public_key:
        raise RemoteError(
            f"no pinned host key for stack {st.name}: refusing to SSH; "
            f"`ec2dbn teardown {st.name}` and relaunch"
        )
    host, port = st.ssh_endpoint()
    key = st.key_path or str(state.key_path(st.name))
    return Remote(host, port, st.ssh_user, key, st.host_public_key)
