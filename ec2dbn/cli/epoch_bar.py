"""The trainer's progress lines (trainer.contract.PROGRESS_PATTERN) drawn as one progress bar on a terminal.

The trainer writes plain lines at a bounded rate, so a log, a pipe or `ec2dbn logs` of a remote run stay
readable; on a terminal those lines become a bar with the minibatches done, their rate and the time left,
which any other line (the epoch line that ends it, a warning) replaces. Local and remote runs alike: both
reach the user through `ConsoleReporter.stream`.
"""

from __future__ import annotations

import re

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from trainer.contract import PROGRESS_PATTERN

_PROGRESS = re.compile(PROGRESS_PATTERN)


class EpochBar:
    """Draws progress lines on `console` when it is a terminal; `feed` says whether a line was drawn."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._label = ""

    def feed(self, line: str) -> bool:
        """True: `line` was a progress line and is now the bar. False: print it as usual (a bar being
        drawn is taken away first, so the line lands where the bar was)."""
        match = _PROGRESS.match(line) if self.console.is_terminal else None
        if match is None:
            self.close()
            return False
        label, batch, batches = match["label"], int(match["batch"]), int(match["batches"])
        fields = {"rate": match["rate"], "left": match["left"]}
        if self._progress is None or label != self._label:
            self.close()
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} batch/s  {task.fields[left]} left"),
                console=self.console,
                transient=True,
                auto_refresh=False,  # redrawn per line: the trainer already bounds how often they come
                redirect_stdout=False,  # every other line goes through the reporter, which closes the bar
                redirect_stderr=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(label, total=batches, completed=batch, **fields)
            self._label = label
        else:
            assert self._task is not None
            self._progress.update(self._task, completed=batch, **fields)
        self._progress.refresh()
        return True

    def close(self) -> None:
        """Take the bar away (it is transient: the epoch line that follows says how the epoch ended)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None
