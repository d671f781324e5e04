"""Greedy layer-wise pretraining: one weight layer at a time as an RBM, trained with CD-1 (gdbn's CDStep).

For weight layer i the visible units are the activations of unit layer i (the pixels for i = 0) and the
hidden units are unit layer i+1; the RBM shares W_i and the hidden biases with the network and has its own
visible biases. Visible units are Gaussian (linear mean) for i = 0 when `real_valued_vis`, else of the
hidden type (binary-sigmoid, or ReLU with `use_re_lu`). One CD-1 step (b = minibatch size):

    h0 = f(v0·W + hb)                       (b, n_hid)   mean hidden activations
    hs ~ h0                                 (b, n_hid)   one sample: [u <= h0], or ReLU + N(0, σ(h0))
    v1 = g(hs·Wᵀ + vb)                      (b, n_vis)   mean reconstruction (no visible sampling)
    h1 = f(v1·W + hb)                       (b, n_hid)
    vel = m·vel + lr·(1 − m)/b · (v0ᵀh0 − v1ᵀh1);   W = (1 − lr·(1 − m)·l2)·W + vel
    (biases alike, without the l2 term)

The two statistics become one GEMM with K = 2b by stacking [v0; v1] and [h0; −h1].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from trainer.network import Params, hidden_forward, sigmoid_


def unit_kinds(layer: int, real_valued_vis: bool, relu: bool) -> tuple[str, str]:
    """(visible, hidden) unit types of weight layer `layer`'s RBM, as gdbn chooses them."""
    hidden = "relu" if relu else "binary"
    visible = "gaussian" if layer == 0 and real_valued_vis else hidden
    return visible, hidden


def _mean_(xp: Any, z: Any, kind: str) -> None:
    """Mean activation of units of `kind` given their net input z, in place."""
    if kind == "binary":
        sigmoid_(xp, z)
    elif kind == "relu":
        xp.maximum(z, np.float32(0.0), out=z)
    # gaussian: the mean is the net input itself


