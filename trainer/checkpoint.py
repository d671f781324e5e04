"""checkpoint.npz: a training state written atomically, and read back only for the job that wrote it.

Contents: the parameters (W{i}, b{i}, c{i}), fine-tuning velocities (vW{i}, vb{i}), the RBM velocities of a
layer being pretrained (pv0..pv2), the fine-tuning learning rates after decay, the epoch's permutation when
stopped mid-epoch, and `meta` (JSON): format, position (phase, layer, epoch, batch), the epoch's running
sums and elapsed seconds, the finished epochs' records, and the job fingerprint. There is no generator
state to store: every random draw is derived from (seed, position) (see trainer.rng).

Writes go to a temporary file in the same folder, fsync'ed, then os.replace()d over the old checkpoint,
so a reader (or a resume after a crash or spot interruption) sees either the old or the new file, never half.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trainer.atomic import atomic_write
from trainer.errors import JobError, TrainerError
from trainer.loop import PHASES, TrainState
from trainer.network import Params
from trainer.stored_npz import INTEGERS, StoredNpz, history_problem, is_int, is_number
from trainer.strict_json import dumps

FORMAT = "ec2dbn-trainer-checkpoint/1"


class CheckpointError(TrainerError):
    """The checkpoint cannot be used (unreadable, another format). Exit code 2."""

    exit_code = 2


def atomic_savez(path: Path, arrays: dict[str, Any]) -> None:
    """np.savez to `path` atomically (trainer.atomic: temporary file, fsync, os.replace)."""
    atomic_write(path, lambda fh: np.savez(fh, **arrays))


#: Model keys that never change the weights: a run may be resumed with them changed (and checkpoints
#: written before they existed still match).
NOT_WEIGHTS = ("eval_test_every_epoch",)


def job_fingerprint(job_dict: dict[str, Any]) -> dict[str, Any]:
    """The parts of a job that decide the weights: the model (less NOT_WEIGHTS) and which data (not
    mirrors or cache)."""
    data = {k: v for k, v in job_dict["data"].items() if k not in ("mirrors", "cache_dir")}
    model = {k: v for k, v in job_dict["model"].items() if k not in NOT_WEIGHTS}
    return {"model": model, "data": data}


def save_checkpoint(
    path: Path, state: TrainState, backend: Any, fingerprint: dict[str, Any], resumes: int
) -> None:
    """Write `state` (exactly resumable) to `path`, atomically."""
    arrays: dict[str, Any] = dict(state.params.to_host(backend))
    for i, (vw, vb) in enumerate(zip(state.vel_w, state.vel_b, strict=True)):
        arrays[f"vW{i}"], arrays[f"vb{i}"] = backend.to_host(vw), backend.to_host(vb)
    if state.pre_vel is not None:
        for i, v in enumerate(state.pre_vel):
            arrays[f"pv{i}"] = backend.to_host(v)
    arrays["learn_rates"] = np.asarray(state.learn_rates, dtype=np.float64)
    if state.batch > 0 and state.perm is not None:
        arrays["perm"] = np.asarray(state.perm, dtype=np.int64)
    meta = {
        "format": FORMAT,
        "phase": state.phase,
        "layer": state.layer,
        "epoch": state.epoch,
        "batch": state.batch,
        "sums": state.sums,
        "epoch_seconds": state.epoch_seconds,
        "history": state.history,
        "train_seconds": state.train_seconds,
        "resumes": resumes,
        "fingerprint": fingerprint,
    }
    arrays["meta"] = np.array(dumps(meta))
    atomic_savez(path, arrays)


def load_checkpoint(path: Path, backend: Any, fingerprint: dict[str, Any]) -> tuple[TrainState, int]:
    """(state, resumes so far) from `path`. Raises JobError when it belongs to another job, CheckpointError
    when it is unreadable or malformed: every array's shape is checked against the job's layers from its
    header before it is read, and every meta field's type before it is used (see trainer.stored_npz)."""
    with StoredNpz(path, CheckpointError, "checkpoint", "delete it to start over") as npz:
        meta = npz.meta()
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path}: not a trainer checkpoint (format {meta.get('format')!r})")
        saved = meta.get("fingerprint")
        if not (isinstance(saved, dict) and all(isinstance(saved.get(k), dict) for k in ("data", "model"))):
            raise npz.problem("meta.fingerprint is not an object with data and model objects")
        _check_same_job(path, saved, fingerprint)
        layers = tuple(fingerprint["model"]["layers"])
        n_w = len(layers) - 1
        why = f"for model.layers {list(layers)}"
        _check_position(npz, meta, n_w)
        params = npz.params(layers, why)
        vel_w = [npz.array(f"vW{i}", (layers[i], layers[i + 1]), why=why) for i in range(n_w)]
        vel_b = [npz.array(f"vb{i}", (layers[i + 1],), why=why) for i in range(n_w)]
        learn_rates = npz.array("learn_rates", (n_w,), why="(one per weight layer)")
        pre_vel = None
        if npz.has("pv0"):
            if meta["phase"] != "pretrain":
                raise npz.problem(f"it holds RBM velocities (pv0) in phase {meta['phase']!r}")
            n_vis, n_hid = layers[meta["layer"]], layers[meta["layer"] + 1]
            shapes = ((n_vis, n_hid), (n_hid,), (n_vis,))
            why_rbm = f"for pretraining layer {meta['layer'] + 1} of {list(layers)}"
            pre_vel = [npz.array(f"pv{i}", shape, why=why_rbm) for i, shape in enumerate(shapes)]
        perm = npz.array("perm", (None,), INTEGERS) if npz.has("perm") else None
        if perm is not None and not np.array_equal(np.sort(perm), np.arange(len(perm))):
            raise npz.problem("perm is not a permutation of the training samples")
        state = TrainState(
            params=Params.from_host(backend, params, n_w),
            vel_w=[_dev(backend, v) for v in vel_w],
            vel_b=[_dev(backend, v) for v in vel_b],
            learn_rates=[float(x) for x in learn_rates],
            pre_vel=None if pre_vel is None else [_dev(backend, v) for v in pre_vel],
            phase=meta["phase"],
            layer=meta["layer"],
            epoch=meta["epoch"],
            batch=meta["batch"],
            perm=None if perm is None else np.array(perm, dtype=np.int64),
            sums=meta["sums"],
            epoch_seconds=meta["epoch_seconds"],
            history=meta["history"],
            train_seconds=meta["train_seconds"],
        )
        return state, int(meta.get("resumes", 0))


