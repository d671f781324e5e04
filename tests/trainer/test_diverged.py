"""A diverging run says so (issue 20): NaN/inf stops training with the "diverged" exit code, a message naming
the epoch and the likely cause, the last finite checkpoint kept, and strict JSON everywhere.

Divergence is real here, not simulated: a learning rate of 1e30 (legal, representable in float32, unwise)
overflows the weights within the first epoch on the real digits data set.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.support.strict_json import check_folder
from tests.trainer.test_backend import HAS_GPU
from tests.trainer.trainer_fixtures import dataset, one_blas_thread, run_trainer, write_job  # noqa: F401
from trainer import DBN
from trainer.backend import numpy_backend, select_backend
from trainer.bench import run_bench
from trainer.config import parse_model
from trainer.contract import DIVERGED_MARKER, EXIT_DIVERGED, EXIT_OK
from trainer.divergence import Diverged, check
from trainer.errors import TrainerError
from trainer.loop import Stopped, TrainData, TrainState, train
from trainer.network import Params
from trainer.run import run_job

DIGITS = {"name": "digits"}
SMALL = {"layers": [64, 40, 10], "epochs": 3}
#: Diverges in fine-tuning epoch 1: the first updates overflow float32.
TOO_FAST = {**SMALL, "learn_rates": 1e30}


def _job(tmp_path: Path, **model: Any) -> Path:
    return write_job(tmp_path / "job.yaml", DIGITS, {**SMALL, **model}, backend="numpy")


def _diverged_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(DIVERGED_MARKER)]


@pytest.mark.usefixtures("one_blas_thread")
def test_a_job_diverging_in_epoch_1_exits_diverged_and_says_where_and_why(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.yaml", DIGITS, TOO_FAST, backend="numpy")
    out = tmp_path / "out"
    proc = run_trainer("run", str(job), "--out", str(out))

    assert proc.returncode == EXIT_DIVERGED == 4, proc.stdout + proc.stderr
    (line,) = _diverged_lines(proc.stdout)
    assert line.startswith("Training diverged in fine-tuning epoch 1: the loss is nan")
    assert "learn_rates too high (1e+30" in line and "scales" in line and "momentum" in line
    assert _diverged_lines((out / "train.log").read_text()) == [line]
    assert "Traceback" not in proc.stderr and "RuntimeWarning" not in proc.stderr
    # Nothing finite to keep: no checkpoint, and no model or report of NaN weights.
    assert not any((out / name).exists() for name in ("checkpoint.npz", "model.npz", "report.txt"))
    assert "no checkpoint.npz to keep" in proc.stdout
    assert set(check_folder(out)) == {"metrics.json", "metrics.jsonl"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["test_accuracy"] is None
    assert metrics["diverged"] == {
        "phase": "finetune",
        "layer": None,
        "epoch": 1,
        "batch": 0,
        "loss": None,  # NaN, written as JSON's null
        "message": line,
    }
    assert metrics["epochs"] == [] and (out / "metrics.jsonl").read_text() == ""


@pytest.mark.usefixtures("one_blas_thread")
def test_the_checkpoint_keeps_the_last_finite_epoch(tmp_path: Path) -> None:
    """Epoch 1 trains at 0.1; its decay of 1e35 makes epoch 2's rate 1e34, which diverges. The checkpoint
    written after epoch 1 must survive as it was: the weights of a run that stopped after epoch 1."""
    diverging = _job(tmp_path, learn_rate_decays=1e35)
    assert run_job(diverging, tmp_path / "out", echo=False) == EXIT_DIVERGED
    log = (tmp_path / "out" / "train.log").read_text()
    (line,) = _diverged_lines(log)
    assert line.startswith("Training diverged in fine-tuning epoch 2: the loss is nan")
    assert "learn_rates too high (1e+34 by now, from 0.1" in line and "learn_rate_decays above 1" in line
    assert "keeps the last finite state (fine-tuning, start of epoch 2)" in log

    one_epoch = _job(tmp_path, epochs=1)
    assert run_job(one_epoch, tmp_path / "one", echo=False) == EXIT_OK
    with (
        np.load(tmp_path / "out" / "checkpoint.npz") as kept,
        np.load(tmp_path / "one" / "checkpoint.npz") as reference,
    ):
        meta = json.loads(str(kept["meta"]))
        assert (meta["phase"], meta["epoch"], meta["batch"]) == ("finetune", 1, 0)
        for name in ("W0", "W1", "b0", "b1"):
            assert np.isfinite(kept[name]).all()
            np.testing.assert_array_equal(kept[name], reference[name])
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1] and np.isfinite(metrics["epochs"][0]["loss"])
    assert metrics["diverged"]["epoch"] == 2
    check_folder(tmp_path / "out")


@pytest.mark.usefixtures("one_blas_thread")
def test_pretraining_divergence_names_the_layer_and_the_pretraining_rates(tmp_path: Path) -> None:
    job = _job(tmp_path, epochs_pretrain=[2, 0], learn_rates_pretrain=1e30, use_re_lu=True)
    assert run_job(job, tmp_path / "out", echo=False) == EXIT_DIVERGED
    (line,) = _diverged_lines((tmp_path / "out" / "train.log").read_text())
    assert line.startswith("Training diverged in pretraining layer 1 epoch 1: the reconstruction error is")
    assert "learn_rates_pretrain too high (1e+30" in line and "momentum_pretrain" in line
    assert "ReLU units (use_re_lu: true) need a smaller learn rate" in line
    diverged = json.loads((tmp_path / "out" / "metrics.json").read_text())["diverged"]
    assert (diverged["phase"], diverged["layer"], diverged["epoch"]) == ("pretrain", 1, 1)
    check_folder(tmp_path / "out")


def _train_until_stopped(backend: Any, cfg: Any, after: int) -> TrainState:
    """Train until should_stop() turns true: at its (after + 1)th call, i.e. after minibatch after + 1."""
    data = dataset("digits")
    state = TrainState.fresh(backend, cfg)
    calls = iter(range(after))
    train(
        backend,
        cfg,
        TrainData.from_host(backend, data.X_train, data.y_train, 10),
        state,
        should_stop=lambda: next(calls, None) is None,
    )
    return state


@pytest.mark.usefixtures("one_blas_thread")
def test_a_stop_mid_epoch_on_a_diverged_state_is_divergence_not_a_checkpoint() -> None:
    """SIGTERM mid-epoch normally checkpoints the exact position; a state already NaN must not be."""
    with pytest.raises(Diverged) as err:
        _train_until_stopped(numpy_backend(), parse_model(TOO_FAST), after=6)
    assert (err.value.phase, err.value.epoch, err.value.batch) == ("finetune", 1, 7)
    assert "fine-tuning epoch 1 (by minibatch 7, where it was stopped)" in str(err.value)
    # A finite run stopped at the same place is an ordinary stop.
    with pytest.raises(Stopped):
        _train_until_stopped(numpy_backend(), parse_model(SMALL), after=6)


def test_weights_that_overflowed_after_the_last_loss_are_divergence_too() -> None:
    """The loss is computed before each update: the last update of an epoch can overflow the weights
    while the epoch's loss is still finite. Such a state must not be checkpointed either."""
    be, cfg = numpy_backend(), parse_model(SMALL)
    params = Params.initial(be, cfg.layers, cfg.scales, cfg.seed)
    check(be, cfg, params, phase="finetune", layer=0, epoch=0, loss=0.5)  # finite: nothing happens
    params.biases[1][3] = np.inf
    with pytest.raises(Diverged, match=r"epoch 1: the weights are no longer finite \(the loss so far: 0.5\)"):
        check(be, cfg, params, phase="finetune", layer=0, epoch=0, loss=0.5)


