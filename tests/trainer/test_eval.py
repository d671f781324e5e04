"""Test-set figures after every fine-tuning epoch (model.eval_test_every_epoch): they are the saved model's
real test loss and error, they never change training (weights bitwise equal with and without them, through
stops and resumes), their time stays out of the epoch's training `seconds`, and they can be switched off."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.trainer.test_backend import HAS_GPU
from tests.trainer.test_resume import JOB as RESUME_JOB
from tests.trainer.test_resume import stop_after
from tests.trainer.trainer_fixtures import (  # noqa: F401 - fixture
    dataset,
    model_arrays,
    one_blas_thread,
    run_trainer,
    write_job,
)
from trainer.backend import numpy_backend, select_backend
from trainer.checkpoint import job_fingerprint, load_checkpoint, save_checkpoint
from trainer.config import parse_job
from trainer.dbn import DBN
from trainer.errors import JobError
from trainer.loop import TEST_KEYS, Stopped, TrainData, TrainState, train
from trainer.network import HeldOutScore, Params

MODEL = {"layers": [64, 48, 10], "learn_rates": 0.3, "learn_rate_decays": 0.9, "epochs": 5}
TEST_LINE = "  test loss "


def _records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same digits job run by the CLI with test scoring on (the default) and off."""
    tmp = tmp_path_factory.mktemp("eval")
    outs = []
    for name, extra in (("on", {}), ("off", {"eval_test_every_epoch": False})):
        job = write_job(tmp / f"{name}.yaml", {"name": "digits"}, MODEL | extra)
        proc = run_trainer("run", str(job), "--out", str(tmp / name), "--backend", "numpy")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        outs.append(tmp / name)
    return outs[0], outs[1]


def test_every_epoch_carries_the_saved_models_test_figures(runs: tuple[Path, Path]) -> None:
    out, _ = runs
    data = dataset("digits")
    n_test = len(data.y_test)
    records = _records(out)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5]
    for r in records:
        assert set(TEST_KEYS) <= set(r), r
        assert r["test_loss"] > 0 and r["eval_seconds"] > 0
        assert r["test_err"] * n_test == pytest.approx(round(r["test_err"] * n_test))  # mistakes / n_test
    assert records[-1]["test_loss"] < records[0]["test_loss"]  # it learns, on data it never trained on
    assert any(r["test_loss"] != r["loss"] for r in records)  # not the training figures copied

    # The last epoch's figures are those of model.npz, scored independently on the test set.
    model = DBN.load(out / "model.npz", backend="numpy")
    proba = model.predict_proba(data.X_test).astype(np.float64)
    cross_entropy = -np.mean(np.log(proba[np.arange(n_test), data.y_test]))
    error = float(np.mean(np.argmax(proba, axis=1) != data.y_test))
    assert records[-1]["test_loss"] == pytest.approx(cross_entropy, rel=2e-5)
    assert records[-1]["test_err"] == error

    # metrics.json, model.npz's history and the estimator's history_ hold the same figures.
    m = json.loads((out / "metrics.json").read_text())
    keys = ("epoch", "loss", "err", "seconds", *TEST_KEYS)
    assert m["epochs"] == [{k: r[k] for k in keys} for r in records]
    assert m["test_accuracy"] == pytest.approx(1 - records[-1]["test_err"], abs=1e-12)
    assert [{k: h[k] for k in keys} for h in model.history_] == m["epochs"]


def test_the_seed_lines_stay_and_test_figures_follow_on_their_own_line(runs: tuple[Path, Path]) -> None:
    from tests.trainer.test_cli import EPOCH_LINE

    out, _ = runs
    log = (out / "train.log").read_text().splitlines()
    records = _records(out)
    epoch_at = [i for i, line in enumerate(log) if line.startswith("Epoch ")]
    assert len(epoch_at) == 5 and all(EPOCH_LINE.match(log[i]) for i in epoch_at)
    for i, r in zip(epoch_at, records, strict=True):
        assert log[i + 1] == f"{TEST_LINE}{r['test_loss']:.12g}  err {r['test_err']:.12g}"
    assert sum(line.startswith(TEST_LINE) for line in log) == 5


