"""Text from the instance or from files reaches the terminal as text: control characters escaped, rich
markup shown literally. A remote line could otherwise retitle the terminal (OSC), recolour or clear it
(CSI), overwrite what was printed (a carriage return) or crash the table that shows it (`[/]`)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ec2dbn.cli import main
from ec2dbn.cli.output import ConsoleReporter, printable

#: A hostile line: colour, an OSC title change, a cursor move, a carriage return over the start of the line,
#: a C1 CSI, a bell, a backspace, DEL, bidi override, rich markup and an emoji code — around a tab and
#: ordinary Unicode that must arrive unchanged.
HOSTILE = (
    "\x1b[31mred\x1b[0m \x1b]0;owned\x07 \x1b[2J\x1b[H over\rwrite \x9b1m c1 \x08\x7f \u202eevil "
    "[/] [bold]x[/bold] :warning: tab\there é 漢字 ✓"
)
KEPT = ("tab\there", "é 漢字 ✓", "[/] [bold]x[/bold]", ":warning:")


def _controls(text: str) -> list[str]:
    """Characters a terminal acts on, other than newline and tab."""
    return [c for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F or c == "\u202e"]


def test_printable_escapes_controls_and_keeps_tabs_and_unicode() -> None:
    shown = printable(HOSTILE)
    assert _controls(shown) == []
    for kept in KEPT:
        assert kept in shown
    assert "\\x1b[31mred" in shown and "over\\rwrite" in shown and "\\x9b1m" in shown
    assert "\\u202eevil" in shown and "\\x07" in shown and "\\x7f" in shown
    assert printable("a\nb") == "a\\nb" and printable("a\nb", newlines=True) == "a\nb"


@pytest.mark.parametrize("kind", ["stream", "step", "warn"])
def test_reporter_lines_show_remote_text_literally(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    getattr(ConsoleReporter(), kind)(HOSTILE)
    out, err = capsys.readouterr()
    shown = out if kind == "stream" else err
    assert _controls(shown) == [], repr(shown)
    for kept in KEPT[1:]:
        assert kept in shown
    # A tab stays a tab on the stream; rich expands it to spaces (never to an escape) in status lines.
    assert re.search(r"tab(\t| +)here", shown) and "\\x09" not in shown
    assert "\\x1b]0;owned\\x07" in shown


def test_error_lines_are_escaped_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "run\x1b]0;owned\x07[/]"
    assert main(["report", str(missing)]) == 2
    err = capsys.readouterr().err
    assert _controls(err) == [] and "\\x1b]0;owned\\x07[/]" in err and "not found" in err
    assert len(err.strip().splitlines()) == 1


def test_report_shows_a_device_name_with_markup_and_controls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The crash this reproduces: `ec2dbn report` died on a device name containing `[/]`.
    run = tmp_path / "r1"
    run.mkdir()
    metrics = {
        "status": "finished",
        "backend": "numpy",
        "device": "cpu: evil [/] [bold]x \x1b[2J",
        "data": {"name": "digits\rx"},
        "epochs": [{"epoch": 1, "loss": 1.0, "err": 0.5, "seconds": 1.0}],
        "test_accuracy": 0.5,
    }
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert main(["report", str(run)]) == 0
    out, err = capsys.readouterr()
    assert _controls(out) == [] and "Traceback" not in err and err == ""
    assert "[/]" in out and "[bold]x" in out and "\\x1b[2J" in out and "digits\\rx" in out
