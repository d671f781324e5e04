"""`ec2dbn train --local` stopped by `kill` (SIGTERM) or a closed terminal (SIGHUP): the signal reaches the
trainer, which checkpoints and exits 3 (no orphan dying later on a broken pipe), and
`ec2dbn train --local --resume RUN_ID` continues the run to the end, learning curve included."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.e2e.helpers import run_cli
from tests.support.hold import HELD, TrainerHold

JOB = {
    "data": {"name": "digits", "test_size": 0.25, "seed": 3},
    "model": {"layers": [64, 32, 10], "learn_rates": 0.1, "epochs": 3},
    "backend": "numpy",
}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=("TERM", "HUP"))
def test_a_stopped_local_run_checkpoints_and_resumes(signum: int, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(JOB))
    results = tmp_path / "results"
    sent: list[int] = []

    def stop(proc: subprocess.Popen[str], line: str) -> None:
        if line.startswith(HELD) and not sent:
            proc.send_signal(signum)  # ec2dbn only, as `kill PID` or the terminal's hangup would
            sent.append(proc.pid)

    with TrainerHold(tmp_path / "hold", epoch=2) as hold:
        env = {**os.environ, **hold.env, "OPENBLAS_NUM_THREADS": "1"}
        code, lines, err = run_cli(["train", "--local", str(job), "--results", str(results)], env, stop)
    assert sent and code == 3, err[-2000:]
    (run_dir,) = results.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert (run_dir / "checkpoint.npz").is_file()
    assert any("stopped by SIGTERM" in text for _, text in lines)  # the trainer itself was told
    # The interruption names the exact command that continues the run (issue 27): run as printed.
    (said,) = [line for line in err.splitlines() if line.startswith("continue it with ")]
    argv = shlex.split(said.removeprefix("continue it with "))
    assert argv == ["ec2dbn", "train", "--local", "--resume", run_dir.name, "--results", str(results)]

    code, lines, err = run_cli(argv[1:], env)
    assert code == 0, err[-2000:]
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["exit_code"] == 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2, 3]
    assert (run_dir / "learning_curve.png").is_file()
    assert "continue it with" not in err  # a finished run has nothing to continue
