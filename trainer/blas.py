"""The two BLAS operations NumPy does not expose, called in the BLAS library NumPy itself loaded.

    gemm_tn_acc:  C = alpha·Aᵀ·B + beta·C      (sgemm with accumulation)
    axpy:         y += alpha·x                 (saxpy)
    scal:         x *= alpha                   (sscal)

Why: gdbn's momentum step, v = m·v + lr·(1 − m)·gradient − decay·W; W += v, costs NumPy a GEMM into a
scratch matrix plus five passes over the weights. With sgemm's beta the GEMM accumulates straight into v,
and two axpys finish the step: less than half the memory traffic, and OpenBLAS runs the axpys on all its
threads (NumPy's ufuncs use one).

`find()` looks for OpenBLAS's CBLAS symbols in the shared libraries mapped into this process after NumPy's
import (NumPy's wheels bundle OpenBLAS with `scipy_`-prefixed, 64-bit-integer symbols). It returns None on
anything else (another BLAS, no /proc, a failed self-test); the trainer then uses plain NumPy — the same
math with different rounding.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
# (prefix, suffix, integer type): NumPy >= 2 wheels first, then plain OpenBLAS builds (ILP64, then LP64).
_FLAVOURS = (
    ("scipy_cblas_", "64_", ctypes.c_int64),
    ("cblas_", "64_", ctypes.c_int64),
    ("cblas_", "", ctypes.c_int),
)


class Blas:
    """Typed entry points into one BLAS library. Arrays must be float32 and C-contiguous (not checked here:
    the trainer's buffers are allocated that way once, and checked once, in `check`)."""

    def __init__(self, lib: ctypes.CDLL, prefix: str, suffix: str, int_t: type, path: str) -> None:
        ptr, f32 = ctypes.c_void_p, ctypes.c_float
        self.path = path
        self._gemm = getattr(lib, f"{prefix}sgemm{suffix}")
        self._gemm.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int, int_t, int_t, int_t, f32, ptr, int_t]
        self._gemm.argtypes += [ptr, int_t, f32, ptr, int_t]
        self._gemm.restype = None
        self._axpy = getattr(lib, f"{prefix}saxpy{suffix}")
        self._axpy.argtypes = [int_t, f32, ptr, int_t, ptr, int_t]
        self._axpy.restype = None
        self._scal = getattr(lib, f"{prefix}sscal{suffix}")
        self._scal.argtypes = [int_t, f32, ptr, int_t]
        self._scal.restype = None

    def gemm_tn_acc(self, alpha: float, a: np.ndarray, b: np.ndarray, beta: float, c: np.ndarray) -> None:
        """c = alpha·aᵀ·b + beta·c; a (k, m), b (k, n), c (m, n)."""
        k, m = a.shape
        n = b.shape[1]
        self._gemm(_ROW_MAJOR, _TRANS, _NO_TRANS, m, n, k, alpha, a.ctypes.data, m, b.ctypes.data, n, beta,
                   c.ctypes.data, n)  # fmt: skip

    def axpy(self, alpha: float, x: np.ndarray, y: np.ndarray) -> None:
        """y += alpha·x (same size)."""
        self._axpy(x.size, alpha, x.ctypes.data, 1, y.ctypes.data, 1)

    def scal(self, alpha: float, x: np.ndarray) -> None:
        """x *= alpha."""
        self._scal(x.size, alpha, x.ctypes.data, 1)

    @staticmethod
    def check(*arrays: Any) -> bool:
        """Whether every array is a float32, C-contiguous NumPy array (what these calls require)."""
        return all(
            isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous for a in arrays
        )


@functools.cache
def find() -> Blas | None:
    """NumPy's BLAS as a `Blas`, or None when it cannot be found or fails a small self-test."""
    found = [p for p in mapped_libraries() if "blas" in p.rsplit("/", 1)[-1].lower()]
    for path in sorted(found, key=lambda p: ("numpy" not in p, p)):  # NumPy's own copy first
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, int_t in _FLAVOURS:
            if hasattr(lib, f"{prefix}sgemm{suffix}") and hasattr(lib, f"{prefix}saxpy{suffix}"):
                blas = Blas(lib, prefix, suffix, int_t, path)
                if _self_test(blas):
                    return blas
    return None


def mapped_libraries() -> set[str]:
    """Paths of the shared libraries this process has mapped (Linux /proc; empty elsewhere)."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            return {line.split()[-1] for line in fh if ".so" in line and "/" in line}
    except OSError:
        return set()


def _self_test(blas: Blas) -> bool:
    rng = np.random.default_rng(0)
    a = rng.random((5, 3), dtype=np.float32)
    b = rng.random((5, 4), dtype=np.float32)
    c = rng.random((3, 4), dtype=np.float32)
    expected = 0.5 * a.T.astype(np.float64) @ b + 2.0 * c
    y = np.ones(7, np.float32)
    try:
        blas.gemm_tn_acc(0.5, a, b, 2.0, c)
        blas.axpy(3.0, np.arange(7, dtype=np.float32), y)
        blas.scal(0.5, y)
    except Exception:
        return False
    return bool(np.allclose(c, expected, rtol=1e-5) and np.allclose(y, 0.5 + 1.5 * np.arange(7)))