def test_switched_off_the_records_have_no_test_figures_and_the_weights_are_the_same(
    runs: tuple[Path, Path],
) -> None:
    on, off = runs
    records_on, records_off = _records(on), _records(off)
    assert all(not set(TEST_KEYS) & set(r) for r in records_off)
    m = json.loads((off / "metrics.json").read_text())
    assert all(set(e) == {"epoch", "loss", "err", "seconds"} for e in m["epochs"])
    assert m["config"]["model"]["eval_test_every_epoch"] is False
    assert not any(line.startswith(TEST_LINE) for line in (off / "train.log").read_text().splitlines())
    assert all(not set(TEST_KEYS) & set(h) for h in DBN.load(off / "model.npz", backend="numpy").history_)
    # Scoring changes nothing: the same training figures and bitwise the same weights.
    assert [(r["loss"], r["err"]) for r in records_on] == [(r["loss"], r["err"]) for r in records_off]
    ref, got = model_arrays(on / "model.npz"), model_arrays(off / "model.npz")
    assert ref.keys() == got.keys() and all(np.array_equal(ref[k], got[k]) for k in ref)


def test_the_option_is_a_strict_bool_left_out_of_the_checkpoint_fingerprint() -> None:
    job = {"data": {"name": "digits"}, "model": {"layers": [64, 10]}}
    assert parse_job(job).model.eval_test_every_epoch is True
    off = parse_job({**job, "model": {"layers": [64, 10], "eval_test_every_epoch": False}})
    assert off.model.eval_test_every_epoch is False
    for bad, shown in (("yes", "'yes'"), (1, "1"), (None, "nothing (null)")):
        with pytest.raises(JobError) as err:
            parse_job({**job, "model": {"layers": [64, 10], "eval_test_every_epoch": bad}})
        assert str(err.value) == f"model.eval_test_every_epoch: expected true or false, got {shown}"
    # It never changes the weights, so a run may be resumed with it switched.
    assert job_fingerprint(off.to_dict()) == job_fingerprint(parse_job(job).to_dict())


@pytest.mark.usefixtures("one_blas_thread")
def test_held_out_score_is_the_float64_math_in_any_chunk_and_reads_only() -> None:
    data = dataset("digits")
    be = numpy_backend()
    layers = (64, 40, 30, 10)
    params = Params.initial(be, layers, (0.3,) * 3, seed=7)  # large weights: confident, partly wrong
    params.biases[-1][:] = np.linspace(-1, 1, 10, dtype=np.float32)
    before = params.to_host(be)
    before = {k: v.copy() for k, v in before.items()}
    test = TrainData.from_host(be, data.X_test, data.y_test, 10)
    X, y = data.X_test.astype(np.float64), data.y_test
    for relu in (False, True):
        h = X
        for w, b in zip(params.weights[:-1], params.biases[:-1], strict=True):
            z = h @ w + b
            h = np.maximum(z, 0) if relu else 1 / (1 + np.exp(-z))
        z = h @ params.weights[-1] + params.biases[-1]
        logp = z - z.max(1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(1, keepdims=True))
        expected = (-logp[np.arange(len(y)), y].mean(), np.mean(np.argmax(z, 1) != y))
        for chunk in (1000, 128, 7):  # one chunk, several, a ragged last one
            loss, err = HeldOutScore(be, test.X, test.Y, test.y, layers, relu, chunk=chunk)(params)
            assert loss == pytest.approx(expected[0], rel=1e-5) and err == expected[1], (relu, chunk)
        assert 0.05 < err < 0.95 and loss > 0.1
    after = params.to_host(be)
    assert all(np.array_equal(before[k], after[k]) for k in before)


def _run_with_score(tmp_path: Path, stops: list[int], score: bool) -> TrainState:
    """test_resume's stop-checkpoint-reload schedule of its JOB, scoring the test set when `score`."""
    job = parse_job(RESUME_JOB)
    data = dataset("digits")
    be = numpy_backend()
    fp = job_fingerprint(job.to_dict())
    tdata = TrainData.from_host(be, data.X_train, data.y_train, 10)
    test = TrainData.from_host(be, data.X_test, data.y_test, 10)
    evaluate = (
        HeldOutScore(be, test.X, test.Y, test.y, job.model.layers, job.model.use_re_lu) if score else None
    )
    state = TrainState.fresh(be, job.model)
    tmp_path.mkdir(exist_ok=True)
    for n in [*stops, None]:
        try:
            train(be, job.model, tdata, state, should_stop=stop_after(n) if n else None, evaluate=evaluate)
            assert n is None, "training finished before the planned stop"
        except Stopped:
            save_checkpoint(tmp_path / "checkpoint.npz", state, be, fp, resumes=0)
            state, _ = load_checkpoint(tmp_path / "checkpoint.npz", be, fp)
    return state


