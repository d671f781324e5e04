"""A fake EC2 instance for running bootstrap/nvidia.sh and check.sh on this GPU-less machine.

The machine is a folder: `root/` is its file system as the scripts see it (EC2DBN_SYSROOT: os-release,
/proc/driver/nvidia, /sys/bus/pci, /sys/module, /lib/modules), `bin/` its commands, and PATH holds
`bin/` plus a `tools/` folder of links to plain utilities (bash, sed, grep, ...), nothing else: the
real apt-get, modprobe or nvidia-smi of the machine running the tests can never be reached.

The commands are small bash stubs that append their argv to `calls.log` and behave like the real ones
on a fresh instance, no kinder: apt-cache and apt-get know no package before `apt-get update`, and
`apt-get install` refuses packages the fake archive lacks; installing nvidia-utils-* puts nvidia-smi on
PATH and linux-modules-nvidia-*-<kernel> puts modules under /lib/modules/<kernel>; modprobe loads only
modules built for `uname -r`; nvidia-smi answers only once the nvidia module is loaded. dkms, gcc, make
and ubuntu-drivers exist only to record that nobody called them.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ec2dbn.package_data import bootstrap_dir

DRIVER_VERSION = "580.95.05"
_TOOLS = [
    *("bash", "sh", "cat", "sed", "grep", "head", "tail", "mktemp", "tee", "rm", "basename", "dirname"),
    *("sha256sum", "cut", "mkdir", "mv", "cp", "id", "env", "touch", "chmod", "ln", "sleep", "tr", "ls"),
]

T4_LSPCI = "00:1e.0 3D controller: NVIDIA Corporation TU104GL [Tesla T4] (rev a1)"
ENA_LSPCI = "00:05.0 Ethernet controller: Amazon.com, Inc. Elastic Network Adapter (ENA)"

_STUBS: dict[str, str] = {
    "uname": """
case "${1:-}" in
  -r) cat "$FAKE/kernel" ;;
  -m) echo x86_64 ;;
  *) echo Linux ;;
esac""",
    "lspci": 'cat "$FAKE/lspci"',
    "sudo": 'while [ "${1:-}" != "${1#-}" ]; do shift; done\nexec "$@"',
    "fuser": "exit 1  # nobody holds the apt/dpkg locks",
    "apt-get": r"""
verb="" pkgs=()
while [ $# -gt 0 ]; do
  case "$1" in
    -o) shift ;;
    -*) ;;
    *) if [ -z "$verb" ]; then verb="$1"; else pkgs+=("$1"); fi ;;
  esac
  shift
done
case "$verb" in
  update)
    if [ -f "$FAKE/apt-update-error" ]; then cat "$FAKE/apt-update-error" >&2; exit 100; fi
    touch "$FAKE/apt-lists"
    echo "Reading package lists... Done" ;;
  install)
    for p in "${pkgs[@]}"; do
      if [ ! -f "$FAKE/apt-lists" ] || ! grep -qx "$p" "$FAKE/archive"; then
        echo "E: Unable to locate package $p" >&2; exit 100
      fi
    done
    if [ -f "$FAKE/apt-install-error" ]; then cat "$FAKE/apt-install-error" >&2; exit 100; fi
    for p in "${pkgs[@]}"; do
      echo "Setting up $p ($DRIVER_VERSION-0ubuntu1) ..."
      echo "$p" >> "$FAKE/installed"
      case "$p" in
        nvidia-utils-*) cp "$FAKE/nvidia-smi" "$FAKE_BIN/nvidia-smi" ;;
        linux-modules-nvidia-*)
          kernel="$(printf '%s' "$p" | sed -E 's/^linux-modules-nvidia-[0-9]+(-server)?(-open)?-//')"
          mkdir -p "$EC2DBN_SYSROOT/lib/modules/$kernel"
          for m in nvidia nvidia_uvm; do touch "$EC2DBN_SYSROOT/lib/modules/$kernel/$m.ko"; done ;;
      esac
    done ;;
  *) echo "E: the fake apt-get does not know '$verb'" >&2; exit 100 ;;
esac""",
    "apt-cache": """
[ "${1:-}" = show ] || { echo "E: the fake apt-cache only knows 'show'" >&2; exit 100; }
if [ -f "$FAKE/apt-lists" ] && grep -qx "$2" "$FAKE/archive"; then echo "Package: $2"; exit 0; fi
echo "N: Unable to locate package $2" >&2
echo "E: No packages found" >&2
exit 100""",
    "modprobe": """
module="$1" kernel="$(cat "$FAKE/kernel")"
if [ -f "$FAKE/modprobe-error" ]; then cat "$FAKE/modprobe-error" >&2; exit 1; fi
if [ ! -e "$EC2DBN_SYSROOT/lib/modules/$kernel/$module.ko" ]; then
  echo "modprobe: FATAL: Module $module not found in directory /lib/modules/$kernel" >&2; exit 1