class CD1Step:
    """One CD-1 minibatch for weight layer `layer`, with preallocated buffers for batch size b.

    Velocities (`vel` = [vel_W (n_vis, n_hid), vel_hb (n_hid,), vel_vb (n_vis,)]) belong to the caller
    (checkpoints). `rec_sum` is the epoch's summed squared reconstruction error Σ (v0 − v1)², a device
    scalar (gdbn reports rec_sum / cases per epoch).
    """

    def __init__(
        self,
        backend: Any,
        params: Params,
        layer: int,
        vel: list[Any],
        batch_size: int,
        real_valued_vis: bool,
        relu: bool,
    ) -> None:
        xp, b, f32 = backend.xp, batch_size, np.float32
        self.backend, self.xp, self.params, self.layer, self.b, self.relu = (
            backend,
            xp,
            params,
            layer,
            b,
            relu,
        )
        self.vel = vel
        self.visible, self.hidden = unit_kinds(layer, real_valued_vis, relu)
        n_vis, n_hid = params.weights[layer].shape
        self.noise_width = n_hid
        self.noise_kind = "normal" if self.hidden == "relu" else "uniform"
        sizes = params.layers
        self.batch_in = xp.empty((b, sizes[0]), f32) if layer else None  # the gathered pixels
        self.below = [xp.empty((b, sizes[j]), f32) for j in range(1, layer)]  # unit layers 1..layer-1
        self.V = xp.empty((2 * b, n_vis), f32)  # [v0; v1]
        self.H = xp.empty((2 * b, n_hid), f32)  # [h0; h1], then scaled to [k·h0; −k·h1]
        self.h_sample = xp.empty((b, n_hid), f32)
        self.diff = xp.empty((b, n_vis), f32)
        self.g_w = xp.empty((n_vis, n_hid), f32)
        self.g_hb = xp.empty(n_hid, f32)
        self.g_vb = xp.empty(n_vis, f32)
        self.rec_sum = xp.zeros((), np.float64)

    def step(self, X: Any, idx: Any, noise: Any, learn_rate: float, momentum: float, l2_cost: float) -> None:
        """Train on rows `idx` (b,) of X (n, n_0). noise (b, n_hid): uniform (binary) or normal (ReLU)."""
        self._visible_data(X, idx)
        self._positive_phase()
        self._sample_hiddens(noise)
        self._negative_phase()
        self._update(learn_rate, momentum, l2_cost)

    def _visible_data(self, X: Any, idx: Any) -> None:
        """v0 (b, n_vis): the batch's pixels, or their deterministic activations at unit layer `layer`."""
        v0 = self.V[: self.b]
        if self.layer == 0:
            self.backend.take_rows(X, idx, v0)
            return
        self.backend.take_rows(X, idx, self.batch_in)
        hidden_forward(self.xp, self.params, self.batch_in, self.layer, self.relu, [*self.below, v0])

    def _positive_phase(self) -> None:
        """h0 = f(v0·W + hb) (b, n_hid)."""
        xp, i, b = self.xp, self.layer, self.b
        h0 = self.H[:b]
        xp.dot(self.V[:b], self.params.weights[i], out=h0)
        h0 += self.params.biases[i]
        _mean_(xp, h0, self.hidden)

    def _sample_hiddens(self, noise: Any) -> None:
        """hs (b, n_hid): binary [u <= h0]; ReLU (gdbn): max(0, h0 + sqrt(σ(h0))·N(0, 1))."""
        xp, h0, hs = self.xp, self.H[: self.b], self.h_sample
        if self.hidden == "binary":
            xp.less_equal(noise, h0, out=hs)
            return
        xp.copyto(hs, h0)
        sigmoid_(xp, hs)
        xp.sqrt(hs, out=hs)
        hs *= noise
        hs += h0
        xp.maximum(hs, np.float32(0.0), out=hs)

    def _negative_phase(self) -> None:
        """v1 = g(hs·Wᵀ + vb) (b, n_vis) and h1 = f(v1·W + hb) (b, n_hid)."""
        xp, i, b = self.xp, self.layer, self.b
        w = self.params.weights[i]
        v1, h1 = self.V[b:], self.H[b:]
        xp.dot(self.h_sample, w.T, out=v1)
        v1 += self.params.vis_biases[i]
        _mean_(xp, v1, self.visible)
        xp.dot(v1, w, out=h1)
        h1 += self.params.biases[i]
        _mean_(xp, h1, self.hidden)

    def _update(self, learn_rate: float, momentum: float, l2_cost: float) -> None:
        """The CD-1 statistics, scaled by k = lr·(1 − m)/b, into gdbn's momentum update."""
        xp, be, b, i, p = self.xp, self.backend, self.b, self.layer, self.params
        step = learn_rate * (1.0 - momentum)
        k = np.float32(step / b)
        xp.subtract(self.V[:b], self.V[b:], out=self.diff)
        xp.sum(self.diff, axis=0, out=self.g_vb)
        self.g_vb *= k
        self.diff *= self.diff
        self.rec_sum += xp.sum(self.diff)
        self.H[:b] *= k
        self.H[b:] *= -k
        xp.sum(self.H, axis=0, out=self.g_hb)
        be.gemm_step(
            p.weights[i], self.vel[0], self.V, self.H, momentum, step * l2_cost, cd=True, scratch=self.g_w
        )
        be.cd_step(p.biases[i], self.vel[1], self.g_hb, momentum, 0.0)
        be.cd_step(p.vis_biases[i], self.vel[2], self.g_vb, momentum, 0.0)


def reconstruction_error(
    backend: Any, params: Params, layer: int, X: np.ndarray, real_valued_vis: bool, relu: bool
) -> float:
    """Mean over rows of Σ (v − v̂)² for weight layer `layer`'s RBM, with mean-field (sample-free) v̂.

    X (n, n_0) is host data; v is its activation at unit layer `layer`. A measure of what pretraining learnt.
    """
    xp = backend.xp
    visible, hidden = unit_kinds(layer, real_valued_vis, relu)
    x = backend.to_device(np.ascontiguousarray(X, dtype=np.float32))
    n = x.shape[0]
    with backend.errstate():
        bufs = [xp.empty((n, m), np.float32) for m in params.layers[1 : layer + 1]]
        v = hidden_forward(xp, params, x, layer, relu, bufs)
        h = v @ params.weights[layer] + params.biases[layer]
        _mean_(xp, h, hidden)
        r = h @ params.weights[layer].T + params.vis_biases[layer]
        _mean_(xp, r, visible)
        r -= v
        return float(xp.sum(r * r)) / n
