"""Issue 5's "done when": a spot interruption mid-epoch is survived, and the run ends on a second instance
with exactly the weights of an uninterrupted run (NumPy, same seed).

Each fake instance has its own fake metadata service; after the first epoch line the test announces the
two-minute notice on the first instance's. The watcher beside the trainer sees it (IMDSv2), the trainer
checkpoints and exits 3, ec2dbn pulls the checkpoint, tears the instance down, launches another one
(avoiding the zone), uploads the checkpoint and resumes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from ec2dbn.cli import main
from tests.e2e.helpers import nothing_left, write_job, write_stack

pytestmark = pytest.mark.slow


def test_spot_interruption_mid_epoch_resumes_on_a_new_instance_with_identical_weights(
    fake_cloud, aws, tmp_path: Path
) -> None:
    fake_cloud.with_imds = True
    stack = write_stack(tmp_path)
    # Long enough that the notice (polled every 2 s on the instance) lands while training runs.
    job = write_job(tmp_path, layers=[784, 400, 10], epochs=14)
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ec2dbn", "train", str(job), "--stack", str(stack), "--results", str(results)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    err: list[str] = []
    threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    lines: list[str] = []
    announced = None
    for line in proc.stdout:  # type: ignore[union-attr]
        lines.append(line.rstrip("\n"))
        if announced is None and line.startswith("Epoch 1:"):
            announced = fake_cloud.booted[0]
            fake_cloud.imds[announced].announce_spot_interruption(action="terminate", in_seconds=120)
    code = proc.wait(timeout=600)
    assert code == 0, "".join(err)[-4000:]
    assert announced is not None

    # Two instances: the interrupted one and the one that finished the job.
    assert len(fake_cloud.booted) == 2 and fake_cloud.booted[0] == announced
    assert any(s.startswith("Spot interruption notice") for s in lines)
    (run_dir,) = results.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished"
    (recovery,) = record["recoveries"]
    assert recovery["instance_id"] == announced and "spot interruption" in recovery["reason"]
    assert recovery["checkpoint"] is True
    assert record["instance_id"] == fake_cloud.booted[1]
    assert len(record["segments"]) == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, 15))
    nothing_left(aws)

    # The same job, uninterrupted, here: bitwise the same weights.
    local = tmp_path / "local"
    assert main(["train", "--local", str(job), "--results", str(local)]) == 0
    (local_dir,) = local.iterdir()
    with np.load(run_dir / "model.npz") as a, np.load(local_dir / "model.npz") as b:
        weights = [k for k in a.files if a[k].dtype.kind == "f"]
        assert weights
        for key in weights:
            np.testing.assert_array_equal(a[key], b[key])
