"""The two BLAS operations NumPy does not expose, called in the BLAS library NumPy itself loaded.

    gemm_tn_acc:  C = alpha·Aᵀ·B + beta·C      (sgemm with accumulation)
    axpy:         y += alpha·x                 (saxpy)
    scal:         x *= alpha                   (sscal)

Why: gdbn's momentum step, v = m·v + lr·(1 − m)·gradient − decay·W; W += v, costs NumPy a GEMM into a
scratch matrix plus five passes over the weights. With sgemm's beta the GEMM accumulates straight into v,
and two axpys finish the step: less than half the memory traffic, and OpenBLAS runs the axpys on all its
threads (NumPy's ufuncs use one).

`find()` looks for CBLAS symbols in the shared libraries mapped into this process after NumPy's import
(NumPy's wheels bundle OpenBLAS with `scipy_`-prefixed, 64-bit-integer symbols), NumPy's own copy first.
The integer width must be known before the first call: passing 32-bit ints to a 64-bit-integer build
crashes the process. A `64_` suffix means 64-bit (OpenBLAS's naming for INTERFACE64 builds); plain names
are used only when the library says its width (OpenBLAS's config string mentions USE64BITINT or not,
BLIS's `bli_info_get_blas_int_type_size`), so Debian's libopenblas64 / BLIS64, which export plain
`cblas_sgemm` with 64-bit ints, are called correctly and an unknown BLAS is not called at all.
`find()` returns None on anything else (another BLAS, no /proc, a failed self-test) or when
EC2DBN_DIRECT_BLAS=0; the trainer then uses plain NumPy — the same math with different rounding.
Weight steps below SMALL_GEMM multiply-adds go through NumPy as well (trainer.backend): there the direct
path's per-call costs (ctypes, OpenBLAS waking its threads for the axpys) outweigh what it saves.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112
#: (prefix, suffix): NumPy >= 2 wheels first, then OpenBLAS's 64_-suffixed ILP64 names, then plain names
#: (whose integer width `_int_type` must establish first).
_FLAVOURS = (("scipy_cblas_", "64_"), ("cblas_", "64_"), ("cblas_", ""))

#: EC2DBN_DIRECT_BLAS=0 (or false/no/off) turns the direct calls off: NumPy's matmul and ufuncs only.
ENV_SWITCH = "EC2DBN_DIRECT_BLAS"

#: Multiply-adds (batch · n_in · n_out) below which a weight step goes through NumPy: measured on a 2-core
#: EPYC, the direct path took 1.8-3.6x NumPy's time for 64x64x10 to 64x100x50 (40k-320k) and was even at
#: 64x128x128 (1M); it wins on the large layers (e.g. 64x784x100, about 0.5x).
SMALL_GEMM = 1 << 20


class Blas:
    """Typed entry points into one BLAS library. Arrays must be float32 and C-contiguous (not checked here:
    the trainer's buffers are allocated that way once, and checked once, in `check`)."""

    def __init__(self, lib: ctypes.CDLL, prefix: str, suffix: str, int_t: type, path: str) -> None:
        ptr, f32 = ctypes.c_void_p, ctypes.c_float
        self.path = path
        self.symbol = f"{prefix}sgemm{suffix}"
        self.int_bits = 8 * ctypes.sizeof(int_t)
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

    def describe(self) -> str:
        """For train.log: 'direct sgemm (scipy_cblas_sgemm64_, 64-bit ints, in /path/libx.so)'."""
        return f"direct sgemm ({self.symbol}, {self.int_bits}-bit ints, in {self.path})"

    @staticmethod
    def check(*arrays: Any) -> bool:
        """Whether every array is a float32, C-contiguous NumPy array (what these calls require)."""
        return all(
            isinstance(a, np.ndarray) and a.dtype == np.float32 and a.flags.c_contiguous for a in arrays
        )


def enabled() -> bool:
    """False when EC2DBN_DIRECT_BLAS turns the direct calls off (0, false, no, off)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "no", "off")


@functools.cache
def find() -> Blas | None:
    """NumPy's BLAS as a `Blas`, or None when it is turned off, cannot be found, its integer width is
    unknown, or it fails a small self-test."""
    if not enabled():
        return None
    return find_in(mapped_libraries())


def find_in(paths: Iterable[str]) -> Blas | None:
    """The first usable BLAS among the shared libraries `paths` (NumPy's own copy first)."""
    found = [p for p in paths if "blas" in p.rsplit("/", 1)[-1].lower() or "blis" in p.rsplit("/", 1)[-1]]
    for path in sorted(found, key=lambda p: ("numpy" not in p, p)):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in _FLAVOURS:
            if not (hasattr(lib, f"{prefix}sgemm{suffix}") and hasattr(lib, f"{prefix}saxpy{suffix}")):
                continue
            int_t = _int_type(lib, suffix)
            if int_t is None:
                continue  # never guess: the wrong width crashes the process on the first call
            blas = Blas(lib, prefix, suffix, int_t, path)
            if _self_test(blas):
                return blas
    return None


def describe(blas: Blas | None, small_gemm: int = SMALL_GEMM) -> str:
    """Which GEMM path the NumPy backend takes, for train.log."""
    if blas is None:
        why = f"{ENV_SWITCH}={os.environ.get(ENV_SWITCH)}" if not enabled() else "no usable CBLAS found"
        return f"NumPy matmul ({why})"
    below = f"; NumPy below {small_gemm:,} multiply-adds per step" if small_gemm > 0 else ""
    return blas.describe() + below


def _int_type(lib: Any, suffix: str) -> type | None:
    """The C integer type of `lib`'s CBLAS calls with names ending in `suffix`, or None when unknown.

    "64_" names are 64-bit by OpenBLAS's convention. Plain names: OpenBLAS says it in its config string
    ("... USE64BITINT ..."), BLIS through bli_info_get_blas_int_type_size(); any other library is unknown.
    """
    if suffix == "64_":
        return ctypes.c_int64
    if hasattr(lib, "openblas_get_config"):
        get_config = lib.openblas_get_config
        get_config.restype = ctypes.c_char_p
        return int_type_from_config((get_config() or b"").decode("ascii", "replace"))
    if hasattr(lib, "bli_info_get_blas_int_type_size"):
        size = lib.bli_info_get_blas_int_type_size
        size.restype = ctypes.c_int  # returns 32 or 64 (as gint_t; the low 32 bits hold it either way)
        bits = size()
        return {32: ctypes.c_int, 64: ctypes.c_int64}.get(bits)
    return None


def int_type_from_config(config: str) -> type:
    """ctypes.c_int64 when an OpenBLAS config string says USE64BITINT (an ILP64 build), else ctypes.c_int."""
    return ctypes.c_int64 if re.search(r"\bUSE64BITINT\b", config) else ctypes.c_int


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
