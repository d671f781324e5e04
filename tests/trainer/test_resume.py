"""Stopping anywhere and resuming from the checkpoint gives bitwise the weights of an uninterrupted run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.trainer_fixtures import dataset, one_blas_thread  # noqa: F401 - fixture
from trainer.backend import numpy_backend
from trainer.checkpoint import atomic_savez, job_fingerprint, load_checkpoint, save_checkpoint
from trainer.config import parse_job
from trainer.errors import JobError
from trainer.loop import Stopped, TrainData, TrainState, train

JOB = {
    "data": {"name": "digits"},
    "model": {
        "layers": [64, 48, 32, 10],
        "learn_rates": 0.3,
        "learn_rate_decays": 0.9,
        "epochs": 3,
        "epochs_pretrain": [2, 1, 0],
        "learn_rates_pretrain": 0.02,
        "dropouts": [0.1, 0.2, 0.0],
        "minibatch_size": 32,
    },
}

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def stop_after(n_batches: int):  # type: ignore[no-untyped-def]
    """should_stop() that turns true after n minibatches, like a SIGTERM arriving then."""
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= n_batches

    return should_stop


def run(tmp_path: Path, stops: list[int], positions: list | None = None) -> TrainState:
    """Train JOB, stopping (checkpoint, reload from disk) after each count of polls in `stops`.

    should_stop is polled after every minibatch but an epoch's last, and once at each epoch's end.
    """
    job = parse_job(JOB)
    data = dataset("digits")
    be = numpy_backend()
    fp = job_fingerprint(job.to_dict())
    tdata = TrainData.from_host(be, data.X_train, data.y_train, 10)
    state = TrainState.fresh(be, job.model)
    tmp_path.mkdir(exist_ok=True)
    ckpt = tmp_path / "checkpoint.npz"
    for n in [*stops, None]:
        try:
            train(be, job.model, tdata, state, should_stop=stop_after(n) if n else None)
            assert n is None, "training finished before the planned stop"
        except Stopped:
            if positions is not None:
                positions.append((state.phase, state.layer, state.epoch, state.batch))
            save_checkpoint(ckpt, state, be, fp, resumes=0)
            state, _ = load_checkpoint(ckpt, be, fp)
    return state


def test_resume_anywhere_is_bitwise_identical(tmp_path: Path) -> None:
    # digits: 1,203 training rows / 32 = 37 minibatches per epoch.
    full = run(tmp_path / "a", [])
    positions: list = []
    resumed = run(tmp_path / "b", [10, 27, 50, 45, 60], positions)
    assert positions == [
        ("pretrain", 0, 0, 10),  # mid-epoch, with the epoch's permutation in the checkpoint
        ("pretrain", 0, 1, 0),  # at an epoch's end
        ("pretrain", 1, 0, 13),  # the next layer's RBM
        ("finetune", 0, 0, 21),  # fine-tuning, with dropout masks to re-derive
        ("finetune", 0, 2, 7),  # after learning-rate decays
    ]
    for name in ("weights", "biases", "vis_biases"):
        for x, y in zip(getattr(full.params, name), getattr(resumed.params, name), strict=True):
            assert np.array_equal(x, y), name

    def curve(state: TrainState) -> list[dict]:
        return [{k: v for k, v in r.items() if k not in ("seconds", "time")} for r in state.history]

    assert curve(full) == curve(resumed)  # the same loss/err figures, exactly
    assert [(r["phase"], r["layer"], r["epoch"]) for r in full.history] == [
        ("pretrain", 1, 1),
        ("pretrain", 1, 2),
        ("pretrain", 2, 1),
        ("finetune", None, 1),
        ("finetune", None, 2),
        ("finetune", None, 3),
    ]


def test_checkpoint_refuses_another_job(tmp_path: Path) -> None:
    state = run(tmp_path / "a", [])
    be = numpy_backend()
    save_checkpoint(tmp_path / "c.npz", state, be, job_fingerprint(parse_job(JOB).to_dict()), resumes=0)
    other = parse_job({**JOB, "model": {**JOB["model"], "learn_rates": 0.1}})
    with pytest.raises(JobError, match=r"different job \(model.learn_rates differ"):
        load_checkpoint(tmp_path / "c.npz", be, job_fingerprint(other.to_dict()))


def test_checkpoint_write_is_atomic(tmp_path: Path) -> None:
    """A write that fails halfway (here: an array that cannot be serialised) leaves the old file whole."""
    path = tmp_path / "checkpoint.npz"
    atomic_savez(path, {"W0": np.arange(6.0).reshape(2, 3)})
    before = path.read_bytes()

    class Unpicklable:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            raise RuntimeError("disk full")

    bad = np.empty(1, dtype=object)
    bad[0] = Unpicklable()
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_savez(path, {"W0": np.zeros((1000, 1000)), "z": bad})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["checkpoint.npz"]  # no temporary file left behind
    with np.load(path) as npz:
        assert np.array_equal(npz["W0"], np.arange(6.0).reshape(2, 3))
