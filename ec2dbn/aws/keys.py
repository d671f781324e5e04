"""The stack's EC2 key pair: ed25519, created by EC2, its private half handed to a `KeyStore`.

EC2 hands out the private key once, at creation. So a key pair is reused only while its private key is
still kept (the store says so); a tagged key pair whose private key is gone is replaced. Where the key
is kept (0600 in the state dir) is the caller's business: this module only talks to EC2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ec2dbn.aws.errors import aws_errors
from ec2dbn.aws.session import Aws
from ec2dbn.aws.tags import is_ours, tag_specs
from ec2dbn.errors import CloudError
from ec2dbn.events import NullReporter, Reporter


class KeyStore(Protocol):
    """Where a key pair's private key is kept on this machine."""

    def present(self) -> bool:
        """Whether the private key is here (so the key pair can be reused)."""

    def keep(self, material: str) -> str:
        """Store the private key (OpenSSH text) safely; return where it is."""

    def forget(self) -> None:
        """Remove the stored private key (its key pair is gone)."""


@dataclass(frozen=True)
class KeyPair:
    name: str
    key_id: str | None
    created: bool


def find(aws: Aws, name: str) -> dict[str, Any] | None:
    """The key pair called `name`, or None."""
    with aws_errors(aws.region, f"looking up key pair {name}"):
        pairs = aws.ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}])["KeyPairs"]
    return pairs[0] if pairs else None


def ensure(
    aws: Aws, stack: str, key_name: str, store: KeyStore, *, reporter: Reporter | None = None
) -> KeyPair:
    """Reuse the stack's key pair when `store` has its private key, else create it (replacing a stale
    one) and hand the new private key to `store`."""
    reporter = reporter or NullReporter()
    existing = find(aws, key_name)
    if existing is not None:
        if not is_ours(existing.get("Tags"), stack):
            raise CloudError(
                f"a key pair named {key_name} exists in {aws.region} but was not created by ec2dbn for stack "
                f"{stack}; delete or rename it, or launch with another --name"
            )
        if store.present():
            return KeyPair(key_name, existing.get("KeyPairId"), created=False)
        reporter.warn(f"the private key of key pair {key_name} is gone from this machine; replacing it")
        delete(aws, key_name)
    with aws_errors(aws.region, f"creating key pair {key_name}"):
        resp = aws.ec2.create_key_pair(
            KeyName=key_name, KeyType="ed25519", TagSpecifications=tag_specs(["key-pair"], stack)
        )
    try:
        path = store.keep(resp["KeyMaterial"])
    except BaseException:
        delete(aws, key_name)  # never leave a key pair whose private key we failed to keep
        raise
    reporter.step(f"created key pair {key_name} (ed25519, private key {path}, mode 0600)")
    return KeyPair(key_name, resp.get("KeyPairId"), created=True)


def delete(aws: Aws, key_name: str) -> None:
    """Delete the key pair (no error if it is already gone)."""
    with aws_errors(aws.region, f"deleting key pair {key_name}"):
        aws.ec2.delete_key_pair(KeyName=key_name)
