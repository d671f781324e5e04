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

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from trainer.atomic import atomic_write
from trainer.errors import JobError, TrainerError
from trainer.loop import TrainState
from trainer.network import Params
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
    """(state, resumes so far) from `path`. Raises JobError when it belongs to another job."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = json.loads(str(npz["meta"]))
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"{path}: not a trainer checkpoint (format {meta.get('format')!r})")
            _check_same_job(path, meta["fingerprint"], fingerprint)
            n_w = len(fingerprint["model"]["layers"]) - 1
            params = Params.from_host(backend, npz, n_w)
            state = TrainState(
                params=params,
                vel_w=[_dev(backend, npz[f"vW{i}"]) for i in range(n_w)],
                vel_b=[_dev(backend, npz[f"vb{i}"]) for i in range(n_w)],
                learn_rates=[float(x) for x in npz["learn_rates"]],
                pre_vel=[_dev(backend, npz[f"pv{i}"]) for i in range(3)] if "pv0" in npz.files else None,
                phase=meta["phase"],
                layer=meta["layer"],
                epoch=meta["epoch"],
                batch=meta["batch"],
                perm=np.array(npz["perm"]) if "perm" in npz.files else None,
                sums=meta["sums"],
                epoch_seconds=meta["epoch_seconds"],
                history=meta["history"],
                train_seconds=meta["train_seconds"],
            )
            return state, int(meta.get("resumes", 0))
    except TrainerError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc}); delete it to start over"
        ) from None


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
