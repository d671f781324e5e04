"""The DBN as a feed-forward classifier: parameters, one backprop fine-tuning minibatch, and prediction.

The math is gdbn's (the library under nolearn): sigmoid (or ReLU) hidden units, a softmax output, the
cross-entropy loss, and momentum with the (1 − momentum) factor,
    v = momentum·v − lr·(1 − momentum)·(grad/batch + l2·W);  W += v        (biases: no l2).
Notation: weight layer i maps unit layer i (n_i units) to unit layer i+1; `b` is the minibatch size.
Every array is float32 and every per-minibatch buffer is allocated once, in `FineTuneStep.__init__`; the
step itself is in-place NumPy/CuPy calls (`out=`), with no Python work per sample. The weight gradient
aᵀ·d is never materialised on NumPy when NumPy's BLAS is reachable: `Backend.gemm_step` accumulates it
straight into the velocity (sgemm's beta), see trainer.blas.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer import rng


@dataclass
class Params:
    """The network's parameters, on the device.

    weights[i]: (n_i, n_{i+1}); biases[i]: (n_{i+1},) — the hidden/output biases;
    vis_biases[i]: (n_i,) — the RBM visible biases of layer i (gdbn's genBiases), used only by pretraining.
    """

    weights: list[Any]
    biases: list[Any]
    vis_biases: list[Any]

    @classmethod
    def initial(cls, backend: Any, layers: tuple[int, ...], scales: tuple[float, ...], seed: int) -> Params:
        """gdbn's start: W ~ scales·N(0, 1), all biases 0."""
        xp = backend.xp
        weights = [backend.to_device(w) for w in rng.initial_weights(layers, scales, seed)]
        return cls(
            weights=weights,
            biases=[xp.zeros(n, dtype=np.float32) for n in layers[1:]],
            vis_biases=[xp.zeros(n, dtype=np.float32) for n in layers[:-1]],
        )

    @property
    def layers(self) -> tuple[int, ...]:
        return (self.weights[0].shape[0], *(w.shape[1] for w in self.weights))

    def to_host(self, backend: Any) -> dict[str, np.ndarray]:
        """{"W0": ..., "b0": ..., "c0": ...} as NumPy arrays (for .npz files)."""
        out: dict[str, np.ndarray] = {}
        for i, (w, b, c) in enumerate(zip(self.weights, self.biases, self.vis_biases, strict=True)):
            out[f"W{i}"], out[f"b{i}"], out[f"c{i}"] = (
                backend.to_host(w),
                backend.to_host(b),
                backend.to_host(c),
            )
        return out

    @classmethod
    def from_host(cls, backend: Any, arrays: Any, n_layers: int) -> Params:
        """Inverse of `to_host`; `arrays` maps names to NumPy arrays (e.g. an open .npz)."""

        def dev(name: str) -> Any:
            return backend.to_device(np.asarray(arrays[name], dtype=np.float32))

        return cls(
            weights=[dev(f"W{i}") for i in range(n_layers)],
            biases=[dev(f"b{i}") for i in range(n_layers)],
            vis_biases=[dev(f"c{i}") for i in range(n_layers)],
        )


def sigmoid_(xp: Any, z: Any) -> None:
    """z = 1 / (1 + exp(−z)) in place. exp overflows to inf for z < −88, giving exactly 0 (intended)."""
    xp.negative(z, out=z)
    xp.exp(z, out=z)
    z += np.float32(1.0)
    xp.reciprocal(z, out=z)


def activate_(xp: Any, z: Any, relu: bool) -> None:
    """The hidden units' nonlinearity in place: sigmoid, or max(z, 0) with `relu`."""
    if relu:
        xp.maximum(z, np.float32(0.0), out=z)
    else:
        sigmoid_(xp, z)


def activation_grad_(xp: Any, d: Any, act: Any, relu: bool, scratch: Any) -> None:
    """d *= f'(z), given act = f(z): act·(1 − act) for the sigmoid, [act > 0] for ReLU. All (b, n)."""
    if relu:
        xp.greater(act, np.float32(0.0), out=scratch)
    else:
        xp.subtract(np.float32(1.0), act, out=scratch)
        scratch *= act
    d *= scratch


def dropout_mask_(xp: Any, uniform: Any, p: float, out: Any) -> None:
    """out = [uniform >= p] / (1 − p): inverted dropout, so prediction uses the weights unscaled. (b, n)."""
    xp.greater_equal(uniform, np.float32(p), out=out)
    out *= np.float32(1.0 / (1.0 - p))


class FineTuneStep:
    """One minibatch of backprop with momentum, plus the epoch's running loss and error sums.

    Velocities `vel_w[i]` (n_i, n_{i+1}) and `vel_b[i]` (n_{i+1},) are owned by the caller (they are part of
    a checkpoint) and updated in place, like the parameters. `loss_sum` (summed cross-entropy) and
    `mistakes` are device scalars, read once per epoch so that the GPU never waits for the host.

    Dropout (gdbn: `dropouts[i]` drops inputs of weight layer i) is inverted dropout: kept units are scaled
    by 1/(1 − p) during training, so the gradient is exact and prediction needs no rescaling.
    """

    def __init__(
        self,
        backend: Any,
        params: Params,
        vel_w: list[Any],
        vel_b: list[Any],
        batch_size: int,
        dropouts: tuple[float, ...],
        relu: bool,
    ) -> None:
        xp, b, f32 = backend.xp, batch_size, np.float32
        self.backend, self.xp, self.params, self.b, self.relu = backend, xp, params, b, relu
        self.vel_w, self.vel_b, self.dropouts = vel_w, vel_b, dropouts
        sizes = params.layers
        n_w = len(sizes) - 1
        # a[j]: the input of weight layer j (a[0]: the minibatch's pixels)
        self.a = [xp.empty((b, sizes[j]), f32) for j in range(n_w)]
        # With dropout on unit layer j, its activations before masking are kept in s[j] (for f'(z)).
        self.s = [xp.empty((b, sizes[j]), f32) if j and dropouts[j] else None for j in range(n_w)]
        self.mask = [xp.empty((b, sizes[j]), f32) if dropouts[j] else None for j in range(n_w)]
        self.noise_width = sum(sizes[j] for j in range(n_w) if dropouts[j])
        self.d = [xp.empty((b, sizes[i + 1]), f32) for i in range(n_w)]  # dLoss/dz at weight layer i's output
        self.ds = [xp.empty_like(d) for d in self.d]  # d scaled to the step: −lr·(1 − m)/b · d
        self.scratch = [xp.empty((b, sizes[j]), f32) for j in range(n_w)]
        self.g_w = [xp.empty_like(w) for w in params.weights]  # gradient scratch (unless BLAS fuses it away)
        self.g_b = [xp.empty_like(bias) for bias in params.biases]
        self.z_out = xp.empty((b, sizes[-1]), f32)
        self.prob = xp.empty((b, sizes[-1]), f32)
        self.target = xp.empty((b, sizes[-1]), f32)
        self.labels = xp.empty(b, np.int64)
        self.row_max = xp.empty((b, 1), f32)
        self.row_sum = xp.empty((b, 1), f32)
        self.loss_sum = xp.zeros((), np.float64)
        self.mistakes = xp.zeros((), np.int64)

    def step(
        self,
        X: Any,
        Y: Any,
        y: Any,
        idx: Any,
        noise: Any,
        learn_rates: list[float],
        momentum: float,
        l2_costs: tuple[float, ...],
    ) -> None:
        """Train on rows `idx` (b,) of X (n, n_0), one-hot Y (n, K) and labels y (n,).

        noise: (b, noise_width) uniform [0, 1) for the dropout masks, or None without dropout.
        """
        be = self.backend
        be.take_rows(X, idx, self.a[0])
        be.take_rows(Y, idx, self.target)
        be.take_rows(y, idx, self.labels)
        self._forward(noise)
        self._loss_and_error()
        self._backward_and_update(learn_rates, momentum, l2_costs)

    def _forward(self, noise: Any) -> None:
        """a[j+1] = f(a[j]·W_j + b_j) (with dropout masks), then the output net input z_out (b, K)."""
        xp, a = self.xp, self.a
        offset = 0
        if self.mask[0] is not None:
            n0 = a[0].shape[1]
            dropout_mask_(xp, noise[:, :n0], self.dropouts[0], self.mask[0])
            a[0] *= self.mask[0]
            offset = n0
        for i in range(len(a) - 1):
            j = i + 1
            z = self.s[j] if self.s[j] is not None else a[j]
            self._hidden(i, z)
            if self.mask[j] is not None:
                n = z.shape[1]
                dropout_mask_(xp, noise[:, offset : offset + n], self.dropouts[j], self.mask[j])
                xp.multiply(z, self.mask[j], out=a[j])
                offset += n
        self._output()

    def _hidden(self, i: int, z: Any) -> None:
        """z = f(a[i]·W_i + b_i), (b, n_{i+1}): hidden unit layer i + 1 before any dropout mask."""
        self.xp.dot(self.a[i], self.params.weights[i], out=z)
        z += self.params.biases[i]
        activate_(self.xp, z, self.relu)

    def _output(self) -> None:
        """z_out = a[-1]·W_last + b_last, the softmax's input (b, K)."""
        self.xp.dot(self.a[-1], self.params.weights[-1], out=self.z_out)
        self.z_out += self.params.biases[-1]

    def _loss_and_error(self) -> None:
        """Softmax into prob (b, K); add the batch's cross-entropy and misclassifications to the sums."""
        xp, z, prob = self.xp, self.z_out, self.prob
        xp.max(z, axis=1, keepdims=True, out=self.row_max)
        z -= self.row_max  # z is now shifted: log-sum-exp = log(row_sum)
        xp.exp(z, out=prob)
        xp.sum(prob, axis=1, keepdims=True, out=self.row_sum)
        prob /= self.row_sum
        # cross-entropy = Σ_rows log(row_sum) − z[row, label]; Σ z[row, label] = <one-hot target, z>
        self.loss_sum += xp.sum(xp.log(self.row_sum)) - xp.vdot(self.target, z)
        self.mistakes += xp.count_nonzero(xp.argmax(z, axis=1) != self.labels)

    def _backward_and_update(
        self, learn_rates: list[float], momentum: float, l2_costs: tuple[float, ...]
    ) -> None:
        """Backpropagate d = prob − target and apply the momentum step, top layer first.

        Each layer's delta for the layer below is computed with its weights *before* they are updated, so
        the result equals gdbn's "all gradients, then all updates".
        """
        xp, be, p, b = self.xp, self.backend, self.params, self.b
        xp.subtract(self.prob, self.target, out=self.d[-1])
        for i in reversed(range(len(p.weights))):
            step = learn_rates[i] * (1.0 - momentum)
            xp.multiply(self.d[i], np.float32(-step / b), out=self.ds[i])
            if i > 0:
                xp.dot(self.d[i], p.weights[i].T, out=self.d[i - 1])
                act = self.s[i] if self.s[i] is not None else self.a[i]
                activation_grad_(xp, self.d[i - 1], act, self.relu, self.scratch[i])
                if self.mask[i] is not None:
                    self.d[i - 1] *= self.mask[i]
            w, v, decay = p.weights[i], self.vel_w[i], step * l2_costs[i]
            be.gemm_step(w, v, self.a[i], self.ds[i], momentum, decay, cd=False, scratch=self.g_w[i])
            xp.sum(self.ds[i], axis=0, out=self.g_b[i])
            be.momentum_step(p.biases[i], self.vel_b[i], self.g_b[i], momentum, 0.0)


def hidden_forward(xp: Any, params: Params, x: Any, upto: int, relu: bool, bufs: list[Any]) -> Any:
    """Activations of unit layer `upto` (deterministic, no dropout): bufs[j-1] (b, n_j) receives layer j."""
    a = x
    for i in range(upto):
        xp.dot(a, params.weights[i], out=bufs[i])
        bufs[i] += params.biases[i]
        activate_(xp, bufs[i], relu)
        a = bufs[i]
    return a


def predict_proba(
    backend: Any, params: Params, X: np.ndarray | Any, relu: bool, chunk: int = 4096
) -> np.ndarray:
    """Class probabilities (n, K), NumPy float32, for X (n, n_0) on the host or the device.

    Works `chunk` rows at a time so that memory stays bounded on the GPU for any n.
    """
    xp, n_w = backend.xp, len(params.weights)
    n = X.shape[0]
    out = np.empty((n, params.layers[-1]), np.float32)
    for start in range(0, n, chunk):
        rows = X[start : start + chunk]
        if isinstance(rows, np.ndarray):
            x = backend.to_device(np.ascontiguousarray(rows, dtype=np.float32))
        else:
            x = xp.ascontiguousarray(rows, dtype=np.float32)
        bufs = [xp.empty((x.shape[0], m), np.float32) for m in params.layers[1:]]
        with backend.errstate():
            h = hidden_forward(xp, params, x, n_w - 1, relu, bufs)
            z = bufs[-1]
            xp.dot(h, params.weights[-1], out=z)
            z += params.biases[-1]
            z -= xp.max(z, axis=1, keepdims=True)
            xp.exp(z, out=z)
            z /= xp.sum(z, axis=1, keepdims=True)
        out[start : start + chunk] = backend.to_host(z)
    return out


class HeldOutScore:
    """Mean cross-entropy per sample and error rate of the current parameters on a fixed labelled set.

    For a learning curve's test points after every fine-tuning epoch. The set lives on the device
    (X (n, n_0) float32, one-hot Y (n, K) float32, labels y (n,) int64, e.g. a `TrainData`'s arrays) and
    every buffer is allocated here, once. A call is the deterministic forward pass of `predict_proba`
    (no dropout, no random draws, the parameters only read), `chunk` rows at a time, with the sums kept on
    the device and brought to the host in one transfer of two numbers: scoring never changes training.
    """

    def __init__(
        self, backend: Any, X: Any, Y: Any, y: Any, layers: tuple[int, ...], relu: bool, chunk: int = 4096
    ) -> None:
        xp, f32 = backend.xp, np.float32
        self.backend, self.xp, self.X, self.Y, self.y, self.relu = backend, xp, X, Y, y, relu
        self.n = int(X.shape[0])
        self.chunk = min(chunk, self.n)
        self.bufs = [xp.empty((self.chunk, m), f32) for m in layers[1:]]  # unit layers 1..L; last: logits
        self.row_max = xp.empty((self.chunk, 1), f32)
        self.row_sum = xp.empty((self.chunk, 1), f32)
        self.sums = xp.zeros(2, np.float64)  # read back in one transfer; written through the two views:
        self.loss_sum, self.mistakes = self.sums[0:1], self.sums[1:2]  # summed cross-entropy, mistakes

    def __call__(self, params: Params) -> tuple[float, float]:
        """(mean cross-entropy, error rate) of `params` on the set (of at least one sample)."""
        xp, n_w = self.xp, len(params.weights)
        self.sums.fill(0)
        with self.backend.errstate():
            for start in range(0, self.n, self.chunk):
                stop = min(start + self.chunk, self.n)
                m = stop - start
                bufs = [b[:m] for b in self.bufs]  # leading rows: still C-contiguous, valid `out=`
                h = hidden_forward(xp, params, self.X[start:stop], n_w - 1, self.relu, bufs)
                z, row_max, row_sum = bufs[-1], self.row_max[:m], self.row_sum[:m]
                xp.dot(h, params.weights[-1], out=z)
                z += params.biases[-1]
                xp.max(z, axis=1, keepdims=True, out=row_max)
                z -= row_max  # shifted: cross-entropy = log(Σ exp z) − z[label], as in training
                self.loss_sum -= xp.vdot(self.Y[start:stop], z)
                self.mistakes += xp.count_nonzero(xp.argmax(z, axis=1) != self.y[start:stop])
                xp.exp(z, out=z)
                xp.sum(z, axis=1, keepdims=True, out=row_sum)
                self.loss_sum += xp.sum(xp.log(row_sum))
        loss_sum, mistakes = (float(v) for v in self.backend.to_host(self.sums))  # waits for the device
        return loss_sum / self.n, mistakes / self.n