@pytest.mark.usefixtures("one_blas_thread")
def test_the_estimator_stops_a_diverging_fit_like_terminate_on_nan() -> None:
    data = dataset("digits")
    clf = DBN([64, 40, 10], learn_rates=1e30, epochs=3, backend="numpy")
    with pytest.raises(Diverged) as err:
        clf.fit(data.X_train, data.y_train)
    assert isinstance(err.value, TrainerError) and err.value.exit_code == EXIT_DIVERGED
    assert str(err.value).startswith("Training diverged in fine-tuning epoch 1")


@pytest.mark.usefixtures("one_blas_thread")
def test_the_bench_records_a_diverged_width_and_measures_the_next(tmp_path: Path) -> None:
    job = _job(tmp_path, learn_rates=1e30)
    lines: list[str] = []
    doc = run_bench(job, tmp_path / "bench", widths=[8, 16], epochs=2, backends=["numpy"], log=lines.append)
    assert doc["complete"] is True
    assert [(r["width"], r["status"]) for r in doc["rows"]] == [(8, "diverged"), (16, "diverged")]
    assert all(r["reason"].startswith("Training diverged in fine-tuning epoch 1") for r in doc["rows"])
    assert check_folder(tmp_path / "bench") == ["bench.json"]


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a usable CUDA GPU")
@pytest.mark.usefixtures("one_blas_thread")
def test_cupy_diverges_where_numpy_does_and_exits_diverged(tmp_path: Path) -> None:
    """Same job, same seed: the CuPy backend (fused kernels, CUDA graphs) stops in the same epoch."""
    cfg = parse_model(TOO_FAST)
    data = dataset("digits")
    epochs = {}
    for be in (numpy_backend(), select_backend("cupy")):
        state = TrainState.fresh(be, cfg)
        with pytest.raises(Diverged) as err:
            train(be, cfg, TrainData.from_host(be, data.X_train, data.y_train, 10), state)
        epochs[be.name] = (err.value.phase, err.value.epoch, state.history)
    assert epochs["cupy"] == epochs["numpy"] == ("finetune", 1, [])
    job = write_job(tmp_path / "job.yaml", DIGITS, TOO_FAST, backend="cupy")
    proc = run_trainer("run", str(job), "--out", str(tmp_path / "out"))
    assert proc.returncode == EXIT_DIVERGED, proc.stdout + proc.stderr
    assert _diverged_lines(proc.stdout)[0].startswith("Training diverged in fine-tuning epoch 1")
    assert "backend: cupy" in proc.stdout
    check_folder(tmp_path / "out")


def test_a_nan_in_a_record_read_back_is_logged_as_nan() -> None:
    """A checkpoint's history is strict JSON: a non-finite test loss comes back as None, and the log line
    of that epoch (written when a resumed run catches its logs up) still formats."""
    from trainer.progress import epoch_line, eval_line

    record = {"phase": "finetune", "epoch": 2, "loss": 0.25, "err": None, "seconds": 3.0}
    assert epoch_line(record) == "Epoch 2:  loss 0.25  err nan  (0:00:03)"
    assert eval_line({**record, "test_loss": None, "test_err": 0.5}) == "  test loss nan  err 0.5"
