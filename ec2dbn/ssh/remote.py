"""The one SSH connection to an instance: run commands (streaming), ship a tree, fetch files.

Everything remote goes through `Remote`, so the security rules live in one place: the host key is pinned
(paramiko's RejectPolicy plus the key recorded at launch, checked for whichever address is used) and a
key that does not match stops the connection before authentication, so nothing runs on an impostor.
The connection is opened lazily and re-opened transparently by the next call after a drop; a command
that was running when the connection dropped is reported as failed, never silently re-run.

With ec2dbn/ssh/transfer.py (its file-shipping half), this is the only module that imports paramiko.
"""

from __future__ import annotations

import base64
import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import paramiko

from ec2dbn.errors import ConfigError, HostKeyMismatchError, RemoteError
from ec2dbn.events import NullReporter, Reporter
from ec2dbn.ssh.output import CAPTURE_BYTES, Kept, LineSplitter
from ec2dbn.ssh.shell import quote_path, read_command
from ec2dbn.ssh.transfer import FileTransfer, _ChannelClosed

# Seconds. A silent network (instance gone without a TCP reset) is noticed within about this long.
_CONNECT_TIMEOUT_S = 15.0
_DEAD_PEER_S = 30
_KEEPALIVE_S = 10
_READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class RunResult:
    """What a remote command did. stdout/stderr are UTF-8 decoded (undecodable bytes replaced)."""

    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class RawResult:
    """A remote command's exit code and undecoded output (for byte-offset log reading)."""

    exit_code: int
    stdout: bytes
    stderr: bytes


def load_pinned_keys(pinned: str | Path) -> list[paramiko.PKey]:
    """Host public keys from OpenSSH key lines ("ssh-ed25519 AAAA... [comment]", one a line) or from
    a known_hosts file. Every key found is accepted for the address connected to: the file belongs to
    one stack, and the address may be an override (`EC2DBN_SSH_ENDPOINT`).
    """
    text = str(pinned).strip()
    first = text.split(maxsplit=2)[:2]
    is_text = bool(first) and (
        _is_key_type(first[0]) or "\n" in text or (len(first) == 2 and _is_key_type(first[1]))
    )
    if isinstance(pinned, Path) or not is_text:
        try:
            text = Path(pinned).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the pinned host keys {pinned}: {exc.strerror}") from exc
    keys: list[paramiko.PKey] = []
    for raw in text.splitlines():
        fields = raw.split()
        if not fields or fields[0].startswith(("#", "@")):
            continue  # comments; @cert-authority / @revoked lines are not pins
        start = 0 if _is_key_type(fields[0]) else 1  # "type b64 [comment]" or known_hosts' "hosts type b64"
        if len(fields) < start + 2:
            raise ConfigError(f"the pinned host key line {raw[:40]!r} is not an OpenSSH public key")
        try:
            blob = base64.b64decode(fields[start + 1], validate=True)
            keys.append(paramiko.PKey.from_type_string(fields[start], blob))
        except (ValueError, paramiko.SSHException, paramiko.UnknownKeyType) as exc:
            raise ConfigError(
                f"the pinned host key {raw[:40]!r}... is not an OpenSSH public key: {_describe(exc)}"
            ) from exc
    if not keys:
        raise ConfigError(f"no host key found in {str(pinned)[:60]!r}: pin the instance's key at launch")
    # paramiko offers the first pinned type first in negotiation: ed25519 when there is one.
    keys.sort(key=lambda k: k.get_name() != "ssh-ed25519")
    return keys


def _is_key_type(word: str) -> bool:
    return word.startswith(("ssh-", "ecdsa-", "sk-"))


