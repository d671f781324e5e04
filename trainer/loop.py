"""The training schedule, minibatch by minibatch, with a position a checkpoint can resume from exactly.

Order (nolearn's): for each weight layer with `epochs_pretrain[i] > 0`, that many CD-1 epochs; then
`epochs` epochs of backprop fine-tuning, the learning rates multiplied by their decays after each one.
An epoch is n // b minibatches (nolearn drops the remainder too) in the order of a fresh permutation.

Where training stands is `TrainState`: parameters, velocities, learning rates, the position
(phase, layer, epoch, batch), the epoch's permutation and running sums, and the finished epochs' records.
Because all noise is derived from (seed, position) (see `trainer.rng`), continuing from a saved state gives
bitwise the same weights as never having stopped (on NumPy; same BLAS, same thread count).

An optional `evaluate(params) -> (test_loss, test_err)` scores each finished fine-tuning epoch on held-out
data (e.g. `network.HeldOutScore`); it must only read the parameters, and its time is kept out of the
epoch's `seconds` (recorded as `eval_seconds`), so training figures and throughput stay comparable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer import rng
from trainer.config import ModelConfig
from trainer.cuda_step import CupyFineTuneStep
from trainer.divergence import check as check_finite
from trainer.errors import DataError
from trainer.network import FineTuneStep, Params
from trainer.rbm import CD1Step

PHASES = ("pretrain", "finetune", "done")
#: The fields `evaluate` adds to a fine-tuning epoch's record (absent when there is no evaluate).
TEST_KEYS = ("test_loss", "test_err", "eval_seconds")


class Stopped(Exception):
    """Training stopped early on request; the TrainState is at an exact, resumable position."""


@dataclass
class TrainData:
    """Training data on the device: X (n, n_0) float32, Y (n, K) one-hot float32, y (n,) int64."""

    X: Any
    Y: Any
    y: Any

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @classmethod
    def from_host(cls, backend: Any, X: np.ndarray, y: np.ndarray, n_classes: int) -> TrainData:
        """Copy a data set to the device once (no per-batch host->device traffic afterwards)."""
        y = np.asarray(y, dtype=np.int64)
        onehot = np.zeros((y.shape[0], n_classes), np.float32)
        onehot[np.arange(y.shape[0]), y] = 1.0
        X = np.ascontiguousarray(X, dtype=np.float32)
        return cls(backend.to_device(X), backend.to_device(onehot), backend.to_device(y))


@dataclass
class TrainState:
    """Everything needed to continue training exactly where it stopped.

    vel_w / vel_b: fine-tuning velocities (like weights / biases). pre_vel: [vel_W, vel_hb, vel_vb] of the RBM
    being pretrained. learn_rates: the fine-tuning rates after the decays so far.
    phase/layer/epoch/batch: the epoch in progress (0-based) and minibatches done in it; perm: that epoch's
    order (host int64, while batch > 0); sums: its running loss/error sums; epoch_seconds: time already
    spent on it. history: one record per finished epoch; train_seconds: their total time.
    """

    params: Params
    vel_w: list[Any]
    vel_b: list[Any]
    learn_rates: list[float]
    pre_vel: list[Any] | None = None
    phase: str = "pretrain"
    layer: int = 0
    epoch: int = 0
    batch: int = 0
    perm: np.ndarray | None = None
    sums: dict[str, float] = field(default_factory=dict)
    epoch_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0

    @classmethod
    def fresh(cls, backend: Any, cfg: ModelConfig) -> TrainState:
        """Initial weights from the seed, zero velocities, the configured learning rates."""
        params = Params.initial(backend, cfg.layers, cfg.scales, cfg.seed)
        xp = backend.xp
        return cls(
            params=params,
            vel_w=[xp.zeros_like(w) for w in params.weights],
            vel_b=[xp.zeros_like(b) for b in params.biases],
            learn_rates=list(cfg.learn_rates),
        )

    @property
    def finished(self) -> bool:
        return self.phase == "done"


def train(
    backend: Any,
    cfg: ModelConfig,
    data: TrainData,
    state: TrainState,
    *,
    should_stop: Callable[[], bool] | None = None,
    on_epoch: Callable[[TrainState, dict[str, Any]], None] | None = None,
    evaluate: Callable[[Params], tuple[float, float]] | None = None,
) -> None:
    """Run the schedule from `state`'s position to the end, updating `state` in place.

    on_epoch(state, record) runs after each finished epoch (state already advanced: checkpoint it there).
    evaluate(params), when given, runs after each fine-tuning epoch's training (timed apart from it); its
    (mean cross-entropy, error rate) go into the record as test_loss / test_err, its time as eval_seconds.
    should_stop() is polled after every minibatch (an epoch's last one excepted) and after on_epoch, with
    `state` at the position reached; when it turns true, `state` records that exact position and `Stopped`
    is raised.
    At the end of every epoch (and when stopped mid-epoch) the loss and the parameters are checked: when
    either is no longer finite, `trainer.divergence.Diverged` is raised before on_epoch runs, so a checkpoint
    written by on_epoch only ever holds a finite state (the state itself is then the diverged one).
    """
    b = cfg.minibatch_size
    if data.n < b:
        raise DataError(f"the training set has {data.n} samples, fewer than model.minibatch_size ({b})")
    if state.perm is not None and len(state.perm) != data.n:  # a checkpoint's order is of its own data
        raise DataError(
            f"the checkpoint's minibatch order has {len(state.perm)} samples but the training set has "
            f"{data.n}; delete checkpoint.npz to start over"
        )
    run = _Run(backend, cfg, data, state, should_stop or (lambda: False), on_epoch, evaluate)
    if state.phase == "pretrain":
        run.pretrain()
        state.phase, state.layer, state.epoch, state.batch, state.pre_vel = "finetune", 0, 0, 0, None
    if state.phase == "finetune":
        run.finetune()
        state.phase = "done"


@dataclass
class _Run:
    backend: Any
    cfg: ModelConfig
    data: TrainData
    state: TrainState
    should_stop: Callable[[], bool]
    on_epoch: Callable[[TrainState, dict[str, Any]], None] | None
    evaluate: Callable[[Params], tuple[float, float]] | None = None

    def pretrain(self) -> None:
        st, cfg = self.state, self.cfg
        for layer in range(st.layer, cfg.n_weight_layers):
            if layer != st.layer:
                st.layer, st.epoch, st.batch, st.pre_vel = layer, 0, 0, None
            if st.epoch < cfg.epochs_pretrain[layer]:
                self._pretrain_layer(layer)

    def _pretrain_layer(self, layer: int) -> None:
        st, cfg, xp, X = self.state, self.cfg, self.backend.xp, self.data.X
        if st.pre_vel is None:
            w, hb, vb = st.params.weights[layer], st.params.biases[layer], st.params.vis_biases[layer]
            st.pre_vel = [xp.zeros_like(w), xp.zeros_like(hb), xp.zeros_like(vb)]
        step = CD1Step(
            self.backend, st.params, layer, st.pre_vel, cfg.minibatch_size, cfg.real_valued_vis, cfg.use_re_lu
        )
        lr, m, l2 = cfg.learn_rates_pretrain[layer], cfg.momentum_pretrain, cfg.l2_costs_pretrain[layer]

        def one(idx: Any, noise: Any) -> None:
            step.step(X, idx, noise, lr, m, l2)

        while st.epoch < cfg.epochs_pretrain[layer]:
            self._epoch(rng.PRETRAIN, one, {"rec_sum": step}, (step.noise_width, step.noise_kind))

    def finetune(self) -> None:
        st, cfg, d = self.state, self.cfg, self.data
        step_type = CupyFineTuneStep if self.backend.name == "cupy" else FineTuneStep
        step = step_type(
            self.backend, st.params, st.vel_w, st.vel_b, cfg.minibatch_size, cfg.dropouts, cfg.use_re_lu
        )

        def one(idx: Any, noise: Any) -> None:
            step.step(d.X, d.Y, d.y, idx, noise, st.learn_rates, cfg.momentum, cfg.l2_costs)

        while st.epoch < cfg.epochs:
            self._epoch(
                rng.FINETUNE, one, {"loss_sum": step, "mistakes": step}, (step.noise_width, "uniform")
            )

    def _epoch(
        self,
        phase_id: int,
        one: Callable[[Any, Any], None],
        sums: dict[str, Any],
        noise_spec: tuple[int, str],
    ) -> None:
        """Run (the rest of) the epoch in progress; record it, advance the state, call on_epoch."""
        be, st, cfg = self.backend, self.state, self.cfg
        b, n = cfg.minibatch_size, self.data.n
        n_batches = n // b
        key = (cfg.seed, phase_id, st.layer, st.epoch)
        if st.batch == 0 or st.perm is None:
            st.perm = rng.permutation(*key, n)
        order = be.to_device(st.perm)
        width, kind = noise_spec
        noise = rng.NoiseStream(be, key, n_batches, b, width, kind) if width else None
        for name, owner in sums.items():  # restore (or zero) the running sums
            dtype = np.int64 if name == "mistakes" else np.float64
            setattr(owner, name, be.xp.asarray(st.sums.get(name, 0), dtype=dtype))
        t0 = time.perf_counter()
        with be.errstate():
            for k in range(st.batch, n_batches):
                one(order[k * b : (k + 1) * b], None if noise is None else noise.batch(k))
                st.batch = k + 1  # kept current: should_stop may read the position (trainer.hold does)
                if st.batch < n_batches and self.should_stop():
                    be.synchronize()
                    st.sums = {name: _scalar(getattr(owner, name)) for name, owner in sums.items()}
                    st.epoch_seconds += time.perf_counter() - t0
                    self._check(phase_id, st.sums, st.batch * b, st.batch)  # never checkpoint a NaN
                    raise Stopped
        totals = {name: _scalar(getattr(owner, name)) for name, owner in sums.items()}  # waits for the device
        seconds = st.epoch_seconds + time.perf_counter() - t0
        cases = n_batches * b
        finetune = phase_id == rng.FINETUNE
        loss = self._check(phase_id, totals, cases)
        record = {
            "phase": "finetune" if finetune else "pretrain",
            "layer": None if finetune else st.layer + 1,
            "epoch": st.epoch + 1,
            "loss": loss,
            "err": totals["mistakes"] / cases if finetune else None,
            "seconds": seconds,
            "time": time.time(),
        }
        if finetune and self.evaluate is not None:
            t1 = time.perf_counter()
            test_loss, test_err = self.evaluate(st.params)
            record |= {"test_loss": test_loss, "test_err": test_err, "eval_seconds": time.perf_counter() - t1}
        st.history.append(record)
        st.train_seconds += seconds
        st.epoch, st.batch, st.perm, st.sums, st.epoch_seconds = st.epoch + 1, 0, None, {}, 0.0
        if finetune:
            _decay(st.learn_rates, cfg)
        if self.on_epoch is not None:
            self.on_epoch(st, record)
        if self.should_stop():
            raise Stopped

    def _check(self, phase_id: int, sums: dict[str, float], cases: int, batch: int = 0) -> float:
        """The mean loss of the `cases` samples in `sums`; raises Diverged when it or a parameter is not
        finite (see trainer.divergence)."""
        finetune = phase_id == rng.FINETUNE
        loss = sums["loss_sum" if finetune else "rec_sum"] / cases
        st = self.state
        check_finite(
            self.backend,
            self.cfg,
            st.params,
            phase="finetune" if finetune else "pretrain",
            layer=st.layer,
            epoch=st.epoch,
            loss=loss,
            batch=batch,
            learn_rates=st.learn_rates,
        )
        return loss


def _decay(learn_rates: list[float], cfg: ModelConfig) -> None:
    """nolearn: lr *= decay after each fine-tuning epoch, unless that would take it below its minimum."""
    for i, (decay, minimum) in enumerate(zip(cfg.learn_rate_decays, cfg.learn_rate_minimums, strict=True)):
        new = learn_rates[i] * decay
        if new >= minimum:
            learn_rates[i] = new


def _scalar(x: Any) -> float:
    return float(x.item() if hasattr(x, "item") else x)