fi
if [ "$module" = nvidia ]; then
  mkdir -p "$EC2DBN_SYSROOT/proc/driver/nvidia"
  echo "NVRM version: NVIDIA UNIX x86_64 Kernel Module  $DRIVER_VERSION" \
    > "$EC2DBN_SYSROOT/proc/driver/nvidia/version"
fi""",
    "dkms": 'echo "dkms: the fake machine builds nothing" >&2; exit 1',
    "gcc": 'echo "gcc: the fake machine builds nothing" >&2; exit 1',
    "make": 'echo "make: the fake machine builds nothing" >&2; exit 1',
    "ubuntu-drivers": 'echo "ubuntu-drivers: not expected to be used" >&2; exit 1',
}

#: Installed into bin/ by the DLAMI scenario and by `apt-get install nvidia-utils-*`.
_NVIDIA_SMI = r"""
if [ ! -e "$EC2DBN_SYSROOT/proc/driver/nvidia/version" ]; then
  echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." \
    "Make sure that the latest NVIDIA driver is installed and running."
  exit 9
fi
if [ -f "$FAKE/nvidia-smi-error" ]; then cat "$FAKE/nvidia-smi-error"; exit 6; fi
gpu="$(cat "$FAKE/gpu")"
case "$*" in
  -L) echo "GPU 0: $gpu (UUID: GPU-5f3a0b2c-7d1e-4c2a-9b6f-0123456789ab)" ;;
  --query-gpu=name,driver_version,memory.total*) echo "$gpu, $DRIVER_VERSION, 15360 MiB" ;;
  --query-gpu=name,driver_version*) echo "$gpu, $DRIVER_VERSION" ;;
  "") echo "| NVIDIA-SMI $DRIVER_VERSION    Driver Version: $DRIVER_VERSION    CUDA Version: 13.0     |" ;;
  *) echo "nvidia-smi: the fake does not know '$*'" >&2; exit 2 ;;
