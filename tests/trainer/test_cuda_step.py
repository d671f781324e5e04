"""The CuPy fine-tuning step (fused kernels, trainer.cuda_step) gives NumPy's numbers for the same seed,
replaying it as a CUDA graph changes no number, and it keeps its epoch sums across a stop mid-epoch.
Skipped without a usable GPU, except the check of how trainer.cublas maps row-major products onto
column-major sgemm arguments."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest

from tests.trainer.test_backend import HAS_GPU
from tests.trainer.trainer_fixtures import dataset, one_blas_thread  # noqa: F401
from trainer import cublas, cuda_step, loop
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
    cfg = parse_model(CONFIGS[name])
    data = dataset("digits")
    np_state = _train(numpy_backend(), cfg, data)
    cp = select_backend("cupy")
    cp_state, steps = _train_recording_steps(monkeypatch, cp, cfg, data, graphs=True)
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


def _train_recording_steps(
    monkeypatch: pytest.MonkeyPatch, be: Any, cfg: Any, data: Any, graphs: bool
) -> tuple[TrainState, list[Any]]:
    """`_train` with the CuPy steps made with `graphs`, and the steps it made."""
    steps: list[Any] = []

    class Chosen(cuda_step.CupyFineTuneStep):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs, graphs=graphs)
            steps.append(self)

    monkeypatch.setattr(loop, "CupyFineTuneStep", Chosen)
    return _train(be, cfg, data), steps


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("name", CONFIGS)
def test_graph_replay_gives_the_eager_steps_numbers(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The same training with every minibatch launched kernel by kernel, and with all but the first
    replayed from CUDA graphs (recaptured each epoch, as the learning rates decay): identical weights
    and epoch records, bit for bit."""
    cfg = parse_model(CONFIGS[name])
    data = dataset("digits")
    cp = select_backend("cupy")
    eager, eager_steps = _train_recording_steps(monkeypatch, cp, cfg, data, graphs=False)
    replayed, graph_steps = _train_recording_steps(monkeypatch, cp, cfg, data, graphs=True)
    n_batches = len(data.X_train) // cfg.minibatch_size
    assert [s.replays for s in eager_steps] == [0]
    assert [s.replays for s in graph_steps] == [cfg.epochs * n_batches - 1]  # only the very first is eager
    for name_, a, b in (("weights", eager.params.weights, replayed.params.weights),
                        ("biases", eager.params.biases, replayed.params.biases)):  # fmt: skip
        for x, z in zip(a, b, strict=True):
            np.testing.assert_array_equal(cp.to_host(z), cp.to_host(x), err_msg=name_)
    assert [(r["loss"], r["err"]) for r in replayed.history] == [(r["loss"], r["err"]) for r in eager.history]


@pytest.mark.gpu
@needs_gpu
def test_a_replaced_parameter_array_gets_a_new_graph() -> None:
    """A graph holds the addresses it was captured with: when a parameter array is swapped for another,
    the next step captures again and trains the new array (a stale graph would train the old one)."""
    cfg = parse_model(CONFIGS["sigmoid"])
    data = dataset("digits")
    cp = select_backend("cupy")
    state = TrainState.fresh(cp, cfg)
    train_data = TrainData.from_host(cp, data.X_train, data.y_train, 10)
    step = cuda_step.CupyFineTuneStep(
        cp, state.params, state.vel_w, state.vel_b, cfg.minibatch_size, cfg.dropouts, cfg.use_re_lu
    )
    idx = cp.to_device(np.arange(cfg.minibatch_size, dtype=np.int64))

    def one() -> None:
        d = train_data
        step.step(d.X, d.Y, d.y, idx, None, state.learn_rates, cfg.momentum, cfg.l2_costs)

    for _ in range(3):  # eager, captured + replayed, replayed
        one()
    assert step.replays == 2
    old = state.params.weights[0]
    state.params.weights[0] = new = old.copy()
    old_before, new_before = cp.to_host(old), cp.to_host(new)
    one()
    assert step.replays == 3
    np.testing.assert_array_equal(cp.to_host(old), old_before)  # the replaced array is left alone
    assert not np.array_equal(cp.to_host(new), new_before)  # and the new one trained


