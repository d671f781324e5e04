"""`ec2dbn report` over result folders the real trainer wrote, with run.json records beside them."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest

from ec2dbn.cli import main
from ec2dbn.errors import ConfigError
from ec2dbn.insight.report import build_report, load_row, seconds_per_epoch, to_markdown
from ec2dbn.run.results import RunRecord
from tests.support.trained_runs import digits_runs

__all__ = ["digits_runs"]  # the fixture, imported so pytest finds it here


@pytest.fixture
def results(digits_runs: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path]:
    """Copies of the two runs under tmp/results/: one local, one as if trained on a g4dn spot instance."""
    a = shutil.copytree(digits_runs[0], tmp_path / "results" / "digits-local")
    b = shutil.copytree(digits_runs[1], tmp_path / "results" / "digits-ec2")
    local = RunRecord(run_id="digits-20261126-100000", job="a.yaml", mode="local")
    local.finish(0, "finished")
    local.save(a)
    ec2 = RunRecord(
        run_id="digits-20261126-110000",
        job="b.yaml",
        mode="ec2",
        stack="g4dn-spot",
        instance_type="g4dn.xlarge",
        market="spot",
        price_usd_per_hour=0.2104,
        cost_usd=0.0123,
    )
    ec2.finish(0, "finished")
    ec2.save(b)
    return a, b


def _metrics(path: Path) -> dict:
    return json.loads((path / "metrics.json").read_text())


def test_report_rows_come_from_metrics_and_run_json(results: tuple[Path, Path]) -> None:
    a, b = results
    report = build_report([a, b])
    ra, rb = report.rows
    ma, mb = _metrics(a), _metrics(b)

    assert (ra.run_id, rb.run_id) == ("digits-20261126-100000", "digits-20261126-110000")
    assert (ra.backend, rb.backend) == ("numpy", "numpy")
    assert ra.device == ma["device"] and ra.device.startswith("cpu: ")
    assert (ra.layers, rb.layers) == ("64-32-10", "64-48-10")
    assert (ra.data, ra.epochs, rb.epochs) == ("digits", 4, 3)
    assert (ra.instance_type, ra.market, ra.cost_usd, ra.usd_per_epoch) == ("local", None, 0.0, 0.0)
    assert (rb.instance_type, rb.market, rb.cost_usd) == ("g4dn.xlarge", "spot", 0.0123)
    spe_a = statistics.median(e["seconds"] for e in ma["epochs"])
    spe_b = statistics.median(e["seconds"] for e in mb["epochs"])
    assert ra.seconds_per_epoch == pytest.approx(spe_a) and rb.seconds_per_epoch == pytest.approx(spe_b)
    assert rb.usd_per_epoch == pytest.approx(spe_b * 0.2104 / 3600)
    assert ra.test_accuracy == ma["test_accuracy"] > 0.8 and rb.test_accuracy == mb["test_accuracy"] > 0.8
    assert ra.speedup == pytest.approx(1.0) and rb.speedup == pytest.approx(spe_a / spe_b)
    assert not report.comparable  # different layers: the speedup is flagged as not like for like


def test_report_cli_table_json_and_markdown(
    results: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = results
    assert main(["report", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    for text in ("digits-20261126-100000", "digits-20261126-110000", "g4dn.xlarge", "spot", "$0.0123"):
        assert text in out
    assert "differ in data set or layers" in out

    assert main(["report", str(a), str(b), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in doc["runs"]] == ["digits-20261126-100000", "digits-20261126-110000"]
    assert doc["runs"][1]["cost_usd"] == 0.0123 and doc["comparable"] is False

    assert main(["report", str(a), "--markdown"]) == 0
    md = capsys.readouterr().out
    lines = md.splitlines()
    assert lines[0].startswith("| run | data | layers | backend |")
    acc = 100 * _metrics(a)["test_accuracy"]
    assert lines[2].startswith("| digits-20261126-100000 | digits | 64-32-10 | numpy |")
    assert f"{acc:.2f} %" in lines[2]


def test_report_on_a_parent_folder_lists_its_runs(results: tuple[Path, Path]) -> None:
    report = build_report([results[0].parent])
    assert sorted(r.run_id for r in report.rows) == ["digits-20261126-100000", "digits-20261126-110000"]


def test_report_of_an_interrupted_run_without_metrics(results: tuple[Path, Path], tmp_path: Path) -> None:
    run = tmp_path / "stopped"
    rec = RunRecord(run_id="stopped-1", job="a.yaml", mode="ec2", instance_type="g5.xlarge", cost_usd=0.05)
    rec.finish(3, "interrupted")
    rec.save(run)
    row = load_row(run)
    assert (row.status, row.seconds_per_epoch, row.test_accuracy, row.cost_usd) == (
        "interrupted",
        None,
        None,
        0.05,
    )
    md = to_markdown(build_report([results[0], run]))
    assert "| stopped-1 |" in md and "interrupted" in md


def test_seconds_per_epoch_is_the_median_of_fine_tuning_epochs() -> None:
    metrics = {
        "epochs": [
            {"epoch": 1, "seconds": 9.0},
            {"epoch": 2, "seconds": 2.0},
            {"epoch": 3, "seconds": 3.0},
            {"phase": "pretrain", "epoch": 1, "seconds": 50.0},
        ]
    }
    assert seconds_per_epoch(metrics) == 3.0
    assert seconds_per_epoch({"epochs": []}) is None


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p / "nope", "not found"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "holds no run"),
        (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "is not a folder"),
    ],
)
def test_report_bad_folders_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make, expected: str
) -> None:
    path = make(tmp_path)
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err
    assert expected in err and err.strip().count("\n") == 0, err


def test_report_malformed_metrics_is_a_config_error(tmp_path: Path) -> None:
    run = tmp_path / "broken"
    run.mkdir()
    (run / "metrics.json").write_text('{"test_accuracy": 0.9, ')
    with pytest.raises(ConfigError, match="not valid JSON"):
        build_report([run])
