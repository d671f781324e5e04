"""The trainer's progress lines on the user's side (issue 27): a bar on a terminal, the plain lines in a
pipe or a log, and the epoch line where the bar was."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ec2dbn.cli import output
from ec2dbn.cli.epoch_bar import EpochBar
from trainer.batch_progress import progress_line

LINES = [
    progress_line("finetune epoch 3/10", 120, 468, 25.3),
    progress_line("finetune epoch 3/10", 250, 468, 25.0),
]
EPOCH = "Epoch 3:  loss 0.554249416375  err 0.139429644809  (0:00:25)"


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=100, color_system=None), buf


def test_on_a_terminal_progress_lines_become_a_bar_that_the_epoch_line_replaces() -> None:
    console, buf = _console(terminal=True)
    bar = EpochBar(console)
    assert all(bar.feed(line) for line in LINES)
    drawn = buf.getvalue()
    assert "finetune epoch 3/10" in drawn and "━" in drawn
    assert "120/468" in drawn and "250/468" in drawn and "25.0 batch/s" in drawn and "0:00:08 left" in drawn
    assert "Progress finetune" not in drawn  # drawn as a bar, not echoed as text
    assert bar.feed(EPOCH) is False  # printed by the caller, under no bar
    assert bar._progress is None


def test_in_a_pipe_progress_lines_pass_as_plain_lines() -> None:
    console, buf = _console(terminal=False)
    bar = EpochBar(console)
    assert not any(bar.feed(line) for line in LINES)
    assert buf.getvalue() == ""


@pytest.mark.parametrize("terminal", [True, False])
def test_the_reporter_streams_progress_as_a_bar_or_as_lines(
    terminal: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    console, buf = _console(terminal)
    monkeypatch.setattr(output, "stdout", console)
    reporter = output.ConsoleReporter()
    for line in [*LINES, EPOCH]:
        reporter.stream(line)
    plain = capsys.readouterr().out.splitlines()
    if terminal:
        assert plain == [EPOCH] and "120/468" in buf.getvalue()
    else:
        assert plain == [*LINES, EPOCH] and buf.getvalue() == ""
