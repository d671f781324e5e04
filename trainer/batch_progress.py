"""Where an epoch stands, between its epoch lines: minibatches done, their rate, and the time left.

A line every `every` seconds at most (trainer.contract.PROGRESS_MARKER), so a log or a pipe gets a bounded
number of lines whatever the speed, and a terminal on the orchestrator's side can draw a bar from them.
The count is the host's: on CuPy the minibatches queued so far, measured without waiting for the device
(a synchronisation per minibatch would cost more than the line is worth); the epoch line stays exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from trainer.contract import PROGRESS_MARKER


def progress_line(label: str, batch: int, batches: int, rate: float) -> str:
    """`Progress finetune epoch 3/10: batch 120/468  25.3 batch/s  0:00:14 left` (rate in minibatches/s)."""
    left = int((batches - batch) / rate) if rate > 0 else 0
    hours, rest = divmod(left, 3600)  # h:mm:ss also past a day (timedelta would say "1 day, ...")
    return (
        f"{PROGRESS_MARKER}{label}: batch {batch}/{batches}  {rate:.1f} batch/s  "
        f"{hours}:{rest // 60:02d}:{rest % 60:02d} left"
    )


def epoch_label(phase: str, layer: int, epoch: int, epochs: int) -> str:
    """'pretrain layer 1 epoch 2/10' or 'finetune epoch 3/10' (layer and epoch 0-based, shown 1-based)."""
    where = f"pretrain layer {layer + 1}" if phase == "pretrain" else "finetune"
    return f"{where} epoch {epoch + 1}/{epochs}"


class BatchProgress:
    """Told the position after each minibatch (`update`); writes a progress line through `emit` when
    `every` seconds have passed since the epoch (or this process) began or since the last line.

    batches: minibatches per epoch. epochs_of(phase, layer): that phase's epoch count. every <= 0: silent.
    The rate is that of the minibatches this process ran in this epoch after its first (a resumed epoch's
    earlier ones are not timed here).
    """

    def __init__(
        self,
        emit: Callable[[str], None],
        batches: int,
        epochs_of: Callable[[str, int], int],
        every: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.emit, self.batches, self.epochs_of = emit, batches, epochs_of
        self.every, self.clock = every, clock
        self._key: tuple[str, int, int] | None = None
        self._start = self._last = 0.0
        self._first_batch = 0

    def update(self, phase: str, layer: int, epoch: int, batch: int) -> None:
        if self.every <= 0 or phase not in ("pretrain", "finetune"):
            return
        now = self.clock()
        key = (phase, layer, epoch)
        if key != self._key:  # a new epoch (or this process's first): time it from its first minibatch
            self._key, self._start, self._last, self._first_batch = key, now, now, batch
            return
        if now - self._last < self.every or batch >= self.batches:
            return
        self._last = now
        rate = (batch - self._first_batch) / max(now - self._start, 1e-9)
        label = epoch_label(phase, layer, epoch, self.epochs_of(phase, layer))
        self.emit(progress_line(label, batch, self.batches, rate))
