"""The fine-tuning minibatch on CuPy, in fused kernels.

Why: on a GPU this network is small enough that launching work costs more than doing it. Measured on an
H100 (2026-11-26): the generic `FineTuneStep` spent 930-1700 µs of host time per batch-64 step on ~55
kernel launches while one of its 800 x 800 GEMMs took 34 µs of GPU time. Here the same math is one gather
kernel (pixels and labels), bias + nonlinearity in one kernel per layer, softmax + cross-entropy + error
count + output delta in one (a deterministic in-block reduction, no atomics), the activation derivative in
one, each weight matrix's gdbn step as one cuBLAS GEMM (the gradient accumulated straight into the velocity
with beta = momentum and the step size as alpha) plus one kernel, and each bias step in one kernel: ~24
launches, none allocating memory. Same H100: 560 µs per step instead of 1724, and an epoch of the seed
network in 0.29-0.33x PyTorch's CUDA time (benchmarks/bench_trainer.py --gpu, three runs).

Then the whole step is replayed as one CUDA graph per minibatch (CupyFineTuneStep's docstring says
how). CuPy refuses cuBLAS calls during stream capture, so the GEMMs go through trainer.cublas: cuBLAS
called directly, on a handle with its own workspace. Same H100: 9-11 µs of host time and 97-98 µs of GPU
time per step; the seed network's epoch 0.07 s, 0.07-0.08x PyTorch's CUDA time.

The numbers are NumPy's within float32 rounding (tests/trainer/test_cuda_step.py, on a GPU).
"""

from __future__ import annotations

import functools
import sys
from types import SimpleNamespace
from typing import Any

import numpy as np

from trainer import cublas
from trainer.network import FineTuneStep, Params

_THREADS = 256

_GATHER = r"""
extern "C" __global__ void ec2dbn_gather_rows(
    const float* __restrict__ X, const long long* __restrict__ y, const long long* __restrict__ idx,
    const long long b, const long long d, float* __restrict__ out, long long* __restrict__ labels) {
  const long long n = b * d;
  for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < n;
       t += (long long)gridDim.x * blockDim.x) {
    const long long r = t / d, c = t - r * d;
    const long long src = idx[r];
    out[t] = X[src * d + c];
    if (c == 0) labels[r] = y[src];
  }
}
"""

# One block; thread t handles rows t, t + 256, ...; sums reduced in shared memory in a fixed order.
_SOFTMAX_XENT = r"""
extern "C" __global__ void ec2dbn_softmax_xent(
    const float* __restrict__ z, const float* __restrict__ bias, const long long* __restrict__ labels,
    const int b, const int K, float* __restrict__ d, double* __restrict__ sums) {
  __shared__ double s_loss[256];
  __shared__ double s_miss[256];
  double loss = 0.0, miss = 0.0;
  for (int r = threadIdx.x; r < b; r += blockDim.x) {
    const float* zr = z + (long long)r * K;
    float* dr = d + (long long)r * K;
    float m = zr[0] + bias[0];
    int arg = 0;
    for (int j = 1; j < K; ++j) {
      const float v = zr[j] + bias[j];
      if (v > m) { m = v; arg = j; }
    }
    float s = 0.0f;
    for (int j = 0; j < K; ++j) {
      const float e = expf((zr[j] + bias[j]) - m);
      dr[j] = e;
      s += e;
    }
    const long long lab = labels[r];
    loss += (double)(logf(s) - ((zr[lab] + bias[lab]) - m));
    miss += (arg != lab) ? 1.0 : 0.0;
    for (int j = 0; j < K; ++j) dr[j] = dr[j] / s - (j == lab ? 1.0f : 0.0f);
  }
  s_loss[threadIdx.x] = loss;
  s_miss[threadIdx.x] = miss;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) {
      s_loss[threadIdx.x] += s_loss[threadIdx.x + w];
      s_miss[threadIdx.x] += s_miss[threadIdx.x + w];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) { sums[0] += s_loss[0]; sums[1] += s_miss[0]; }
}
"""

# One thread per bias: v = m·v + alpha·Σ_rows d; bias += v (gdbn's step, no L2 on biases).
_BIAS_STEP = r"""
extern "C" __global__ void ec2dbn_bias_step(
    const float* __restrict__ d, const int b, const int n, const float alpha, const float m,
    float* __restrict__ bias, float* __restrict__ v) {
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= n) return;
  float s = 0.0f;
  for (int r = 0; r < b; ++r) s += d[(long long)r * n + j];
  const float vv = m * v[j] + alpha * s;
  v[j] = vv;
  bias[j] += vv;
}
"""


