"""`python -m trainer run/predict` as the orchestrator runs it: output files, exit codes 0/1/2/3, and
interrupting with SIGTERM/SIGINT then resuming to bitwise the weights of an uninterrupted run."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from tests.support.hold import HELD, TrainerHold
from tests.trainer.trainer_fixtures import dataset, model_arrays, run_trainer, start_trainer, write_job
from trainer.dbn import DBN

EPOCH_LINE = re.compile(
    r"^Epoch (\d+):  loss (\d+\.\d+(e-\d+)?)  err (\d+(\.\d+)?(e-\d+)?)  \((\d+:\d\d:\d\d)\)$"
)
SMALL = {"layers": [64, 100, 10], "learn_rates": 0.3, "epochs": 30}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    tmp = tmp_path_factory.mktemp("run")
    job = write_job(tmp / "digits.yaml", {"name": "digits"}, SMALL, stack="ignored-by-the-trainer")
    proc = run_trainer("run", str(job), "--out", str(tmp / "out"), "--backend", "numpy")
    return tmp / "out", proc


def test_run_writes_every_result(finished_run: tuple[Path, object]) -> None:
    out, proc = finished_run
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint.npz",
        "metrics.json",
        "metrics.jsonl",
        "model.npz",
        "report.txt",
        "train.log",
    ]
    log = (out / "train.log").read_text().splitlines()
    epochs = [line for line in log if line.startswith("Epoch ")]
    assert len(epochs) == 30 and all(EPOCH_LINE.match(line) for line in epochs), epochs[:2]
    assert [int(EPOCH_LINE.match(line).group(1)) for line in epochs] == list(range(1, 31))
    # stdout shows the same lines as train.log
    assert [line for line in proc.stdout.splitlines() if line.startswith("Epoch ")] == epochs

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == list(range(1, 31))
    test_keys = {"test_loss", "test_err", "eval_seconds"}  # eval_test_every_epoch is on by default
    assert set(records[0]) == {"phase", "layer", "epoch", "loss", "err", "seconds", "time"} | test_keys
    assert records[-1]["loss"] < records[0]["loss"] and records[-1]["err"] < records[0]["err"]

    m = json.loads((out / "metrics.json").read_text())
    assert m["backend"] == "numpy" and m["device"].startswith("cpu: ")
    assert [e["epoch"] for e in m["epochs"]] == list(range(1, 31)) and m["pretrain_epochs"] == []
    keys = ("epoch", "loss", "err", "seconds", "test_loss", "test_err", "eval_seconds")
    assert m["epochs"][4] == {k: records[4][k] for k in keys}
    assert m["data"]["name"] == "digits" and m["data"]["n_train"] == 1203 and m["data"]["n_test"] == 594
    assert (
        m["config"]["model"]["layers"] == [64, 100, 10] and m["config"]["stack"] == "ignored-by-the-trainer"
    )
    assert 0 < m["train_seconds"] <= m["total_seconds"] and m["samples_per_second"] > 0
    assert m["test_accuracy"] > 0.90  # measured: 0.9242 (digits, 64-100-10, lr 0.3, 30 epochs)


def test_report_and_model_agree_with_scikit_learn(finished_run: tuple[Path, object]) -> None:
    from sklearn.metrics import classification_report

    out, _ = finished_run
    data = dataset("digits")
    pred = DBN.load(out / "model.npz", backend="numpy").predict(data.X_test)
    assert (out / "report.txt").read_text() == classification_report(data.y_test, pred)
    m = json.loads((out / "metrics.json").read_text())
    assert m["test_accuracy"] == float(np.mean(pred == data.y_test))
    assert "Test accuracy: " in (out / "train.log").read_text()


def test_predict_cli(finished_run: tuple[Path, object], tmp_path: Path) -> None:
    out, _ = finished_run
    data = dataset("digits")
    np.savez(tmp_path / "test.npz", X=data.X_test, y=data.y_test)
    proc = run_trainer("predict", str(out / "model.npz"), str(tmp_path / "test.npz"), "--backend", "numpy")
    assert proc.returncode == 0, proc.stderr
    pred = np.array([int(x) for x in proc.stdout.split()])
    assert np.array_equal(pred, DBN.load(out / "model.npz", backend="numpy").predict(data.X_test))
    acc = np.mean(pred == data.y_test)
    assert proc.stderr == f"accuracy {acc:.6f} ({int(acc * len(pred) + 0.5)} of {len(pred)} correct)\n"
    # without labels: predictions only
    np.savez(tmp_path / "x.npz", X=data.X_test[:5])
    proc = run_trainer("predict", str(out / "model.npz"), str(tmp_path / "x.npz"))
    assert proc.returncode == 0 and proc.stdout.split() == [str(p) for p in pred[:5]] and proc.stderr == ""


def test_predict_rejects_the_wrong_data_with_exit_2(
    finished_run: tuple[Path, object], tmp_path: Path
) -> None:
    out, _ = finished_run
    np.savez(tmp_path / "wide.npz", X=np.zeros((3, 784), np.float32))
    proc = run_trainer("predict", str(out / "model.npz"), str(tmp_path / "wide.npz"))
    assert proc.returncode == 2
    assert proc.stderr == "error: X has 784 features but the network's input layer has 64 units\n"
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    proc = run_trainer("predict", str(tmp_path / "junk.npz"), str(tmp_path / "wide.npz"))
    assert proc.returncode == 2 and proc.stderr.startswith(
        f"error: {tmp_path / 'junk.npz'}: unreadable model file"
    )


@pytest.mark.parametrize(
    ("data", "model", "message"),
    [
        (
            {"name": "digits"},
            {"layers": [784, 10]},
            "error: model.layers[0] is 784 but data set 'digits' has 64",
        ),
        (
            {"name": "digits"},
            {"layers": [64, 5]},
            "error: model.layers[-1] is 5 output units but data set 'digits'",
        ),
        (
            {"name": "digits", "limit": 40},
            {"layers": [64, 10]},
            "error: the training set has 26 samples, fewer",
        ),
    ],
)
def test_bad_data_is_one_line_and_exit_2(tmp_path: Path, data: dict, model: dict, message: str) -> None:
    job = write_job(tmp_path / "job.yaml", data, model)
    proc = run_trainer("run", str(job), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(message) and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr in (tmp_path / "out" / "train.log").read_text()  # the run's log says why, too
    assert not (tmp_path / "out" / "checkpoint.npz").exists()  # so a corrected job may reuse the folder


def test_an_existing_run_needs_resume(finished_run: tuple[Path, object], tmp_path: Path) -> None:
    out, _ = finished_run
    job = write_job(tmp_path / "digits.yaml", {"name": "digits"}, SMALL)
    proc = run_trainer("run", str(job), "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr == (
        f"error: {out} already holds a run (checkpoint.npz); "
        "pass --resume to continue it or choose another --out\n"
    )


def test_resume_without_a_checkpoint_starts_from_the_beginning(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.yaml", {"name": "digits"}, {"layers": [64, 10], "epochs": 2})
    proc = run_trainer("run", str(job), "--out", str(tmp_path / "out"), "--resume", "--backend", "numpy")
    assert proc.returncode == 0, proc.stderr
    assert f"no checkpoint in {tmp_path / 'out'}: starting from the beginning" in proc.stdout
    assert len((tmp_path / "out" / "metrics.jsonl").read_text().splitlines()) == 2


def test_a_crash_exits_1_with_the_traceback_in_train_log(tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.yaml", {"name": "digits"}, {"layers": [64, 10], "epochs": 1})
    (tmp_path / "out" / "report.txt").mkdir(parents=True)  # writing the report will fail: a genuine crash
    proc = run_trainer("run", str(job), "--out", str(tmp_path / "out"))
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr and "IsADirectoryError" in proc.stderr
    log = (tmp_path / "out" / "train.log").read_text()
    assert "Epoch 1:" in log and "Traceback (most recent call last)" in log and "IsADirectoryError" in log


def interrupt(job: Path, out: Path, sig: signal.Signals, hold: TrainerHold, *extra: str) -> tuple[int, str]:
    """Start a run held at `hold`, send `sig` once it says it is held; return (exit code, output)."""
    proc = start_trainer("run", str(job), "--out", str(out), "--backend", "numpy", *extra, env=hold.env)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(HELD):
            proc.send_signal(sig)
            break
    rest, err = proc.communicate(timeout=120)
    return proc.returncode, "".join(lines) + rest + err


def checkpoint_position(out: Path) -> tuple[str, int, int]:
    with np.load(out / "checkpoint.npz") as ckpt:
        meta = json.loads(str(ckpt["meta"]))
    return meta["phase"], meta["epoch"], meta["batch"]


def test_sigterm_then_resume_gives_bitwise_the_uninterrupted_weights(tmp_path: Path) -> None:
    model = {"layers": [64, 200, 200, 10], "learn_rates": 0.3, "learn_rate_decays": 0.9, "epochs": 20}
    model |= {"minibatch_size": 16, "dropouts": [0.0, 0.2, 0.2]}
    job = write_job(tmp_path / "job.yaml", {"name": "digits"}, model)
    reference = run_trainer("run", str(job), "--out", str(tmp_path / "ref"), "--backend", "numpy")
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "out"
    # Signalled while held at a known point (an epoch boundary, then mid-epoch), however fast the CPU; the
    # in-process tests in test_resume.py cover every position; this checks the real signal path.
    with TrainerHold(tmp_path, epoch=2) as boundary:
        code, text = interrupt(job, out, signal.SIGTERM, boundary)
    assert code == 3, text
    assert f"stopped by SIGTERM at {boundary.position}; checkpoint written" in text
    assert "continue with --resume" in text
    assert checkpoint_position(out) == ("finetune", 1, 0)
    with TrainerHold(tmp_path, epoch=4, minibatch=5) as mid_epoch:  # a second one, by Ctrl-C
        code, text = interrupt(job, out, signal.SIGINT, mid_epoch, "--resume")
        assert code == 3, text
        assert "resuming from" in text and f"stopped by SIGINT at {mid_epoch.position};" in text
        assert checkpoint_position(out) == ("finetune", 3, 5)
        # Resumed at the hold point, with its file still there: passed, not reached, so no hold.
        args = ("run", str(job), "--out", str(out), "--backend", "numpy", "--resume")
        proc = start_trainer(*args, env=mid_epoch.env)
        rest, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert HELD not in rest

    ref, got = model_arrays(tmp_path / "ref" / "model.npz"), model_arrays(out / "model.npz")
    assert ref.keys() == got.keys() and len(ref) == 9
    for name in ref:
        assert np.array_equal(ref[name], got[name]), name
    # the logs hold each epoch once, with the uninterrupted run's numbers
    ref_epochs = [json.loads(x) for x in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    got_epochs = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["loss"], r["err"]) for r in got_epochs] == [
        (r["epoch"], r["loss"], r["err"]) for r in ref_epochs
    ]
    log_epochs = [x for x in (out / "train.log").read_text().splitlines() if x.startswith("Epoch ")]
    assert [int(EPOCH_LINE.match(x).group(1)) for x in log_epochs] == list(range(1, 21))
    assert json.loads((out / "metrics.json").read_text())["resumes"] == 2
