#!/usr/bin/env bash
# python: the venv the trainer runs in, $EC2DBN_VENV (default $EC2DBN_REMOTE_DIR/venv).
#   - made with --system-site-packages, so an image whose python already has numpy/pyyaml (the Deep
#     Learning AMI) downloads nothing; when that python is itself a venv, its packages are chained in
#     too (a .pth file), since --system-site-packages would only see its base interpreter's;
#   - pip installs only what does not import: numpy, pyyaml, and cupy-cuda12x when a GPU works
#     (with [ctk], the CUDA libraries from PyPI, unless the image has a CUDA 12 toolkit);
#   - pip's cache (~/.cache/pip) is kept, so a re-run after a wipe of the venv is fast.
# Environment: EC2DBN_REMOTE_DIR (required), EC2DBN_STATE_DIR, EC2DBN_PYTHON, EC2DBN_VENV; see _lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
. "$(dirname "$0")/_lib.sh"

VPY="$VENV/bin/python"
if already_done && [ -x "$VPY" ]; then
  log "already done ($VENV)"
  exit 0
fi

if [ ! -x "$VPY" ]; then
  command -v "$PY" >/dev/null 2>&1 || die "$PY not found: run base.sh first"
  log "creating $VENV from $("$PY" --version 2>&1)"
  "$PY" -m venv --system-site-packages --without-pip "$VENV"
  parent_site="$("$PY" -c 'import site, sys; print("\n".join(site.getsitepackages()) if sys.prefix != sys.base_prefix else "")')"
  if [ -n "$parent_site" ]; then
    site_dir="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    printf '%s\n' "$parent_site" >"$site_dir/ec2dbn-parent-site.pth"
  fi
fi

need=()
"$VPY" -c 'import numpy' >/dev/null 2>&1 || need+=(numpy)
"$VPY" -c 'import yaml' >/dev/null 2>&1 || need+=(pyyaml)
if gpu_works && ! "$VPY" -c 'import cupy' >/dev/null 2>&1; then
  if ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.12' || compgen -G '/usr/local/cuda/lib64/libcublas.so.12*' >/dev/null; then
    need+=(cupy-cuda12x)
  else
    need+=('cupy-cuda12x[ctk]')
  fi
fi

if [ ${#need[@]} -eq 0 ]; then
  log "numpy and pyyaml import already: nothing to install"
else
  if ! "$VPY" -m pip --version >/dev/null 2>&1; then
    log "adding pip to the venv"
    "$VPY" -m ensurepip --upgrade --default-pip >/dev/null
  fi
  log "installing ${need[*]}"
  "$VPY" -m pip install --disable-pip-version-check --progress-bar off "${need[@]}"
fi

"$VPY" -c 'import numpy, yaml' || die "numpy/pyyaml still do not import in $VENV"
mark_done
log "venv ready: $VENV (numpy $("$VPY" -c 'import numpy; print(numpy.__version__)'))"
