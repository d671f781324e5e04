"""A new user's first hour (issue 27): example names wherever a job is taken, a sweep file sent to the verb
that runs it, a folder said to be a folder — each one line and exit 2, run in this process."""

from __future__ import annotations

from pathlib import Path

import pytest

from ec2dbn.cli import main


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EC2DBN_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


def _one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert "Traceback" not in err
    return line


@pytest.mark.parametrize(
    ("args", "points"),
    [
        (["sweep-mnist5k"], 8),
        (["seed-mnist5k", "--grid", "model.learn_rates=0.1,0.3"], 2),
    ],
)
def test_sweep_takes_an_example_by_name(
    args: list[str], points: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sweep", *args, "--local", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("p0") for line in out.splitlines()) == points
    assert not (tmp_path / "results").exists()  # a dry run writes nothing


@pytest.mark.parametrize("verb", [["train", "--local"], ["train"], ["plan"]])
def test_a_sweep_file_given_to_train_or_plan_names_the_sweep_command(
    verb: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*verb, "sweep-mnist5k"]) == 2
    line = _one_error(capsys)
    assert line == (
        "error: sweep-mnist5k is a sweep: run `ec2dbn sweep sweep-mnist5k` (add --local to run it here)"
    )
    own = tmp_path / "mine.yaml"
    own.write_text("data: {name: digits}\nmodel: {layers: [64, 10]}\nsweep: {grid: {model.epochs: [1]}}\n")
    assert main([*verb, str(own)]) == 2
    assert f"{own} is a sweep: run `ec2dbn sweep {own}`" in _one_error(capsys)
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("verb", [["train", "--local"], ["plan"], ["sweep", "--local"], ["bench"]])
def test_a_folder_given_as_job_is_said_to_be_a_folder(
    verb: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "jobs").mkdir()
    assert main([*verb, "jobs"]) == 2
    line = _one_error(capsys)
    assert line.startswith("error: jobs is a folder, not a job file") and "not found" not in line


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as one without a usable GPU, whatever it has (the trainer's own refusal)."""
    from trainer import backend
    from trainer.errors import BackendError

    def refuse(choice: str = "auto") -> backend.Backend:
        raise BackendError("backend cupy needs a usable CUDA GPU: no CUDA device found; use --backend numpy")

    monkeypatch.setattr(backend, "select_backend", refuse)


def test_a_local_run_refused_before_it_starts_leaves_no_results_folder(
    no_gpu: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--local", "seed-mnist5k", "--backend", "cupy"]) == 2
    assert _one_error(capsys).startswith("error: backend cupy needs a usable CUDA GPU")
    assert not (tmp_path / "results").exists()
    # The default job says what it is in words, not by its file name.
    assert main(["train", "--local", "--backend", "cupy"]) == 2
    err = capsys.readouterr().err
    assert "running the default job (the seed's DBN on mnist-5k, offline)" in err
    assert "default-job.yaml" not in err and not (tmp_path / "results").exists()


def test_stack_flags_given_with_local_are_said_to_be_ignored(
    no_gpu: None, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "train",
        "--local",
        "seed-mnist5k",
        "--backend",
        "cupy",
        "--stack",
        "g4dn-spot",
        "--spot",
        "--keep",
    ]
    assert main(args) == 2
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: --stack g4dn-spot is ignored with --local (no stack: runs here)",
        "warning: --keep is ignored with --local (no stack: runs here)",
        "warning: --spot is ignored with --local (no stack: runs here)",
    ]


def test_the_resume_command_is_given_for_a_run_that_can_go_on(tmp_path: Path) -> None:
    from ec2dbn.cli.train_cmds import resume_command
    from ec2dbn.run.results import RunRecord

    run = Path("results") / "seed-mnist-20261207-1"
    record = RunRecord(run_id=run.name, job="seed-mnist", mode="ec2", status="interrupted")
    assert resume_command(record, run) == f"ec2dbn train --resume {run.name}"
    elsewhere = tmp_path / "my results" / run.name
    assert resume_command(record, elsewhere) == (
        f"ec2dbn train --resume {run.name} --results '{tmp_path / 'my results'}'"
    )
    record.status = "failed"  # a failed run goes on only from a checkpoint it wrote
    assert resume_command(record, elsewhere) is None
    elsewhere.mkdir(parents=True)
    (elsewhere / "checkpoint.npz").write_bytes(b"")
    assert resume_command(record, elsewhere) == (
        f"ec2dbn train --resume {run.name} --results '{tmp_path / 'my results'}'"
    )
    for status in ("finished", "diverged"):
        record.status = status
        assert resume_command(record, elsewhere) is None


def test_a_local_sweep_needing_a_gpu_this_machine_lacks_is_refused_before_its_folder(
    no_gpu: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["sweep", "seed-mnist5k", "--local", "--grid", "model.epochs=1,2", "--backend", "cupy"]
    assert main(args) == 2
    assert _one_error(capsys).startswith("error: backend cupy needs a usable CUDA GPU")
    assert not (tmp_path / "results").exists()
