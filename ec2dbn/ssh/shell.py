"""Shell text for commands run on the instance: quoting paths, exporting variables, reading a file from a
byte offset. Pure string work, shared by everything that composes a remote command line.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from ec2dbn.errors import ConfigError

# A remote path quoted for the shell, `~/x` kept relative to the login's home (commands start there): the
# same quoting as the instance's own job line (trainer/sidecars.py), defined once there.
from trainer.sidecars import quote_path

__all__ = ["quote_path", "read_command", "shell_exports"]


def shell_exports(env: Mapping[str, str] | None) -> str:
    """`export NAME='value'; ...` to put before a remote command; ConfigError for an invalid name."""
    parts = []
    for name, value in (env or {}).items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ConfigError(f"{name!r} is not a valid environment variable name")
        parts.append(f"export {name}={shlex.quote(value)}; ")
    return "".join(parts)


def read_command(path: str, offset: int, limit: int | None = None) -> str:
    """Shell that prints the bytes of `path` from byte `offset` on (at most `limit`); nothing if absent."""
    cmd = f"tail -c +{int(offset) + 1} {quote_path(path)} 2>/dev/null"
    return f"{cmd} | head -c {int(limit)}" if limit else cmd
