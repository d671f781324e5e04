"""checkpoint.npz and model.npz read back as untrusted files: a wrong shape, a forged header or a `meta` that
is not a JSON object is one line naming the file (exit 2 from the CLI), never a traceback or a crash later
inside training or prediction."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.trainer.trainer_fixtures import dataset, one_blas_thread, run_trainer, write_job  # noqa: F401
from trainer.backend import numpy_backend
from trainer.checkpoint import CheckpointError, job_fingerprint, load_checkpoint, save_checkpoint
from trainer.config import parse_job
from trainer.dbn import DBN
from trainer.errors import DataError
from trainer.loop import Stopped, TrainData, TrainState, train

MODEL = {"layers": [64, 16, 10], "epochs": 2, "epochs_pretrain": [1, 0], "minibatch_size": 32}
JOB = {"data": {"name": "digits"}, "model": MODEL}

pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real checkpoint written mid-epoch while pretraining layer 1: it holds pv0..pv2 and perm."""
    job = parse_job(JOB)
    be = numpy_backend()
    data = dataset("digits")
    state = TrainState.fresh(be, job.model)
    calls = iter(range(10**6))
    with pytest.raises(Stopped):
        train(
            be,
            job.model,
            TrainData.from_host(be, data.X_train, data.y_train, 10),
            state,
            should_stop=lambda: next(calls) >= 5,
        )
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.npz"
    save_checkpoint(path, state, be, job_fingerprint(job.to_dict()), resumes=0)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = dataset("digits")
    clf = DBN([64, 16, 10], epochs=1, minibatch_size=32).fit(data.X_train, data.y_train)
    path = tmp_path_factory.mktemp("model") / "model.npz"
    clf.save(path)
    return path


