"""The direct BLAS path (trainer/blas.py): the integer width is established before the first call, an
environment variable turns the path off, train.log names the GEMM path, and small steps use NumPy.

A wrong integer width crashes the process, so the checks against real 64-bit-integer libraries (Debian's
libopenblas64-0-pthread and libblis64-4-pthread, installed by .ci/run) run in a child process.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.trainer.trainer_fixtures import REPO, trainer_env, write_job
from trainer import blas
from trainer.backend import Backend, numpy_backend

OPENBLAS64 = "/usr/lib/x86_64-linux-gnu/openblas64-pthread/libopenblas64.so.0"
BLIS64 = "/usr/lib/x86_64-linux-gnu/blis64-pthread/libblis64.so.4"
BLIS64_BLAS = "/usr/lib/x86_64-linux-gnu/blis64-pthread/libblas64.so.3"  # plain names, no width query


class _Func:
    """A stand-in for a ctypes function of a library: callable, and takes `restype` like one."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.restype: Any = None

    def __call__(self) -> Any:
        return self.value


def test_openblas_config_string_decides_the_width() -> None:
    ilp64 = "OpenBLAS 0.3.21  USE64BITINT NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64"
    lp64 = "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH NO_AFFINITY Zen MAX_THREADS=64"
    assert blas.int_type_from_config(ilp64) is ctypes.c_int64
    assert blas.int_type_from_config(lp64) is ctypes.c_int


def test_plain_names_are_only_used_when_the_library_states_its_width() -> None:
    openblas64 = SimpleNamespace(openblas_get_config=_Func(b"OpenBLAS 0.3.21 USE64BITINT Zen"))
    openblas32 = SimpleNamespace(openblas_get_config=_Func(b"OpenBLAS 0.3.21 DYNAMIC_ARCH Zen"))
    blis64 = SimpleNamespace(bli_info_get_blas_int_type_size=_Func(64))
    blis32 = SimpleNamespace(bli_info_get_blas_int_type_size=_Func(32))
    assert blas._int_type(openblas64, "") is ctypes.c_int64
    assert blas._int_type(openblas32, "") is ctypes.c_int
    assert blas._int_type(blis64, "") is ctypes.c_int64
    assert blas._int_type(blis32, "") is ctypes.c_int
    assert blas._int_type(SimpleNamespace(), "") is None  # an unknown BLAS: never guessed
    assert blas._int_type(SimpleNamespace(), "64_") is ctypes.c_int64  # OpenBLAS's ILP64 naming


def _in_child(code: str) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter (a wrong width would crash it, not the test run)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        env=trainer_env(),
        cwd=REPO,
    )


@pytest.mark.parametrize("path", [OPENBLAS64, BLIS64], ids=["libopenblas64", "libblis64"])
def test_a_real_64bit_integer_build_with_plain_names_is_called_correctly(path: str) -> None:
    if not Path(path).exists():
        pytest.skip(f"{path} is not installed (apt-get install libopenblas64-0-pthread libblis64-4-pthread)")
    result = _in_child(
        f"""
        from tests.trainer.trainer_fixtures import assert_blas_computes_like_numpy
        from trainer import blas
        found = blas.find_in([{path!r}])
        assert found is not None, "not found"
        print(found.symbol, found.int_bits)
        assert_blas_computes_like_numpy(found)
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["cblas_sgemm", "64", "ok"]


def test_a_plain_name_blas_that_does_not_say_its_width_is_not_used() -> None:
    if not Path(BLIS64_BLAS).exists():
        pytest.skip(f"{BLIS64_BLAS} is not installed (apt-get install libblis64-4-pthread)")
    result = _in_child(f"from trainer import blas; print(blas.find_in([{BLIS64_BLAS!r}]))")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "None"


def test_numpys_own_library_comes_before_a_system_one() -> None:
    result = _in_child(
        f"""
        import numpy
        from trainer import blas
        mapped = blas.mapped_libraries()
        own = blas.find_in(mapped)
        if own is None:
            print("skip")
        else:
            print(own.path == blas.find_in([{OPENBLAS64!r}, *sorted(mapped)]).path)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    if result.stdout.strip() == "skip":
        pytest.skip("NumPy's BLAS is not reachable through /proc/self/maps here")
    assert result.stdout.strip() == "True"


class _CountingBlas:
    """Our own Blas with its GEMM calls counted (the calls still go to the real library)."""

    def __init__(self, real: blas.Blas) -> None:
        self.real, self.gemms = real, 0

    def gemm_tn_acc(self, *args: Any) -> None:
        self.gemms += 1
        self.real.gemm_tn_acc(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_small_steps_go_through_numpy_and_large_ones_through_the_direct_path() -> None:
    real = blas.find()
    if real is None:
        pytest.skip("no direct BLAS on this machine")
    counting = _CountingBlas(real)
    be = Backend("numpy", np, "cpu", blas=counting, small_gemm=blas.SMALL_GEMM)
    g = np.random.default_rng(0)

    def step(batch: int, n_in: int, n_out: int) -> None:
        a, d = g.random((batch, n_in), dtype=np.float32), g.random((batch, n_out), dtype=np.float32)
        w, v = g.random((n_in, n_out), dtype=np.float32), np.zeros((n_in, n_out), np.float32)
        be.gemm_step(w, v, a, d, 0.9, 1e-4, cd=False, scratch=np.empty_like(w))

    step(64, 64, 10)  # 40,960 multiply-adds
    step(64, 100, 50)
    assert counting.gemms == 0
    step(64, 128, 128)  # 2**20: the threshold
    step(64, 784, 800)
    assert counting.gemms == 2


def test_the_backend_says_which_path_runs() -> None:
    found = blas.find()
    be = numpy_backend()
    if found is None:
        assert be.gemm.startswith("NumPy matmul")
    else:
        assert be.gemm.startswith(
            f"direct sgemm ({found.symbol}, {found.int_bits}-bit ints, in {found.path})"
        )
        assert be.gemm.endswith(f"NumPy below {blas.SMALL_GEMM:,} multiply-adds per step")
    assert numpy_backend(use_blas=False).gemm == "NumPy matmul (direct BLAS not asked for)"


def _gemm_line(tmp_path: Path, **env: str) -> str:
    tmp_path.mkdir()
    job = write_job(
        tmp_path / "job.yaml",
        {"name": "digits", "test_size": 0.25, "seed": 1, "limit": 200},
        {"layers": [64, 16, 10], "epochs": 1},
        backend="numpy",
    )
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "trainer", "run", str(job), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**trainer_env(), **env},
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [ln for ln in (out / "train.log").read_text().splitlines() if ln.startswith("gemm: ")]
    assert len(lines) == 1
    return lines[0]


def test_train_log_names_the_gemm_path_and_the_switch_turns_it_off(tmp_path: Path) -> None:
    on = _gemm_line(tmp_path / "on")
    off = _gemm_line(tmp_path / "off", EC2DBN_DIRECT_BLAS="0")
    assert off == "gemm: NumPy matmul (EC2DBN_DIRECT_BLAS=0)"
    if blas.find() is not None:
        assert on.startswith("gemm: direct sgemm (")
