"""The stack's EC2 key pair: ed25519, created by EC2, private half stored 0600 in the state dir.

EC2 hands out the private key once, at creation. So a key pair is reused only while its private key is
still on this machine; a tagged key pair whose private key is gone is replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ec2dbn import state
from ec2dbn.aws.errors import aws_errors
from ec2dbn.aws.session import Aws
from ec2dbn.aws.tags import is_ours, tag_specs
from ec2dbn.errors import CloudError
from ec2dbn.events import NullReporter, Reporter


@dataclass(frozen=True)
class KeyPair:
    name: str
    key_id: str | None
    private_key_path: str
    created: bool


def find(aws: Aws, name: str) -> dict[str, Any] | None:
    """The key pair called `name`, or None."""
    with aws_errors(aws.region, f"looking up key pair {name}"):
        pairs = aws.ec2.describe_key_pairs(Filters=[{"Name": "key-name", "Values": [name]}])["KeyPairs"]
    return pairs[0] if pairs else None


def ensure(aws: Aws, stack: str, key_name: str, *, reporter: Reporter | None = None) -> KeyPair:
    """Reuse the stack's key pair when its private key is here, else create it (replacing a stale one)."""
    reporter = reporter or NullReporter()
    path = state.key_path(stack)
    existing = find(aws, key_name)
    if existing is not None:
        if not is_ours(existing.get("Tags"), stack):
            raise CloudError(
                f"a key pair named {key_name} exists in {aws.region} but was not created by ec2dbn for stack "
                f"{stack}; delete or rename it, or launch with another --name"
            )
        if path.is_file():
            return KeyPair(key_name, existing.get("KeyPairId"), str(path), created=False)
        reporter.warn(
            f"the private key of key pair {key_name} is gone from {path.parent}; replacing the key pair"
        )
        delete(aws, key_name)
    with aws_errors(aws.region, f"creating key pair {key_name}"):
        resp = aws.ec2.create_key_pair(
            KeyName=key_name, KeyType="ed25519", TagSpecifications=tag_specs(["key-pair"], stack)
        )
    try:
        state.write_private_key(stack, resp["KeyMaterial"])
    except BaseException:
        delete(aws, key_name)  # never leave a key pair whose private key we failed to keep
        raise
    reporter.step(f"created key pair {key_name} (ed25519, private key {path}, mode 0600)")
    return KeyPair(key_name, resp.get("KeyPairId"), str(path), created=True)


def delete(aws: Aws, key_name: str) -> None:
    """Delete the key pair (no error if it is already gone)."""
    with aws_errors(aws.region, f"deleting key pair {key_name}"):
        aws.ec2.delete_key_pair(KeyName=key_name)
