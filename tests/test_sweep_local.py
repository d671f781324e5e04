"""`ec2dbn sweep --local --parallel K`: the same sweep on this machine, no AWS — and what it leaves:
results per point as `train --local` writes them, sweep.json, summary.md, the plot, `--resume` of the
unfinished points only, `ec2dbn logs SWEEP_ID/POINT` and `ec2dbn report` of a sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ec2dbn.cli import main

JOB = """\
data: {name: digits, test_size: 0.3, seed: 1}
model: {layers: [64, 20, 10], learn_rates: 0.3, epochs: 3}
backend: numpy
sweep:
  grid:
    model.learn_rates: [0.1, 1.0]
    model.layers: [[64, 20, 10], [64, 40, 10]]
"""


def test_a_local_sweep_writes_every_point_and_resumes_only_the_unfinished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(JOB)
    results = tmp_path / "results"
    assert main(["sweep", str(job), "--local", "--parallel", "2", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    (sweep_dir,) = results.iterdir()
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert record["mode"] == "local" and record["keys"] == ["model.learn_rates", "model.layers"]
    assert [p["status"] for p in record["points"]] == ["finished"] * 4
    assert {p["slot"] for p in record["points"]} == {"worker 1", "worker 2"}
    for p in record["points"]:
        folder = sweep_dir / p["point_id"]
        for name in (
            "metrics.json",
            "model.npz",
            "report.txt",
            "train.log",
            "run.json",
            "learning_curve.png",
        ):
            assert (folder / name).is_file(), (p["point_id"], name)
    assert "[p01] Epoch 1:" in out  # without a terminal, each point's lines, prefixed
    summary = (sweep_dir / "summary.md").read_text()
    accuracies = [
        float(line.split("|")[6].strip(" %")) for line in summary.splitlines() if line.startswith("| p0")
    ]
    assert len(accuracies) == 4 and accuracies == sorted(accuracies, reverse=True)
    assert (sweep_dir / "sweep.png").stat().st_size > 1000

    # Two points "did not finish": --resume runs those two, and only those.
    p01_before = (sweep_dir / "p01" / "run.json").stat().st_mtime_ns
    for p in record["points"][2:]:
        p["status"] = "interrupted"
        (sweep_dir / p["point_id"] / "metrics.json").unlink()
    (sweep_dir / "sweep.json").write_text(json.dumps(record))
    assert main(["sweep", "--resume", sweep_dir.name, "--results", str(results)]) == 0
    err = capsys.readouterr().err
    assert "2 unfinished point(s)" in err
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert [p["status"] for p in record["points"]] == ["finished"] * 4
    assert (sweep_dir / "p01" / "run.json").stat().st_mtime_ns == p01_before
    assert (sweep_dir / "p04" / "metrics.json").is_file()
    assert main(["sweep", "--resume", sweep_dir.name, "--results", str(results)]) == 2
    assert "no unfinished point" in capsys.readouterr().err

    assert main(["logs", f"{sweep_dir.name}/p02", "--results", str(results)]) == 0
    assert "Epoch 3:" in capsys.readouterr().out
    assert main(["logs", f"{sweep_dir.name}/p09", "--results", str(results)]) == 2
    assert "has no point p09" in capsys.readouterr().err
    assert main(["report", str(sweep_dir), "--markdown"]) == 0
    assert "| p01 |" in capsys.readouterr().out
    assert main(["report", str(results), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert sorted(r["run_id"] for r in runs) == [f"{sweep_dir.name}/p0{i}" for i in range(1, 5)]
