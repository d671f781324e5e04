"""The terminal side of `Reporter`: status lines with elapsed time on stderr, streamed lines on stdout.

Much of what is printed comes from outside: the instance's output, names and numbers from results files,
AWS's answers. So the consoles never interpret what they print: no rich markup and no emoji codes are
parsed (styling is given as `styled(...)` parts, never as markup inside a string), and text from outside
goes through `printable`, which shows control characters as escapes instead of letting the terminal act on
them (a remote line could otherwise recolour or clear the screen, retitle the window, or overwrite what
was printed with a carriage return).
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.text import Text

stdout = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)
stderr = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)

# C0 controls but tab and newline, DEL and the C1 controls (0x9b is a CSI on its own), and the bidi
# embeddings, overrides and isolates, which reorder what a terminal shows.
_CONTROL_CHARS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_CONTROLS = re.compile(f"[{_CONTROL_CHARS}]")
_CONTROLS_AND_NEWLINE = re.compile(f"[{_CONTROL_CHARS}\n]")
_NAMED = {"\r": "\\r", "\n": "\\n"}


def _escape(match: re.Match[str]) -> str:
    c = match.group()
    return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def printable(text: str, *, newlines: bool = False) -> str:
    """`text` with every control character a terminal would act on written as an escape (`\\x1b`, `\\r`,
    `\\x9b`, `\\u202e`); tabs and ordinary Unicode stay. Newlines are escaped too unless `newlines`."""
    pattern = _CONTROLS if newlines else _CONTROLS_AND_NEWLINE
    return pattern.sub(_escape, text)


def styled(*parts: str | tuple[str, str]) -> Text:
    """A line from plain strings and (text, style) pairs, e.g. styled(("✓", "bold green"), " done"):
    nothing in it is parsed as markup, and every part is `printable`."""
    return Text.assemble(
        *(
            (printable(p[0], newlines=True), p[1]) if isinstance(p, tuple) else printable(p, newlines=True)
            for p in parts
        )
    )


def cell(value: object) -> Text:
    """A table cell showing `value` as text (no markup, controls escaped, kept on one line)."""
    return Text(printable(str(value)))


class ConsoleReporter:
    """Reports to the terminal. Streamed lines go to stdout unbuffered so a pipe sees them live, or to
    stderr with `streams_to_stderr` (when stdout carries JSON for a script)."""

    def __init__(self, quiet: bool = False, streams_to_stderr: bool = False) -> None:
        from ec2dbn.cli.epoch_bar import EpochBar

        self.quiet = quiet
        self.streams_to_stderr = streams_to_stderr
        self.as_json = False  # the verb prints a JSON document on stdout at its end (`train --json`)
        # The trainer's progress lines, as a bar on a terminal (plain lines in a pipe or a log).
        self.bar = EpochBar(stderr if streams_to_stderr else stdout)

    def step(self, message: str) -> None:
        self.bar.close()
        if not self.quiet:
            stderr.print(styled(("•", "bold cyan"), " ", message))

    def warn(self, message: str) -> None:
        self.bar.close()
        stderr.print(styled(("warning:", "bold yellow"), " ", message))

    def stream(self, line: str) -> None:
        text = printable(line.removesuffix("\n"))
        if self.bar.feed(text):
            return
        out = sys.stderr if self.streams_to_stderr else sys.stdout
        out.write(text + "\n")
        out.flush()

    @contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        self.bar.close()
        start = time.monotonic()
        text = printable(what, newlines=True)
        if self.quiet or not stderr.is_terminal:
            # Logs and pipes get one line before and one after, not a spinner.
            if not self.quiet:
                stderr.print(styled(("…", "bold cyan"), " ", text))
            yield
            if not self.quiet:
                stderr.print(styled(("✓", "bold green"), f" {text} ({time.monotonic() - start:.1f}s)"))
            return
        done = threading.Event()
        with stderr.status(Text(text)) as status:

            def tick() -> None:  # the elapsed time, updated every second while we wait
                while not done.wait(1.0):
                    status.update(Text(f"{text} ({time.monotonic() - start:.0f}s)"))

            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()
            try:
                yield
            finally:
                done.set()
                ticker.join()
        stderr.print(styled(("✓", "bold green"), f" {text} ({time.monotonic() - start:.1f}s)"))