@functools.cache
def _kernels() -> SimpleNamespace:
    """Compile (lazily, once per process) the kernels; CuPy is imported only here."""
    import cupy as cp
    import cupy.cublas  # makes cp.cublas available

    ew = cp.ElementwiseKernel
    return SimpleNamespace(
        cp=cp,
        gather=cp.RawKernel(_GATHER, "ec2dbn_gather_rows"),
        softmax_xent=cp.RawKernel(_SOFTMAX_XENT, "ec2dbn_softmax_xent"),
        bias_step=cp.RawKernel(_BIAS_STEP, "ec2dbn_bias_step"),
        bias_sigmoid=ew("float32 bias", "float32 z", "z = 1.0f / (1.0f + expf(-(z + bias)))", "ec2dbn_bsig"),
        bias_relu=ew("float32 bias", "float32 z", "z = fmaxf(z + bias, 0.0f)", "ec2dbn_brelu"),
        sigmoid_grad=ew("float32 act", "float32 d", "d = d * ((1.0f - act) * act)", "ec2dbn_dsig"),
        relu_grad=ew("float32 act", "float32 d", "d = d * (act > 0.0f ? 1.0f : 0.0f)", "ec2dbn_drelu"),
        weight_step=ew("float32 c", "float32 w, float32 v", "v = v - c * w; w = w + v;", "ec2dbn_wstep"),
    )


