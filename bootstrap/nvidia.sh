#!/usr/bin/env bash
# nvidia: make the GPU usable by CuPy.
#   - skipped when nvidia-smi already works (the Deep Learning AMI ships the driver);
#   - skipped when the machine has no NVIDIA GPU (the CPU path: the job runs on NumPy);
#   - otherwise installs the driver from NVIDIA's CUDA apt repository (Ubuntu 22.04 / 24.04, x86_64
#     or arm64) with the kernel headers it builds against, and loads it. The CUDA libraries CuPy
#     needs come with CuPy itself (python.sh installs cupy-cuda12x[ctk]), so only the driver is here.
# Environment: EC2DBN_REMOTE_DIR (required), EC2DBN_STATE_DIR; see _lib.sh. Also:
#   EC2DBN_NVIDIA_DRIVER  optional  the driver package, default cuda-drivers (e.g. nvidia-open,
#                                   nvidia-driver-570-server)
#   EC2DBN_CUDA_REPO      optional  the repository base URL, default NVIDIA's
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=_lib.sh
. "$(dirname "$0")/_lib.sh"

if gpu_works; then
  log "driver present: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -n 1)"
  exit 0
fi
if ! has_nvidia_device; then
  log "no NVIDIA GPU on this machine: skipping the driver (the job will run on the CPU)"
  exit 0
fi
if already_done; then
  die "the NVIDIA driver was installed but does not answer: reboot the instance (sudo reboot), then run ec2dbn train again"
fi

# shellcheck disable=SC1091  # /etc/os-release is the instance's, not ours
. /etc/os-release
case "${ID:-}:${VERSION_ID:-}" in
  ubuntu:22.04) distro=ubuntu2204 ;;
  ubuntu:24.04) distro=ubuntu2404 ;;
  *) die "no NVIDIA driver recipe for ${PRETTY_NAME:-this OS}: use Ubuntu 22.04/24.04 or the Deep Learning AMI" ;;
esac
case "$(uname -m)" in
  x86_64) arch=x86_64 ;;
  aarch64) arch=sbsa ;;
  *) die "no NVIDIA driver recipe for $(uname -m)" ;;
esac
repo="${EC2DBN_CUDA_REPO:-https://developer.download.nvidia.com/compute/cuda/repos}/$distro/$arch"
driver="${EC2DBN_NVIDIA_DRIVER:-cuda-drivers}"

wait_for_apt
if ! dpkg -s cuda-keyring >/dev/null 2>&1; then
  log "adding NVIDIA's apt repository ($repo)"
  tmp="$(mktemp -d)"
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --retry 5 -o "$tmp/cuda-keyring.deb" "$repo/cuda-keyring_1.1-1_all.deb"
  else
    wget -q -O "$tmp/cuda-keyring.deb" "$repo/cuda-keyring_1.1-1_all.deb"
  fi
  as_root dpkg -i "$tmp/cuda-keyring.deb"
  rm -rf "$tmp"
fi
log "installing $driver and the kernel headers for $(uname -r) (this takes a few minutes)"
apt_get update
apt_get install -y --no-install-recommends "linux-headers-$(uname -r)" "$driver"
as_root modprobe nvidia || true
mark_done
gpu_works || die "the NVIDIA driver is installed but not loaded: reboot the instance (sudo reboot), then run ec2dbn train again"
log "driver ready: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -n 1)"
