"""`report` and `catalog` stay readable at 80 columns: columns are left out by priority (and named), values
are shown whole, and what must never disappear stays — a retired type's flag, a run's status."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ec2dbn.cli import main
from ec2dbn.run.results import RunRecord
from ec2dbn.spec import catalog
from tests.support.trained_runs import digits_runs

__all__ = ["digits_runs"]


def _run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert main(list(argv)) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return out.splitlines()


def _rows_of(lines: list[str], name: str) -> list[str]:
    """The table line(s) of the row whose first cell is `name` (continuation lines included)."""
    for i, line in enumerate(lines):
        if line.startswith("│ ") and line.split("│")[1].strip() == name:
            rest = [line]
            for more in lines[i + 1 :]:
                if not more.startswith("│ ") or more.split("│")[1].strip():
                    break
                rest.append(more)
            return rest
    raise AssertionError(f"no row {name!r} in:\n" + "\n".join(lines))


@pytest.mark.parametrize("width", [80, 60])
def test_catalog_fits_and_keeps_every_retired_flag(
    width: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    lines = _run_cli(capsys, "catalog")
    assert max(len(line) for line in lines) <= width
    assert not any("…" in line for line in lines)  # nothing cut: a value is whole or its column is gone
    retired = [t for t in catalog.all_types() if t.retired]
    assert retired
    for t in catalog.all_types():
        row = " ".join(_rows_of(lines, t.name))
        assert ("retired" in row) == t.retired, row
        if t.retired:
            assert t.suggestion in row  # the type to use instead, whole
    assert any(line.startswith("(left out at ") for line in lines)
    assert "On-demand $/h" in lines[2]  # the price is among the last columns to go


def test_a_pipe_without_columns_gets_every_column(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    lines = _run_cli(capsys, "catalog", "--gpu")
    header = lines[2]
    for column in ("Type", "GPU", "GPU mem", "CC", "vCPUs", "Memory", "On-demand $/h", "Flags"):
        assert column in header
    assert not any(line.startswith("(left out") for line in lines)
    g2 = _rows_of(lines, "g2.2xlarge")
    assert len(g2) == 1 and "retired (refused): use g4dn.xlarge" in g2[0]


@pytest.fixture
def runs(digits_runs: tuple[Path, Path], tmp_path: Path) -> list[Path]:
    """Three runs: a local one, one on a g4dn spot instance, and one that diverged there."""
    out = []
    specs = [
        ("digits-20261126-100000-a1b2", "local", None, None, "finished"),
        ("digits-20261126-110000-c3d4", "ec2", "g4dn.xlarge", "spot", "finished"),
        ("digits-20261126-120000-e5f6", "ec2", "g4dn.xlarge", "on-demand", "diverged"),
    ]
    for run_id, mode, itype, market, status in specs:
        folder = shutil.copytree(digits_runs[len(out) % 2], tmp_path / "results" / run_id)
        record = RunRecord(
            run_id=run_id, job="j.yaml", mode=mode, instance_type=itype, market=market, cost_usd=0.0123
        )
        record.finish(0 if status == "finished" else 1, status)
        record.save(folder)
        out.append(folder)
    return out


@pytest.mark.parametrize("width", [80, 60])
def test_report_fits_and_keeps_every_run_and_status(
    width: int, runs: list[Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    lines = _run_cli(capsys, "report", str(runs[0].parent))
    assert max(len(line) for line in lines) <= width
    assert not any("…" in line for line in lines)
    text = "\n".join(lines)
    for run in runs:
        assert run.name in text
    assert text.count("finished") >= 2 and "diverged" in text
    assert "(left out at " in text and "s/epoch" in lines[2]


def test_report_in_a_pipe_has_every_column(runs: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    lines = _run_cli(capsys, "report", str(runs[0].parent))
    header = lines[2]
    for column in ("run", "data", "layers", "backend", "device", "instance", "market", "s/epoch", "status"):
        assert column in header
    assert not any("…" in line for line in lines)
