"""What this machine keeps of what an instance sends back: bounded, because the instance is untrusted.

A command's output is handed on as it arrives (line by line to a stream callback) and only a bounded part
is kept for its result; a line that never ends is handed on in pieces; a pulled file has a size limit.
Without these bounds a command printing 300 MB grew the local process by 570 MB, and a runaway log or a
hostile instance could fill the local disk through a pull.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Callable

from ec2dbn.errors import ConfigError

PULL_LIMIT_ENV = "EC2DBN_MAX_PULL_MB"

#: Bytes of a command's stdout, and of its stderr, kept for its result: the last ones (a pid, a size, a
#: status line, the line an error quotes); streamed lines are handed on, not kept.
CAPTURE_BYTES = 1024 * 1024
#: Characters of one streamed line; a longer line is handed on in pieces of this length.
MAX_LINE_CHARS = 64 * 1024
#: MiB one pulled file may have unless EC2DBN_MAX_PULL_MB says otherwise: room for the checkpoint of a
#: network that fills a 24 GiB GPU's memory with weights and velocities, not for a runaway log.
DEFAULT_PULL_LIMIT_MB = 8192
MIB = 1024 * 1024


def pull_limit_bytes() -> int:
    """The most bytes one pulled file may have: EC2DBN_MAX_PULL_MB (whole MiB) or the default.

    Raises ConfigError for a value that is not a positive whole number of MiB.
    """
    raw = os.environ.get(PULL_LIMIT_ENV, "").strip()
    if not raw:
        return DEFAULT_PULL_LIMIT_MB * MIB
    if not raw.isdigit() or not 0 < int(raw) <= 2**40:
        raise ConfigError(
            f"{PULL_LIMIT_ENV}={raw[:40]!r} is not a size in MiB: give a whole number from 1 to 2**40 "
            f"(default {DEFAULT_PULL_LIMIT_MB})"
        )
    return int(raw) * MIB


class Kept:
    """What is kept of one output stream: its last `limit` bytes, or with `head` its first `limit`."""

    def __init__(self, limit: int, head: bool = False) -> None:
        self.limit = limit
        self.head = head
        self.buf = bytearray()

    def add(self, data: bytes) -> None:
        if self.head:
            self.buf += data[: max(0, self.limit - len(self.buf))]
            return
        self.buf += data
        if len(self.buf) > 2 * self.limit:  # trimmed now and then, not on every chunk
            del self.buf[: len(self.buf) - self.limit]

    def value(self) -> bytes:
        return bytes(self.buf if self.head else self.buf[-self.limit :])


class LineSplitter:
    """Turns a byte stream into decoded lines for `emit` (no newline; a line longer than MAX_LINE_CHARS in
    pieces, so that one endless line is not held whole); `flush` emits a final partial line."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        self.emit = emit
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""

    def feed(self, data: bytes) -> None:
        text = self.pending + self.decoder.decode(data)
        *lines, self.pending = text.split("\n")
        for line in lines:
            self._emit(line)
        while len(self.pending) > MAX_LINE_CHARS:
            self.emit(self.pending[:MAX_LINE_CHARS])
            self.pending = self.pending[MAX_LINE_CHARS:]

    def flush(self) -> None:
        text = self.pending + self.decoder.decode(b"", final=True)
        self.pending = ""
        if text:
            self._emit(text)

    def _emit(self, line: str) -> None:
        for piece in split_long(line.rstrip("\r")):
            self.emit(piece)


def split_long(line: str) -> list[str]:
    """`line` in pieces of at most MAX_LINE_CHARS characters (one piece when it is that short)."""
    if len(line) <= MAX_LINE_CHARS:
        return [line]
    return [line[i : i + MAX_LINE_CHARS] for i in range(0, len(line), MAX_LINE_CHARS)]
