"""Every random number the trainer uses, derived from the model seed and *where* it is used.

Each draw comes from its own NumPy generator keyed by (seed, phase, layer, epoch, chunk), so:
- the NumPy and CuPy backends get identical numbers (they are always drawn on the host, then copied over);
- resuming from a checkpoint needs no generator state, only the position (phase, layer, epoch, batch):
  re-deriving the key reproduces the same permutation and the same dropout masks / RBM samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Key spaces, so that no two uses of the seed ever share a stream.
INIT, PRETRAIN, FINETUNE = 0, 1, 2
_PERMUTATION, _NOISE = 0, 1
NOISE_CHUNK_BYTES = (
    16 << 20
)  # host->device copies of noise happen once per chunk of minibatches, not per batch


def generator(seed: int, *key: int) -> np.random.Generator:
    """An independent PCG64 stream for (seed, *key)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *key])))


def initial_weights(layers: tuple[int, ...], scales: tuple[float, ...], seed: int) -> list[np.ndarray]:
    """gdbn's initialisation: W_i = scales[i] · N(0, 1), shape (layers[i], layers[i+1]), float32."""
    rng = generator(seed, INIT)
    return [
        (rng.standard_normal((n_in, n_out), dtype=np.float32) * np.float32(scale))
        for n_in, n_out, scale in zip(layers[:-1], layers[1:], scales, strict=True)
    ]


def permutation(seed: int, phase: int, layer: int, epoch: int, n: int) -> np.ndarray:
    """The minibatch order of one epoch: a permutation of range(n), int64 (n,)."""
    return generator(seed, phase, layer, epoch, _PERMUTATION).permutation(n)


class NoiseStream:
    """Per-minibatch noise for one epoch: `batch(k)` is a (b, width) float32 device array.

    Drawn on the host in chunks of `chunk` minibatches (each chunk its own generator), copied to the device
    once per chunk. `kind` is "uniform" ([0, 1): dropout masks, binary RBM samples) or "normal" (ReLU RBM).
    The chunk size depends only on (b, width, n_batches), so every backend draws the same numbers.
    """

    def __init__(
        self,
        backend: Any,
        key: tuple[int, ...],
        n_batches: int,
        batch_size: int,
        width: int,
        kind: str = "uniform",
    ) -> None:
        self.backend, self.key, self.kind = backend, key, kind
        self.n_batches, self.b, self.width = n_batches, batch_size, width
        self.chunk = max(1, min(n_batches, NOISE_CHUNK_BYTES // (batch_size * width * 4)))
        self._index = -1
        self._block: Any = None

    def batch(self, k: int) -> Any:
        """Noise for minibatch k (0-based) of the epoch, (b, width) float32 on the device."""
        c = k // self.chunk
        if c != self._index:
            self._block = self.backend.to_device(self._draw(c))
            self._index = c
        return self._block[k - c * self.chunk]

    def _draw(self, c: int) -> np.ndarray:
        count = min(self.chunk, self.n_batches - c * self.chunk)
        rng = generator(*self.key, _NOISE, c)
        shape = (count, self.b, self.width)
        if self.kind == "normal":
            return rng.standard_normal(shape, dtype=np.float32)
        return rng.random(shape, dtype=np.float32)
