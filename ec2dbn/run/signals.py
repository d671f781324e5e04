"""Signals that end a run: Ctrl-C (SIGINT), `kill` (SIGTERM) and a closed terminal (SIGHUP).

A run must stop the same way whichever arrives: the trainer checkpoints, what exists is pulled, the stack
is torn down. SIGINT already raises KeyboardInterrupt; `on_signals` installs handlers for the other two
while a run is in progress (main thread only: Python delivers signals there) and restores the old ones.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

#: The signals besides SIGINT that end a run.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

#: Exit codes for a run ended by a signal: 128 + the signal number, as shells report them.
SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: stop as Ctrl-C does (checkpoint, pull, tear down)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def on_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """Call handler(signum) on SIGTERM and SIGHUP while the block runs (nothing off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, lambda signum, _frame: handler(signum)) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def raise_interrupted(signum: int) -> None:
    """The handler that makes SIGTERM / SIGHUP interrupt the main thread like Ctrl-C."""
    raise Interrupted(signum)


def exit_code(exc: KeyboardInterrupt) -> tuple[int, str]:
    """(exit code, what stopped it) for an interrupt: 130 and 'Ctrl-C', 143 and 'SIGTERM', ..."""
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    return SIGNAL_EXIT.get(signum, 130), "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
