"""The terminal side of `Reporter`: status lines with elapsed time on stderr, streamed lines on stdout."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

stdout = Console(highlight=False, soft_wrap=True)
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class ConsoleReporter:
    """Reports to the terminal. Streamed lines go to stdout unbuffered so a pipe sees them live."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def step(self, message: str) -> None:
        if not self.quiet:
            stderr.print(f"[bold cyan]•[/] {message}", markup=True, highlight=False)

    def warn(self, message: str) -> None:
        stderr.print(f"[bold yellow]warning:[/] {message}")

    def stream(self, line: str) -> None:
        sys.stdout.write(line if line.endswith("\n") else line + "\n")
        sys.stdout.flush()

    @contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        start = time.monotonic()
        if self.quiet or not stderr.is_terminal:
            # Logs and pipes get one line before and one after, not a spinner.
            if not self.quiet:
                stderr.print(f"[bold cyan]…[/] {what}")
            yield
            if not self.quiet:
                stderr.print(f"[bold green]✓[/] {what} ({time.monotonic() - start:.1f}s)")
            return
        with stderr.status(what) as status:

            def _tick() -> None:
                status.update(f"{what} ({time.monotonic() - start:.0f}s)")

            _tick()
            yield
        stderr.print(f"[bold green]✓[/] {what} ({time.monotonic() - start:.1f}s)")
