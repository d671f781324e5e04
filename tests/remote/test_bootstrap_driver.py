"""bootstrap/nvidia.sh and check.sh on each kind of instance, run for real on a fake machine.

The machine (tests/support/fake_machine.py) is a folder tree plus stub commands that answer as a fresh
Ubuntu instance does; the scripts run unchanged with bash and see nothing of the machine running the
tests. Each test names the image and what happens on it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ec2dbn.errors import RemoteError
from ec2dbn.events import RecordingReporter
from ec2dbn.ssh.bootstrap import run_bootstrap
from ec2dbn.ssh.remote import Remote
from tests.support.fake_machine import DRIVER_VERSION, FakeMachine, fake_cupy, ubuntu

NO_BUILD_TOOLS = ("dkms", "gcc", "make", "ubuntu-drivers")


def _err_line(result) -> str:  # type: ignore[no-untyped-def]
    """The script's last stderr line (die() writes the reason there)."""
    lines = result.stderr.strip().splitlines()
    return lines[-1] if lines else ""


# --- nvidia.sh ------------------------------------------------------------------------------------


def test_deep_learning_ami_with_its_driver_is_left_alone(tmp_path: Path) -> None:
    machine = ubuntu(tmp_path)
    machine.driver_loaded()

    result = machine.run("nvidia")

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"[nvidia] driver present: Tesla T4, {DRIVER_VERSION}\n"
    assert machine.calls("apt-get") == [] and machine.calls("modprobe") == []


def test_deep_learning_ami_whose_driver_does_not_answer_is_reported_not_replaced(tmp_path: Path) -> None:
    machine = ubuntu(tmp_path)
    machine.driver_loaded()
    (machine.root / "proc/driver/nvidia/version").unlink()  # e.g. a kernel update without its module

    result = machine.run("nvidia")

    assert result.returncode == 1
    assert _err_line(result) == (
        "[nvidia] ERROR: the image's NVIDIA driver does not answer (NVIDIA-SMI has failed because it "
        "couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA driver is installed "
        "and running.): reboot the instance (sudo reboot) or launch a fresh one; ec2dbn installs no second "
        "driver over it"
    )
    assert machine.calls("apt-get") == [] and machine.installed() == []


def test_no_gpu_skips_the_driver(tmp_path: Path) -> None:
    machine = ubuntu(tmp_path, gpu="none")
    machine.no_gpu()

    result = machine.run("nvidia")

    assert result.returncode == 0, result.stderr
    assert "[nvidia] no NVIDIA GPU on this machine: skipping the driver" in result.stdout
    assert machine.calls("apt-get") == [] and machine.installed() == []


@pytest.mark.parametrize(("version", "kernel"), [("22.04", "6.8.0-1030-aws"), ("24.04", "6.14.0-1017-aws")])
def test_plain_ubuntu_with_a_t4_gets_the_prebuilt_modules_of_its_running_kernel(
    tmp_path: Path, version: str, kernel: str
) -> None:
    # The archive also offers a newer kernel's modules behind the -aws flavour metapackage: those would
    # not load into the running kernel, so the exact package for `uname -r` must be the one installed.
    machine = ubuntu(tmp_path, version=version, kernel=kernel, archive_kernels=(kernel, "6.17.0-1001-aws"))

    result = machine.run("nvidia")

    assert result.returncode == 0, result.stdout + result.stderr
    wanted = [
        f"linux-modules-nvidia-580-server-{kernel}",
        "nvidia-headless-no-dkms-580-server",
        "nvidia-utils-580-server",
    ]
    assert machine.installed() == wanted
    install = [c for c in machine.calls("apt-get") if "install" in c]
    assert len(install) == 1 and install[0][-4:] == ["--no-install-recommends", *wanted]
    assert [c[1:] for c in machine.calls("modprobe")] == [["nvidia"], ["nvidia_uvm"]]
    # Nothing was compiled and nothing that compiles was installed.
    assert all(machine.calls(tool) == [] for tool in NO_BUILD_TOOLS)
    assert not any(
        "dkms" in p.replace("no-dkms", "") or p.startswith("linux-headers") for p in machine.installed()
    )
    assert result.stdout.splitlines()[-1] == (
        f"[nvidia] driver ready: Tesla T4, {DRIVER_VERSION} (prebuilt modules for {kernel})"
    )

    again = machine.run("nvidia")  # idempotent: the driver now answers, so nothing is touched
    assert again.returncode == 0 and again.stdout.startswith("[nvidia] driver present: Tesla T4")
    assert len([c for c in machine.calls("apt-get") if "install" in c]) == 1


def test_another_driver_series_can_be_asked_for(tmp_path: Path) -> None:
    machine = ubuntu(tmp_path)
    result = machine.run("nvidia", {"EC2DBN_NVIDIA_DRIVER": "595-server"})
    assert result.returncode == 0, result.stderr
    assert machine.installed() == [
        "linux-modules-nvidia-595-server-6.8.0-1030-aws",
        "nvidia-headless-no-dkms-595-server",
        "nvidia-utils-595-server",
    ]


