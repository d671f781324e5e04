"""The trainer's test seam ($EC2DBN_TEST_HOLD, trainer/hold.py): a real trainer process waits at exactly the
point asked for, while the hold file exists, and then finishes with the weights of a run never held.
(Signals while held: test_cli.py and test_spot_watch.py; the e2e tests hold the trainer on the fake instance.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from tests.support.hold import HELD, TrainerHold
from tests.trainer.trainer_fixtures import model_arrays, run_trainer, start_trainer, write_job
from trainer.hold import HOLD_ENV

MODEL = {"layers": [64, 100, 10], "learn_rates": 0.3, "epochs": 5}


def epoch_numbers(output: str) -> list[int]:
    """The numbers of the `Epoch N: ...` lines in a trainer's output."""
    return [int(x.split(":")[0][6:]) for x in output.splitlines() if x.startswith("Epoch ")]


def losses(out: Path) -> list[float]:
    return [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]


def test_a_held_run_waits_at_its_point_then_finishes_like_one_never_held(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.yaml", {"name": "digits"}, MODEL)
    reference = run_trainer("run", str(job), "--out", str(tmp_path / "ref"), "--backend", "numpy")
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "out"
    with TrainerHold(tmp_path, epoch=3) as hold:
        proc = start_trainer("run", str(job), "--out", str(out), "--backend", "numpy", env=hold.env)
        try:
            assert proc.stdout is not None
            head = []
            for line in proc.stdout:
                head.append(line)
                if line.startswith(HELD):
                    break
            assert head[-1] == f"{HELD}fine-tuning epoch 3, minibatch 0; waiting while {hold.path} exists\n"
            assert epoch_numbers("".join(head)) == [1, 2]
            for _ in range(2):  # held: the process runs, but nothing after epoch 2 is written
                assert proc.poll() is None
                assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
                time.sleep(0.5)
        finally:
            hold.release()
        rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert epoch_numbers(rest) == [3, 4, 5]

    ref, got = model_arrays(tmp_path / "ref" / "model.npz"), model_arrays(out / "model.npz")
    assert ref.keys() == got.keys() and ref
    for name in ref:
        assert np.array_equal(ref[name], got[name]), name
    assert losses(out) == losses(tmp_path / "ref")


def test_a_malformed_hold_is_one_line_and_exit_2(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.yaml", {"name": "digits"}, MODEL)
    proc = start_trainer("run", str(job), "--out", str(tmp_path / "out"), env={HOLD_ENV: "after epoch 2"})
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert err == f"error: {HOLD_ENV}='after epoch 2': expected EPOCH:MINIBATCH:PATH (e.g. 2:0:/tmp/hold)\n"
