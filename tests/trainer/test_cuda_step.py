"""The CuPy fine-tuning step (fused kernels, trainer.cuda_step) gives NumPy's numbers for the same seed,
and keeps its epoch sums across a stop mid-epoch. Skipped without a usable GPU."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest

from tests.trainer.test_backend import HAS_GPU
from tests.trainer.trainer_fixtures import dataset, one_blas_thread  # noqa: F401
from trainer import cuda_step, loop
from trainer.backend import numpy_backend, select_backend
from trainer.config import parse_model
from trainer.loop import Stopped, TrainData, TrainState, train

needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a usable CUDA GPU")

CONFIGS = {
    "sigmoid": {"layers": [64, 100, 50, 10], "epochs": 3},
    "relu+dropout": {
        "layers": [64, 120, 10],
        "epochs": 3,
        "use_re_lu": True,
        "learn_rates": 0.05,
        "dropouts": [0.1, 0.3],
    },
}


def _train(be: Any, cfg: Any, data: Any, stop_after: int | None = None) -> TrainState:
    """Train from fresh weights; with `stop_after`, stop after that many minibatches and continue."""
    state = TrainState.fresh(be, cfg)
    train_data = TrainData.from_host(be, data.X_train, data.y_train, 10)
    if stop_after is None:
        train(be, cfg, train_data, state)
        return state
    calls = iter(range(stop_after))
    with contextlib.suppress(Stopped):
        train(be, cfg, train_data, state, should_stop=lambda: next(calls, None) is None)
    assert not state.finished
    train(be, cfg, train_data, state)
    return state


@pytest.mark.gpu
@needs_gpu
@pytest.mark.usefixtures("one_blas_thread")
@pytest.mark.parametrize("name", CONFIGS)
def test_fused_step_gives_numpys_numbers(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    steps: list[Any] = []

    class Recorded(cuda_step.CupyFineTuneStep):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            steps.append(self)

    monkeypatch.setattr(loop, "CupyFineTuneStep", Recorded)
    cfg = parse_model(CONFIGS[name])
    data = dataset("digits")
    np_state = _train(numpy_backend(), cfg, data)
    cp = select_backend("cupy")
    cp_state = _train(cp, cfg, data)
    assert len(steps) == 1  # the fused step ran (and only on CuPy)
    n_cases = len(data.X_train) // cfg.minibatch_size * cfg.minibatch_size
    for w_np, w_cp in zip(np_state.params.weights, cp_state.params.weights, strict=True):
        np.testing.assert_allclose(cp.to_host(w_cp), w_np, rtol=0, atol=1e-3)
    for b_np, b_cp in zip(np_state.params.biases, cp_state.params.biases, strict=True):
        np.testing.assert_allclose(cp.to_host(b_cp), b_np, rtol=0, atol=1e-3)
    for r_np, r_cp in zip(np_state.history, cp_state.history, strict=True):
        assert r_cp["loss"] == pytest.approx(r_np["loss"], rel=1e-3)
        assert abs(r_cp["err"] - r_np["err"]) <= 2 / n_cases


@pytest.mark.gpu
@needs_gpu
def test_stop_mid_epoch_and_continue_on_cupy() -> None:
    """The epoch's running sums live in the step's fixed buffer: stopping after 7 minibatches and going on
    (the sums read out and written back) ends where an uninterrupted CuPy run ends."""
    cfg = parse_model(CONFIGS["sigmoid"])
    data = dataset("digits")
    cp = select_backend("cupy")
    whole = _train(cp, cfg, data)
    resumed = _train(cp, cfg, data, stop_after=7)
    for a, b in zip(whole.params.weights, resumed.params.weights, strict=True):
        np.testing.assert_allclose(cp.to_host(b), cp.to_host(a), rtol=1e-5, atol=1e-6)
    for ra, rb in zip(whole.history, resumed.history, strict=True):
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-6) and rb["err"] == ra["err"]
