"""How much memory a job's training takes, from the job alone, before anything is allocated or launched.

A network that cannot fit (`layers: [784, 100000000, 10]`: W0 alone is 292 GiB) must be refused while the
job is validated, not after a GPU instance has been paid for. The figures follow what the trainer
allocates on the device that trains (float32 throughout):

- weights: W (n_i, n_{i+1}), b (n_{i+1},) and the RBM visible biases c (n_i,) of every weight layer;
- optimizer: the fine-tuning velocities (like W and b), plus the larger of the fine-tuning step's gradient
  scratch (like W and b) and, when layers are pretrained, one RBM's velocities and gradient (2 W + 2 b + 2 c
  of its largest layer);
- buffers: the per-minibatch activations, deltas and dropout masks of the fine-tuning step (or of the
  largest RBM's CD-1 step), two scoring chunks (up to 4096 rows x the layers above the input: the test
  scorer's, and the final predictions') and one chunk of random noise;
- data: the training set (and, with eval_test_every_epoch, the test set) on the device: X (n, n_0)
  float32, one-hot targets (n, K) float32, labels (n,) int64.

It is a floor, not the process's peak: the CUDA context and cuBLAS workspaces (a few hundred MiB), the
host-side copy of the data and Python itself come on top. A job whose floor already exceeds the memory it
would run in cannot run there.
"""

from __future__ import annotations

import itertools
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path

from trainer.config import Job
from trainer.rng import NOISE_CHUNK_BYTES

GIB = 1024**3
_F32, _I64 = 4, 8
#: Rows the test scorer (trainer.network.HeldOutScore) scores at a time.
_EVAL_CHUNK = 4096

#: Samples of the built-in data sets, train and test pooled (the split is made from this pool).
BUILTIN_SAMPLES = {"mnist": 70_000, "fashion-mnist": 70_000, "mnist-5k": 5_000, "digits": 1_797}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a job's training allocates on its device, by what they hold (see the module docstring).

    samples: how many samples `data` counts; None when the data set's size is unknown without reading it
    (an IDX folder, an unreadable file): `data` is then 0 and the figure covers the network only.
    """

    weights: int
    optimizer: int
    buffers: int
    data: int
    samples: int | None

    @property
    def total(self) -> int:
        return self.weights + self.optimizer + self.buffers + self.data

    def describe(self) -> str:
        """'2,558.0 GiB (weights 296.5 GiB, velocities and gradients 592.3 GiB, ..., data 212.6 MiB)'."""
        data = f"data {size(self.data)}" if self.samples is not None else "data not counted: size unknown"
        return (
            f"{size(self.total)} (weights {size(self.weights)}, velocities and gradients "
            f"{size(self.optimizer)}, minibatch buffers {size(self.buffers)}, {data})"
        )


def size(n_bytes: float) -> str:
    """Bytes for people: '212.6 MiB', '2,558.0 GiB'."""
    if n_bytes >= GIB:
        return f"{n_bytes / GIB:,.1f} GiB"
    return f"{n_bytes / 1024**2:,.1f} MiB"


def data_samples(job: Job) -> int | None:
    """Samples the job trains and tests on (after `limit`), or None when unknown without loading them."""
    name = job.data.name
    n: int | None = BUILTIN_SAMPLES.get(name)
    if n is None and name.endswith(".npz"):
        n = _npz_samples(Path(name).expanduser())
    if n is not None and job.data.limit is not None:
        n = min(n, job.data.limit)
    return n


def _npz_samples(path: Path) -> int | None:
    from trainer.stored_npz import array_headers  # reads the .npy headers only

    try:
        shape = array_headers(path).get("X", ((),))[0]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # the loader says why, later
        return None
    return shape[0] if shape else None


def estimate_memory(job: Job) -> MemoryEstimate:
    """The memory `job`'s training needs on its device (bytes, by part). Pure arithmetic and, for an .npz
    data file, one read of its headers."""
    m = job.model
    layers, b, n_w = m.layers, m.minibatch_size, m.n_weight_layers
    pairs = list(itertools.pairwise(layers))
    weights = _F32 * sum(n_in * n_out + n_out + n_in for n_in, n_out in pairs)
    velocities = _F32 * sum(n_in * n_out + n_out for n_in, n_out in pairs)
    pretrained = [p for p, epochs in zip(pairs, m.epochs_pretrain, strict=True) if epochs > 0]
    rbm = max((2 * _F32 * (n_in * n_out + n_out + n_in) for n_in, n_out in pretrained), default=0)

    samples = data_samples(job)
    n_test = _EVAL_CHUNK if samples is None else math.ceil(job.data.test_size * samples)
    n_batches = None if samples is None else (samples - n_test) // b
    dropped = sum(layers[j] for j in range(n_w) if m.dropouts[j])  # masks, and noise for them
    kept = sum(layers[j] for j in range(1, n_w) if m.dropouts[j])  # hidden activations before dropout
    # trainer.network.FineTuneStep: a, scratch (b, n_j) below the output; d, ds (b, n_{i+1}); the output's
    # z, prob, target; masks and pre-dropout copies where there is dropout.
    finetune = b * (2 * sum(layers[:-1]) + 2 * sum(layers[1:]) + 3 * layers[-1] + dropped + kept)
    # trainer.rbm.CD1Step on its largest layer: V, H for [v0; v1], [h0; h1], a hidden sample, a difference.
    cd1 = max((b * (3 * n_in + 3 * n_out + layers[0]) for n_in, n_out in pretrained), default=0)
    noise_width = max(dropped, max((n_out for _, n_out in pretrained), default=0))
    noise = _noise_bytes(b, noise_width, n_batches)
    # HeldOutScore's chunk lives through training; predict_proba's comes on top at the end.
    scoring = (1 + m.eval_test_every_epoch) * min(_EVAL_CHUNK, n_test) * sum(layers[1:])
    data = 0
    if samples is not None:
        on_device = samples if m.eval_test_every_epoch else samples - n_test
        data = on_device * (_F32 * (layers[0] + layers[-1]) + _I64)
    return MemoryEstimate(
        weights=weights,
        optimizer=velocities + max(velocities, rbm),
        buffers=_F32 * (max(finetune, cd1) + scoring) + noise,
        data=data,
        samples=samples,
    )


def _noise_bytes(b: int, width: int, n_batches: int | None) -> int:
    """One chunk of trainer.rng.NoiseStream: as many minibatches of noise as fit NOISE_CHUNK_BYTES."""
    if not width:
        return 0
    per_batch = _F32 * b * width
    chunk = max(1, NOISE_CHUNK_BYTES // per_batch)
    return per_batch * (chunk if n_batches is None else max(1, min(n_batches, chunk)))
