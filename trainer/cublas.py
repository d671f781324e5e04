"""cuBLAS's sgemm called directly (ctypes), on a handle and a workspace of our own, so that a CUDA graph
can capture it.

Why: the CuPy fine-tuning step is launch-bound (trainer.cuda_step), and replaying it as one CUDA graph per
minibatch removes nearly all of its host time. CuPy refuses any cuBLAS call while a stream is being
captured (its `setStream` raises "calling cuBLAS API during stream capture is currently unsupported");
cuBLAS itself supports capture once the handle has a caller-owned workspace (`cublasSetWorkspace`, which
`cublasSetStream` resets). This module is the twin of trainer.blas: the library is the one
CuPy already loaded, found in /proc/self/maps, and `find()` returns None (the step then uses CuPy's own
cuBLAS calls, without graphs) on anything unexpected.

Arrays are C-contiguous float32 CuPy arrays; cuBLAS is column-major, so the row-major product
out = op(a)·op(b) is computed as outᵀ = op(b)ᵀ·op(a)ᵀ (`gemm_args`).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

from trainer.blas import mapped_libraries

WORKSPACE_BYTES = 32 << 20  # cuBLAS's recommendation for Hopper; plenty for this network's GEMMs
_OPS = {"N": 0, "T": 1}  # CUBLAS_OP_N, CUBLAS_OP_T


class CublasError(RuntimeError):
    """A cuBLAS call returned a status other than CUBLAS_STATUS_SUCCESS."""


def gemm_args(
    transa: str, transb: str, a_shape: tuple[int, ...], b_shape: tuple[int, ...], out_shape: tuple[int, ...]
) -> tuple[int, int, int, int, int, int, int, int]:
    """(op_b, op_a, n, m, k, ldb, lda, ldc): cublasSgemm's integer arguments, in its order, for the row-major
    out (m, n) = op(a)·op(b) of C-contiguous arrays, op "N" (as is) or "T" (transposed).

    A C-contiguous (r, c) array is the column-major (c, r) matrix with leading dimension c, so the column-
    major call out_cm (n, m) = op(b)_cm · op(a)_cm takes the operands in swapped order with the same ops,
    and every leading dimension is its array's row length.
    """
    m, k = a_shape if transa == "N" else a_shape[::-1]
    k_b, n = b_shape if transb == "N" else b_shape[::-1]
    if k != k_b or tuple(out_shape) != (m, n):
        raise ValueError(f"gemm {transa}{transb}: shapes {a_shape} x {b_shape} -> {out_shape} do not match")
    return _OPS[transb], _OPS[transa], n, m, k, b_shape[1], a_shape[1], out_shape[1]


class Cublas:
    """One cuBLAS handle with its own workspace; each call goes to CuPy's current stream, like CuPy's own."""

    def __init__(self, lib: ctypes.CDLL, path: str, cp: Any) -> None:
        ptr, i32, f32p = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)
        self.path, self._cp = path, cp
        self.handle = ptr()
        self._check(lib.cublasCreate_v2(ctypes.byref(self.handle)), "cublasCreate")
        self._set_stream = lib.cublasSetStream_v2
        self._set_stream.argtypes = [ptr, ptr]
        self._set_workspace = lib.cublasSetWorkspace_v2
        self._set_workspace.argtypes = [ptr, ptr, ctypes.c_size_t]
        self._sgemm = lib.cublasSgemm_v2
        self._sgemm.argtypes = [ptr, i32, i32, i32, i32, i32, f32p, ptr, i32, ptr, i32, f32p, ptr, i32]
        self.workspace = cp.empty(WORKSPACE_BYTES, dtype=cp.uint8)
        self.stream = -1  # none yet: the first GEMM binds the handle to its stream

    @staticmethod
    def _check(status: int, what: str) -> None:
        if status != 0:
            raise CublasError(f"{what} failed with cuBLAS status {status}")

    def _bind(self, stream: int) -> None:
        """Issue this handle's work on `stream` (a cudaStream_t as an int; 0 is the legacy default stream).
        cublasSetStream also resets the workspace to cuBLAS's own pool, so ours is set again after it."""
        if stream != self.stream:
            self._check(self._set_stream(self.handle, stream), "cublasSetStream")
            workspace = self.workspace.data.ptr
            self._check(self._set_workspace(self.handle, workspace, WORKSPACE_BYTES), "cublasSetWorkspace")
            self.stream = stream

    def gemm(
        self, transa: str, transb: str, a: Any, b: Any, out: Any, alpha: float = 1.0, beta: float = 0.0
    ) -> None:
        """out = alpha·op(a)·op(b) + beta·out on the current stream (alpha, beta: read now, by value)."""
        if not all(x.dtype == "float32" and x.flags.c_contiguous for x in (a, b, out)):
            raise ValueError("trainer.cublas.gemm takes C-contiguous float32 arrays only")
        self._bind(self._cp.cuda.get_current_stream().ptr)
        op_b, op_a, n, m, k, ldb, lda, ldc = gemm_args(transa, transb, a.shape, b.shape, out.shape)
        status = self._sgemm(
            self.handle, op_b, op_a, n, m, k, ctypes.byref(ctypes.c_float(alpha)), b.data.ptr, ldb,
            a.data.ptr, lda, ctypes.byref(ctypes.c_float(beta)), out.data.ptr, ldc,
        )  # fmt: skip
        self._check(status, "cublasSgemm")


@functools.cache
def find() -> Cublas | None:
    """A `Cublas` on the library CuPy loaded, or None (no CuPy, no such library, or a failed self-test)."""
    try:
        import cupy as cp

        cp.cuda.device.get_cublas_handle()  # makes CuPy load its cuBLAS
    except Exception:
        return None
    names = sorted(p for p in mapped_libraries() if p.rsplit("/", 1)[-1].startswith("libcublas.so"))
    for path in names:  # libcublas.so.N: cuBLAS itself (cuBLASLt is libcublasLt)
        try:
            blas = Cublas(ctypes.CDLL(path), path, cp)
            if _self_test(blas, cp):
                return blas
        except (OSError, AttributeError, CublasError):
            continue
    return None


def _self_test(blas: Cublas, cp: Any) -> bool:
    """Every transpose combination the trainer uses, with alpha and beta, against NumPy in float64."""
    import numpy as np

    rng = np.random.default_rng(0)
    a, b = rng.random((5, 3), dtype=np.float32), rng.random((5, 4), dtype=np.float32)
    c = rng.random((3, 4), dtype=np.float32)
    cases = [
        ("T", "N", a, b, c, 0.5 * a.T.astype(np.float64) @ b + 2.0 * c),
        ("N", "N", a.T.copy(), b, c, 0.5 * a.T.astype(np.float64) @ b + 2.0 * c),
        ("N", "T", b, c, a, 0.5 * b.astype(np.float64) @ c.T + 2.0 * a),
    ]
    for ta, tb, x, y, z, expected in cases:
        out = cp.asarray(z)
        blas.gemm(ta, tb, cp.asarray(x), cp.asarray(y), out, 0.5, 2.0)
        if not np.allclose(cp.asnumpy(out), expected, rtol=1e-5):
            return False
    return True