class Remote(FileTransfer):
    """One SSH target (host, port, user, private key, pinned host key); connects on first use.

    Not thread-safe for concurrent calls; one `Remote` per thread of work.
    """

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        key_path: str | Path,
        host_key: str | Path,
        connect_timeout_s: float = _CONNECT_TIMEOUT_S,
    ) -> None:
        self.host = host
        self.port = int(port)
        self.user = user
        self.key_path = Path(key_path)
        self.connect_timeout_s = connect_timeout_s
        self._pinned = load_pinned_keys(host_key)
        self._pkey: paramiko.PKey | None = None
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._lock = threading.Lock()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"Remote({self.user}@{self.address})"

    def __enter__(self) -> Remote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection ---------------------------------------------------------------------------------

    def wait_until_reachable(
        self,
        timeout_s: float,
        reporter: Reporter | None = None,
        still_there: Callable[[], bool] | None = None,
    ) -> float:
        """Retry (with backoff) until sshd answers and our key is accepted; return the seconds waited.

        A booting instance refuses connections, then may accept before cloud-init installed the keys:
        both are retried. A host key mismatch is not (it will not fix itself), nor is an instance that
        `still_there()` says is gone (asked between retries). Raises RemoteError with the last error
        after `timeout_s`.
        """
        say: Reporter = reporter or NullReporter()
        start = time.monotonic()
        deadline = start + timeout_s
        delay = 0.25
        with say.waiting(f"waiting for SSH on {self.address}"):
            while True:
                remaining = deadline - time.monotonic()
                try:
                    self._connected(timeout_s=max(1.0, min(self.connect_timeout_s, remaining)))
                    return time.monotonic() - start
                except HostKeyMismatchError:
                    raise
                except RemoteError as exc:
                    last = exc
                remaining = deadline - time.monotonic()
                if still_there is not None and not still_there():
                    raise RemoteError(f"the instance behind {self.address} is gone (last error: {last})")
                if remaining <= 0:
                    raise RemoteError(
                        f"SSH on {self.address} did not become reachable within {timeout_s:.0f}s "
                        f"(last error: {last}); check the instance's console output and security group"
                    )
                time.sleep(min(delay, remaining))
                delay = min(delay * 2, 5.0)

    def close(self) -> None:
        """Close the connection; the next call opens a new one."""
        with self._lock:
            self._drop()

    def abandon(self) -> None:
        """Forget the connection WITHOUT closing it; the next call opens a new one.

        For after a KeyboardInterrupt: it may have struck inside paramiko between a lock's acquire and
        its release, and then closing or using that connection blocks forever. The old transport is a
        daemon thread; its socket goes when the process ends.
        """
        self._sftp = None
        self._client = None

    def _drop_sftp(self) -> None:
        if self._sftp is not None:
            with contextlib.suppress(Exception):
                self._sftp.close()
        self._sftp = None

    def _drop(self) -> None:
        self._drop_sftp()
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        self._sftp = None
        self._client = None

    def _connected(self, timeout_s: float | None = None) -> paramiko.SSHClient:
        """The live client, (re)connecting when there is none or its transport died."""
        with self._lock:
            client = self._client
            transport = client.get_transport() if client is not None else None
            if client is not None and transport is not None and transport.is_active():
                return client
            self._drop()
            self._client = self._open(timeout_s or self.connect_timeout_s)
            return self._client

    def _open(self, timeout_s: float) -> paramiko.SSHClient:
        pkey = self._load_key()
        client = paramiko.SSHClient()
        # Pinned keys only, for exactly the address used; anything else is refused (never auto-added).
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
        for key in self._pinned:
            client.get_host_keys().add(name, key.get_name(), key)
        try:
            client.connect(
                self.host,
                port=self.port,
                username=self.user,
                pkey=pkey,
                timeout=timeout_s,
                banner_timeout=timeout_s,
                auth_timeout=timeout_s,
                channel_timeout=timeout_s,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyMismatchError(
                f"{self.address} presented host key {exc.key.get_name()} {exc.key.fingerprint}, not the one "
                "pinned at launch: the instance may have been replaced; nothing was run on it. "
                "Run `ec2dbn teardown` and launch again"
            ) from exc
        except paramiko.AuthenticationException as exc:
            client.close()
            raise RemoteError(
                f"{self.address} refused SSH login as {self.user} with key {self.key_path}: {exc}"
            ) from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            client.close()
            raise RemoteError(f"cannot connect to SSH on {self.address}: {_describe(exc)}") from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(_KEEPALIVE_S)
            _tune_socket(transport.sock)
        return client

    def _load_key(self) -> paramiko.PKey:
        if self._pkey is None:
            try:
                self._pkey = paramiko.PKey.from_path(self.key_path)
            except (OSError, paramiko.SSHException, paramiko.UnknownKeyType, ValueError) as exc:
                # Not a RemoteError: waiting will not fix it, so wait_until_reachable must not retry it.
                raise ConfigError(
                    f"cannot read the SSH private key {self.key_path}: {_describe(exc)}"
                ) from exc
        return self._pkey

    def _sftp_client(self) -> paramiko.SFTPClient:
        client = self._connected()
        if self._sftp is None:
            try:
                self._sftp = client.open_sftp()
            except (OSError, EOFError, paramiko.SSHException) as exc:
                raise RemoteError(f"cannot open SFTP on {self.address}: {_describe(exc)}") from exc
        return self._sftp

    # -- commands -----------------------------------------------------------------------------------

    def run(
        self,
        cmd: str,
        stream: Callable[[str], None] | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> RunResult:
        """Run `cmd` with the login shell; `stream` gets each stdout/stderr line (no newline) as it comes.

        Raises RemoteError when `check` and the exit code is not 0, when `timeout` (seconds) passes
        (the remote process is left running: there is no terminal to hang up), or when the connection
        drops mid-command (the command is not re-run: it may have had effects).
        """
        out_lines = LineSplitter(stream) if stream else None
        err_lines = LineSplitter(stream) if stream else None
        raw = self._exec(
            cmd,
            on_stdout=out_lines.feed if out_lines else None,
            on_stderr=err_lines.feed if err_lines else None,
            timeout=timeout,
        )
        for splitter in (out_lines, err_lines):
            if splitter:
                splitter.flush()
        result = RunResult(raw.exit_code, _decode(raw.stdout), _decode(raw.stderr))
        if check and result.exit_code != 0:
            last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or ["no output"]
            raise RemoteError(
                f"`{_short(cmd)}` failed on {self.address} with exit code {result.exit_code}: {last[0][:300]}"
            )
        return result

    def run_bytes(self, cmd: str, timeout: float | None = None, limit: int = CAPTURE_BYTES) -> RawResult:
        """Run `cmd` and return its undecoded output (never raises for a non-zero exit code).

        stdout: its first `limit` bytes (for reads by byte offset: what is cut off is read by the next
        call at the offset reached); stderr: its last CAPTURE_BYTES.
        """
        return self._exec(cmd, timeout=timeout, stdout_limit=limit)

    def _exec(
        self,
        cmd: str,
        *,
        stdin: Callable[[paramiko.Channel], None] | None = None,
        on_stdout: Callable[[bytes], None] | None = None,
        on_stderr: Callable[[bytes], None] | None = None,
        timeout: float | None = None,
        stdout_limit: int | None = None,
    ) -> RawResult:
        """Run `cmd`, handing its output to the callbacks as it comes. The result keeps stdout's last
        CAPTURE_BYTES (its first `stdout_limit` bytes when given) and stderr's last CAPTURE_BYTES."""
        client = self._connected()
        try:
            chan = client.get_transport().open_session(timeout=self.connect_timeout_s)  # type: ignore[union-attr]
            chan.exec_command(cmd)
        except (OSError, EOFError, paramiko.SSHException, AttributeError) as exc:
            self.close()
            raise RemoteError(f"lost the SSH connection to {self.address}: {_describe(exc)}") from exc
        out = Kept(stdout_limit, head=True) if stdout_limit is not None else Kept(CAPTURE_BYTES)
        err = Kept(CAPTURE_BYTES)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            if stdin is not None:
                with contextlib.suppress(_ChannelClosed):  # the command exited early: its output says why
                    stdin(chan)
                    chan.shutdown_write()

            def drain() -> bool:
                got = False
                while chan.recv_ready():
                    data = chan.recv(_READ_CHUNK)
                    out.add(data)
                    got = True
                    if on_stdout:
                        on_stdout(data)
                while chan.recv_stderr_ready():
                    data = chan.recv_stderr(_READ_CHUNK)
                    err.add(data)
                    got = True
                    if on_stderr:
                        on_stderr(data)
                return got

            def check_deadline() -> None:
                if deadline is not None and time.monotonic() > deadline:
                    raise RemoteError(
                        f"`{_short(cmd)}` on {self.address} did not finish within {timeout:.0f}s"
                    )

            # Output until EOF (or the channel closing: the connection died), then the exit status,
            # which the server sends after EOF.
            while True:
                got = drain()
                if chan.eof_received or chan.closed:
                    if not (chan.recv_ready() or chan.recv_stderr_ready()):
                        break
                    continue
                check_deadline()
                if not got:
                    select.select([chan], [], [], 0.2)
            while not chan.exit_status_ready():  # also true once the channel closed
                check_deadline()
                chan.status_event.wait(0.2)
            exit_code = chan.recv_exit_status()
            if exit_code == -1 and not self._transport_survives(client):
                self.close()
                raise RemoteError(
                    f"lost the SSH connection to {self.address} while running `{_short(cmd)}`; "
                    "it may still be running there"
                )
            return RawResult(exit_code, out.value(), err.value())
        finally:
            chan.close()

    @staticmethod
    def _transport_survives(client: paramiko.SSHClient, grace_s: float = 1.0) -> bool:
        """After a channel closed without an exit status: is the connection still up?

        A command killed by a signal also has no exit status (sshd sends exit-signal), so a -1 alone does
        not mean the connection died; a dying one is noticed by paramiko within moments.
        """
        deadline = time.monotonic() + grace_s
        while True:
            transport = client.get_transport()
            if transport is None or not transport.is_active():
                return False
            if time.monotonic() >= deadline:
                return True
            time.sleep(0.05)

    def read_from(self, remote_path: str, offset: int, limit: int | None = None) -> bytes:
        """The bytes of `remote_path` from byte `offset` (at most `limit`); b"" when it does not exist."""
        return self._exec(read_command(remote_path, offset, limit)).stdout

    def exists(self, path: str) -> bool:
        """Whether `path` exists on the remote (file or folder)."""
        return self._exec(f"test -e {quote_path(path)}").exit_code == 0


def _tune_socket(sock: object) -> None:
    """Make a silently dead peer (an instance gone without a TCP reset) an error within ~_DEAD_PEER_S."""
    if not isinstance(sock, socket.socket):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, _KEEPALIVE_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, _DEAD_PEER_S * 1000)


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _short(cmd: str, width: int = 80) -> str:
    flat = " ".join(cmd.split())
    return flat if len(flat) <= width else flat[: width - 3] + "..."


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:300]
