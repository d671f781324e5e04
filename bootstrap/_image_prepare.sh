#!/usr/bin/env bash
# image_prepare: the last step on a bake's builder (`ec2dbn bake`), run just before CreateImage. Not a step a
# stack lists. It leaves the disk so that every instance launched from the image is a fresh machine with its
# own identity, and keeps what was installed:
#   - writes $STATE_DIR/baked (the bake hash): bootstrap on an instance of the image confirms, not installs;
#   - removes the files shipped for the bake (the trainer copy that cached the data);
#   - turns unattended upgrades off for good: an instance of the image never upgrades under a CUDA job;
#   - `cloud-init clean`: the next boot is a first boot again, so it applies its own user-data (its own
#     pinned host key, its own deadline) instead of treating the image as an instance it already set up;
#   - removes the builder's deadline file, every SSH host key and, last, the login user's authorized_keys:
#     no key of the builder is in the image (the next boot's cloud-init writes the instance's own).
# The SSH session running this stays open (sshd checked the key when it logged in).
# Environment: EC2DBN_REMOTE_DIR (required), EC2DBN_STATE_DIR, EC2DBN_SYSROOT; see _lib.sh. Also:
#   EC2DBN_BAKE_HASH  required  the bake's hash (ec2dbn/bake_inputs.py)
# With EC2DBN_SYSROOT set (the tests' fake machine), files are removed under it and the machine's services
# (systemd, cloud-init) are left alone: they are not the fake machine's.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
. "$(dirname "$0")/_lib.sh"

: "${EC2DBN_BAKE_HASH:?EC2DBN_BAKE_HASH must be set (ec2dbn bake sets it)}"
printf '%s\n' "$EC2DBN_BAKE_HASH" >"$STATE_DIR/baked"
log "marked as bake $EC2DBN_BAKE_HASH"
rm -rf "$EC2DBN_REMOTE_DIR/bake"

if [ -z "$SYSROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  log "turning unattended upgrades off in the image"
  as_root systemctl disable --now apt-daily.timer apt-daily-upgrade.timer unattended-upgrades.service 2>/dev/null || true
fi
if [ -z "$SYSROOT" ] && command -v cloud-init >/dev/null 2>&1; then
  log "cloud-init clean: the next boot applies its own user-data"
  as_root cloud-init clean --logs
fi

as_root rm -f "$SYSROOT/etc/ec2dbn/deadline"
log "removing the builder's SSH host keys"
as_root find "$SYSROOT/etc/ssh" -maxdepth 1 -name 'ssh_host_*' -type f -delete 2>/dev/null || true
log "removing the builder's authorized_keys (last: this session stays open)"
rm -f "$HOME/.ssh/authorized_keys"
log "ready for imaging"
