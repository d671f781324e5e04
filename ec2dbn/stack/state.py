"""The local state dir: `$EC2DBN_HOME` (default ~/.ec2dbn, mode 0700) / stacks/<name>/.

Each stack's folder (0700) holds `state.json` (what launch created, written atomically), the private key
of its EC2 key pair (`id_ed25519`, 0600) and `known_hosts` with the host key pinned at launch.

The state dir is a cache, not the source of truth: everything ec2dbn creates is tagged and found again by
tags, so losing this folder costs only the private key (an instance launched with it can no longer be
reached over SSH, but can still be torn down). The instance's host public key is also kept in an instance
tag, so it can be pinned again without this folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ec2dbn.errors import ConfigError, Ec2dbnError
from ec2dbn.spec.catalog import Price
from ec2dbn.spec.stack import STACK_NAME_RE
from trainer.strict_json import dumps

#: Overrides the address used for SSH (`host:port`): tunnels, bastions, and tests with a loopback sshd.
SSH_ENDPOINT_ENV = "EC2DBN_SSH_ENDPOINT"
#: A file mapping instance ids to SSH addresses, one `i-0123abcd host:port` a line (`#` comments): one
#: tunnel or bastion port per instance, e.g. for a sweep's fleet. Read at every connection, so a script may
#: add an instance's line once its tunnel is up; an instance not listed yet is not reachable yet.
SSH_ENDPOINTS_ENV = "EC2DBN_SSH_ENDPOINTS"

STATE_VERSION = 1
#: state.json is a few KiB; anything larger is not one ec2dbn wrote.
MAX_STATE_BYTES = 1024 * 1024
_DIR_MODE = 0o700
_FILE_MODE = 0o600


def home() -> Path:
    """`$EC2DBN_HOME` or ~/.ec2dbn, created 0700 (tightened to 0700 if it is looser)."""
    path = Path(os.environ.get("EC2DBN_HOME") or Path.home() / ".ec2dbn").expanduser()
    _private_dir(path)
    return path


def _private_dir(path: Path) -> None:
    path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != _DIR_MODE:
        os.chmod(path, _DIR_MODE)


def check_name(name: str) -> str:
    """`name` if it is a valid stack name (it becomes a folder name: no '/', no '..'), else ConfigError."""
    if not isinstance(name, str) or not STACK_NAME_RE.fullmatch(name):
        raise ConfigError(f"{name!r} is not a stack name (1-40 lowercase letters, digits or '-')")
    return name


def _folder(name: str) -> Path:
    return home() / "stacks" / check_name(name)


def stack_dir(name: str) -> Path:
    """The stack's private folder, created 0700."""
    path = _folder(name)
    _private_dir(path.parent)
    _private_dir(path)
    return path


def key_path(name: str) -> Path:
    """Where the stack's EC2 key pair private key lives (OpenSSH format, 0600)."""
    return stack_dir(name) / "id_ed25519"


def known_hosts_path(name: str) -> Path:
    """The stack's known_hosts file: only the host key ec2dbn generated for its instance."""
    return stack_dir(name) / "known_hosts"


class StackState(BaseModel):
    """What `launch` created for one stack. Unknown fields are kept, so later versions can add some.

    Times are ISO-8601 UTC strings ('2025-01-01T12:00:00Z'); price is the one Price (ec2dbn.spec.catalog),
    USD/hour.
    """

    model_config = ConfigDict(extra="allow")

    version: int = STATE_VERSION
    name: str
    region: str
    stack_source: str = ""
    instance_id: str | None = None
    instance_type: str | None = None
    market: str | None = None
    availability_zone: str | None = None
    public_ip: str | None = None
    public_dns: str | None = None
    image_id: str | None = None
    key_name: str | None = None
    key_path: str | None = None
    security_group_id: str | None = None
    ssh_user: str = "ubuntu"
    ssh_cidr: str | None = None
    remote_dir: str = "~/ec2dbn"
    host_public_key: str | None = None
    launched_at: str | None = None
    deadline: str | None = None
    price: Price | None = None
    on_demand_price: Price | None = None
    instance_state: str | None = None
    #: The instance profile the instance was launched with (a run store's role), None: none.
    instance_profile: str | None = None

    def private_key(self) -> Path:
        """The private key SSH uses: the one recorded at launch, else the stack's usual place."""
        return Path(self.key_path) if self.key_path else key_path(self.name)

    def ssh_endpoint(self) -> tuple[str, int]:
        """(host, port) for SSH: the instance's line in $EC2DBN_SSH_ENDPOINTS when that is set, else
        $EC2DBN_SSH_ENDPOINT when set, else the public IP (or DNS) on port 22.

        Raises EndpointPending when $EC2DBN_SSH_ENDPOINTS is set but does not list the instance (yet).
        """
        table = os.environ.get(SSH_ENDPOINTS_ENV)
        if table:
            return instance_endpoint(Path(table), self.instance_id or "")
        override = os.environ.get(SSH_ENDPOINT_ENV)
        if override:
            return parse_endpoint(override)
        host = self.public_ip or self.public_dns
        if not host:
            raise Ec2dbnError(f"stack {self.name} has no public address yet; run `ec2dbn status {self.name}`")
        return host, 22


