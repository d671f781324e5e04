"""What each point of a sweep is doing — slot, epoch, loss, accuracy, state — for the live table.

The points' pipelines (or local trainers) run in threads and report through a `PointReporter`: every line
the trainer prints is parsed here (its epoch lines, trainer.contract's markers) into the point's row of
the `Board`, and everything the pipeline says goes to the point's own log, results/<sweep-id>/<point>/
pipeline.log. The CLI draws `Board.table()` (rich) while the sweep runs; without a terminal it prints
each point's lines prefixed with its id instead.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from ec2dbn.events import Reporter
from ec2dbn.spec.cost import format_usd

_EPOCH = re.compile(r"^Epoch (\d+):\s+loss (\S+)\s+err (\S+)")
_TEST = re.compile(r"^\s+test loss (\S+)\s+err (\S+)")
_FINAL = re.compile(r"^Test accuracy: (\S+)")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


@dataclass
class PointRow:
    """One point as the table shows it. accuracy: the last test accuracy seen (else 1 − train error)."""

    point_id: str
    label: str
    epochs: int
    state: str = "pending"
    slot: str = "-"
    epoch: int = 0
    loss: float | None = None
    accuracy: float | None = None
    cost_usd: float | None = None


class Board:
    """Every point's row, updated from any thread; `cost_usd` is the sweep's spend so far."""

    def __init__(self, rows: list[PointRow], title: str = "") -> None:
        self.rows = {r.point_id: r for r in rows}
        self.title = title
        self.started = time.monotonic()
        self.cost_usd = 0.0
        self._lock = threading.Lock()

    def update(self, point_id: str, **fields: object) -> None:
        with self._lock:
            row = self.rows[point_id]
            for name, value in fields.items():
                setattr(row, name, value)

    def line(self, point_id: str, text: str) -> None:
        """Read one line of the point's trainer output into its row."""
        with self._lock:
            row = self.rows[point_id]
            if m := _EPOCH.match(text):
                row.epoch, row.loss = int(m.group(1)), _number(m.group(2))
                err = _number(m.group(3))
                row.accuracy = None if err is None else 1.0 - err
            elif m := _TEST.match(text):
                err = _number(m.group(2))
                row.accuracy = None if err is None else 1.0 - err
            elif m := _FINAL.match(text):
                row.accuracy = _number(m.group(1))

    def table(self) -> Table:
        """The live table: one row per point, the sweep's elapsed time and cost so far in the title."""
        with self._lock:
            rows = list(self.rows.values())
            elapsed = time.monotonic() - self.started
            spent = self.cost_usd
        done = sum(r.state in ("finished", "diverged", "failed") for r in rows)
        caption = f"{done}/{len(rows)} done · {elapsed:.0f}s elapsed · {format_usd(spent)} so far"
        table = Table(title=f"{self.title} — {caption}" if self.title else caption, box=None, pad_edge=False)
        for col in ("point", "values", "slot", "epoch", "loss", "accuracy", "state"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r.point_id,
                r.label,
                r.slot,
                f"{r.epoch}/{r.epochs}" if r.epoch else f"-/{r.epochs}",
                "-" if r.loss is None else f"{r.loss:.4f}",
                "-" if r.accuracy is None else f"{100 * r.accuracy:.2f} %",
                r.state,
            )
        return table


class PointReporter:
    """A point's pipeline reporter: its lines feed the board, everything goes to its pipeline.log, and
    warnings (and, without a live table, the trainer's lines) go on to the sweep's reporter prefixed."""

    def __init__(
        self,
        board: Board,
        point_id: str,
        log_path: Path,
        sweep: Reporter,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.board = board
        self.point_id = point_id
        self.sweep = sweep
        self.echo = echo
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = log_path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        with self._lock, contextlib.suppress(ValueError):  # closed: the point has ended
            self._log.write(text + "\n")
            self._log.flush()

    def step(self, message: str) -> None:
        self._write(f"• {message}")

    def warn(self, message: str) -> None:
        self._write(f"warning: {message}")
        self.sweep.warn(f"[{self.point_id}] {message}")

    def stream(self, line: str) -> None:
        self._write(line)
        self.board.line(self.point_id, line)
        if self.echo is not None:
            self.echo(f"[{self.point_id}] {line}")

    @contextlib.contextmanager
    def waiting(self, what: str) -> Iterator[None]:
        self._write(f"… {what}")
        yield

    def close(self) -> None:
        with self._lock:
            self._log.close()
