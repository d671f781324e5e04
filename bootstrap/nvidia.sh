#!/usr/bin/env bash
# nvidia: make the GPU usable by CuPy.
#   - nothing to do when nvidia-smi already answers (the Deep Learning AMI ships the driver);
#   - skipped when the machine has no NVIDIA GPU (the CPU path: the job runs on NumPy);
#   - on plain Ubuntu 22.04 / 24.04: Canonical's prebuilt, signed kernel modules for the running kernel
#     (linux-modules-nvidia-<driver>-$(uname -r), from the restricted archive), the driver's user space
#     without DKMS (nvidia-headless-no-dkms-<driver>: libcuda, nvidia-persistenced) and nvidia-smi
#     (nvidia-utils-<driver>) -- the packages `ubuntu-drivers install --gpgpu nvidia:<driver>` selects --
#     then loads the modules and checks that nvidia-smi sees the GPU. Nothing is compiled: a DKMS build
#     against the AWS kernel fails on 22.04 (its 6.8 kernel is built with gcc-12, the image's compiler is
#     gcc-11). The package for the exact running kernel is chosen over the flavour metapackage
#     (linux-modules-nvidia-<driver>-aws), which follows the archive's newest kernel: its modules would
#     not load into the kernel running now.
#   - anything else (another OS, no prebuilt modules for this kernel, apt failing, a driver that does not
#     answer) fails with the reason.
# The CUDA libraries CuPy needs come with CuPy itself (python.sh), so only the driver is installed here.
# Idempotent: a re-run after success stops at the first check; a re-run after a failure tries again. An
# image's own driver (nvidia-smi present before this script installed anything) that does not answer is
# reported, not replaced.
# Environment: EC2DBN_REMOTE_DIR (required), EC2DBN_SYSROOT; see _lib.sh. Also:
#   EC2DBN_NVIDIA_DRIVER  optional  the Ubuntu driver series, default 580-server (NVIDIA's long-term
#                                   support branch, supported to June 2028; it drives every GPU ec2dbn
#                                   accepts, Turing and newer). E.g. 595-server, 580-server-open.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
. "$(dirname "$0")/_lib.sh"

driver_summary() { nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -n 1; }

if gpu_works; then
  log "driver present: $(driver_summary)"
  exit 0
fi
if ! has_nvidia_device; then
  log "no NVIDIA GPU on this machine: skipping the driver (the job will run on the CPU)"
  exit 0
fi
# A driver this script did not install (the image's) that does not answer is not replaced by a second one.
attempted="$STATE_DIR/nvidia.attempted"
if command -v nvidia-smi >/dev/null 2>&1 && [ ! -f "$attempted" ]; then
  die "the image's NVIDIA driver does not answer ($(nvidia-smi -L 2>&1 | head -n 1)): reboot the instance (sudo reboot) or launch a fresh one; ec2dbn installs no second driver over it"
fi

os_release="$SYSROOT/etc/os-release"
[ -r "$os_release" ] || die "the GPU has no driver and $os_release is missing: use Ubuntu 22.04/24.04 or the Deep Learning AMI"
# shellcheck disable=SC1090  # the instance's own file, not ours
. "$os_release"
case "${ID:-}:${VERSION_ID:-}" in
  ubuntu:22.04 | ubuntu:24.04) ;;
  *) die "the GPU has no driver and there is no driver recipe for ${PRETTY_NAME:-this OS}: use Ubuntu 22.04/24.04 or the Deep Learning AMI" ;;
esac

driver="${EC2DBN_NVIDIA_DRIVER:-580-server}"
[[ "$driver" =~ ^[0-9]{3}(-server)?(-open)?$ ]] ||
  die "EC2DBN_NVIDIA_DRIVER=$driver is not an Ubuntu NVIDIA driver series (e.g. 580-server, 595-server, 580-server-open)"
kernel="$(uname -r)"
modules="linux-modules-nvidia-$driver-$kernel"
packages=("$modules" "nvidia-headless-no-dkms-$driver" "nvidia-utils-${driver%-open}")

wait_for_apt
log "installing the NVIDIA $driver driver: Ubuntu's prebuilt modules for kernel $kernel (no DKMS build)"
apt_get_or_die update
apt-cache show "$modules" >/dev/null 2>&1 ||
  die "Ubuntu has no prebuilt NVIDIA $driver modules for the running kernel $kernel (no package $modules in the restricted archive): launch a current Ubuntu image or the Deep Learning AMI (image: dlami-ubuntu22)"
touch "$attempted"
apt_get_or_die install -y --no-install-recommends "${packages[@]}"

for module in nvidia nvidia_uvm; do
  if ! err="$(as_root modprobe "$module" 2>&1)"; then
    if [ -d "$SYSROOT/sys/module/nouveau" ]; then
      die "modprobe $module failed because the nouveau driver holds the GPU: blacklist it (echo blacklist nouveau | sudo tee /etc/modprobe.d/ec2dbn-nouveau.conf), reboot the instance, then run ec2dbn train again"
    fi
    die "modprobe $module failed: ${err:-no message} (kernel $kernel, package $modules)"
  fi
done
if ! err="$(nvidia-smi -L 2>&1)"; then
  die "the NVIDIA $driver driver is installed and loaded but nvidia-smi fails: $(printf '%s' "$err" | head -n 1)"
fi
log "driver ready: $(driver_summary) (prebuilt modules for $kernel)"
