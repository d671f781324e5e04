"""One side of benchmarks/bench_trainer.py, in a process of its own: a few timed epochs of one implementation,
reported as one JSON line on stdout (the last line; the parent reads nothing else).

    python benchmarks/bench_sides.py SIDE --data DIR --batch 64 --epochs 3 --threads 2

SIDE (784-800-800-10 on DIR/X.npy, (n, 784) float32 in [0, 1], and DIR/y.npy, (n,) int64):
- ours:        one fine-tuning epoch through the trainer's own loop (trainer.loop.train on the NumPy backend:
               FineTuneStep with trainer.blas), from fresh weights each epoch;
- torch:       the same network, loss and update rule in idiomatic PyTorch (autograd + torch.optim.SGD);
- floor:       an epoch of only the GEMMs every implementation of this network must do, in our step's buffers;
- ours-rbm:    one CD-1 epoch of the first layer (784 -> 800, binary units) through trainer.loop.train;
- sklearn-rbm: one epoch (n_iter=1) of scikit-learn's BernoulliRBM (PCD-1: as many GEMMs per minibatch);
- probe:       no epochs: the BLAS libraries this process loads (threadpoolctl), PyTorch's build and the
               float32 GEMM speed (with --gpu: CuPy's, and the GPU's name; exit 2 without a usable GPU);
- gpu:         ours on CuPy and the same PyTorch code on CUDA (TF32 off), alternating epoch by epoch in this
               one process: both run on the GPU, so the CPU threads they leave idle slow neither.

Threads: the parent sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS to --threads in this
process's environment; here threadpoolctl caps every pool it sees as well and PyTorch gets
torch.set_num_threads(--threads), so every side runs with the same count.

Timing: after a warm-up of up to WARMUP_BATCHES minibatches (BLAS/OpenMP threads started, buffers faulted in),
each epoch is clocked in wall seconds (perf_counter) and in CPU seconds of this process, all its threads
together (process_time; threads that spin-wait count too). The JSON line:
{"side", "batch", "threads", "pools": threadpoolctl's view after the side ran, "info": probe's findings,
"runs": {name: {"wall": [s per epoch], "cpu": [s per epoch], "loss": first epoch's mean loss or null}}}
("runs" has "ours" and "torch" for gpu, and is empty for probe). Exit codes: 0 done, 2 bad arguments or no GPU
(one line on stderr), 1 a crash (traceback on stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.backend import Backend, numpy_backend, select_backend
from trainer.config import parse_model
from trainer.errors import BackendError
from trainer.loop import Stopped, TrainData, TrainState, train
from trainer.network import FineTuneStep
from trainer.strict_json import dumps

LAYERS = (784, 800, 800, 10)
WARMUP_BATCHES = 30
SIDES = ("ours", "torch", "floor", "ours-rbm", "sklearn-rbm", "probe", "gpu")

#: One epoch per call: (wall seconds, CPU seconds of this process, mean training loss or None).
Epoch = Callable[[], tuple[float, float, float | None]]


def clocked(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of fn()."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


# ----------------------------------------------------------------------------------------------- ours


def ours_finetune(X: np.ndarray, y: np.ndarray, batch: int, be: Backend) -> Epoch:
    """One fine-tuning epoch of our trainer from fresh weights, per call (the NumPy or CuPy backend `be`)."""
    cfg = parse_model({"layers": list(LAYERS), "learn_rates": 0.3, "epochs": 1, "minibatch_size": batch})
    data = TrainData.from_host(be, X, y, LAYERS[-1])
    _warm_up(be, cfg, data)

    def epoch() -> tuple[float, float, float | None]:
        state = TrainState.fresh(be, cfg)
        return (*clocked(lambda: train(be, cfg, data, state)), state.history[0]["loss"])

    return epoch


def ours_rbm(X: np.ndarray, batch: int) -> Epoch:
    """One CD-1 epoch of the first layer (binary visible units, like BernoulliRBM) from fresh weights, per
    call; its "loss" is the trainer's reconstruction error per sample."""
    be = numpy_backend()
    cfg = parse_model(
        {
            "layers": list(LAYERS),
            "epochs": 0,
            "epochs_pretrain": [1, 0, 0],
            "learn_rates_pretrain": 0.01,
            "real_valued_vis": False,
            "minibatch_size": batch,
        }
    )
    data = TrainData.from_host(be, X, np.zeros(len(X), np.int64), LAYERS[-1])
    _warm_up(be, cfg, data)

    def epoch() -> tuple[float, float, float | None]:
        state = TrainState.fresh(be, cfg)
        return (*clocked(lambda: train(be, cfg, data, state)), state.history[0]["loss"])

    return epoch


