"""The trainer's fast in-place float32 math equals a plain float64 transcription of gdbn's equations.

The references below are written the obvious way (fresh arrays, textbook formulas) and share only the random
draws (permutations and noise, via trainer.rng) with the code under test.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.trainer.trainer_fixtures import (  # noqa: F401 - one_blas_thread is a fixture
    assert_blas_computes_like_numpy,
    dataset,
    one_blas_thread,
)
from trainer import rng
from trainer.backend import numpy_backend
from trainer.config import parse_model
from trainer.loop import TrainData, TrainState, train

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def reference_finetune(cfg, X, y, epochs):  # type: ignore[no-untyped-def]
    """gdbn's backprop with momentum and (1 − m), inverted dropout, nolearn's lr decay; float64."""
    L, B, m = cfg.n_weight_layers, cfg.minibatch_size, cfg.momentum
    W = [w.astype(np.float64) for w in rng.initial_weights(cfg.layers, cfg.scales, cfg.seed)]
    b = [np.zeros(n) for n in cfg.layers[1:]]
    vW, vb = [np.zeros_like(w) for w in W], [np.zeros_like(x) for x in b]
    lr = list(cfg.learn_rates)
    T = np.eye(cfg.layers[-1])[y]
    be = numpy_backend()
    n_b = len(X) // B
    width = sum(cfg.layers[j] for j in range(L) if cfg.dropouts[j])
    act = (lambda z: np.maximum(z, 0)) if cfg.use_re_lu else sigmoid
    dact = (lambda s: (s > 0).astype(float)) if cfg.use_re_lu else (lambda s: s * (1 - s))
    for ep in range(epochs):
        perm = rng.permutation(cfg.seed, rng.FINETUNE, 0, ep, len(X))
        noise = rng.NoiseStream(be, (cfg.seed, rng.FINETUNE, 0, ep), n_b, B, width) if width else None
        for k in range(n_b):
            idx = perm[k * B : (k + 1) * B]
            u = noise.batch(k) if noise is not None else None
            masks, off = [], 0
            for j in range(L):
                p = cfg.dropouts[j]
                if p:
                    masks.append((u[:, off : off + cfg.layers[j]] >= p) / (1 - p))
                    off += cfg.layers[j]
                else:
                    masks.append(np.ones((B, cfg.layers[j])))
            a, s = [X[idx].astype(np.float64) * masks[0]], [None]
            for i in range(L - 1):
                s.append(act(a[-1] @ W[i] + b[i]))
                a.append(s[-1] * masks[i + 1])
            z = a[-1] @ W[-1] + b[-1]
            P = np.exp(z - z.max(1, keepdims=True))
            P /= P.sum(1, keepdims=True)
            d = [None] * L
            d[-1] = P - T[idx]
            for i in range(L - 2, -1, -1):
                d[i] = (d[i + 1] @ W[i + 1].T) * dact(s[i + 1]) * masks[i + 1]
            for i in range(L):
                step = lr[i] * (1 - m)
                vW[i] = m * vW[i] - step * (a[i].T @ d[i] / B + cfg.l2_costs[i] * W[i])
                vb[i] = m * vb[i] - step * d[i].sum(0) / B
                W[i] += vW[i]
                b[i] += vb[i]
        lr = [
            x * dec if x * dec >= mn else x
            for x, dec, mn in zip(lr, cfg.learn_rate_decays, cfg.learn_rate_minimums, strict=True)
        ]
    return W, b


def reference_cd1(cfg, X, layer_epochs):  # type: ignore[no-untyped-def]
    """gdbn's CDStep for the first weight layer (Gaussian or binary visible, binary hidden); float64."""
    B, m, lr, l2 = (
        cfg.minibatch_size,
        cfg.momentum_pretrain,
        cfg.learn_rates_pretrain[0],
        cfg.l2_costs_pretrain[0],
    )
    W = rng.initial_weights(cfg.layers, cfg.scales, cfg.seed)[0].astype(np.float64)
    hb, vb = np.zeros(W.shape[1]), np.zeros(W.shape[0])
    dW, dhb, dvb = np.zeros_like(W), np.zeros_like(hb), np.zeros_like(vb)
    n_b = len(X) // B
    rec = []
    for ep in range(layer_epochs):
        perm = rng.permutation(cfg.seed, rng.PRETRAIN, 0, ep, len(X))
        noise = rng.NoiseStream(numpy_backend(), (cfg.seed, rng.PRETRAIN, 0, ep), n_b, B, W.shape[1])
        err = 0.0
        for k in range(n_b):
            v0 = X[perm[k * B : (k + 1) * B]].astype(np.float64)
            h0 = sigmoid(v0 @ W + hb)
            hs = (noise.batch(k) <= h0).astype(np.float64)
            v1 = hs @ W.T + vb
            if not cfg.real_valued_vis:
                v1 = sigmoid(v1)
            h1 = sigmoid(v1 @ W + hb)
            dW = m * dW + (1 - m) * (v0.T @ h0 - v1.T @ h1)
            dhb = m * dhb + (1 - m) * (h0.sum(0) - h1.sum(0))
            dvb = m * dvb + (1 - m) * (v0.sum(0) - v1.sum(0))
            W *= 1 - l2 * lr * (1 - m)
            W += lr / B * dW
            hb += lr / B * dhb
            vb += lr / B * dvb
            err += ((v0 - v1) ** 2).sum()
        rec.append(err / (n_b * B))
    return W, hb, vb, rec


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"dropouts": [0.2, 0.5, 0.3], "l2_costs": 0.01},
        {
            "use_re_lu": True,
            "learn_rates": [0.05, 0.1, 0.2],
            "learn_rate_decays": 0.5,
            "learn_rate_minimums": 0.04,
        },
    ],
    ids=["sigmoid", "dropout-l2", "relu-decay-minimum"],
)
@pytest.mark.parametrize("use_blas", [True, False], ids=["blas", "numpy-only"])
def test_finetuning_matches_float64_reference(extra: dict, use_blas: bool) -> None:
    data = dataset("digits")
    X, y = data.X_train[:640], data.y_train[:640]
    cfg = parse_model({"layers": [64, 40, 30, 10], "learn_rates": 0.3, "epochs": 3, **extra})
    be = numpy_backend(use_blas, small_gemm=0)  # the direct path even for these small layers
    state = TrainState.fresh(be, cfg)
    train(be, cfg, TrainData.from_host(be, X, y, 10), state)
    W, b = reference_finetune(cfg, X, y, cfg.epochs)
    for i in range(3):
        assert state.params.weights[i].dtype == np.float32
        np.testing.assert_allclose(state.params.weights[i], W[i], rtol=0, atol=2e-5)
        np.testing.assert_allclose(state.params.biases[i], b[i], rtol=0, atol=2e-5)
        assert (
            np.abs(W[i] - rng.initial_weights(cfg.layers, cfg.scales, cfg.seed)[i]).max() > 1e-3
        )  # it moved


