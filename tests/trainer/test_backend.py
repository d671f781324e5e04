"""Backend choice: `auto` falls back to NumPy without a usable GPU (CuPy imports fine there and fails on the
first device operation), `cupy` then fails in one line with exit 2; on a GPU, CuPy gives NumPy's numbers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.trainer_fixtures import dataset, one_blas_thread, run_trainer, write_job  # noqa: F401
from trainer.backend import numpy_backend, select_backend
from trainer.config import parse_model
from trainer.errors import BackendError
from trainer.loop import TrainData, TrainState, train


def gpu_usable() -> bool:
    try:
        select_backend("cupy")
    except BackendError:
        return False
    return True


HAS_GPU = gpu_usable()
no_gpu = pytest.mark.skipif(HAS_GPU, reason="this machine has a usable GPU")


def test_numpy_is_numpy() -> None:
    be = select_backend("numpy")
    assert be.name == "numpy" and be.xp is np and be.device.startswith("cpu: ")


@no_gpu
def test_auto_without_a_gpu_is_numpy() -> None:
    assert select_backend("auto").name == "numpy"


@no_gpu
def test_cupy_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(BackendError) as err:
        select_backend("cupy")
    text = str(err.value)
    assert text.startswith("backend cupy needs a usable CUDA GPU: ") and text.endswith(
        "use --backend numpy or auto"
    )
    assert "\n" not in text


@no_gpu
def test_real_cupy_without_a_gpu_fails_on_first_device_use() -> None:
    """What the probe relies on, with the real package where it is installed (pip install cupy-cuda12x)."""
    cupy = pytest.importorskip("cupy")
    with pytest.raises(RuntimeError):  # cupy_backends.cuda.api.runtime.CUDARuntimeError
        cupy.asarray(np.ones(2)).sum().item()
    with pytest.raises(BackendError, match="no usable GPU"):
        select_backend("cupy")


@no_gpu
def test_a_cupy_that_imports_but_has_no_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where CuPy is not installed, stand in for its GPU-less behaviour: import works, device use raises."""
    pkg = tmp_path / "cupy"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "class CUDARuntimeError(RuntimeError):\n"
        "    pass\n"
        "class _Runtime:\n"
        "    def getDeviceCount(self):\n"
        "        raise CUDARuntimeError('cudaErrorNoDevice: no CUDA-capable device is detected')\n"
        "class cuda:\n"
        "    runtime = _Runtime()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    assert select_backend("auto").name == "numpy"
    with pytest.raises(BackendError, match=r"no usable GPU \(cudaErrorNoDevice"):
        select_backend("cupy")


@no_gpu
def test_cli_backend_cupy_without_a_gpu_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.yaml", {"name": "digits"}, {"layers": [64, 10]}, backend="cupy")
    proc = run_trainer("run", str(job), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2 and proc.stderr.startswith("error: backend cupy needs a usable CUDA GPU")
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "out").exists()
    # --backend overrides the job's choice
    proc = run_trainer("run", str(job), "--out", str(tmp_path / "out"), "--backend", "numpy")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a usable CUDA GPU")
def test_cupy_gives_numpys_numbers(one_blas_thread: None) -> None:  # noqa: F811
    """Same seed → same permutations, noise and math: weights agree to float32 accuracy."""
    data = dataset("digits")
    cfg = parse_model(
        {
            "layers": [64, 100, 50, 10],
            "learn_rates": 0.3,
            "learn_rate_decays": 0.9,
            "epochs": 4,
            "epochs_pretrain": [2, 1, 0],
            "learn_rates_pretrain": [0.01, 0.05, 0.05],
            "dropouts": [0.1, 0.2, 0.2],
        }
    )
    results = {}
    for be in (numpy_backend(), select_backend("cupy")):
        state = TrainState.fresh(be, cfg)
        train(be, cfg, TrainData.from_host(be, data.X_train, data.y_train, 10), state)
        results[be.name] = (state, be)
    (np_state, np_be), (cp_state, cp_be) = results["numpy"], results["cupy"]
    for w_np, w_cp in zip(np_state.params.weights, cp_state.params.weights, strict=True):
        np.testing.assert_allclose(cp_be.to_host(w_cp), np_be.to_host(w_np), rtol=0, atol=1e-3)
    for r_np, r_cp in zip(np_state.history, cp_state.history, strict=True):
        assert (r_np["phase"], r_np["epoch"]) == (r_cp["phase"], r_cp["epoch"])
        assert r_cp["loss"] == pytest.approx(r_np["loss"], rel=1e-3)