def _warm_up(be: Backend, cfg: Any, data: TrainData) -> None:
    """The first WARMUP_BATCHES minibatches of a throw-away run (or the whole epoch, when it is shorter)."""
    count = iter(range(WARMUP_BATCHES))
    with contextlib.suppress(Stopped):
        train(be, cfg, data, TrainState.fresh(be, cfg), should_stop=lambda: next(count, None) is None)
    be.synchronize()


def gemms_only(X: np.ndarray, y: np.ndarray, batch: int) -> Epoch:
    """The floor: one epoch of only the fine-tuning GEMMs (NumPy backend), in a FineTuneStep's buffers.

    Per minibatch: our step's gather (take_rows of X, one-hot Y, labels), the forward GEMMs a_i·W_i into
    a_{i+1} (z_out for the last), the deltas d_i·W_iᵀ into d_{i-1}, and the weight gradients a_iᵀ·ds_i
    accumulated into vel_w[i] with beta = momentum (trainer.blas; without it np.dot into the gradient
    scratch).
    No activations, softmax, scaling or updates: the deltas are fixed small random values, so nothing grows.
    """
    be = numpy_backend()
    cfg = parse_model({"layers": list(LAYERS), "learn_rates": 0.3, "epochs": 1, "minibatch_size": batch})
    data = TrainData.from_host(be, X, y, LAYERS[-1])
    state = TrainState.fresh(be, cfg)
    step = FineTuneStep(be, state.params, state.vel_w, state.vel_b, batch, cfg.dropouts, cfg.use_re_lu)
    weights, a, d, ds, vel, blas = state.params.weights, step.a, step.d, step.ds, state.vel_w, be.blas
    g = np.random.default_rng(0)
    for buf in (*d, *ds):
        buf[...] = g.uniform(-1e-3, 1e-3, buf.shape)
    outs = [*a[1:], step.z_out]
    order = np.random.default_rng(1).permutation(data.n)

    def minibatches(n_batches: int) -> None:
        for k in range(n_batches):
            idx = order[k * batch : (k + 1) * batch]
            be.take_rows(data.X, idx, a[0])
            be.take_rows(data.Y, idx, step.target)
            be.take_rows(data.y, idx, step.labels)
            for i, w in enumerate(weights):
                np.dot(a[i], w, out=outs[i])
            for i in reversed(range(len(weights))):
                if i > 0:
                    np.dot(d[i], weights[i].T, out=d[i - 1])
                if blas is not None:
                    blas.gemm_tn_acc(1.0, a[i], ds[i], cfg.momentum, vel[i])
                else:
                    np.dot(a[i].T, ds[i], out=step.g_w[i])

    minibatches(min(WARMUP_BATCHES, data.n // batch))

    def epoch() -> tuple[float, float, float | None]:
        return (*clocked(lambda: minibatches(data.n // batch)), None)

    return epoch


# ----------------------------------------------------------------------------------------------- the peers


def torch_finetune(X: np.ndarray, y: np.ndarray, batch: int, threads: int, device: str = "cpu") -> Epoch:
    """The same network and update rule in idiomatic PyTorch (autograd + torch.optim.SGD), from fresh weights
    per call, on `device` ("cuda": the epoch ends by reading the loss back, which waits for the GPU).

    gdbn: v = m·v − lr·(1 − m)·(g + l2·W); W += v.  SGD(momentum=m, dampening=m):
    u = m·u + (1 − m)·(g + l2·W); W −= lr·u — the same weights (v = −lr·u) at a constant learning rate.
    """
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    torch.backends.cuda.matmul.allow_tf32 = False  # full float32, like CuPy's default
    Xt, yt = torch.from_numpy(X).to(dev), torch.from_numpy(np.asarray(y, dtype=np.int64)).to(dev)

    def fresh() -> tuple[list[Any], list[Any], Any]:
        pairs = itertools.pairwise(LAYERS)
        weights = [(torch.randn(a, b, device=dev) * 0.05).requires_grad_() for a, b in pairs]
        biases = [torch.zeros(b, device=dev, requires_grad=True) for b in LAYERS[1:]]
        opt = torch.optim.SGD(
            [{"params": weights, "weight_decay": 1e-4}, {"params": biases, "weight_decay": 0.0}],
            lr=0.3,
            momentum=0.9,
            dampening=0.9,
        )
        for p in weights + biases:  # SGD would start its buffer at g, not at (1 - dampening)·g like gdbn
            opt.state[p]["momentum_buffer"] = torch.zeros_like(p)
        return weights, biases, opt

    def run(n_batches: int, weights: list[Any], biases: list[Any], opt: Any, perm: Any) -> float:
        total = torch.zeros((), device=dev)
        for k in range(n_batches):
            idx = perm[k * batch : (k + 1) * batch]
            h = Xt[idx]
            for w, b in zip(weights[:-1], biases[:-1], strict=True):
                h = torch.sigmoid(torch.addmm(b, h, w))
            z = torch.addmm(biases[-1], h, weights[-1])
            loss = torch.nn.functional.cross_entropy(z, yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        return float(total) / n_batches

    def epoch() -> tuple[float, float, float | None]:
        weights, biases, opt = fresh()
        perm = torch.randperm(len(Xt), device=dev)
        losses: list[float] = []
        wall, cpu = clocked(lambda: losses.append(run(len(Xt) // batch, weights, biases, opt, perm)))
        return wall, cpu, losses[0]

    run(min(WARMUP_BATCHES, len(Xt) // batch), *fresh(), torch.randperm(len(Xt), device=dev))
    return epoch


def sklearn_rbm(X: np.ndarray, batch: int) -> Epoch:
    """One epoch (n_iter=1) of scikit-learn's BernoulliRBM, 784 -> 800, from fresh weights per call."""
    from sklearn.neural_network import BernoulliRBM

    BernoulliRBM(n_components=LAYERS[1], batch_size=batch, n_iter=1, random_state=0).fit(
        X[: batch * WARMUP_BATCHES]
    )

    def epoch() -> tuple[float, float, float | None]:
        rbm = BernoulliRBM(
            n_components=LAYERS[1], batch_size=batch, learning_rate=0.01, n_iter=1, random_state=0
        )
        return (*clocked(lambda: rbm.fit(X)), None)

    return epoch


# ----------------------------------------------------------------------------------------------- the probe


def probe(gpu: bool, threads: int) -> dict[str, Any]:
    """What this process computes with: NumPy, PyTorch's build (when installed), the float32 GEMM speed;
    with gpu, the GPU's name and CuPy's GEMM speed (BackendError without a usable GPU)."""
    info: dict[str, Any] = {"numpy": np.__version__}
    if gpu:
        be = select_backend("cupy")
        info |= {"device": be.device, "sgemm_size": 8192, "sgemm_gflops": _cupy_sgemm_gflops(8192)}
    else:
        info |= {"sgemm_size": 2048, "sgemm_gflops": sgemm_gflops(2048)}
    with contextlib.suppress(ImportError):
        info["torch"] = torch_build(threads)
    return info


def torch_build(threads: int) -> dict[str, Any]:
    """PyTorch's version, the CPU code path it dispatches to (e.g. AVX2, AVX512) and the BLAS it was built
    with (its MKL is linked in statically, so threadpoolctl sees only its OpenMP runtime)."""
    import torch

    torch.set_num_threads(threads)
    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    mkl = re.search(r"Math Kernel Library Version ([\d.]+)", config)
    return {
        "version": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": blas.group(1) if blas else None,
        "mkl": mkl.group(1) if mkl else None,
        "threads": torch.get_num_threads(),
    }


def sgemm_gflops(size: int, reps: int = 5) -> float:
    """Best float32 GFLOP/s of a size x size x size numpy matmul (the BLAS threads this process allows)."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    c = np.empty_like(a)
    np.dot(a, b, out=c)
    best = min(clocked(lambda: np.dot(a, b, out=c))[0] for _ in range(reps))
    return 2 * size**3 / best / 1e9


def _cupy_sgemm_gflops(size: int, reps: int = 5) -> float:
    import cupy as cp

    a = cp.random.random((size, size), dtype=cp.float32)
    b = cp.random.random((size, size), dtype=cp.float32)
    c = cp.empty_like(a)

    def once() -> None:
        cp.dot(a, b, out=c)
        cp.cuda.get_current_stream().synchronize()

    once()
    best = min(clocked(once)[0] for _ in range(reps))
    return 2 * size**3 / best / 1e9


def limit_threads(threads: int) -> None:
    """Cap every native thread pool loaded so far (threadpoolctl, when installed) at `threads`; the
    environment the parent set (OMP_NUM_THREADS etc.) already caps them where threadpoolctl is missing."""
    with contextlib.suppress(ImportError):
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)  # stays in force: the returned object only restores when used as a context


def thread_pools() -> list[dict[str, Any]]:
    """threadpoolctl's view of the native thread pools loaded here: library, version, kernel, threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads", "threading_layer")
    return [{k: pool.get(k) for k in keys} for pool in threadpool_info()]


# ----------------------------------------------------------------------------------------------- main


def measure(epochs: int, sides: dict[str, Epoch]) -> dict[str, dict[str, Any]]:
    """`epochs` epochs of each side, alternating side by side within each epoch's turn."""
    runs: dict[str, dict[str, Any]] = {name: {"wall": [], "cpu": [], "loss": None} for name in sides}
    for turn in range(epochs):
        for name, epoch in sides.items():
            wall, cpu, loss = epoch()
            runs[name]["wall"].append(wall)
            runs[name]["cpu"].append(cpu)
            if turn == 0:
                runs[name]["loss"] = loss
    return runs


def build(
    side: str, X: np.ndarray, y: np.ndarray, batch: int, threads: int, torch: bool = True
) -> dict[str, Epoch]:
    """The epoch callables of `side` (for gpu: ours, and PyTorch unless `torch` is false; BackendError
    without a usable GPU)."""
    if side == "gpu":
        sides = {"ours": ours_finetune(X, y, batch, select_backend("cupy"))}
        if torch:
            sides["torch"] = torch_finetune(X, y, batch, threads, "cuda")
        return sides
    makers: dict[str, Callable[[], Epoch]] = {
        "ours": lambda: ours_finetune(X, y, batch, numpy_backend()),
        "torch": lambda: torch_finetune(X, y, batch, threads),
        "floor": lambda: gemms_only(X, y, batch),
        "ours-rbm": lambda: ours_rbm(X, batch),
        "sklearn-rbm": lambda: sklearn_rbm(X, batch),
    }
    return {side: makers[side]()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("side", choices=SIDES)
    parser.add_argument("--data", type=Path, help="folder with X.npy and y.npy (all sides but probe)")
    parser.add_argument("--batch", type=int, default=64, help="minibatch size (default 64)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (default 3)")
    parser.add_argument("--threads", type=int, required=True, help="threads for every pool (BLAS, OpenMP)")
    parser.add_argument("--gpu", action="store_true", help="probe: CuPy's GEMM speed and the GPU's name")
    parser.add_argument("--no-torch", action="store_true", help="gpu: ours alone (PyTorch not installed)")
    args = parser.parse_args(argv)
    if args.side != "probe" and args.data is None:
        parser.error(f"{args.side} needs --data")
    doc: dict[str, Any] = {
        "side": args.side,
        "batch": args.batch,
        "threads": args.threads,
        "info": {},
        "runs": {},
    }
    try:
        if args.side == "probe":
            limit_threads(args.threads)
            doc["info"] = probe(args.gpu, args.threads)
        else:
            X, y = np.load(args.data / "X.npy"), np.load(args.data / "y.npy")
            sides = build(args.side, X, y, args.batch, args.threads, not args.no_torch)
            limit_threads(
                args.threads
            )  # now that the side's libraries are loaded (the warm-up had the env's)
            doc["runs"] = measure(args.epochs, sides)
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    doc["pools"] = thread_pools()
    print(dumps(doc), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
