"""The instance's first-boot configuration: standard cloud-config, nothing ec2dbn-specific to install.

Two jobs:

1. SSH host keys. ec2dbn generates the instance's ed25519 host key pair here and hands it to cloud-init
   (`ssh_keys: {ed25519_private, ed25519_public}`); the public half is pinned locally before the instance
   even exists, so the first SSH connection is already verified (no trust-on-first-use). cloud-init
   generates host keys only when `ssh_keys` is absent (`ssh_genkeytypes` is read in that case alone, and
   its schema refuses an empty list), and `ssh_deletekeys` removes the image's own keys first, so the
   pinned key is the instance's only host key. Trade-off: the private host key travels in user-data,
   which root on the instance and IAM principals allowed `ec2:DescribeInstanceAttribute` can read; it
   protects against network attackers, which is its job.
2. A deadline. The instance powers itself off at `deadline` and, because ec2dbn launches it with
   InstanceInitiatedShutdownBehavior=terminate, that terminates it: a forgotten instance stops billing even
   if the user's machine is gone. `bootcmd` runs early on every boot (before anything that could fail later
   in cloud-init) and arms a systemd timer for the time left; a boot after the deadline powers off at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

#: Where the deadline is written on the instance (ISO-8601 UTC), for people and for watchers.
DEADLINE_FILE = "/etc/ec2dbn/deadline"


@dataclass(frozen=True)
class HostKey:
    """An ed25519 SSH host key: `private_openssh` (OpenSSH PEM), `public` ('ssh-ed25519 AAAA... comment')."""

    private_openssh: str
    public: str


def generate_host_key(comment: str = "ec2dbn-host") -> HostKey:
    """A fresh ed25519 host key pair for one instance."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return HostKey(private_openssh=private, public=f"{public.decode()} {comment}")


def deadline_after(minutes: int, now: datetime | None = None) -> datetime:
    """The UTC moment `minutes` from `now`, in whole seconds."""
    start = now or datetime.now(timezone.utc)
    return (start + timedelta(minutes=minutes)).astimezone(timezone.utc).replace(microsecond=0)


def _deadline_command(deadline: datetime) -> str:
    """Shell run by bootcmd on every boot: arm a timer for the seconds left, or power off if none are."""
    epoch = int(deadline.timestamp())
    return (
        f"deadline={epoch}; now=$(date +%s); left=$((deadline - now)); "
        'if [ "$left" -le 0 ]; then shutdown -h now "ec2dbn: max_lifetime reached"; '
        "else systemd-run --unit=ec2dbn-deadline --description='ec2dbn max_lifetime' "
        '--on-active="${left}s" --timer-property=AccuracySec=1s /sbin/shutdown -h now '
        "|| shutdown -h +$(( (left + 59) / 60 )); fi"
    )


class _Dumper(yaml.SafeDumper):
    """Safe YAML with multi-line strings (the private key) as literal blocks, as people write cloud-config."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(host_key: HostKey, deadline: datetime, *, stack: str) -> str:
    """The cloud-config user-data (a '#cloud-config' YAML document, well under EC2's 16 KiB limit)."""
    config = {
        # Only our host key: the image's keys are deleted and, because ssh_keys is given, cloud-init
        # generates none of its own (no RSA/ECDSA keys that nobody pinned).
        "ssh_deletekeys": True,
        "ssh_keys": {"ed25519_private": host_key.private_openssh, "ed25519_public": host_key.public},
        "ssh_pwauth": False,
        "disable_root": True,
        "bootcmd": [["sh", "-c", _deadline_command(deadline)]],
        "write_files": [
            {
                "path": DEADLINE_FILE,
                "permissions": "0644",
                "content": deadline.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") + "\n",
            }
        ],
    }
    header = f"#cloud-config\n# ec2dbn stack {stack}: the instance terminates itself at its deadline\n"
    return header + yaml.dump(config, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