@pytest.mark.parametrize(
    ("switch", "apt_error", "verb"),
    [
        (
            "apt-update-error",
            "E: Failed to fetch http://us-east-1.ec2.archive.ubuntu.com/ubuntu/dists/jammy/InRelease  "
            "Temporary failure resolving 'us-east-1.ec2.archive.ubuntu.com'",
            "update",
        ),
        ("apt-install-error", "E: Sub-process /usr/bin/dpkg returned an error code (1)", "install"),
    ],
)
def test_an_apt_failure_fails_with_apts_reason(
    tmp_path: Path, switch: str, apt_error: str, verb: str
) -> None:
    machine = ubuntu(tmp_path)
    machine.write(switch, f"W: Some index files failed to download.\n{apt_error}")

    result = machine.run("nvidia")

    assert result.returncode == 1
    assert _err_line(result) == f"[nvidia] ERROR: apt-get {verb} failed (exit 100): {apt_error}"
    assert machine.installed() == [] and machine.calls("modprobe") == []

    (machine.fake / switch).unlink()  # the network is back: a re-run installs
    assert machine.run("nvidia").returncode == 0
    assert machine.installed()[0] == "linux-modules-nvidia-580-server-6.8.0-1030-aws"


def test_a_kernel_without_prebuilt_modules_fails_before_installing_anything(tmp_path: Path) -> None:
    machine = ubuntu(tmp_path, kernel="6.8.0-2001-aws", archive_kernels=("6.8.0-1030-aws",))

    result = machine.run("nvidia")

    assert result.returncode == 1
    assert _err_line(result).startswith(
        "[nvidia] ERROR: Ubuntu has no prebuilt NVIDIA 580-server modules for the running kernel "
        "6.8.0-2001-aws (no package linux-modules-nvidia-580-server-6.8.0-2001-aws in the restricted archive)"
    )
    assert "Deep Learning AMI" in _err_line(result)
    assert [c for c in machine.calls("apt-get") if "install" in c] == [] and machine.installed() == []


@pytest.mark.parametrize(
    ("switch", "text", "reason"),
    [
        (  # the driver loads but nvidia-smi does not see the GPU
            "nvidia-smi-error",
            "No devices were found",
            "the NVIDIA 580-server driver is installed and loaded but nvidia-smi fails: "
            "No devices were found",
        ),
        (  # the module does not load (here: a signature the kernel refuses)
            "modprobe-error",
            "modprobe: ERROR: could not insert 'nvidia': Key was rejected by service",
            "modprobe nvidia failed: modprobe: ERROR: could not insert 'nvidia': Key was rejected by service "
            "(kernel 6.8.0-1030-aws, package linux-modules-nvidia-580-server-6.8.0-1030-aws)",
        ),
    ],
)
def test_a_driver_that_does_not_answer_after_the_install_fails_with_the_reason(
    tmp_path: Path, switch: str, text: str, reason: str
) -> None:
    machine = ubuntu(tmp_path)
    machine.write(switch, text)

    result = machine.run("nvidia")

    assert result.returncode == 1
    assert _err_line(result) == f"[nvidia] ERROR: {reason}"
    assert "driver ready" not in result.stdout
    again = machine.run("nvidia")  # not marked done: a re-run checks again and says the same
    assert again.returncode == 1 and _err_line(again) == _err_line(result)


def test_nouveau_holding_the_gpu_asks_for_a_reboot(tmp_path: Path) -> None:
    machine = ubuntu(tmp_path)
    machine.write("modprobe-error", "modprobe: ERROR: could not insert 'nvidia': No such device")
    (machine.root / "sys/module/nouveau").mkdir(parents=True)

    result = machine.run("nvidia")

    assert result.returncode == 1
    assert "the nouveau driver holds the GPU: blacklist it (echo blacklist nouveau" in _err_line(result)


@pytest.mark.parametrize(
    ("os_release", "shown"),
    [
        (
            'PRETTY_NAME="Amazon Linux 2023.6.20250107"\nID="amzn"\nVERSION_ID="2023"\n',
            "Amazon Linux 2023.6.20250107",
        ),
        ('PRETTY_NAME="Ubuntu 20.04.6 LTS"\nID=ubuntu\nVERSION_ID="20.04"\n', "Ubuntu 20.04.6 LTS"),
    ],
)
def test_an_image_without_a_recipe_fails_with_the_reason(tmp_path: Path, os_release: str, shown: str) -> None:
    machine = ubuntu(tmp_path)
    (machine.root / "etc/os-release").write_text(os_release)

    result = machine.run("nvidia")

    assert result.returncode == 1
    assert _err_line(result) == (
        f"[nvidia] ERROR: the GPU has no driver and there is no driver recipe for {shown}: "
        "use Ubuntu 22.04/24.04 or the Deep Learning AMI"
    )
    assert machine.calls("apt-get") == []


