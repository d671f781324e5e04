"""Choose the array module once: NumPy on the CPU or CuPy on a GPU, and the few ops that differ between them.

Everything else in the trainer receives a `Backend` and writes `xp.dot(..., out=...)` etc. against
`backend.xp`; it never re-decides which module to use.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from trainer.errors import BackendError

CHOICES = ("auto", "numpy", "cupy")


@dataclass(frozen=True)
class Backend:
    """The array module (`xp`) and how to reach it.

    name: "numpy" or "cupy". device: a human description ("cpu: AMD EPYC (2 cores)", "gpu: NVIDIA H100 ...").
    gemm: which GEMM path the weight steps take, for train.log (trainer.blas.describe on NumPy).
    small_gemm: steps of fewer multiply-adds (batch · n_in · n_out) skip `blas` (trainer.blas.SMALL_GEMM).
    """

    name: str
    xp: ModuleType
    device: str
    blas: Any = field(default=None, repr=False, compare=False)  # trainer.blas.Blas for NumPy, when found
    gemm: str = field(default="", compare=False)
    small_gemm: int = field(default=0, compare=False)
    _kernels: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def to_device(self, a: np.ndarray) -> Any:
        """Copy a host array to the device (a no-op view for NumPy when already contiguous)."""
        return self.xp.ascontiguousarray(self.xp.asarray(a))

    def to_host(self, a: Any) -> np.ndarray:
        """A NumPy array with the contents of `a` (a device-to-host copy on CuPy)."""
        return a.get() if self.name == "cupy" else np.asarray(a)

    def take_rows(self, src: Any, idx: Any, out: Any) -> None:
        """out[i] = src[idx[i]] without allocating: the minibatch gather. src (n, d), idx (b,), out (b, d)."""
        if self.name == "cupy":
            self.xp.take(src, idx, axis=0, out=out)
        else:
            # mode="clip" lets NumPy write straight into `out` (mode="raise" buffers); idx is always in range.
            np.take(src, idx, axis=0, out=out, mode="clip")

    def errstate(self) -> contextlib.AbstractContextManager[Any]:
        """Silence float warnings for a whole epoch: overflow is intended (exp(-z) -> inf -> sigmoid 0), and
        invalid values (NaN) are a diverged run, which the loop detects once per epoch (trainer.divergence)
        and reports in one line instead of a warning per minibatch."""
        if self.name == "cupy":
            return contextlib.nullcontext()
        return np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore")

    def synchronize(self) -> None:
        """Wait for queued device work (so wall-clock timings mean something); a no-op on NumPy."""
        if self.name == "cupy":
            self.xp.cuda.get_current_stream().synchronize()

    def gemm_step(
        self, w: Any, v: Any, a: Any, d: Any, momentum: float, decay: float, *, cd: bool, scratch: Any
    ) -> None:
        """A weight matrix's whole gdbn step, given its (already scaled) gradient as the product aᵀ·d.

        backprop (cd=False): v = momentum·v + aᵀd − decay·w;  w += v
        CD (cd=True):        v = momentum·v + aᵀd;  w = (1 − decay)·w + v
        a (b, n_in), d (b, n_out); w, v, scratch (n_in, n_out), float32. `scratch` may be overwritten.
        With NumPy's own BLAS reachable (trainer.blas) and a GEMM big enough to gain from it, the GEMM
        accumulates into v and two axpys finish.
        """
        blas = self.blas
        if blas is not None and a.shape[0] * w.size >= self.small_gemm and blas.check(w, v, a, d):
            blas.gemm_tn_acc(1.0, a, d, momentum, v)
            if cd:
                if decay:
                    blas.scal(1.0 - decay, w)
            elif decay:
                blas.axpy(-decay, w, v)
            blas.axpy(1.0, v, w)
            return
        self.xp.dot(a.T, d, out=scratch)
        (self.cd_step if cd else self.momentum_step)(w, v, scratch, momentum, decay)

    def momentum_step(self, w: Any, v: Any, g: Any, momentum: float, decay: float) -> None:
        """gdbn's fine-tuning update, in place: v = momentum·v + g − decay·w; w += v.

        g is the already scaled negative step (−lr·(1−momentum)·grad/batch) and decay = lr·(1−momentum)·l2.
        On NumPy `g` is used as scratch and holds garbage afterwards. All arrays float32, same shape.
        """
        m, c = np.float32(momentum), np.float32(decay)
        if self.name == "cupy":
            self._kernel(
                "momentum_step",
                "float32 g, float32 m, float32 c",
                "float32 w, float32 v",
                "v = m * v + g - c * w; w += v;",
            )(g, m, c, w, v)
            return
        v *= m
        v += g
        if decay:
            np.multiply(w, c, out=g)
            v -= g
        w += v

    def cd_step(self, w: Any, v: Any, g: Any, momentum: float, decay: float) -> None:
        """gdbn's RBM (CD) update, in place: v = momentum·v + g; w = (1 − decay)·w + v.

        g is the already scaled step (lr·(1−momentum)·stats/batch); decay = lr·(1−momentum)·l2.
        """
        m, keep = np.float32(momentum), np.float32(1.0 - decay)
        if self.name == "cupy":
            self._kernel(
                "cd_step",
                "float32 g, float32 m, float32 keep",
                "float32 w, float32 v",
                "v = m * v + g; w = keep * w + v;",
            )(g, m, keep, w, v)
            return
        v *= m
        v += g
        if decay:
            w *= keep
        w += v

    def _kernel(self, name: str, params_in: str, params_out: str, body: str) -> Any:
        kernel = self._kernels.get(name)
        if kernel is None:
            kernel = self.xp.ElementwiseKernel(params_in, params_out, body, f"trainer_{name}")
            self._kernels[name] = kernel
        return kernel


def select_backend(choice: str = "auto") -> Backend:
    """The backend for `choice` (auto | numpy | cupy).

    auto: CuPy when a GPU is usable, else NumPy. cupy: CuPy or BackendError (exit 2) saying why not.
    CuPy imports fine on machines without a GPU and only fails on the first device operation
    (CUDARuntimeError, a RuntimeError): that is probed here and means "no GPU".
    """
    if choice not in CHOICES:
        raise BackendError(f"backend: expected one of {', '.join(CHOICES)}, got {choice!r}")
    if choice == "numpy":
        return numpy_backend()
    cupy, reason = _probe_cupy()
    if cupy is not None:
        return Backend("cupy", cupy, _gpu_name(cupy), gemm="cuBLAS (CuPy)")
    if choice == "cupy":
        raise BackendError(f"backend cupy needs a usable CUDA GPU: {reason}; use --backend numpy or auto")
    return numpy_backend()


def numpy_backend(use_blas: bool = True, small_gemm: int | None = None) -> Backend:
    """NumPy on the CPU; `use_blas=False` keeps to NumPy's own functions (no direct BLAS calls).

    small_gemm: weight steps below this many multiply-adds use NumPy even with the direct BLAS found
    (default trainer.blas.SMALL_GEMM; 0 sends every step through it, as tests of that path want).
    """
    from trainer import blas

    if not use_blas:
        return Backend("numpy", np, cpu_name(), gemm="NumPy matmul (direct BLAS not asked for)")
    found = blas.find()
    small = blas.SMALL_GEMM if small_gemm is None else small_gemm
    return Backend("numpy", np, cpu_name(), blas=found, gemm=blas.describe(found, small), small_gemm=small)


def _probe_cupy() -> tuple[ModuleType | None, str]:
    """(cupy, "") when a GPU answers, else (None, why not)."""
    try:
        import cupy  # type: ignore[import-not-found]
    except ImportError:
        return None, "CuPy is not installed (pip install cupy-cuda12x)"
    except Exception as exc:  # a broken CUDA install can fail at import time in many ways
        return None, f"CuPy fails to import: {_one_line(exc)}"
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None, "no CUDA device found"
        cupy.asarray(np.ones(2, np.float32)).sum().item()  # the first real device operation
    except Exception as exc:  # CUDARuntimeError (a RuntimeError) without a GPU/driver; others alike
        return None, f"no usable GPU ({_one_line(exc)})"
    return cupy, ""


def _gpu_name(cupy: ModuleType) -> str:
    try:
        dev = cupy.cuda.Device()
        name = cupy.cuda.runtime.getDeviceProperties(dev.id)["name"]
        name = name.decode() if isinstance(name, bytes) else str(name)
        return f"gpu: {name}"
    except Exception:
        return "gpu: CUDA device"


def cpu_name() -> str:
    """'cpu: <model name> (<n> cores)' from /proc/cpuinfo where there is one."""
    model = ""
    with contextlib.suppress(OSError):
        for line in _read_lines("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    model = model or platform.processor() or platform.machine() or "unknown"
    return f"cpu: {model} ({os.cpu_count() or 1} cores)"


def _read_lines(path: str) -> Iterator[str]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        yield from fh


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."