esac"""


@dataclass
class FakeMachine:
    """One fake instance under `home`; build it with `ubuntu()`, then change files for a scenario."""

    home: Path

    @property
    def root(self) -> Path:
        return self.home / "root"

    @property
    def bin(self) -> Path:
        return self.home / "bin"

    @property
    def fake(self) -> Path:
        """The stubs' own state and scenario switches (not part of the machine's file system)."""
        return self.home / "fake"

    def write(self, name: str, text: str) -> None:
        """Set a scenario switch, e.g. write("apt-update-error", "E: Failed to fetch ...")."""
        (self.fake / name).write_text(text if text.endswith("\n") else text + "\n")

    def calls(self, command: str | None = None) -> list[list[str]]:
        """The stub calls so far, each as argv; only `command`'s when given."""
        log = self.home / "calls.log"
        lines = log.read_text().splitlines() if log.exists() else []
        argvs = [shlex.split(line) for line in lines]
        return [a for a in argvs if command is None or a[0] == command]

    def installed(self) -> list[str]:
        path = self.fake / "installed"
        return path.read_text().split() if path.exists() else []

    def driver_loaded(self) -> None:
        """The Deep Learning AMI: nvidia-smi installed and the module loaded at boot."""
        _install_stub(self.bin / "nvidia-smi", _NVIDIA_SMI, self.home)
        version = self.root / "proc/driver/nvidia/version"
        version.parent.mkdir(parents=True, exist_ok=True)
        version.write_text(f"NVRM version: NVIDIA UNIX x86_64 Kernel Module  {DRIVER_VERSION}\n")

    def no_gpu(self) -> None:
        shutil.rmtree(self.root / "sys/bus/pci/devices/0000:00:1e.0")
        self.write("lspci", ENA_LSPCI)

    def run(self, script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run bootstrap/<script>.sh as ec2dbn does (bash, in the remote dir); PATH is this machine's."""
        remote_dir = self.home / "instance"
        remote_dir.mkdir(exist_ok=True)
        full_env = {
            "PATH": f"{self.bin}:{self.home / 'tools'}",
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "EC2DBN_REMOTE_DIR": str(remote_dir),
            "EC2DBN_SYSROOT": str(self.root),
            "FAKE": str(self.fake),
            "FAKE_BIN": str(self.bin),
            "DRIVER_VERSION": DRIVER_VERSION,
            **(env or {}),
        }
        bash = str(self.home / "tools" / "bash")
        script_path = str(bootstrap_dir() / f"{script}.sh")
        return subprocess.run(
            [bash, script_path], cwd=remote_dir, env=full_env, capture_output=True, text=True, timeout=60
        )


def _install_stub(path: Path, body: str, home: Path) -> None:
    name = path.name
    path.write_text(
        f"#!{home / 'tools' / 'bash'}\n"
        f'printf "%q " {shlex.quote(name)} "$@" >> {shlex.quote(str(home / "calls.log"))}; '
        f"echo >> {shlex.quote(str(home / 'calls.log'))}\n"
        f"{body.strip()}\n"
    )
    path.chmod(0o755)


def ubuntu(
    home: Path,
    *,
    version: str = "22.04",
    kernel: str = "6.8.0-1030-aws",
    gpu: str = "Tesla T4",
    archive_kernels: tuple[str, ...] = ("6.8.0-1030-aws", "6.8.0-1031-aws"),
) -> FakeMachine:
    """Canonical's plain Ubuntu `version` AMI on a g4dn (one `gpu`), running `kernel`, no NVIDIA driver.

    The fake archive has the 580-server and 595-server driver packages and prebuilt modules for
    `archive_kernels` (the newest of them also behind the -aws flavour metapackage, as in Ubuntu's archive).
    """
    machine = FakeMachine(home)
    for folder in (machine.bin, machine.fake, home / "tools"):
        folder.mkdir(parents=True)
    for tool in _TOOLS:
        found = shutil.which(tool)
        assert found is not None, f"the fake machine needs {tool} on this machine"
        os.symlink(found, home / "tools" / tool)
    codename = {"22.04": "jammy", "24.04": "noble"}.get(version, "unknown")
    etc = machine.root / "etc"
    etc.mkdir(parents=True)
    (etc / "os-release").write_text(
        f'PRETTY_NAME="Ubuntu {version} LTS"\nNAME="Ubuntu"\nVERSION_ID="{version}"\n'
        f"VERSION_CODENAME={codename}\nID=ubuntu\nID_LIKE=debian\n"
    )
    pci = machine.root / "sys/bus/pci/devices/0000:00:1e.0"
    pci.mkdir(parents=True)
    (pci / "vendor").write_text("0x10de\n")
    (pci / "class").write_text("0x030200\n")
    ena = machine.root / "sys/bus/pci/devices/0000:00:05.0"
    ena.mkdir(parents=True)
    (ena / "vendor").write_text("0x1d0f\n")
    (ena / "class").write_text("0x020000\n")
    machine.write("lspci", f"{ENA_LSPCI}\n{T4_LSPCI}")
    machine.write("kernel", kernel)
    machine.write("gpu", gpu)
    packages = ["dkms", "nvidia-dkms-580-server", "linux-headers-" + kernel, "ubuntu-drivers-common"]
    for branch in ("580-server", "595-server"):
        packages += [
            f"nvidia-headless-no-dkms-{branch}",
            f"nvidia-utils-{branch}",
            f"nvidia-headless-{branch}",
        ]
        packages += [f"linux-modules-nvidia-{branch}-{k}" for k in archive_kernels]
        packages.append(f"linux-modules-nvidia-{branch}-aws")
    machine.write("archive", "\n".join(packages))
    _install_stub(machine.fake / "nvidia-smi", _NVIDIA_SMI, home)
    for name, body in _STUBS.items():
        _install_stub(machine.bin / name, body, home)
    return machine


#: A stand-in for CuPy where there is no GPU: NumPy arrays behind the few names check.sh uses.
#: `mode` is "ok", "wrong" (the GPU's GEMM returns a wrong answer), "no-driver" (CUDA cannot start,
#: as CuPy raises it on a machine whose driver is too old for its CUDA runtime), "no-nvrtc" (cuBLAS works
#: but no kernel compiles: CuPy's error when libnvrtc cannot be loaded) or "wrong-sum" (a compiled
#: reduction gives a wrong answer). The kernels are NumPy here: sigmoid and column sums, the two check.sh
#: compiles (their source is for the real CuPy).
FAKE_CUPY = """
import numpy

__version__ = "13.6.0"
MODE = {mode!r}


class CUDARuntimeError(RuntimeError):
    pass


class _Runtime:
    @staticmethod
    def runtimeGetVersion():
        return 12080

    @staticmethod
    def getDeviceProperties(device):
        if MODE == "no-driver":
            raise CUDARuntimeError(
                "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"
            )
        return {{"name": b"Tesla T4"}}


class cuda:
    runtime = _Runtime


class ndarray:
    def __init__(self, data):
        self.data = data

    def __matmul__(self, other):
        out = self.data @ other.data
        if MODE == "wrong":
            out[::7] = 0.0
        return ndarray(out)


def asarray(x):
    return ndarray(numpy.asarray(x))


def _compile(name):
    if MODE == "no-nvrtc":
        raise RuntimeError("CuPy failed to load libnvrtc.so.12: OSError: cannot open shared object file")


class ElementwiseKernel:
    def __init__(self, in_params, out_params, operation, name, **_):
        self.name = name

    def __call__(self, x):
        _compile(self.name)
        return ndarray((1.0 / (1.0 + numpy.exp(-x.data.astype(numpy.float64)))).astype(numpy.float32))


class ReductionKernel:
    def __init__(self, in_params, out_params, map_expr, reduce_expr, post_map_expr, identity, name, **_):
        self.name = name

    def __call__(self, x, axis=None):
        _compile(self.name)
        out = x.data.sum(axis=axis)
        return ndarray(out * 1.01 if MODE == "wrong-sum" else out)


def asnumpy(x):
    return numpy.asarray(x.data)
"""


def fake_cupy(folder: Path, mode: str) -> Path:
    """Write the fake `cupy` package into `folder` (for PYTHONPATH) and return `folder`."""
    package = folder / "cupy"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_CUPY.format(mode=mode))
    return folder
