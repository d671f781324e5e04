"""The terminal side of `Reporter`: status lines with elapsed time on stderr, streamed lines on stdout."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class ConsoleReporter:
    """Reports to the terminal. Streamed lines go to stdout unbuffered so a pipe sees them live.

    Messages are escaped: they quote remote output ("[check] ...") that rich would take for markup.
    """

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def step(self, message: str) -> None:
        if not self.quiet:
            stderr.print(f"[bold cyan]•[/] {escape(message)}")

    def warn(self, message: str) -> None:
        stderr.print(f"[bold yellow]warning:[/] {escape(message)}")

    def stream(self, line: str) -> None:
        sys.stdout.write(line if line.endswith("\n") else line + "\n")
        sys.stdout.flush()

    @contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        start = time.monotonic()
        text = escape(what)
        if self.quiet or not stderr.is_terminal:
            # Logs and pipes get one line before and one after, not a spinner.
            if not self.quiet:
                stderr.print(f"[bold cyan]…[/] {text}")
            yield
            if not self.quiet:
                stderr.print(f"[bold green]✓[/] {text} ({time.monotonic() - start:.1f}s)")
            return
        done = threading.Event()
        with stderr.status(text) as status:

            def tick() -> None:  # the elapsed time, updated every second while we wait
                while not done.wait(1.0):
                    status.update(f"{text} ({time.monotonic() - start:.0f}s)")

            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()
            try:
                yield
            finally:
                done.set()
                ticker.join()
        stderr.print(f"[bold green]✓[/] {text} ({time.monotonic() - start:.1f}s)")