def _check_position(npz: StoredNpz, meta: dict[str, Any], n_w: int) -> None:
    """The meta fields TrainState takes, each of the type training and logging rely on."""
    if meta.get("phase") not in PHASES:
        raise npz.problem(f"meta.phase is {meta.get('phase')!r}, not one of {', '.join(PHASES)}")
    for key, value in (
        ("epoch", meta.get("epoch")),
        ("batch", meta.get("batch")),
        ("resumes", meta.get("resumes", 0)),
    ):
        if not is_int(value):
            raise npz.problem(f"meta.{key} is {value!r}, not an integer >= 0")
    if not is_int(meta.get("layer")) or meta["layer"] >= n_w:
        raise npz.problem(f"meta.layer is {meta.get('layer')!r}, not a weight layer of {n_w}")
    sums = meta.get("sums")
    if not isinstance(sums, dict) or not all(is_number(v) for v in sums.values()):
        raise npz.problem("meta.sums is not an object of numbers")
    for key in ("epoch_seconds", "train_seconds"):
        if not is_number(meta.get(key)):
            raise npz.problem(f"meta.{key} is {meta.get(key)!r}, not a number")
    problem = history_problem(meta.get("history"))
    if problem:
        raise npz.problem(f"meta.{problem}")


def _check_same_job(path: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    diffs = [
        f"{section}.{key}"
        for section in ("data", "model")
        for key in sorted(set(saved[section]) | set(current[section]))
        if saved[section].get(key) != current[section].get(key)
    ]
    if diffs:
        raise JobError(
            f"{path} was written by a different job ({', '.join(diffs)} differ); "
            "resume with the original job or use another --out folder"
        )


def _dev(backend: Any, a: np.ndarray) -> Any:
    return backend.to_device(np.array(a, dtype=np.float32))
