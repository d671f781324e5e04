"""One job from YAML to results: `python -m trainer run JOB.yaml --out DIR [--backend B] [--resume]`.

DIR receives train.log and metrics.jsonl (appended live, one line per epoch), checkpoint.npz (after every
epoch and on SIGTERM/SIGINT), and at the end report.txt, model.npz and metrics.json. Unless the job sets
model.eval_test_every_epoch: false, every fine-tuning epoch is also scored on the test set (test_loss,
test_err and eval_seconds in its record; its `seconds` stay training time only). The file names and exit
codes are the trainer's contract with the orchestrator (trainer.contract); JSON is strict (non-finite
numbers are written as null, trainer.strict_json).

Exit codes: 0 finished; 2 bad job or data (a TrainerError, one line); 3 stopped by SIGTERM/SIGINT after
writing a checkpoint at the exact minibatch reached (`--resume` continues to bitwise the same weights as an
uninterrupted run on NumPy); 4 diverged: an epoch's loss (or the weights) stopped being finite, so training
stopped there; checkpoint.npz keeps the last finite state (it is never overwritten with the diverged one),
train.log and stdout name the epoch and the likely causes, and metrics.json has status "diverged" (no
model.npz, no report.txt); 1 a crash (the traceback goes to train.log and stderr).

Tests hold a run at a chosen point with $EC2DBN_TEST_HOLD (see trainer.hold; inert when unset).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import numpy as np

from trainer.backend import Backend, select_backend
from trainer.batch_progress import BatchProgress
from trainer.checkpoint import job_fingerprint, load_checkpoint, save_checkpoint
from trainer.config import Job, ModelConfig, load_job
from trainer.contract import (
    CHECKPOINT_FILE,
    EXIT_BAD,
    EXIT_CRASH,
    EXIT_DIVERGED,
    EXIT_OK,
    EXIT_STOPPED,
    METRICS_JSON,
    MODEL_FILE,
    REPORT_FILE,
)
from trainer.dbn import DBN, save_model
from trainer.divergence import Diverged
from trainer.errors import JobError, TrainerError
from trainer.hold import Hold
from trainer.loop import Stopped, TrainData, TrainState, train
from trainer.metrics import accuracy, classification_report, metrics_document
from trainer.network import HeldOutScore, predict_proba
from trainer.progress import RunLog, record_key
from trainer.strict_json import write_json


class StopSignals:
    """While active, SIGTERM and SIGINT only set a flag; the training loop polls it after each minibatch."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signame: str | None = None
        self._old: dict[int, Any] = {}

    def requested(self) -> bool:
        return self.signame is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signame = self.signame or signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():  # signals can only be caught there
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def run_job(
    job_path: str | Path,
    out_dir: str | Path,
    *,
    backend: str | None = None,
    resume: bool = False,
    echo: bool = True,
    progress_every: float = 0.0,
) -> int:
    """Run the job in `job_path`, writing results to `out_dir`; returns the exit code (0, 3 or 4).

    progress_every: seconds between progress lines within an epoch (trainer.batch_progress); 0: none (the
    library default; the command line's is trainer.contract.PROGRESS_EVERY_S).

    Raises TrainerError for bad input (after logging it to train.log when the folder is already in use);
    any other exception is a crash and is logged with its traceback before propagating.
    """
    started = time.perf_counter()
    job = load_job(job_path)
    be = select_backend(backend or job.backend)  # before anything is written: a bad choice leaves no trace
    out = Path(out_dir)
    if not resume and (out / CHECKPOINT_FILE).exists():
        raise JobError(
            f"{out} already holds a run ({CHECKPOINT_FILE}); "
            "pass --resume to continue it or choose another --out"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise JobError(f"--out {out}: cannot create the folder: {exc.strerror or exc}") from None
    log = RunLog(out, echo=echo)
    try:
        return _Job(job, Path(job_path), out, log, be, resume, started, progress_every).run()
    except TrainerError as exc:
        log.line(f"error: {exc}", echo=False)
        raise
    except Exception:
        log.line(traceback.format_exc().rstrip(), echo=False)
        raise
    finally:
        log.close()


class _Job:
    def __init__(
        self,
        job: Job,
        path: Path,
        out: Path,
        log: RunLog,
        backend: Backend,
        resume: bool,
        started: float,
        progress_every: float = 0.0,
    ) -> None:
        self.job, self.path, self.out, self.log = job, path, out, log
        self.progress_every = progress_every
        self.backend, self.resume, self.started = backend, resume, started
        self.ckpt = out / CHECKPOINT_FILE
        self.fingerprint = job_fingerprint(job.to_dict())
        self.resumes = 0
        self.saved_at: str | None = None  # where checkpoint.npz stands (None: there is none)

    def run(self) -> int:
        from trainer.data import load_data  # the data module pulls in downloads: only when running a job

        cfg, log, be = self.job.model, self.log, self.backend
        hold = Hold.from_env()  # a test seam (trainer.hold): None unless $EC2DBN_TEST_HOLD is set
        log.line(f"trainer: job {self.path} -> {self.out}")
        log.line(f"backend: {be.name} ({be.device})")
        log.line(f"gemm: {be.gemm}")
        with StopSignals() as stop:
            data = load_data(self.job.data, log=log.line)
            log.line(f"data: {data.describe()}")
            _check_fits(self.job, data.n_features, data.n_classes)
            state = self._initial_state(be)
            log.line(_describe_model(self.job))
            train_data = TrainData.from_host(be, data.X_train, data.y_train, cfg.layers[-1])
            evaluate = _test_scorer(be, cfg, data) if cfg.eval_test_every_epoch else None

            progress = BatchProgress(
                log.line,
                train_data.n // cfg.minibatch_size,
                lambda phase, layer: cfg.epochs_pretrain[layer] if phase == "pretrain" else cfg.epochs,
                self.progress_every,
            )

            def should_stop() -> bool:  # polled after every minibatch: the position is current
                progress.update(state.phase, state.layer, state.epoch, state.batch)
                if hold is not None and hold.reached(state.phase, state.epoch, state.batch):
                    hold.wait(stop.requested, log.line)
                return stop.requested()

            def on_epoch(st: TrainState, record: dict[str, Any]) -> None:
                self._save(st)  # first: logs never run ahead
                log.epoch(record)

            try:
                if stop.requested():
                    raise Stopped
                train(
                    be,
                    cfg,
                    train_data,
                    state,
                    should_stop=should_stop,
                    on_epoch=on_epoch,
                    evaluate=evaluate,
                )
            except Stopped:
                self._save(state)
                log.line(
                    f"stopped by {stop.signame} at {_position(state, cfg.epochs)}; checkpoint written to "
                    f"{self.ckpt}; continue with --resume"
                )
                return EXIT_STOPPED
            except Diverged as exc:  # `state` is the diverged one: nothing of it is saved
                return self._diverged(state, data, exc)
        self._save(state)
        self._finish(be, state, data)
        return EXIT_OK

    def _save(self, state: TrainState) -> None:
        save_checkpoint(self.ckpt, state, self.backend, self.fingerprint, self.resumes)
        self.saved_at = _position(state, self.job.model.epochs)

    def _diverged(self, state: TrainState, data: Any, exc: Diverged) -> int:
        """metrics.json with status "diverged" and the finite epochs; the cause in train.log and stdout.

        No model.npz or report.txt: the weights are NaN. checkpoint.npz is left as the last epoch wrote it.
        """
        self._write_metrics(state, data, test_accuracy=None, diverged=exc.record())
        self.log.line(str(exc))
        if self.saved_at is None:
            kept = f"no epoch ended with finite numbers, so there is no {CHECKPOINT_FILE} to keep"
        else:
            kept = f"{self.ckpt} keeps the last finite state ({self.saved_at})"
        self.log.line(
            f"{kept}; resuming would diverge again: change the job and start a new run in another --out"
        )
        return EXIT_DIVERGED

    def _initial_state(self, be: Backend) -> TrainState:
        if self.resume and self.ckpt.exists():
            state, self.resumes = load_checkpoint(self.ckpt, be, self.fingerprint)
            self.resumes += 1
            self.saved_at = _position(state, self.job.model.epochs)
            self.log.line(f"resuming from {self.ckpt} at {_position(state, self.job.model.epochs)}")
            self._catch_up_logs(state)
            return state
        if self.resume:
            self.log.line(f"no checkpoint in {self.out}: starting from the beginning")
        self.log.reset_metrics()  # epochs of an attempt that never reached a checkpoint do not count
        return TrainState.fresh(be, self.job.model)

    def _catch_up_logs(self, state: TrainState) -> None:
        """Append the checkpoint's epochs a crash kept out of metrics.jsonl / train.log (never duplicates)."""
        logged = self.log.logged_epochs()
        for record in state.history:
            if record_key(record) not in logged:
                self.log.epoch(record)

    def _finish(self, be: Backend, state: TrainState, data: Any) -> None:
        cfg, log = self.job.model, self.log
        proba = predict_proba(be, state.params, data.X_test, cfg.use_re_lu)
        y_pred = np.argmax(proba, axis=1)
        acc = accuracy(data.y_test, y_pred)
        report = classification_report(data.y_test, y_pred)
        (self.out / REPORT_FILE).write_text(report, encoding="utf-8")
        classes = np.arange(cfg.layers[-1])
        save_model(self.out / MODEL_FILE, be, state.params, cfg, classes, state.history)
        self._write_metrics(state, data, test_accuracy=acc)
        log.line("")
        for line in report.rstrip("\n").split("\n"):
            log.line(line)
        log.line("")
        log.line(f"Test accuracy: {acc:.4f} ({len(data.y_test):,} samples); results in {self.out}")

    def _write_metrics(
        self,
        state: TrainState,
        data: Any,
        test_accuracy: float | None,
        diverged: dict[str, Any] | None = None,
    ) -> None:
        """metrics.json (strict JSON): the finished epochs, timings, the job, and how the run ended."""
        cfg, be = self.job.model, self.backend
        doc = metrics_document(
            test_accuracy=test_accuracy,
            backend=be.name,
            device=be.device,
            history=state.history,
            train_seconds=state.train_seconds,
            total_seconds=time.perf_counter() - self.started,
            samples_per_epoch=len(data.y_train) // cfg.minibatch_size * cfg.minibatch_size,
            config=self.job.to_dict(),
            data={
                "name": data.name,
                "n_train": len(data.y_train),
                "n_test": len(data.y_test),
                "n_features": int(data.n_features),
                "n_classes": int(data.n_classes),
                "source": data.source,
            },
            resumes=self.resumes,
            diverged=diverged,
        )
        write_json(self.out / METRICS_JSON, doc)


def _test_scorer(be: Backend, cfg: ModelConfig, data: Any) -> HeldOutScore | None:
    """The test set on the device, scored after every fine-tuning epoch (None when it is empty)."""
    if not len(data.y_test):
        return None
    test = TrainData.from_host(be, data.X_test, data.y_test, cfg.layers[-1])
    return HeldOutScore(be, test.X, test.Y, test.y, cfg.layers, cfg.use_re_lu)


def _check_fits(job: Job, n_features: int, n_classes: int) -> None:
    """The network's input and output layers must match the data: a JobError naming the key otherwise."""
    layers = job.model.layers
    if layers[0] != n_features:
        raise JobError(
            f"model.layers[0] is {layers[0]} but data set {job.data.name!r} has {n_features} features "
            f"per sample; use layers: [{n_features}, ...]"
        )
    if n_classes > layers[-1]:
        raise JobError(
            f"model.layers[-1] is {layers[-1]} output units but data set {job.data.name!r} has labels up to "
            f"{n_classes - 1}; use at least {n_classes} output units"
        )


def _describe_model(job: Job) -> str:
    m = job.model
    text = (
        f"model: layers {list(m.layers)}, learn_rates {_short(m.learn_rates)}, "
        f"learn_rate_decays {_short(m.learn_rate_decays)}, momentum {m.momentum}, "
        f"minibatch_size {m.minibatch_size}, epochs {m.epochs}, seed {m.seed}"
    )
    if any(m.epochs_pretrain):
        text += f", epochs_pretrain {_short(m.epochs_pretrain)}"
    return text


def _short(values: tuple[Any, ...]) -> Any:
    return values[0] if len(set(values)) == 1 else list(values)


def _position(state: TrainState, epochs: int) -> str:
    """Human text for where a state stands, e.g. 'fine-tuning epoch 2, minibatch 120'."""
    if state.phase == "done":
        return "the end of training"
    what = "fine-tuning" if state.phase == "finetune" else f"pretraining layer {state.layer + 1}"
    if state.batch:
        return f"{what} epoch {state.epoch + 1}, minibatch {state.batch}"
    return f"{what}, start of epoch {state.epoch + 1}"


def predict_file(
    model_path: str | Path,
    data_path: str | Path,
    *,
    backend: str = "auto",
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """`python -m trainer predict MODEL DATA`: one predicted label per line on stdout; when DATA has labels,
    the accuracy on stderr. DATA is an .npz (X, optional y) or an IDX folder, read like the data loader."""
    from trainer.data import load_array_file

    out = out or sys.stdout
    err = err or sys.stderr
    model = DBN.load(model_path, backend)
    X, y = load_array_file(data_path)
    pred = model.predict(X)
    out.write("".join(f"{label}\n" for label in pred.tolist()))
    out.flush()
    if y is not None:
        correct = int(np.sum(pred == y))
        print(f"accuracy {correct / len(y):.6f} ({correct} of {len(y)} correct)", file=err, flush=True)
    return EXIT_OK


__all__ = [
    "EXIT_BAD",
    "EXIT_CRASH",
    "EXIT_DIVERGED",
    "EXIT_OK",
    "EXIT_STOPPED",
    "StopSignals",
    "predict_file",
    "run_job",
]
