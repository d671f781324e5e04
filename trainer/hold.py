"""A test seam: hold the trainer at one chosen point of fine-tuning while a file exists.

Why: a test that must act while training runs (signal the trainer, announce a spot interruption, delete
the state dir, restart the instance's sshd) cannot rely on the job being slow; on a fast CPU the job ends
first. With `EC2DBN_TEST_HOLD="EPOCH:MINIBATCH:PATH"` in its environment, the trainer, on reaching
fine-tuning epoch EPOCH (1-based) with MINIBATCH of its minibatches done (0: the epoch's start, i.e. just
after epoch EPOCH-1's checkpoint and line), logs one line starting with `HELD` and waits while PATH exists.
The test acts once that line arrives, then deletes PATH (or signals the trainer: SIGTERM/SIGINT end the
wait like any stop request, so the trainer writes its checkpoint at that exact point and exits 3).

A run resumed at or past the point never holds there again (the point is passed, not reached); MINIBATCH 0
needs EPOCH >= 2 (there is no stop check before the first epoch). Time held mid-epoch counts in that epoch's
`seconds`. Without the variable (always, outside tests) nothing is read and nothing waits.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import JobError

HOLD_ENV = "EC2DBN_TEST_HOLD"
#: The start of the line logged when the trainer holds.
HELD = "test hold: "
POLL_S = 0.02


@dataclass(frozen=True)
class Hold:
    """The point (fine-tuning epoch, 1-based; minibatches of it done) and the file that holds it there."""

    epoch: int
    minibatch: int
    path: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Hold | None:
        """The hold $EC2DBN_TEST_HOLD asks for, None when unset; JobError when it is malformed."""
        value = environ.get(HOLD_ENV)
        if not value:
            return None
        try:
            epoch, minibatch, path = value.split(":", 2)
            return cls(int(epoch), int(minibatch), Path(path))
        except ValueError:
            raise JobError(
                f"{HOLD_ENV}={value!r}: expected EPOCH:MINIBATCH:PATH (e.g. 2:0:/tmp/hold)"
            ) from None

    def reached(self, phase: str, epoch: int, batch: int) -> bool:
        """Whether a TrainState at (phase, 0-based epoch in progress, minibatches done) is the point."""
        return phase == "finetune" and (epoch + 1, batch) == (self.epoch, self.minibatch)

    def wait(self, stop_requested: Callable[[], bool], log: Callable[[str], None]) -> None:
        """Log the HELD line and wait while the file exists and no stop was requested."""
        if not self.path.exists():
            return
        where = f"fine-tuning epoch {self.epoch}, minibatch {self.minibatch}"
        log(f"{HELD}{where}; waiting while {self.path} exists")
        while self.path.exists() and not stop_requested():
            time.sleep(POLL_S)