@pytest.mark.parametrize("real_valued_vis", [True, False], ids=["gaussian-visible", "binary-visible"])
@pytest.mark.parametrize("use_blas", [True, False], ids=["blas", "numpy-only"])
def test_cd1_matches_float64_reference(real_valued_vis: bool, use_blas: bool) -> None:
    data = dataset("digits")
    X = data.X_train[:640]
    cfg = parse_model(
        {
            "layers": [64, 50, 10],
            "epochs": 0,
            "epochs_pretrain": [2, 0],
            "learn_rates_pretrain": 0.05,
            "l2_costs_pretrain": 0.001,
            "real_valued_vis": real_valued_vis,
        }
    )
    be = numpy_backend(use_blas, small_gemm=0)  # the direct path even for these small layers
    state = TrainState.fresh(be, cfg)
    train(be, cfg, TrainData.from_host(be, X, data.y_train[:640], 10), state)
    W, hb, vb, rec = reference_cd1(cfg, X, 2)
    p = state.params
    np.testing.assert_allclose(p.weights[0], W, rtol=0, atol=1e-4)
    np.testing.assert_allclose(p.biases[0], hb, rtol=0, atol=1e-4)
    np.testing.assert_allclose(p.vis_biases[0], vb, rtol=0, atol=1e-4)
    np.testing.assert_allclose([r["loss"] for r in state.history], rec, rtol=1e-4)
    assert [r["layer"] for r in state.history] == [1, 1]


def test_loss_and_error_are_the_epochs_running_training_figures() -> None:
    """nolearn prints, per epoch, the mean cross-entropy and error rate of the minibatches as trained."""
    data = dataset("digits")
    X, y = data.X_train[:640], data.y_train[:640]
    cfg = parse_model({"layers": [64, 30, 10], "learn_rates": 0.3, "epochs": 1, "momentum": 0.0})
    be = numpy_backend()
    state = TrainState.fresh(be, cfg)
    W0 = [w.copy() for w in state.params.weights]
    train(be, cfg, TrainData.from_host(be, X, y, 10), state)
    # With momentum 0 the first minibatch's loss is computed with the initial weights: check that one.
    idx = rng.permutation(cfg.seed, rng.FINETUNE, 0, 0, len(X))[:64]
    z = sigmoid(X[idx] @ W0[0]) @ W0[1]
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    first = -logp[np.arange(64), y[idx]].sum()
    record = state.history[0]
    assert record["phase"] == "finetune" and record["epoch"] == 1
    assert 0 < record["err"] < 1 and record["loss"] > 0
    assert abs(first / 64 - np.log(10)) < 0.1  # an untrained net is at chance
    assert record["loss"] < first / 64  # the epoch's mean includes the later, better minibatches


def test_direct_blas_calls_agree_with_numpy() -> None:
    """trainer.blas reaches NumPy's OpenBLAS (NumPy's wheels bundle it) and computes what NumPy would."""
    from trainer import blas

    found = blas.find()
    if found is None:
        pytest.skip("NumPy's BLAS is not an OpenBLAS reachable through /proc/self/maps here")
    assert_blas_computes_like_numpy(found)
    assert numpy_backend().blas is found and numpy_backend(use_blas=False).blas is None
