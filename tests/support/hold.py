"""Holding a trainer at a known point, so a test acts while it runs however fast the CPU is.

`TrainerHold(folder, epoch, minibatch)` creates the hold file; a trainer started with `hold.env` in its
environment (a local process's env, or the fake instance's sshd `SetEnv`) logs a line starting with
`HELD` when it reaches fine-tuning epoch `epoch` with `minibatch` minibatches of it done (0: right after
epoch `epoch - 1`'s line) and waits there until `release()` or a stop signal (see trainer/hold.py).
"""

from __future__ import annotations

from pathlib import Path

from trainer.hold import HELD, HOLD_ENV

__all__ = ["HELD", "TrainerHold"]


class TrainerHold:
    """One hold point and its file; a context manager that releases on exit (a failed test never leaves a
    trainer waiting)."""

    def __init__(self, folder: Path, epoch: int, minibatch: int = 0) -> None:
        self.epoch, self.minibatch = epoch, minibatch
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"hold-epoch{epoch}-minibatch{minibatch}"
        self.path.touch()

    @property
    def env(self) -> dict[str, str]:
        """The variable to give the trainer's environment."""
        return {HOLD_ENV: f"{self.epoch}:{self.minibatch}:{self.path}"}

    @property
    def position(self) -> str:
        """Where a trainer stopped while held says it stopped (trainer.run's `stopped by ... at` text)."""
        if self.minibatch == 0:
            return f"fine-tuning, start of epoch {self.epoch}"
        return f"fine-tuning epoch {self.epoch}, minibatch {self.minibatch}"

    def release(self) -> None:
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> TrainerHold:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
