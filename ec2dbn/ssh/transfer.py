"""The file-shipping half of `Remote`: one tar.gz stream up, atomic single-file uploads and downloads.

Uploads land under a temporary name and are renamed, downloads likewise, so a file on either side is
complete or absent, never half-written. A pulled file is bounded by the pull limit (EC2DBN_MAX_PULL_MB):
what comes from the instance is untrusted. `Remote` mixes this in; it provides `_exec`, `_sftp_client`,
`_drop_sftp`, `run`, `close` and `address`.
"""

from __future__ import annotations

import gzip
import os
import tarfile
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import paramiko

from ec2dbn.errors import ConfigError, RemoteError
from ec2dbn.ssh.output import DEFAULT_PULL_LIMIT_MB, MIB, PULL_LIMIT_ENV, pull_limit_bytes
from ec2dbn.ssh.shell import quote_path

_READ_CHUNK = 64 * 1024
_PREFETCH_REQUESTS = 64  # SFTP reads in flight while pulling (32 KiB each): bounded memory, full speed


class FileTransfer:
    """put_tree / put_file / get_file over the connection of the `Remote` this is mixed into."""

    if TYPE_CHECKING:
        address: str

        def _exec(
            self,
            cmd: str,
            *,
            stdin: Callable[[paramiko.Channel], None] | None = ...,
            timeout: float | None = ...,
        ) -> Any: ...
        def _sftp_client(self) -> paramiko.SFTPClient: ...
        def _drop_sftp(self) -> None: ...
        def run(self, cmd: str, *args: Any, **kwargs: Any) -> Any: ...
        def close(self) -> None: ...

    def put_tree(self, files: Mapping[str, str | Path], remote_dir: str, timeout: float | None = None) -> int:
        """Ship files and folders as ONE tar.gz stream unpacked into `remote_dir` (created if needed).

        files: archive name ("trainer", "job.yaml", "data/x.gz") → local file or folder. __pycache__
        folders and *.pyc files are left out. Returns the compressed bytes sent.
        """
        for name, local in files.items():
            parts = PurePosixPath(name).parts
            if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
                raise ValueError(f"archive name {name!r} must be a relative path without '..'")
            if not Path(local).exists():
                raise ConfigError(f"cannot ship {local}: no such file or folder")
        sent = 0

        def feed(chan: paramiko.Channel) -> None:
            nonlocal sent
            sink = _ChannelWriter(chan)
            with (
                gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=6, mtime=0) as gz,  # type: ignore[arg-type]
                tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                for name, local in files.items():
                    try:
                        tar.add(str(local), arcname=name, filter=_tar_filter)
                    except OSError as exc:
                        raise ConfigError(f"cannot pack {local} for upload: {_describe(exc)}") from exc
            sent = sink.sent

        dst = quote_path(remote_dir)
        raw = self._exec(f"mkdir -p {dst} && tar xzf - -C {dst}", stdin=feed, timeout=timeout)
        if raw.exit_code != 0:
            stderr = raw.stderr.decode("utf-8", errors="replace")
            detail = stderr.strip().splitlines()[-1:] or [f"exit code {raw.exit_code}"]
            raise RemoteError(f"unpacking the upload into {remote_dir} on {self.address} failed: {detail[0]}")
        return sent

    def put_file(self, local_path: str | Path, remote_path: str) -> None:
        """Upload one file atomically (to a temporary name, then renamed); parent folders are created."""
        if not Path(local_path).is_file():
            raise ConfigError(f"cannot upload {local_path}: no such file")
        sftp = self._sftp_client()
        target = _sftp_path(remote_path)
        part = f"{target}.part"
        try:
            try:
                sftp.put(str(local_path), part)
            except FileNotFoundError:  # the remote folder does not exist yet
                self.run(f"mkdir -p {quote_path(str(PurePosixPath(remote_path).parent))}")
                sftp.put(str(local_path), part)
            sftp.posix_rename(part, target)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self.close()
            raise RemoteError(
                f"uploading {local_path} to {self.address}:{remote_path} failed: {_describe(exc)}"
            ) from exc

    def get_file(self, remote_path: str, local_path: str | Path) -> None:
        """Download one file; the local file appears complete or not at all (temporary name, renamed).

        Raises RemoteError when the file is larger than the pull limit (`pull_limit_bytes`), as its size
        says or as its bytes arrive (a file still growing, or a server that misreports sizes).
        """
        limit = pull_limit_bytes()
        local = Path(local_path)
        local.parent.mkdir(parents=True, exist_ok=True)
        part = local.with_name(f".{local.name}.part")
        sftp = self._sftp_client()
        try:
            with sftp.open(_sftp_path(remote_path), "rb") as src:
                size = src.stat().st_size or 0
                if size > limit:
                    raise _TooLarge(f"is {size / MIB:.1f} MiB")
                if size:
                    src.prefetch(size, max_concurrent_requests=_PREFETCH_REQUESTS)
                with part.open("wb") as dst:
                    got = 0
                    while data := src.read(_READ_CHUNK):
                        got += len(data)
                        if got > limit:
                            raise _TooLarge(f"sent more than {limit / MIB:.1f} MiB")
                        dst.write(data)
            os.replace(part, local)
        except _TooLarge as exc:
            part.unlink(missing_ok=True)
            self._drop_sftp()  # requests for the rest may still be in flight: a fresh session next time
            value = os.environ.get(PULL_LIMIT_ENV) or str(DEFAULT_PULL_LIMIT_MB)
            raise RemoteError(
                f"{remote_path} on {self.address} {exc}, over the pull limit of {limit // MIB:,} MiB "
                f"({PULL_LIMIT_ENV}={value}): not pulled; raise {PULL_LIMIT_ENV} to pull it"
            ) from None
        except FileNotFoundError as exc:
            part.unlink(missing_ok=True)
            raise RemoteError(f"{remote_path} does not exist on {self.address}") from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            part.unlink(missing_ok=True)
            self.close()
            raise RemoteError(f"downloading {self.address}:{remote_path} failed: {_describe(exc)}") from exc


class _TooLarge(Exception):
    """A pulled file is over the pull limit (the message says how it showed)."""


class _ChannelClosed(Exception):
    """The remote end stopped reading our stdin (told apart from local read errors)."""


class _ChannelWriter:
    """A write-only file object over a channel's stdin, counting bytes sent."""

    def __init__(self, chan: paramiko.Channel) -> None:
        self.chan = chan
        self.sent = 0

    def write(self, data: bytes) -> int:
        try:
            self.chan.sendall(data)
        except OSError as exc:  # paramiko: "Socket is closed" once the remote command has exited
            raise _ChannelClosed(str(exc)) from exc
        self.sent += len(data)
        return len(data)

    def flush(self) -> None:
        pass


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = PurePosixPath(info.name).parts
    if "__pycache__" in parts or info.name.endswith(".pyc"):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _sftp_path(path: str) -> str:
    # SFTP starts in the login's home, like commands do: "~/x" is "x" there.
    return path[2:] if path.startswith("~/") else path


def _describe(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return " ".join(text.split())[:300]
