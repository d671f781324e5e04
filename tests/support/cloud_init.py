"""cloud-init's own schema check (`cloud-init schema --config-file F`), run offline on this machine.

cloud-init is not installed, on purpose: on a machine where it never ran, `cloud-init status --wait`
(bootstrap/base.sh) blocks forever. Instead the Debian package is downloaded once with
`apt-get download cloud-init` and unpacked with `dpkg -x` into pytest's cache folder, then its
`cloudinit.cmd.main schema` runs under Debian's own /usr/bin/python3, whose dependencies
(python3-jsonschema, -jinja2, -yaml, -configobj, -jsonpatch, -requests, -netifaces) come from apt
(.ci/run installs them). The test is skipped only when apt cannot fetch the package.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

DEBIAN_PYTHON = "/usr/bin/python3"
APT_DEPENDENCIES = (
    "python3-jsonschema python3-jinja2 python3-yaml python3-configobj python3-jsonpatch "
    "python3-requests python3-netifaces"
)
_SITE = Path("usr/lib/python3/dist-packages")


@dataclass(frozen=True)
class SchemaResult:
    """What `cloud-init schema` said: its exit code and its stdout+stderr."""

    exit_code: int
    output: str

    @property
    def valid(self) -> bool:
        return self.exit_code == 0


def _download_and_unpack(dest: Path) -> None:
    """`apt-get download cloud-init` + `dpkg -x` into `dest` (made atomically: complete or absent)."""
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        pytest.skip("cloud-init schema check: apt-get/dpkg not available (a Debian/Ubuntu machine is needed)")
    with tempfile.TemporaryDirectory(prefix="cloud-init-deb-") as tmp:
        got = subprocess.run(
            ["apt-get", "download", "-q", "cloud-init"], cwd=tmp, capture_output=True, text=True, timeout=300
        )
        debs = sorted(Path(tmp).glob("cloud-init_*.deb"))
        if got.returncode != 0 or not debs:
            lines = (got.stderr + got.stdout).strip().splitlines()
            errors = [line for line in lines if line.startswith("E:")] or lines or ["no output"]
            pytest.skip(f"cloud-init schema check: apt could not fetch cloud-init ({errors[-1]})")
        unpacked = Path(tmp) / "root"
        subprocess.run(["dpkg", "-x", str(debs[0]), str(unpacked)], check=True, capture_output=True)
        (unpacked / "deb-name").write_text(debs[0].name + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.move(str(unpacked), str(dest))


def _check_dependencies(site: Path) -> None:
    probe = subprocess.run(
        [DEBIAN_PYTHON, "-c", "import cloudinit.cmd.main, jsonschema"],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        last = probe.stderr.strip().splitlines()[-1:] or ["?"]
        pytest.fail(
            f"cloud-init's schema check cannot start under {DEBIAN_PYTHON} ({last[0]}): "
            f"apt-get install {APT_DEPENDENCIES}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def cloud_init_schema(request: pytest.FixtureRequest) -> Callable[[str], SchemaResult]:
    """A function that validates a cloud-config text with cloud-init's own schema check."""
    if not Path(DEBIAN_PYTHON).exists():
        pytest.skip(f"cloud-init schema check: {DEBIAN_PYTHON} (Debian's python3) is missing")
    root = Path(request.config.cache.mkdir("cloud-init-deb"))
    if not (root / _SITE / "cloudinit" / "cmd" / "main.py").exists():
        _download_and_unpack(root)
    site = root / _SITE
    _check_dependencies(site)
    work = Path(tempfile.mkdtemp(prefix="cloud-config-"))
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))

    def validate(text: str) -> SchemaResult:
        config = work / "user-data"
        config.write_text(text)
        done = subprocess.run(
            [DEBIAN_PYTHON, "-m", "cloudinit.cmd.main", "schema", "--config-file", str(config)],
            cwd=work,
            env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        return SchemaResult(done.returncode, (done.stdout + done.stderr).strip())

    return validate
