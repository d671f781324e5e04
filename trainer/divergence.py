"""Noticing that training diverged — its loss or its weights stopped being finite — and saying why.

A step too large for the network (a high learning rate, large initial weights, momentum close to 1, ReLU
units at a sigmoid's rate) makes the weights overflow float32 within a few minibatches; from then on every
number is inf or NaN and the rest of the run is wasted money. The training loop checks once per epoch (and
when it is stopped mid-epoch), where it already brings the epoch's loss to the host: no per-minibatch device
synchronisation, and on CuPy one extra transfer of one boolean for the parameters.

The loss alone is not enough: the last minibatch's update can overflow the weights after the loss of that
minibatch was computed, and a checkpoint of such weights would not be the "last finite state". So the
parameters are checked too, before anything is checkpointed.
"""

from __future__ import annotations

import math
from typing import Any

from trainer.config import ModelConfig
from trainer.contract import DIVERGED_MARKER, EXIT_DIVERGED
from trainer.errors import TrainerError
from trainer.network import Params


class Diverged(TrainerError):
    """Training stopped because its loss or its parameters are no longer finite. Exit code 4.

    phase ("pretrain" | "finetune"), layer (1-based weight layer being pretrained; None when fine-tuning),
    epoch (1-based), batch (minibatches done when it was noticed mid-epoch; 0 at the epoch's end), loss (the
    epoch's mean loss so far: cross-entropy, or reconstruction error when pretraining; may be NaN/inf).
    The message is one line starting with `trainer.contract.DIVERGED_MARKER`.
    """

    exit_code = EXIT_DIVERGED

    def __init__(
        self, message: str, *, phase: str, layer: int | None, epoch: int, batch: int, loss: float
    ) -> None:
        super().__init__(message)
        self.phase, self.layer, self.epoch, self.batch, self.loss = phase, layer, epoch, batch, loss

    def record(self) -> dict[str, Any]:
        """The facts, for metrics.json (the loss is written as null when it is not finite)."""
        return {
            "phase": self.phase,
            "layer": self.layer,
            "epoch": self.epoch,
            "batch": self.batch,
            "loss": self.loss,
            "message": str(self),
        }


def params_finite(backend: Any, params: Params) -> bool:
    """Whether every weight and bias is finite: one reduction per array, one device-to-host transfer."""
    xp = backend.xp
    ok: Any = True
    for a in (*params.weights, *params.biases, *params.vis_biases):
        ok = xp.logical_and(ok, xp.isfinite(a).all())
    return bool(ok)


def check(
    backend: Any,
    cfg: ModelConfig,
    params: Params,
    *,
    phase: str,
    layer: int,
    epoch: int,
    loss: float,
    batch: int = 0,
    learn_rates: list[float] | None = None,
) -> None:
    """Raise Diverged when `loss` (the epoch's mean so far) or any parameter is not finite.

    layer and epoch are 0-based positions (as in TrainState); batch > 0 when checked mid-epoch;
    learn_rates: the fine-tuning rates in effect (after the decays so far), named in the message.
    """
    finetune = phase == "finetune"
    if math.isfinite(loss):
        if params_finite(backend, params):
            return
        what = f"the weights are no longer finite (the loss so far: {loss:.6g})"
    else:
        what = f"the {'loss' if finetune else 'reconstruction error'} is {loss}"
    where = "fine-tuning" if finetune else f"pretraining layer {layer + 1}"
    when = f" (by minibatch {batch}, where it was stopped)" if batch else ""
    causes = likely_causes(cfg, phase, layer, learn_rates)
    raise Diverged(
        f"{DIVERGED_MARKER} in {where} epoch {epoch + 1}{when}: {what}; {causes}",
        phase=phase,
        layer=None if finetune else layer + 1,
        epoch=epoch + 1,
        batch=batch,
        loss=loss,
    )


def likely_causes(cfg: ModelConfig, phase: str, layer: int, learn_rates: list[float] | None = None) -> str:
    """The usual suspects, with this job's values, for the phase that diverged (`learn_rates`: the
    fine-tuning rates in effect, when the decays have changed them)."""
    if phase == "finetune":
        now = tuple(learn_rates) if learn_rates is not None else cfg.learn_rates
        shown = _values(cfg.learn_rates)
        if now != cfg.learn_rates:
            shown = f"{_values(now)} by now, from {shown}"
        rate = f"learn_rates too high ({shown}; try 10x smaller)"
        momentum = f"momentum too close to 1 ({cfg.momentum:g})"
    else:
        rate = f"learn_rates_pretrain too high ({cfg.learn_rates_pretrain[layer]:g}; try 10x smaller)"
        momentum = f"momentum_pretrain too close to 1 ({cfg.momentum_pretrain:g})"
    causes = [rate, f"scales too large ({_values(cfg.scales)}: the initial weights' size)", momentum]
    if phase == "finetune" and any(d > 1 for d in cfg.learn_rate_decays):
        decays = _values(cfg.learn_rate_decays)
        causes.append(f"learn_rate_decays above 1 ({decays}) grow the rates every epoch")
    if cfg.use_re_lu:
        causes.append("ReLU units (use_re_lu: true) need a smaller learn rate than sigmoid units")
    return "likely causes: " + ", ".join(causes)


def _values(values: tuple[float, ...]) -> str:
    """One value when all layers share it, else the list: '0.3' or '[0.3, 0.1]'."""
    if len(set(values)) == 1:
        return f"{values[0]:g}"
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"
