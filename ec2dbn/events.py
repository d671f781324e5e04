"""How long-running work reports progress without printing.

Only the CLI prints. Everything else takes a `Reporter` and tells it what is happening; the CLI passes
one that draws with rich, tests pass `RecordingReporter` and read back what was said.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol


class Reporter(Protocol):
    """What a phase of work may tell the user."""

    def step(self, message: str) -> None:
        """A one-line status update ("creating security group sg-123")."""

    def warn(self, message: str) -> None:
        """Something the user should know but that did not stop the work."""

    def stream(self, line: str) -> None:
        """A line of remote output (bootstrap, training log), shown verbatim."""

    def waiting(self, what: str) -> AbstractContextManager[None]:
        """Context manager around a long wait; the CLI shows `what` and the elapsed seconds."""


class NullReporter:
    """Says nothing: the default for library callers."""

    def step(self, message: str) -> None:
        pass

    def warn(self, message: str) -> None:
        pass

    def stream(self, line: str) -> None:
        pass

    @contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        yield


class RecordingReporter:
    """Keeps everything it is told, with a timestamp, so tests can assert on it."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str]] = []

    def step(self, message: str) -> None:
        self.events.append((time.monotonic(), "step", message))

    def warn(self, message: str) -> None:
        self.events.append((time.monotonic(), "warn", message))

    def stream(self, line: str) -> None:
        self.events.append((time.monotonic(), "stream", line))

    @contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        self.events.append((time.monotonic(), "wait", what))
        yield

    def lines(self, kind: str) -> list[str]:
        return [text for _, k, text in self.events if k == kind]


class QuietOnClosedTerminal:
    """Wraps a reporter so that it keeps working when the terminal is gone (SIGHUP): what it cannot
    print is dropped, the work goes on (run.json and the logs still get everything)."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner

    def step(self, message: str) -> None:
        with contextlib.suppress(OSError):
            self.inner.step(message)

    def warn(self, message: str) -> None:
        with contextlib.suppress(OSError):
            self.inner.warn(message)

    def stream(self, line: str) -> None:
        with contextlib.suppress(OSError):
            self.inner.stream(line)

    @contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        try:
            cm = self.inner.waiting(what)
            cm.__enter__()
        except OSError:
            yield
            return
        try:
            yield
        except BaseException as exc:
            with contextlib.suppress(OSError):
                cm.__exit__(type(exc), exc, exc.__traceback__)
            raise
        with contextlib.suppress(OSError):
            cm.__exit__(None, None, None)