def test_a_driver_series_that_is_not_one_is_refused(tmp_path: Path) -> None:
    machine = ubuntu(tmp_path)
    result = machine.run("nvidia", {"EC2DBN_NVIDIA_DRIVER": "cuda-drivers"})
    assert result.returncode == 1
    assert "EC2DBN_NVIDIA_DRIVER=cuda-drivers is not an Ubuntu NVIDIA driver series" in _err_line(result)
    assert machine.calls("apt-get") == []


# --- check.sh -------------------------------------------------------------------------------------


def _check(machine: FakeMachine, tmp_path: Path, cupy_mode: str):  # type: ignore[no-untyped-def]
    """check.sh with this interpreter (numpy) as the venv's python and a fake CuPy in `cupy_mode`."""
    site = fake_cupy(tmp_path / f"site-{cupy_mode}", cupy_mode)
    return machine.run("check", {"EC2DBN_PYTHON": sys.executable, "PYTHONPATH": str(site)})


def test_check_proves_cupy_works_on_the_gpu(tmp_path: Path) -> None:
    machine = ubuntu(tmp_path)
    machine.driver_loaded()

    result = _check(machine, tmp_path, "ok")

    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert f"[check] GPU: Tesla T4, {DRIVER_VERSION}, 15360 MiB" in out
    assert "[check] driver supports CUDA 13.0" in out
    assert "[check] CuPy 13.6.0 sees CUDA 12.8, device 0: Tesla T4" in out
    assert out[-3].startswith(
        "[check] a 512x256 @ 256x384 float32 matmul on the GPU matches NumPy (max relative error"
    )
    assert out[-2].startswith("[check] an elementwise kernel (sigmoid) compiled for the GPU matches NumPy")
    assert out[-1].startswith("[check] a reduction (column sums) compiled for the GPU matches NumPy")


@pytest.mark.parametrize(
    ("cupy_mode", "reason"),
    [
        ("wrong", "[check] a 512x256 @ 256x384 float32 matmul on the GPU disagrees with NumPy"),
        ("no-driver", "cudaErrorInsufficientDriver: CUDA driver version is insufficient"),
        ("no-nvrtc", "[check] CuPy cannot compile CUDA kernels: RuntimeError: CuPy failed to load libnvrtc"),
        ("wrong-sum", "[check] a reduction (column sums) compiled for the GPU disagrees with NumPy"),
    ],
)
def test_check_fails_when_cupy_cannot_use_the_gpu(tmp_path: Path, cupy_mode: str, reason: str) -> None:
    # "wrong": the GPU's matmul gives a different answer; "no-driver": CuPy cannot start CUDA at all.
    machine = ubuntu(tmp_path)
    machine.driver_loaded()

    result = _check(machine, tmp_path, cupy_mode)

    assert result.returncode == 1
    assert reason in result.stderr
    assert _err_line(result) == "[check] ERROR: CuPy cannot use the GPU: see the error above"


def test_check_without_a_gpu_says_cpu(tmp_path: Path) -> None:
    machine = ubuntu(tmp_path, gpu="none")
    machine.no_gpu()
    result = _check(machine, tmp_path, "no-driver")  # CuPy is never imported on the CPU path
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[check] no GPU: the job will run on the CPU (NumPy)"


# --- through ec2dbn's bootstrap over SSH ------------------------------------------------------------


def test_a_driver_failure_reaches_the_user_as_one_line(remote: Remote, tmp_path: Path) -> None:
    # The same fake machine, driven by run_bootstrap over the loopback sshd: the reason apt gave is in
    # the error ec2dbn raises, and check.sh never runs.
    machine = ubuntu(tmp_path / "machine")
    apt_error = (
        "E: Failed to fetch http://archive.ubuntu.com/ubuntu/dists/jammy/InRelease  Connection timed out"
    )
    machine.write("apt-update-error", apt_error)
    env = {
        "PATH": f"{machine.bin}:{machine.home / 'tools'}",
        "EC2DBN_SYSROOT": str(machine.root),
        "FAKE": str(machine.fake),
        "FAKE_BIN": str(machine.bin),
        "DRIVER_VERSION": DRIVER_VERSION,
    }
    reporter = RecordingReporter()
    with pytest.raises(RemoteError) as err:
        run_bootstrap(
            remote, ["nvidia", "check"], str(tmp_path / "instance"), reporter, tmp_path / "b.log", env=env
        )
    message = str(err.value)
    assert message.startswith("bootstrap script nvidia.sh failed with exit code 1: ")
    assert f"[nvidia] ERROR: apt-get update failed (exit 100): {apt_error}" in message
    assert "\n" not in message
    assert reporter.lines("step") == ["bootstrap: nvidia"]
