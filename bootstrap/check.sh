#!/usr/bin/env bash
# check: say what the job will run on. With a working GPU: its name, the driver, the CUDA version the
# driver supports, and the CuPy and CUDA runtime versions seen from the venv (fails if CuPy cannot
# use the GPU). Without one: says plainly that the job will run on the CPU with NumPy.
# Always runs (it takes about a second); it installs nothing.
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
import cupy
rt = cupy.cuda.runtime
name = rt.getDeviceProperties(0)["name"]
name = name.decode() if isinstance(name, bytes) else name
v = rt.runtimeGetVersion()
print(f"[check] CuPy {cupy.__version__}, CUDA runtime {v // 1000}.{v % 1000 // 10}, device 0: {name}")
PY
else
  log "no GPU: the job will run on the CPU (NumPy)"
fi
