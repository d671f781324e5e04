#!/usr/bin/env bash
# base: get a fresh instance ready for the other steps.
#   - waits for cloud-init to finish (it may still be writing keys and installing packages);
#   - pauses unattended upgrades for the life of this (short-lived, self-terminating) instance: an
#     upgrade mid-training can replace the NVIDIA driver under a running CUDA job;
#   - waits for any apt/dpkg run, then installs only what is missing (python3, its venv module, tar,
#     gzip, setsid/nohup). When everything is present apt is not touched at all.
# Environment: EC2DBN_REMOTE_DIR (required), EC2DBN_STATE_DIR, EC2DBN_PYTHON; see _lib.sh.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
. "$(dirname "$0")/_lib.sh"

if already_done; then
  log "already done"
  exit 0
fi

if command -v cloud-init >/dev/null 2>&1; then
  log "waiting for cloud-init to finish"
  # Exit code 2 means "done, with recoverable errors": not a reason to stop here.
  as_root cloud-init status --wait >/dev/null || log "cloud-init reported errors (continuing)"
fi

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  log "pausing unattended upgrades until the instance stops"
  as_root systemctl stop apt-daily.timer apt-daily-upgrade.timer unattended-upgrades.service 2>/dev/null || true
fi

missing=()
command -v "$PY" >/dev/null 2>&1 || missing+=(python3)
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
command -v tar >/dev/null 2>&1 || missing+=(tar)
command -v gzip >/dev/null 2>&1 || missing+=(gzip)
command -v setsid >/dev/null 2>&1 || missing+=(util-linux)
command -v nohup >/dev/null 2>&1 || missing+=(coreutils)

if [ ${#missing[@]} -eq 0 ]; then
  log "everything needed is present ($("$PY" --version 2>&1)); apt not needed"
else
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and there is no apt-get: use an Ubuntu image"
  wait_for_apt
  log "installing ${missing[*]}"
  apt_get update
  apt_get install -y --no-install-recommends "${missing[@]}"
  "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || die "$PY still cannot create a venv after installing ${missing[*]}"
fi

mark_done
log "done"