@pytest.mark.usefixtures("one_blas_thread")
def test_resume_with_scoring_is_bitwise_the_uninterrupted_run_without_it(tmp_path: Path) -> None:
    plain = _run_with_score(tmp_path / "plain", [], score=False)
    full = _run_with_score(tmp_path / "full", [], score=True)
    # stops mid-pretraining, at an epoch's end, mid-fine-tuning epoch (with dropout), after lr decays
    resumed = _run_with_score(tmp_path / "resumed", [10, 27, 50, 45, 60], score=True)
    for name in ("weights", "biases", "vis_biases"):
        for a, b, c in zip(*(getattr(s.params, name) for s in (plain, full, resumed)), strict=True):
            assert np.array_equal(a, b) and np.array_equal(a, c), name

    def curve(state: TrainState) -> list[dict]:
        return [
            {k: v for k, v in r.items() if k not in ("seconds", "time", "eval_seconds")}
            for r in state.history
        ]

    assert curve(full) == curve(resumed)  # test figures included, exactly, for the epochs cut in two
    finetune = [r for r in resumed.history if r["phase"] == "finetune"]
    assert len(finetune) == 3 and all(set(TEST_KEYS) <= set(r) for r in finetune)
    assert all(not set(TEST_KEYS) & set(r) for r in resumed.history if r["phase"] == "pretrain")
    assert [{k: r[k] for k in ("loss", "err")} for r in plain.history] == [
        {k: r[k] for k in ("loss", "err")} for r in full.history
    ]


@pytest.mark.usefixtures("one_blas_thread")
def test_scoring_time_is_kept_out_of_the_epochs_training_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clock that jumps 1000 s inside each evaluation: only eval_seconds may see the jump."""
    data = dataset("digits")
    be = numpy_backend()
    cfg = parse_job({"data": {"name": "digits"}, "model": {"layers": [64, 10], "epochs": 3}}).model
    real = time.perf_counter
    jumped = {"s": 0.0}
    monkeypatch.setattr(time, "perf_counter", lambda: real() + jumped["s"])

    def evaluate(params: Params) -> tuple[float, float]:
        jumped["s"] += 1000.0
        return 0.5, 0.25

    state = TrainState.fresh(be, cfg)
    train(be, cfg, TrainData.from_host(be, data.X_train, data.y_train, 10), state, evaluate=evaluate)
    assert [(r["test_loss"], r["test_err"]) for r in state.history] == [(0.5, 0.25)] * 3
    assert all(r["eval_seconds"] >= 1000 and r["seconds"] < 1000 for r in state.history)
    assert state.train_seconds < 1000


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_GPU, reason="needs CuPy and a usable CUDA GPU")
@pytest.mark.usefixtures("one_blas_thread")
def test_cupy_scores_like_numpy_and_scoring_leaves_cupy_training_alone() -> None:
    data = dataset("digits")
    cfg = parse_job(
        {"data": {"name": "digits"}, "model": {"layers": [64, 100, 10], "epochs": 3, "dropouts": [0, 0.2]}}
    ).model
    cp = select_backend("cupy")
    scores = {}
    for be in (numpy_backend(), cp):
        test = TrainData.from_host(be, data.X_test, data.y_test, 10)
        params = Params.initial(be, cfg.layers, (0.3, 0.3), seed=3)
        scores[be.name] = HeldOutScore(be, test.X, test.Y, test.y, cfg.layers, False, chunk=100)(params)
    assert scores["cupy"][0] == pytest.approx(scores["numpy"][0], rel=1e-5)
    assert scores["cupy"][1] == scores["numpy"][1]
    states = []
    test = TrainData.from_host(cp, data.X_test, data.y_test, 10)
    for evaluate in (None, HeldOutScore(cp, test.X, test.Y, test.y, cfg.layers, False)):
        state = TrainState.fresh(cp, cfg)
        train(cp, cfg, TrainData.from_host(cp, data.X_train, data.y_train, 10), state, evaluate=evaluate)
        states.append(state)
    for a, b in zip(states[0].params.weights, states[1].params.weights, strict=True):
        assert np.array_equal(cp.to_host(a), cp.to_host(b))
    assert [r["loss"] for r in states[0].history] == [r["loss"] for r in states[1].history]
    assert all(set(TEST_KEYS) <= set(r) for r in states[1].history)
