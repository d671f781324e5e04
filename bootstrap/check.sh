#!/usr/bin/env bash
# check: say what the job will run on. With a working GPU: its name, the driver, the CUDA version the
# driver supports, and proof that CuPy works from the venv: the CUDA version CuPy sees, a small float32
# matmul on the GPU (cuBLAS), an elementwise kernel and a reduction CuPy compiles at run time (NVRTC: what
# the trainer's sigmoid, sampling and column sums need), each checked against NumPy (fails, with the
# reason, if CuPy cannot use the GPU, cannot compile a kernel, or gets a different answer). Without one: says plainly that the job will run on the CPU with NumPy.
# Always runs (a few seconds); it installs nothing.
# Environment: EC2DBN_REMOTE_DIR (required), EC2DBN_PYTHON, EC2DBN_VENV; see _lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
. "$(dirname "$0")/_lib.sh"

VPY="$VENV/bin/python"
[ -x "$VPY" ] || VPY="$PY"
log "python: $("$VPY" -c 'import sys, numpy; print(sys.version.split()[0], "numpy", numpy.__version__)')"

if gpu_works; then
  while IFS= read -r gpu; do log "GPU: $gpu"; done < <(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)
  cuda="$(nvidia-smi | sed -n 's/.*CUDA Version: *\([0-9.]*\).*/\1/p' | head -n 1)"
  log "driver supports CUDA ${cuda:-unknown}"
  "$VPY" - <<'PY' || die "CuPy cannot use the GPU: see the error above"
import sys

import cupy
import numpy

rt = cupy.cuda.runtime
v = rt.runtimeGetVersion()  # 12040 is CUDA 12.4
name = rt.getDeviceProperties(0)["name"]
name = name.decode() if isinstance(name, bytes) else name
print(f"[check] CuPy {cupy.__version__} sees CUDA {v // 1000}.{v % 1000 // 10}, device 0: {name}")


def verify(what, got, want):
    err = float(numpy.max(numpy.abs(got - want)) / numpy.max(numpy.abs(want)))
    if not err <= 1e-4:  # NaN fails too
        sys.exit(f"[check] {what} disagrees with NumPy (max relative error {err:.1e})")
    print(f"[check] {what} matches NumPy (max relative error {err:.1e})")


# Large enough to run on the GPU's GEMM kernels; the reference is NumPy in float64.
rng = numpy.random.default_rng(0)
a = rng.standard_normal((512, 256), dtype=numpy.float32)
b = rng.standard_normal((256, 384), dtype=numpy.float32)
got = cupy.asnumpy(cupy.asarray(a) @ cupy.asarray(b))
verify("a 512x256 @ 256x384 float32 matmul on the GPU", got, a.astype(numpy.float64) @ b.astype(numpy.float64))
# cuBLAS needs no compiler; these two do (a CuPy without a working NVRTC fails here, not in training).
x64 = (a @ b).astype(numpy.float64)
try:
    sigmoid = cupy.ElementwiseKernel(
        "float32 x", "float32 y", "y = 1.0f / (1.0f + expf(-x))", "ec2dbn_check_sigmoid"
    )
    got = cupy.asnumpy(sigmoid(cupy.asarray(a @ b)))
    verify("an elementwise kernel (sigmoid) compiled for the GPU", got, 1.0 / (1.0 + numpy.exp(-x64)))
    column_sums = cupy.ReductionKernel(
        "float32 x", "float32 y", "x", "a + b", "y = a", "0", "ec2dbn_check_sum"
    )
    got = cupy.asnumpy(column_sums(cupy.asarray(a @ b), axis=0))
    verify("a reduction (column sums) compiled for the GPU", got, x64.sum(axis=0))
except Exception as exc:  # CompileException, a missing libnvrtc: say which, in one line
    sys.exit(f"[check] CuPy cannot compile CUDA kernels: {type(exc).__name__}: {exc}")
PY
else
  log "no GPU: the job will run on the CPU (NumPy)"
fi