class CupyFineTuneStep(FineTuneStep):
    """`FineTuneStep` for the CuPy backend: same interface, same math, fused kernels, replayed as a graph.

    With `graphs` (and trainer.cublas usable) the first minibatch runs its kernels one by one (which also
    compiles them); the next one is captured into a CUDA graph that every later minibatch replays with one
    launch. Captured kernels read their inputs from fixed buffers, so a step copies its row indices (and
    dropout noise) into `_idx` (`_noise`) first; what a graph bakes in by value (learning rates, momentum,
    L2 costs, the addresses of the data, parameters and velocities) is its key, and a new key (the next
    epoch's decayed rates) is a new capture. Replaying runs exactly the kernels and GEMMs of the eager
    step, so the numbers are identical.
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
        graphs: bool = True,
    ) -> None:
        xp = backend.xp
        # The epoch's loss and mistake sums, side by side for the softmax kernel; the `loss_sum` /
        # `mistakes` properties (what the training loop reads and resets) are views of it.
        self._sums = xp.zeros(2, np.float64)
        super().__init__(backend, params, vel_w, vel_b, batch_size, dropouts, relu)
        self.k = _kernels()
        self.blas = cublas.find()  # None: CuPy's own cuBLAS calls, and no graphs
        self.graphs = graphs and self.blas is not None
        self.replays = 0  # minibatches run by replaying a graph
        self._idx = xp.empty(batch_size, np.int64)
        self._noise = xp.empty((batch_size, self.noise_width), np.float32) if self.noise_width else None
        self._graph: Any = None
        self._graph_key: tuple[Any, ...] | None = None
        self._warm = False

    @property  # type: ignore[override]
    def loss_sum(self) -> Any:
        return self._sums[0]

    @loss_sum.setter
    def loss_sum(self, value: Any) -> None:
        self._sums[0] = value

    @property  # type: ignore[override]
    def mistakes(self) -> Any:
        return self._sums[1]

    @mistakes.setter
    def mistakes(self, value: Any) -> None:
        self._sums[1] = value

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
        """Train on rows `idx` of X / y (Y, the one-hot targets, is not needed: the labels are)."""
        if not self.graphs:
            self._run(X, y, idx, noise, learn_rates, momentum, l2_costs)
            return
        _copy_into(self._idx, idx)
        if noise is not None:
            _copy_into(self._noise, noise)

        def run() -> None:
            self._run(X, y, self._idx, self._noise, learn_rates, momentum, l2_costs)

        p = self.params
        arrays = (X, y, *p.weights, *p.biases, *self.vel_w, *self.vel_b)
        key = (*(x.data.ptr for x in arrays), *learn_rates, momentum, *l2_costs)
        if key != self._graph_key:
            if not self._warm:  # compile and load every kernel outside a capture
                self._warm = True
                run()
                return
            try:
                self._graph, self._graph_key = self._capture(run), key
            except Exception as exc:  # any capture failure: go on without graphs
                self.graphs = False
                reason = f"CUDA graph capture failed ({exc}); launching kernels one by one"
                print(f"trainer: {reason}", file=sys.stderr, flush=True)
                run()
                return
        self._graph.launch()
        self.replays += 1

    def _capture(self, run: Any) -> Any:
        """A CUDA graph of `run`'s kernels and GEMMs (captured on a side stream, not executed)."""
        side = self.k.cp.cuda.Stream(non_blocking=True)
        with side:
            side.begin_capture()
            try:
                run()
            finally:
                graph = side.end_capture()
        return graph

    def _run(
        self, X: Any, y: Any, idx: Any, noise: Any, learn_rates: list[float], momentum: float,
        l2_costs: tuple[float, ...],
    ) -> None:  # fmt: skip
        """The step's kernels, launched one by one on the current stream."""
        k, a, b = self.k, self.a, self.b
        n = b * a[0].shape[1]
        blocks = min((n + _THREADS - 1) // _THREADS, 4096)
        k.gather((blocks,), (_THREADS,), (X, y, idx, np.int64(b), np.int64(a[0].shape[1]), a[0], self.labels))
        self._forward(noise)
        k.softmax_xent(
            (1,), (_THREADS,), (self.z_out, self.params.biases[-1], self.labels, np.int32(b),
                                np.int32(self.z_out.shape[1]), self.d[-1], self._sums)
        )  # fmt: skip
        self._backward_and_update(learn_rates, momentum, l2_costs)

    def _gemm(
        self, transa: str, transb: str, a: Any, b: Any, out: Any, alpha: float = 1.0, beta: float = 0.0
    ) -> None:
        """out = alpha·op(a)·op(b) + beta·out: through trainer.cublas when usable (capturable), else CuPy."""
        if self.blas is not None:
            self.blas.gemm(transa, transb, a, b, out, alpha, beta)
        else:
            self.k.cp.cublas.gemm(transa, transb, a, b, out=out, alpha=alpha, beta=beta)

    def _hidden(self, i: int, z: Any) -> None:
        """z = f(a[i]·W_i + b_i): one cuBLAS GEMM, then bias and nonlinearity in one kernel."""
        self._gemm("N", "N", self.a[i], self.params.weights[i], z)
        (self.k.bias_relu if self.relu else self.k.bias_sigmoid)(self.params.biases[i], z)

    def _output(self) -> None:
        """z_out = a[-1]·W_last; the softmax kernel adds the bias."""
        self._gemm("N", "N", self.a[-1], self.params.weights[-1], self.z_out)

    def _backward_and_update(
        self, learn_rates: list[float], momentum: float, l2_costs: tuple[float, ...]
    ) -> None:
        """d[-1] (prob − target) is already written by the softmax kernel; backpropagate, top layer first,
        each delta computed with the weights before their update (gdbn's order)."""
        k, p, b = self.k, self.params, self.b
        grad = k.relu_grad if self.relu else k.sigmoid_grad
        f32 = np.float32
        for i in reversed(range(len(p.weights))):
            step = learn_rates[i] * (1.0 - momentum)
            alpha = -step / b
            if i > 0:
                self._gemm("N", "T", self.d[i], p.weights[i], self.d[i - 1])
                grad(self.s[i] if self.s[i] is not None else self.a[i], self.d[i - 1])
                if self.mask[i] is not None:
                    self.d[i - 1] *= self.mask[i]
            w, v = p.weights[i], self.vel_w[i]
            self._gemm("T", "N", self.a[i], self.d[i], v, alpha, momentum)  # v = m·v + alpha·aᵀd
            k.weight_step(f32(step * l2_costs[i]), w, v)  # v −= decay·w; w += v
            n = w.shape[1]
            k.bias_step(
                ((n + _THREADS - 1) // _THREADS,), (_THREADS,),
                (self.d[i], np.int32(b), np.int32(n), f32(alpha), f32(momentum), p.biases[i], self.vel_b[i]),
            )  # fmt: skip


def _copy_into(dst: Any, src: Any) -> None:
    """dst[...] = src on the current stream: one asynchronous memcpy when the layouts agree."""
    if src.dtype == dst.dtype and src.shape == dst.shape and src.flags.c_contiguous:
        dst.data.copy_from_device_async(src.data, dst.nbytes)
    else:
        dst[...] = src