class EndpointPending(Ec2dbnError):
    """$EC2DBN_SSH_ENDPOINTS does not list the instance yet: it has no SSH address (yet)."""


def parse_endpoint(text: str, where: str = SSH_ENDPOINT_ENV) -> tuple[str, int]:
    """'host:port' (or '[v6]:port', or 'host' for port 22) -> (host, port); ConfigError when malformed."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        host, port = text.strip(), "22"
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}={text!r} is not host:port")
    return host, int(port)


def instance_endpoint(table: Path, instance_id: str) -> tuple[str, int]:
    """The (host, port) listed for `instance_id` in an $EC2DBN_SSH_ENDPOINTS file.

    Raises EndpointPending when the file (or the instance's line) is not there yet, ConfigError for a
    malformed line.
    """
    try:
        text = table.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{SSH_ENDPOINTS_ENV}: cannot read {table} ({exc})") from None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise ConfigError(f"{table}:{number}: expected `INSTANCE_ID HOST:PORT`, got {raw.strip()!r}")
        if fields[0] == instance_id:
            return parse_endpoint(fields[1], f"{table}:{number}")
    raise EndpointPending(f"{instance_id or 'the instance'} has no line in {table} ({SSH_ENDPOINTS_ENV}) yet")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(dt: datetime) -> str:
    """ISO-8601 UTC with a Z and whole seconds, the form used in state and tags."""
    return dt.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _state_file(name: str) -> Path:
    return stack_dir(name) / "state.json"


def _atomic_write(path: Path, text: str, mode: int = _FILE_MODE) -> None:
    """Write via a temp file in the same folder + fsync + rename, so a crash never leaves half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save(state: StackState) -> Path:
    """Write the stack's state.json atomically (0600)."""
    path = _state_file(state.name)
    _atomic_write(path, dumps(state.model_dump(mode="json"), indent=2, sort_keys=True) + "\n")
    return path


def load(name: str) -> StackState | None:
    """The stack's recorded state, or None when there is none.

    A corrupt file (not JSON, not an object, nested past Python's recursion limit, larger than any state
    ec2dbn writes) is a one-line Ec2dbnError; `teardown` then works from tags alone.
    """
    path = _folder(name) / "state.json"
    if not path.is_file():
        return None
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_STATE_BYTES + 1)
        if len(raw) > MAX_STATE_BYTES:
            raise ValueError(f"larger than {MAX_STATE_BYTES // 1024} KiB")
        data: Any = json.loads(raw.decode("utf-8"))
        return StackState.model_validate(data)
    except (OSError, ValueError, ValidationError, RecursionError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise Ec2dbnError(
            f"{path} is unreadable ({first}); `ec2dbn teardown {name}` works from tags"
        ) from None


def names() -> list[str]:
    """Stacks with a state folder, sorted."""
    root = home() / "stacks"
    if not root.is_dir():
        return []
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and STACK_NAME_RE.fullmatch(p.name) and (p / "state.json").is_file()
    )


def write_private_key(name: str, material: str) -> Path:
    """Store the key pair's private key 0600 (never logged, never world-readable, even for an instant)."""
    path = key_path(name)
    _atomic_write(path, material if material.endswith("\n") else material + "\n")
    return path


def known_hosts_line(hosts: list[str], public_key: str) -> str:
    """One OpenSSH known_hosts line: 'host1,[host2]:2222 ssh-ed25519 AAAA...'."""
    key_type, key_b64 = public_key.split()[:2]
    return f"{','.join(hosts)} {key_type} {key_b64}"


def endpoint_host_pattern(host: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: 'host' on port 22, '[host]:port' otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


def write_known_hosts(name: str, hosts: list[str], public_key: str) -> Path:
    """Pin the instance's host key for every name it is reached by (public IP, DNS, SSH endpoint)."""
    unique = list(dict.fromkeys(h for h in hosts if h))
    path = known_hosts_path(name)
    _atomic_write(path, known_hosts_line(unique, public_key) + "\n")
    return path


def remove(name: str) -> bool:
    """Delete the stack's state folder (state.json, private key, known_hosts). True if there was one."""
    path = _folder(name)
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True
