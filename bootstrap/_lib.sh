# shellcheck shell=bash
# Helpers sourced by every bootstrap script (not a step of its own).
#
# Environment (set by ec2dbn/bootstrap.py; the scripts read nothing else):
#   EC2DBN_REMOTE_DIR  required  the job's folder on the instance; the venv and the markers live under it
#   EC2DBN_STATE_DIR   optional  marker files ("this step is done"), default $EC2DBN_REMOTE_DIR/.bootstrap
#   EC2DBN_PYTHON      optional  the interpreter the venv is made from, default python3
#   EC2DBN_VENV        optional  the venv, default $EC2DBN_REMOTE_DIR/venv
#   EC2DBN_SYSROOT     optional  where the machine's files are looked at (/etc/os-release, /proc/driver/nvidia,
#                                /dev/nvidia*, /sys/bus/pci, /sys/module); default "" (the real /). The tests
#                                point it at a fake machine's tree.
#
# A marker holds the checksum of the script that wrote it, so an updated script runs again.

: "${EC2DBN_REMOTE_DIR:?EC2DBN_REMOTE_DIR must be set (ec2dbn sets it)}"
STATE_DIR="${EC2DBN_STATE_DIR:-$EC2DBN_REMOTE_DIR/.bootstrap}"
# shellcheck disable=SC2034  # PY, VENV and SYSROOT are used by the scripts that source this file
PY="${EC2DBN_PYTHON:-python3}" VENV="${EC2DBN_VENV:-$EC2DBN_REMOTE_DIR/venv}" SYSROOT="${EC2DBN_SYSROOT:-}"
STEP="$(basename "$0" .sh)"
MARKER="$STATE_DIR/$STEP.done"
mkdir -p "$STATE_DIR"

log() { printf '[%s] %s\n' "$STEP" "$*"; }
die() {
  printf '[%s] ERROR: %s\n' "$STEP" "$*" >&2
  exit 1
}

# Run a command as root: directly when we are root, else with passwordless sudo (Ubuntu's default user).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

_script_sum() { sha256sum "$0" | cut -d' ' -f1; }
already_done() { [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$(_script_sum)" ]; }
mark_done() { _script_sum >"$MARKER.tmp" && mv "$MARKER.tmp" "$MARKER"; }

# An NVIDIA display/3D controller on the PCI bus (or a loaded driver): the instance has a GPU.
has_nvidia_device() {
  [ -e "$SYSROOT/proc/driver/nvidia/version" ] && return 0
  compgen -G "$SYSROOT/dev/nvidia[0-9]*" >/dev/null && return 0
  local dev
  for dev in "$SYSROOT"/sys/bus/pci/devices/*; do
    # vendor 0x10de is NVIDIA; class 0x03xxxx is a display controller (not an NVSwitch or a bridge).
    if [ -r "$dev/vendor" ] && [ "$(cat "$dev/vendor")" = 0x10de ] && [[ "$(cat "$dev/class")" == 0x03* ]]; then
      return 0
    fi
  done
  if command -v lspci >/dev/null 2>&1 && lspci 2>/dev/null | grep -Eqi '(vga|3d|display).*nvidia'; then
    return 0
  fi
  return 1
}

# The driver is installed and talks to the GPU.
gpu_works() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }

# apt-get, non-interactive, waiting up to 10 minutes for a lock held by another apt run.
apt_get() { as_root env DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 "$@"; }

# apt_get with its output shown as it comes; on failure, stop with apt's own last error line as the reason.
apt_get_or_die() {
  local out rc=0 reason
  out="$(mktemp)"
  apt_get "$@" 2>&1 | tee "$out" || rc=$?
  reason="$(grep -E '^(E|Err):' "$out" | tail -n 1 || true)"
  rm -f "$out"
  [ "$rc" -eq 0 ] || die "apt-get $1 failed (exit $rc): ${reason:-no error line; see the output above}"
}

# Wait until no apt/dpkg run holds its locks (cloud-init and apt-daily often do on a fresh instance).
wait_for_apt() {
  command -v fuser >/dev/null 2>&1 || return 0
  local waited=0
  while as_root fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock >/dev/null 2>&1; do
    if [ $((waited % 30)) -eq 0 ]; then log "waiting for another apt/dpkg run to finish (${waited}s)"; fi
    [ "$waited" -lt 900 ] || die "apt/dpkg stayed locked for 15 minutes; log in and check 'ps aux | grep apt'"
    sleep 2
    waited=$((waited + 2))
  done
}
