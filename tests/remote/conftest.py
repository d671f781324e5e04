"""Fixtures for the SSH-layer tests: a `Remote` pinned to the loopback sshd's host key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ec2dbn.ssh.remote import Remote
from tests.support.sshd import SshServer, remote_for


@pytest.fixture
def remote(sshd: SshServer) -> Iterator[Remote]:
    r = remote_for(sshd)
    try:
        yield r
    finally:
        r.close()