def _column_major_sgemm(
    op_a: int,
    op_b: int,
    m: int,
    n: int,
    k: int,
    alpha: float,
    a: np.ndarray,
    lda: int,
    b: np.ndarray,
    ldb: int,
    beta: float,
    c: np.ndarray,
    ldc: int,
) -> None:
    """BLAS sgemm's definition on flat float32 buffers: C (m, n) = alpha·op(A)·op(B) + beta·C, column-major
    with leading dimensions; op 0 is as is, 1 transposed."""  # fmt: skip

    def matrix(flat: np.ndarray, rows: int, cols: int, ld: int) -> np.ndarray:
        return np.lib.stride_tricks.as_strided(flat, (rows, cols), (flat.itemsize, flat.itemsize * ld))

    A = matrix(a, m, k, lda) if op_a == 0 else matrix(a, k, m, lda).T
    B = matrix(b, k, n, ldb) if op_b == 0 else matrix(b, n, k, ldb).T
    C = matrix(c, m, n, ldc)
    C[...] = alpha * (A.astype(np.float64) @ B) + beta * C


@pytest.mark.parametrize("transa", ["N", "T"])
@pytest.mark.parametrize("transb", ["N", "T"])
def test_cublas_arguments_compute_the_row_major_product(transa: str, transb: str) -> None:
    """gemm_args turns out = op(a)·op(b) on C-contiguous arrays into column-major sgemm arguments that,
    fed to sgemm's definition, give NumPy's product (shapes all different, so a swapped m/n/k or leading
    dimension cannot go unnoticed)."""
    rng = np.random.default_rng(1)
    m, n, k = 3, 5, 7
    a = rng.random((m, k) if transa == "N" else (k, m), dtype=np.float32)
    b = rng.random((k, n) if transb == "N" else (n, k), dtype=np.float32)
    out = rng.random((m, n), dtype=np.float32)
    expected = (
        0.5 * (a if transa == "N" else a.T).astype(np.float64) @ (b if transb == "N" else b.T) + 2.0 * out
    )
    op_b, op_a, n_, m_, k_, ldb, lda, ldc = cublas.gemm_args(transa, transb, a.shape, b.shape, out.shape)
    # cuBLAS's A is our b and its B our a: sgemm(handle, op_b, op_a, n, m, k, alpha, b, ldb, a, lda, ...)
    _column_major_sgemm(op_b, op_a, n_, m_, k_, 0.5, b.ravel(), ldb, a.ravel(), lda, 2.0, out.ravel(), ldc)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_cublas_arguments_refuse_shapes_that_do_not_multiply() -> None:
    with pytest.raises(ValueError, match="do not match"):
        cublas.gemm_args("N", "N", (3, 4), (5, 6), (3, 6))
    with pytest.raises(ValueError, match="do not match"):
        cublas.gemm_args("T", "N", (4, 3), (4, 6), (6, 3))


def test_cublas_is_not_found_without_cupy() -> None:
    if HAS_GPU:
        pytest.skip("CuPy and a GPU are here")
    assert cublas.find() is None


@pytest.mark.parametrize("bad", ["transposed view", "float64"])
def test_cublas_gemm_refuses_arrays_it_cannot_pass_by_pointer(bad: str) -> None:
    """cuBLAS gets raw pointers and leading dimensions: a strided view or another dtype would be read as
    garbage, so gemm refuses it before any cuBLAS call (NumPy arrays stand in: the check comes first)."""
    blas = object.__new__(cublas.Cublas)  # no library: nothing past the check may run
    a = np.ones((4, 3), np.float32)
    b = np.ones((3, 5), np.float32)
    out = np.ones((5, 4), np.float32).T if bad == "transposed view" else np.ones((4, 5), np.float64)
    with pytest.raises(ValueError, match="C-contiguous float32"):
        blas.gemm("N", "N", a, b, out)