def tampered(src: Path, dst: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    """A copy of the .npz `src` with `change` applied to its arrays (meta is given as parsed JSON)."""
    with np.load(src, allow_pickle=False) as npz:
        arrays: dict[str, Any] = {k: npz[k] for k in npz.files}
    arrays["meta"] = json.loads(str(arrays["meta"]))
    change(arrays)
    if "meta" in arrays and not isinstance(arrays["meta"], np.ndarray):
        arrays["meta"] = np.array(json.dumps(arrays["meta"]))
    np.savez(dst, **arrays)
    return dst


def forged_header(src: Path, dst: Path, name: str, shape: tuple[int, ...]) -> Path:
    """A copy of `src` whose array `name` has a header promising `shape` (its data left as it was)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            raw = zin.read(info)
            if info.filename == f"{name}.npy":
                fh = io.BytesIO(raw)
                np.lib.format.read_magic(fh)
                _, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                head = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    head,
                    {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": shape},
                )
                raw = head.getvalue() + raw[fh.tell() :]
            zout.writestr(info.filename, raw)
    return dst


def set_meta(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(arrays: dict[str, Any]) -> None:
        arrays["meta"][key] = value

    return change


def set_array(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(arrays: dict[str, Any]) -> None:
        arrays[name] = value

    return change


def drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda arrays: arrays.pop(name)


CHECKPOINT_CASES = [
    (
        lambda a: a.update(W0=a["W0"].T),
        "W0 has shape (16, 64), expected (64, 16) for model.layers [64, 16, 10]",
    ),
    (set_array("vW1", np.zeros((3, 3), np.float32)), "vW1 has shape (3, 3), expected (16, 10)"),
    (set_array("b0", np.zeros((16, 1), np.float32)), "b0 has shape (16, 1), expected (16,)"),
    (set_array("c1", np.zeros(15, np.float32)), "c1 has shape (15,), expected (16,)"),
    (
        set_array("learn_rates", np.ones(5)),
        "learn_rates has shape (5,), expected (2,) (one per weight layer)",
    ),
    (set_array("pv0", np.zeros((16, 10), np.float32)), "pv0 has shape (16, 10), expected (64, 16)"),
    (set_array("perm", np.zeros(10, np.float64)), "perm holds float64 values, expected integers"),
    (set_array("perm", np.zeros(1203, np.int64)), "perm is not a permutation"),
    (set_array("W1", np.array(["a"] * 160).reshape(16, 10)), "W1 holds <U1 values, expected numbers"),
    (drop("vb0"), "it has no array vb0"),
    (set_array("meta", np.array(json.dumps([1, 2]))), "meta is a JSON list, not an object"),
    (set_array("meta", np.array("{not json")), "meta is not JSON"),
    (set_array("meta", np.zeros(3)), "meta is a float64 array of shape (3,), not a JSON text"),
    (drop("meta"), "it has no meta entry"),
    (set_meta("fingerprint", [1]), "meta.fingerprint is not an object with data and model objects"),
    (set_meta("phase", "sideways"), "meta.phase is 'sideways', not one of pretrain, finetune, done"),
    (set_meta("epoch", "three"), "meta.epoch is 'three', not an integer >= 0"),
    (set_meta("batch", -1), "meta.batch is -1, not an integer >= 0"),
    (set_meta("resumes", None), "meta.resumes is None, not an integer >= 0"),
    (set_meta("layer", 7), "meta.layer is 7, not a weight layer of 2"),
    (set_meta("sums", {"rec_sum": "x"}), "meta.sums is not an object of numbers"),
    (set_meta("epoch_seconds", None), "meta.epoch_seconds is None, not a number"),
    (set_meta("history", {"a": 1}), "meta.history is a dict, not a list of epoch records"),
    (set_meta("history", [{"phase": "finetune", "epoch": 1}]), "meta.history[0].loss is None, not a number"),
    (set_meta("history", [7]), "meta.history[0] is a int, not an epoch record"),
]


@pytest.mark.parametrize(("change", "words"), CHECKPOINT_CASES)
def test_a_malformed_checkpoint_is_one_line_naming_the_file(
    checkpoint: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None], words: str
) -> None:
    bad = tampered(checkpoint, tmp_path / "checkpoint.npz", change)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(bad, numpy_backend(), job_fingerprint(parse_job(JOB).to_dict()))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{bad}: unreadable checkpoint: "), msg
    assert words in msg and msg.endswith("; delete it to start over"), msg


def test_the_untampered_checkpoint_loads(checkpoint: Path) -> None:
    state, resumes = load_checkpoint(checkpoint, numpy_backend(), job_fingerprint(parse_job(JOB).to_dict()))
    assert (state.phase, state.layer, state.batch, resumes) == ("pretrain", 0, 6, 0)
    assert state.pre_vel is not None and state.perm is not None


@pytest.mark.parametrize("shape", [(10**13, 16), (64, 10**12), (0, 16)])
def test_a_forged_array_header_is_refused_before_anything_is_allocated(
    checkpoint: Path, tmp_path: Path, shape: tuple[int, ...]
) -> None:
    bad = forged_header(checkpoint, tmp_path / "checkpoint.npz", "W0", shape)
    with pytest.raises(
        CheckpointError, match=r"W0: its header promises [\d,]+ bytes of float32, it holds 4,096"
    ):
        load_checkpoint(bad, numpy_backend(), job_fingerprint(parse_job(JOB).to_dict()))


def test_a_perm_of_other_data_is_refused_when_training_resumes(checkpoint: Path, tmp_path: Path) -> None:
    bad = tampered(checkpoint, tmp_path / "checkpoint.npz", set_array("perm", np.arange(500)))
    be = numpy_backend()
    job = parse_job(JOB)
    state, _ = load_checkpoint(bad, be, job_fingerprint(job.to_dict()))
    data = dataset("digits")
    with pytest.raises(DataError, match="minibatch order has 500 samples but the training set has 1203"):
        train(be, job.model, TrainData.from_host(be, data.X_train, data.y_train, 10), state)


def test_resume_from_a_malformed_checkpoint_exits_2_with_one_line(checkpoint: Path, tmp_path: Path) -> None:
    job = write_job(tmp_path / "job.yaml", JOB["data"], MODEL)
    out = tmp_path / "out"
    out.mkdir()
    for change in (lambda a: a.update(W0=a["W0"].T), set_array("meta", np.array("[]"))):
        tampered(checkpoint, out / "checkpoint.npz", change)
        proc = run_trainer("run", str(job), "--out", str(out), "--resume", "--backend", "numpy")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"error: {out / 'checkpoint.npz'}: unreadable checkpoint: ")
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr + proc.stdout


MODEL_CASES = [
    (set_array("W1", np.zeros((10, 16), np.float32)), "W1 has shape (10, 16), expected (16, 10) for layers"),
    (set_array("classes", np.arange(10).reshape(2, 5)), "classes has shape (2, 5), expected (n,)"),
    (set_array("classes", np.arange(11)), "classes has 11 labels for 10 output units"),
    (set_array("meta", np.array("[1]")), "meta is a JSON list, not an object"),
    (set_meta("config", [64, 10]), "meta.config: model: expected a mapping of keys, got [64, 10]"),
    (set_meta("config", {"layers": [64, 16, 10], "epochs": -1}), "meta.config: epochs: expected an integer"),
    (set_meta("history", [{"phase": "finetune"}]), "meta.history[0].epoch is None, not an epoch number"),
    (set_meta("history", "x"), "meta.history is a str, not a list of epoch records"),
]


@pytest.mark.parametrize(("change", "words"), MODEL_CASES)
def test_a_malformed_model_file_is_one_line_naming_the_file(
    model_file: Path, tmp_path: Path, change: Callable[[dict[str, Any]], None], words: str
) -> None:
    bad = tampered(model_file, tmp_path / "model.npz", change)
    with pytest.raises(DataError) as err:
        DBN.load(bad, backend="numpy")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{bad}: unreadable model file: ") and words in msg, msg


def test_predict_with_a_malformed_model_exits_2_with_one_line(model_file: Path, tmp_path: Path) -> None:
    np.savez(tmp_path / "x.npz", X=np.zeros((3, 64), np.float32))
    for change in (set_array("W0", np.zeros((64, 15), np.float32)), set_meta("history", [None])):
        bad = tampered(model_file, tmp_path / "model.npz", change)
        proc = run_trainer("predict", str(bad), str(tmp_path / "x.npz"), "--backend", "numpy")
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith(f"error: {bad}: unreadable model file: ")
        assert proc.stderr.count("\n") == 1 and proc.stdout == ""
    proc = run_trainer("predict", str(model_file), str(tmp_path / "x.npz"), "--backend", "numpy")
    assert proc.returncode == 0 and len(proc.stdout.split()) == 3
