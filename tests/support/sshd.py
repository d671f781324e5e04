"""A real OpenSSH server on 127.0.0.1 for tests: the stand-in for an EC2 instance.

`start_sshd()` is the plain function (the e2e fake cloud-init starts one per "instance", with host keys
taken from user-data); the `sshd` fixture wraps it for tests that need one server with fresh keys.
The server runs as the current user (root in CI), with key-only auth and a generated host key, on a port
chosen by the OS. `stop()` also cuts the open connections, so a client sees a real drop; `restart()`
brings it back on the same port with the same keys (reconnection tests).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ec2dbn.ssh.remote import Remote

SSHD = "/usr/sbin/sshd"
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(
        [SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    path.chmod(0o600)


def default_env() -> dict[str, str]:
    """The session environment the "instance" gives its commands.

    `python3` over SSH has what this interpreter has (NumPy and PyYAML, like the Deep Learning AMI's python)
    less what a fresh instance never has: ec2dbn and the data sets' packages, which bootstrap must install
    (its pip gets them from a local wheel folder): see tests/support/instance_python.py.
    """
    from tests.support.instance_python import instance_env

    return instance_env()


def _descendants(pid: int) -> list[int]:
    """All live descendants of `pid`, parents before their children, read from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may contain spaces and parentheses: the fields after the last ')' are fixed.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class SshServer:
    """A running (or stopped) sshd; `host`/`port` are where to connect, as `user` with `client_key`."""

    workdir: Path
    host: str
    port: int
    user: str
    client_key: Path
    host_key: Path
    config: Path
    log: Path
    proc: subprocess.Popen | None = field(default=None, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def host_public_key(self) -> str:
        """The host key as an OpenSSH public key line ("ssh-ed25519 AAAA... comment")."""
        pub = self.host_key.with_suffix(".pub")
        if pub.exists():
            return pub.read_text().strip()
        derived = subprocess.run(
            [SSH_KEYGEN, "-y", "-f", str(self.host_key)], check=True, capture_output=True
        )
        return derived.stdout.decode().strip()

    @property
    def client_public_key(self) -> str:
        return self.client_key.with_suffix(".pub").read_text().strip()

    def start(self, timeout_s: float = 10.0) -> None:
        """Start sshd in the foreground (-D, so its PID is the daemon's) and wait until it accepts."""
        with self._lock:
            self._start(timeout_s)

    def _start(self, timeout_s: float) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-f", str(self.config), "-E", str(self.log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {self._log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        self._stop()
        raise RuntimeError(f"sshd did not accept on {self.host}:{self.port}: {self._log_tail()}")

    def stop(self) -> None:
        """Kill the daemon and every connection it serves: clients see their transport drop."""
        with self._lock:
            self._stop()

    def _stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            for pid in reversed(_descendants(self.proc.pid)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        """Stop, then start again on the same port with the same keys."""
        with self._lock:
            self._stop()
            self._start(10.0)

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text().splitlines()[-5:])
        except OSError:
            return "(no log)"


def start_sshd(
    tmpdir: Path | str,
    host_key_path: Path | str | None = None,
    authorized_keys: str | None = None,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    start: bool = True,
) -> SshServer:
    """Configure (and by default start) an sshd on 127.0.0.1 with its files under `tmpdir`.

    host_key_path: an existing private host key to serve (e.g. one cloud-init would install from
    user-data); default a new ed25519 key. authorized_keys: the public key line(s) allowed to log in;
    default a new client key (its path is `client_key`; it does not exist when authorized_keys is
    given). port: default one chosen by the OS. env: the session environment for commands (sshd
    `SetEnv`; values without double quotes); default PATH with this Python's folder first.
    start=False only writes the files (to start it later, e.g. after a delay in a thread).
    """
    if not os.path.exists(SSHD):
        pytest.skip(f"{SSHD} is not installed (apt-get install openssh-server)")
    workdir = Path(tmpdir)
    workdir.mkdir(parents=True, exist_ok=True)
    client_key = workdir / "client_ed25519"
    if authorized_keys is None:
        _keygen(client_key)
        authorized_keys = client_key.with_suffix(".pub").read_text()
    if host_key_path is None:
        host_key = workdir / "host_ed25519"
        _keygen(host_key)
    else:
        host_key = Path(host_key_path)
        host_key.chmod(0o600)  # sshd ignores a host key others can read
    (workdir / "authorized_keys").write_text(authorized_keys.rstrip("\n") + "\n")
    (workdir / "authorized_keys").chmod(0o600)
    port = port or _free_port()
    session_env = default_env() if env is None else dict(env)
    # The "instance" user's home is fresh, like a new instance's: the login shell then does not source
    # this machine's ~/.bashrc (here it runs `pyenv init`, whose rehash lock can stall every command).
    if "HOME" not in session_env:
        home = workdir / "home"
        home.mkdir(exist_ok=True)
        session_env["HOME"] = str(home)
    setenv = " ".join(f'{k}="{v}"' for k, v in session_env.items())
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"PidFile {workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",
                "MaxStartups 100",
                "MaxSessions 100",
                # SFTP starts where the session's HOME is, as on an instance (`~/x` means the same to both)
                f"Subsystem sftp internal-sftp -d {session_env['HOME']}",
                *([f"SetEnv {setenv}"] if setenv else []),
                "",
            ]
        )
    )
    server = SshServer(
        workdir=workdir,
        host="127.0.0.1",
        port=port,
        user=getpass.getuser(),
        client_key=client_key,
        host_key=host_key,
        config=config,
        log=workdir / "sshd.log",
    )
    if start:
        server.start()
    return server


def remote_for(server: SshServer, **kwargs: Any) -> Remote:
    """An ec2dbn `Remote` for `server`, pinned to its real host key."""
    from ec2dbn.ssh.remote import Remote

    return Remote(server.host, server.port, server.user, server.client_key, server.host_public_key, **kwargs)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    """A running loopback sshd with fresh host and client keys; stopped after the test."""
    server = start_sshd(tmp_path / "sshd")
    try:
        yield server
    finally:
        server.stop()
