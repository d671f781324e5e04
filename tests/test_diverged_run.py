"""ec2dbn's side of a diverged run (issue 20): `train --local` fails with the trainer's message first,
run.json and `report` say `diverged`, a bench goes on past diverged widths, bad hyperparameters never start,
and run.json is strict JSON."""

from __future__ import annotations

import math
import re
import shutil
from pathlib import Path

import pytest
import yaml

from ec2dbn.cli import main
from ec2dbn.insight.report import build_report
from ec2dbn.run.results import RunRecord
from tests.support.strict_json import check_folder, loads_strict

DIVERGING = {
    "data": {"name": "digits"},
    "model": {"layers": [64, 40, 10], "epochs": 3, "learn_rates": 1e30},
    "backend": "numpy",
}


def _job(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "diverging.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_train_local_reports_a_diverged_run_as_failed_with_the_trainers_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("sklearn")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # the trainer child: small GEMMs, shared CPUs
    results = tmp_path / "results"
    code = main(["train", "--local", str(_job(tmp_path, DIVERGING)), "--results", str(results)])
    out, err = capsys.readouterr()

    assert code == 1, err
    (error,) = _error_lines(err)
    assert error.startswith("error: Training diverged in fine-tuning epoch 1: the loss is nan; likely causes")
    assert "learn_rates too high (1e+30" in error
    assert not re.search(r"^Traceback", err, re.MULTILINE)
    assert "Training diverged in fine-tuning epoch 1" in out  # the trainer's own lines, streamed
    (run_dir,) = results.iterdir()
    assert f"results in {run_dir}" in error
    assert re.search(r"^diverged \(exit 1\) — results in ", err, re.MULTILINE)
    record = RunRecord.load(run_dir)
    assert (record.status, record.exit_code) == ("diverged", 1)
    assert set(check_folder(run_dir)) == {"metrics.json", "metrics.jsonl", "run.json"}

    # `ec2dbn report` shows it as diverged, from run.json, and from metrics.json alone (a trainer-only run).
    assert main(["report", str(results), "--json"]) == 0
    doc = loads_strict(capsys.readouterr().out)
    assert [r["status"] for r in doc["runs"]] == ["diverged"]
    trainer_only = shutil.copytree(run_dir, tmp_path / "trainer-only")
    (trainer_only / "run.json").unlink()
    assert [r.status for r in build_report([trainer_only]).rows] == ["diverged"]

    # A local run cannot be resumed by `train --resume` anyway; an EC2 one that diverged is refused
    # (tests/e2e/test_diverged.py): resuming from the last finite checkpoint would diverge again.


def test_values_float32_cannot_hold_are_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = {**DIVERGING, "model": {**DIVERGING["model"], "learn_rates": 0.1, "scales": 1e308}}
    results = tmp_path / "results"
    code = main(["train", "--local", str(_job(tmp_path, bad)), "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 2
    (error,) = _error_lines(err)
    assert "model.scales: 1e+308 cannot be represented in float32" in error
    assert not results.exists()  # validation comes first: no run folder, no trainer process


def test_run_json_is_strict_json(tmp_path: Path) -> None:
    record = RunRecord(run_id="r", job="j.yaml", mode="ec2", price_usd_per_hour=math.nan, cost_usd=math.inf)
    record.phases["train"] = math.nan
    record.save(tmp_path)
    data = loads_strict((tmp_path / "run.json").read_text())
    assert (data["price_usd_per_hour"], data["cost_usd"], data["phases"]) == (None, None, {"train": None})
    assert RunRecord.load(tmp_path).cost_usd is None


def test_a_bench_whose_widths_diverge_finishes_and_its_summary_says_diverged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep of widths goes on past a diverged point, and the summary names it as such."""
    pytest.importorskip("sklearn")
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    out = tmp_path / "bench"
    args = ["--local", "--widths", "8,16", "--epochs", "2", "--backends", "numpy", "--out", str(out)]
    code = main(["bench", str(_job(tmp_path, DIVERGING)), *args, "--no-plot"])
    err = capsys.readouterr().err
    assert code == 0, err
    summary = (out / "summary.md").read_text()
    row = "| {} | numpy | — | — | — | — | diverged: Training diverged in fine-tuning epoch 1"
    assert row.format(8) in summary and row.format(16) in summary
    assert set(check_folder(out)) == {"bench.json"}
