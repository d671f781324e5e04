"""What is shipped to the instance and read back from it, without AWS: the job file is written from the
validated job, local data ships under a real name, and files from the instance are untrusted input."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest
import yaml

from ec2dbn.insight.plots import plot_learning_curve
from ec2dbn.run.instance_files import shipped_files, spot_notice
from trainer.config import parse_job

FASHION = Path("/usr/share/datasets/fashion-mnist")


def test_an_idx_folder_named_through_dotdot_ships_under_its_own_name(tmp_path: Path) -> None:
    if not FASHION.is_dir():
        pytest.skip("dataset-fashion-mnist is not installed")
    (tmp_path / "fm").symlink_to(FASHION)
    (tmp_path / "fm-sub").mkdir()
    name = str(tmp_path / "fm-sub" / ".." / "fm")
    job = parse_job({"data": {"name": name, "limit": 100}, "model": {"layers": [784, 10]}})
    staging = tmp_path / "staging"
    staging.mkdir()
    files = shipped_files(job, staging)
    assert files["data/fm"] == tmp_path / "fm"
    shipped = yaml.safe_load((staging / "job.yaml").read_text())
    assert shipped["data"]["name"] == "data/fm"
    assert parse_job(shipped).model == job.model  # the job travels as validated, nothing re-read


def test_dotdot_alone_never_ships_as_data_dotdot(tmp_path: Path) -> None:
    (tmp_path / "sets" / "x").mkdir(parents=True)
    (tmp_path / "sets" / "d.npz").write_bytes(b"")
    job = parse_job({"data": {"name": str(tmp_path / "sets" / "x" / "..")}, "model": {"layers": [4, 2]}})
    files = shipped_files(job, tmp_path)
    assert "data/sets" in files and not any(k.endswith("..") for k in files)


@pytest.mark.parametrize("text", ["[]", '"spot"', "{}", '{"kind": "spot-interruption"', "null"])
def test_an_interruption_file_that_is_not_a_record_is_no_notice(text: str, tmp_path: Path) -> None:
    (tmp_path / "interruption.json").write_text(text)
    assert spot_notice(tmp_path) is None


def test_a_data_name_with_dollars_does_not_break_the_learning_curve(tmp_path: Path) -> None:
    matplotlib.use("Agg")
    metrics = {
        "config": {"data": {"name": "cost_$5_$10.npz"}, "model": {"layers": [4, 2]}},
        "backend": "numpy",
        "epochs": [{"phase": "finetune", "epoch": 1, "loss": 1.0, "err": 0.5}],
    }
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(metrics))
    png = plot_learning_curve(path, tmp_path / "curve.png")
    assert png.stat().st_size > 0
