"""`ec2dbn sweep` end to end: moto as EC2 (CreateFleet over a launch template), the fake cloud-init booting
one real sshd per instance on its own port (EC2DBN_SSH_ENDPOINTS), each instance its own disk.

The 6-point grid runs on 3 fake instances and every point's numbers must equal a `--local` run of that
point; the local reference runs with the instance's environment (same BLAS kernel and thread count), so
the comparison is bitwise.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.helpers import nothing_left, run_cli, write_stack
from tests.support.sshd import default_env

pytestmark = pytest.mark.slow

#: 784-50-10 on 600 real digits, 2 epochs: quick, and the learning rate and width change the numbers.
SWEEP_JOB = """\
data: {name: mnist-5k, test_size: 0.25, seed: 7, limit: 600}
model: {layers: [784, 50, 10], learn_rates: 0.3, learn_rate_decays: 0.9, epochs: 2}
backend: numpy
sweep:
  grid:
    model.learn_rates: [0.1, 0.3, 1.0]
    model.layers: [[784, 50, 10], [784, 80, 10]]
"""


def sweep_stack(tmp_path: Path, **overrides: object) -> Path:
    """The e2e stack with the instance's own home as remote_dir (each fake instance has its own disk)."""
    return write_stack(tmp_path, remote_dir="~/ec2dbn", **overrides)


def one_thread(fake_fleet) -> None:  # type: ignore[no-untyped-def]
    """Every fake instance's trainer uses one BLAS thread, as each local worker does with --parallel 2
    on 2 cores: the same GEMM kernel and thread count on both sides."""
    fake_fleet.env.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


def test_sweep_grid_on_three_instances_matches_local_runs(fake_fleet, aws, tmp_path: Path) -> None:
    one_thread(fake_fleet)
    job = tmp_path / "sweep.yaml"
    job.write_text(SWEEP_JOB)
    stack = sweep_stack(tmp_path)
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    code, _, err = run_cli(
        ["sweep", str(job), "--stack", str(stack), "--instances", "3", "--results", str(results)], env
    )
    assert code == 0, err[-4000:]
    nothing_left(aws)
    (sweep_dir,) = results.iterdir()
    record = json.loads((sweep_dir / "sweep.json").read_text())
    assert [p["status"] for p in record["points"]] == ["finished"] * 6
    (group,) = record["groups"]
    assert len(group["instances"]) == 3 and len(group["fleet_ids"]) == 1
    used = {p["instance_id"] for p in record["points"]}
    assert len(used) == 3, used  # every instance ran points
    assert (sweep_dir / "summary.md").is_file() and (sweep_dir / "sweep.png").is_file()

    local = tmp_path / "local"
    cmd = ["sweep", str(job), "--local", "--parallel", "2", "--results", str(local)]
    home = tmp_path / "local-home"
    home.mkdir()
    code, _, err = run_cli(cmd, {**default_env(), "HOME": str(home), "PYTHONFAULTHANDLER": "1"})
    assert code == 0, err[-4000:]
    (local_dir,) = local.iterdir()
    for p in record["points"]:
        remote_m = json.loads((sweep_dir / p["point_id"] / "metrics.json").read_text())
        local_m = json.loads((local_dir / p["point_id"] / "metrics.json").read_text())
        assert remote_m["test_accuracy"] == local_m["test_accuracy"], p
        assert [(e["loss"], e["err"]) for e in remote_m["epochs"]] == [
            (e["loss"], e["err"]) for e in local_m["epochs"]
        ]
        with (
            np.load(sweep_dir / p["point_id"] / "model.npz") as a,
            np.load(local_dir / p["point_id"] / "model.npz") as b,
        ):
            for key in (k for k in a.files if a[k].dtype.kind == "f"):
                np.testing.assert_array_equal(a[key], b[key])
