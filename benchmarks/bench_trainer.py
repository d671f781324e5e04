"""How fast is the trainer on this CPU? One fine-tuning epoch and one RBM pretraining epoch, against PyTorch
and scikit-learn in the same run, and against the machine's own float32 GEMM speed.

    python benchmarks/bench_trainer.py            # full: 46,900 x 784, 3 repetitions (a few minutes)
    python benchmarks/bench_trainer.py --quick    # a quarter of the rows, 2 repetitions
    python benchmarks/bench_trainer.py --gpu      # the same fine-tuning epoch on a GPU: CuPy vs PyTorch CUDA

What is timed (medians over --reps epochs, after a warm-up):
- fine-tuning, 784-800-800-10 on 46,900 x 784 float32 (Fashion-MNIST from Debian's dataset-fashion-mnist
  when installed, else uniform noise), minibatch 64 and 128: ours (NumPy backend) vs PyTorch on the CPU
  (torch.set_num_threads(os.cpu_count())) with the same network, loss and update rule (gdbn's momentum with
  the (1 - momentum) factor = torch.optim.SGD(momentum=m, dampening=m), L2 on weights only);
- one RBM pretraining epoch of the first layer (784 -> 800, binary units, minibatch 64): ours (CD-1) vs
  scikit-learn's BernoulliRBM (PCD-1, the same GEMM count per minibatch) with n_iter=1;
- the GEMM bound: float32 GFLOP/s of a large numpy matmul, and the epoch's FLOPs (~300 GFLOP) divided by it.
  "share" = bound / measured epoch time: 100 % would be an epoch that is nothing but peak-speed GEMMs.
- the floor ("GEMMs only" row under each batch size): an epoch of nothing but the GEMMs any implementation
  of this network must do per minibatch — forward a0·W0, a1·W1 (and a2·W2), the backpropagated deltas
  d2·W2ᵀ, d1·W1ᵀ, and the three weight gradients accumulated into the velocities (sgemm's beta, trainer.blas)
  — in our step's own buffers after its minibatch gather, measured right after each of our epochs. Its
  ratio to PyTorch is the lowest any NumPy/OpenBLAS implementation can reach on this machine.

--gpu times the fine-tuning epoch on the GPU instead: ours on the CuPy backend against the same PyTorch
code on CUDA (both in full float32: TF32 off), and "GEMM s" comes from a large CuPy float32 matmul. There
is no GPU RBM peer (scikit-learn is CPU-only), so --gpu skips that row, and the floor row (NumPy's BLAS).

The machine sets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (they slow NumPy's GEMM 1.6-1.9x); this script
re-executes itself without them before NumPy is imported and says so. Ratios measured in the same run are
what count: absolute times move with whatever else the machine is doing.
"""

from __future__ import annotations

import os
import sys

BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_MARK = "BENCH_TRAINER_UNSET"


def _reexec_without_blas_overrides() -> None:
    """Restart this script with BLAS_OVERRIDES removed from the environment (before numpy is imported)."""
    present = {k: os.environ[k] for k in BLAS_OVERRIDES if k in os.environ}
    if present and _MARK not in os.environ:
        env = {k: v for k, v in os.environ.items() if k not in BLAS_OVERRIDES}
        env[_MARK] = " ".join(f"{k}={v}" for k, v in present.items())
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]], env)


if __name__ == "__main__":
    _reexec_without_blas_overrides()

# ruff: noqa: E402 - everything below must be imported after the re-exec above
import argparse
import contextlib
import itertools
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.backend import Backend, cpu_name, numpy_backend, select_backend
from trainer.config import DataConfig, parse_model
from trainer.errors import BackendError
from trainer.loop import Stopped, TrainData, TrainState, train
from trainer.network import FineTuneStep
from trainer.strict_json import dumps

LAYERS = (784, 800, 800, 10)
THREADS: int | None = None  # --threads: BLAS and PyTorch threads (default: all CPUs)
GPU = False  # --gpu: ours on CuPy, PyTorch on CUDA
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def say(text: str = "") -> None:
    print(text, flush=True)


# ----------------------------------------------------------------------------------------------- the machine


def describe_machine() -> dict[str, Any]:
    unset = os.environ.get(_MARK)
    if unset:
        say(f"unset {unset} for this benchmark (re-executed without them before importing NumPy)")
    else:
        say("OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are not set: nothing to unset")
    info: dict[str, Any] = {"cpu": cpu_name(), "python": platform.python_version(), "numpy": np.__version__}
    try:
        from threadpoolctl import threadpool_info

        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    except ImportError:
        blas = []
    if blas:
        b = blas[0]
        info["blas"] = f"{b.get('internal_api')} {b.get('version')}, kernel {b.get('architecture')}, "
        info["blas"] += f"{b.get('num_threads')} threads"
    else:
        info["blas"] = "unknown (pip install threadpoolctl to see it)"
    say(f"machine: {info['cpu']}; Python {info['python']}, NumPy {info['numpy']}")
    say(f"NumPy BLAS: {info['blas']}")
    return info


def sgemm_gflops(size: int = 2048, reps: int = 5) -> float:
    """Best float32 GFLOP/s of a size x size x size numpy matmul (all BLAS threads); CuPy's with --gpu."""
    if GPU:
        return _cupy_sgemm_gflops(4 * size, reps)
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    c = np.empty_like(a)
    np.dot(a, b, out=c)
    best = min(_clocked(lambda: np.dot(a, b, out=c))[0] for _ in range(reps))
    return 2 * size**3 / best / 1e9


def _cupy_sgemm_gflops(size: int, reps: int) -> float:
    import cupy as cp

    a = cp.random.random((size, size), dtype=cp.float32)
    b = cp.random.random((size, size), dtype=cp.float32)
    c = cp.empty_like(a)

    def once() -> None:
        cp.dot(a, b, out=c)
        cp.cuda.get_current_stream().synchronize()

    once()
    best = min(_clocked(once)[0] for _ in range(reps))
    return 2 * size**3 / best / 1e9


def finetune_flops(n: int, batch: int) -> float:
    """FLOPs of one fine-tuning epoch: per sample 2*(forward + weight gradients + backpropagated deltas)."""
    pairs = list(itertools.pairwise(LAYERS))
    weights = sum(a * b for a, b in pairs)
    deltas = sum(a * b for a, b in pairs[1:])  # no delta is sent back to the pixels
    return 2.0 * (2 * weights + deltas) * (n // batch) * batch


def rbm_flops(n: int, batch: int) -> float:
    """FLOPs of one CD-1 epoch of the 784 x 800 RBM: 3 GEMMs per minibatch + the 2-batch statistics GEMM."""
    return 2.0 * 5 * LAYERS[0] * LAYERS[1] * (n // batch) * batch


# ----------------------------------------------------------------------------------------------- data


def load_rows(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(X (n, 784) float32 in [0, 1], y (n,) int64, where from)."""
    if FASHION_DIR.is_dir():
        from trainer.data import load_data

        data = load_data(DataConfig("fashion-mnist"))  # the seed's split: 46,900 training rows
        X, y = data.X_train, data.y_train
        reps = -(-n // len(X))
        return np.ascontiguousarray(np.tile(X, (reps, 1))[:n]), np.tile(y, reps)[:n], "Fashion-MNIST (Debian)"
    rng = np.random.default_rng(0)
    return rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n), "uniform noise (no Fashion-MNIST)"


# ----------------------------------------------------------------------------------------------- the runs
# Each maker returns a callable that runs one epoch and returns (wall seconds, CPU seconds of this process,
# mean training loss), so that ours and theirs can be measured alternately: a change in the machine's load
# then hits both alike. CPU seconds (all threads) depend less on other processes than wall time does.

Run = tuple[float, float, float]


def ours_finetune(X: np.ndarray, y: np.ndarray, batch: int) -> Callable[[], Run]:
    """One fine-tuning epoch of our trainer (NumPy backend; CuPy with --gpu) from fresh weights, per call."""
    be: Backend = select_backend("cupy") if GPU else numpy_backend()
    cfg = parse_model({"layers": list(LAYERS), "learn_rates": 0.3, "epochs": 1, "minibatch_size": batch})
    data = TrainData.from_host(be, X, y, 10)
    _warm_up(be, cfg, data)

    def epoch() -> Run:
        state = TrainState.fresh(be, cfg)
        return (*_clocked(lambda: train(be, cfg, data, state)), state.history[0]["loss"])

    return epoch


def gemms_only(X: np.ndarray, y: np.ndarray, batch: int) -> Callable[[], Run]:
    """The floor: one epoch of only the fine-tuning GEMMs (NumPy backend), in a FineTuneStep's buffers.

    Per minibatch: our step's gather (take_rows of X, one-hot Y, labels), the forward GEMMs a_i·W_i into
    a_{i+1} (z_out for the last), the deltas d_i·W_iᵀ into d_{i-1}, and the weight gradients a_iᵀ·ds_i
    accumulated into vel_w[i] with beta = momentum (np.dot into the gradient scratch without trainer.blas).
    No activations, softmax, scaling or updates: the deltas are fixed small random values, so nothing grows.
    """
    be = numpy_backend()
    cfg = parse_model({"layers": list(LAYERS), "learn_rates": 0.3, "epochs": 1, "minibatch_size": batch})
    data = TrainData.from_host(be, X, y, 10)
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

    minibatches(30)  # warm-up

    def epoch() -> Run:
        return (*_clocked(lambda: minibatches(data.n // batch)), float("nan"))

    return epoch


def ours_rbm(X: np.ndarray, batch: int) -> Callable[[], Run]:
    """One CD-1 epoch of the first layer (binary visible units, like BernoulliRBM), per call."""
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
    data = TrainData.from_host(be, X, np.zeros(len(X), np.int64), 10)
    _warm_up(be, cfg, data)

    def epoch() -> Run:
        state = TrainState.fresh(be, cfg)
        return (*_clocked(lambda: train(be, cfg, data, state)), state.history[0]["loss"])

    return epoch


def _warm_up(be: Any, cfg: Any, data: TrainData, batches: int = 30) -> None:
    count = iter(range(batches))
    with contextlib.suppress(Stopped):
        train(be, cfg, data, TrainState.fresh(be, cfg), should_stop=lambda: next(count, None) is None)


def torch_finetune(X: np.ndarray, y: np.ndarray, batch: int) -> Callable[[], Run]:
    """The same network and update rule in idiomatic PyTorch (autograd + torch.optim.SGD), on the CPU
    (on CUDA with --gpu; the epoch ends by reading the loss back, which waits for the GPU).

    gdbn: v = m·v − lr·(1 − m)·(g + l2·W); W += v.  SGD(momentum=m, dampening=m):
    u = m·u + (1 − m)·(g + l2·W); W −= lr·u — the same weights (v = −lr·u) at a constant learning rate.
    """
    import torch

    torch.set_num_threads(THREADS or os.cpu_count() or 1)
    torch.manual_seed(0)
    dev = torch.device("cuda" if GPU else "cpu")
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

    def epoch() -> Run:
        weights, biases, opt = fresh()
        perm = torch.randperm(len(Xt), device=dev)
        losses: list[float] = []
        wall, cpu = _clocked(lambda: losses.append(run(len(Xt) // batch, weights, biases, opt, perm)))
        return wall, cpu, losses[0]

    run(30, *fresh(), torch.randperm(len(Xt), device=dev))  # warm-up
    return epoch


def sklearn_rbm(X: np.ndarray, batch: int) -> Callable[[], Run]:
    """One epoch (n_iter=1) of scikit-learn's BernoulliRBM, 784 -> 800, per call."""
    from sklearn.neural_network import BernoulliRBM

    BernoulliRBM(n_components=LAYERS[1], batch_size=batch, n_iter=1, random_state=0).fit(X[: batch * 30])

    def epoch() -> Run:
        rbm = BernoulliRBM(
            n_components=LAYERS[1], batch_size=batch, learning_rate=0.01, n_iter=1, random_state=0
        )
        return (*_clocked(lambda: rbm.fit(X)), float("nan"))

    return epoch


def alternate(reps: int, *runs: Callable[[], Run] | None) -> list[list[Run]]:
    """reps runs of each (ours, then the others in order; None: not run), alternating, with a pause so
    that the spinning BLAS/OpenMP threads of the one just measured have gone idle before the next starts."""
    out: list[list[Run]] = [[] for _ in runs]
    for _ in range(reps):
        for fn, results in zip(runs, out, strict=True):
            if fn is not None:
                results.append(fn())
                time.sleep(0.5)
    return out


def _clocked(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of fn()."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


# ----------------------------------------------------------------------------------------------- the report


def compare(
    label: str,
    reps: int,
    ours: Callable[[], Run],
    theirs: Callable[[], Run] | None,
    flops: float,
    gflops: float,
    floor: Callable[[], Run] | None = None,
) -> dict[str, Any]:
    """Measure ours and theirs alternately (and the floor right after each of ours); print one table row
    (and the floor's); return the figures (the floor's under "floor")."""
    ours_runs, floor_runs, their_runs = alternate(reps, ours, floor, theirs)
    med = statistics.median
    row: dict[str, Any] = {"ours_wall": [r[0] for r in ours_runs], "ours_cpu": [r[1] for r in ours_runs]}
    row |= {"ours_s": med(row["ours_wall"]), "ours_cpu_s": med(row["ours_cpu"]), "ours_loss": ours_runs[0][2]}
    if their_runs:
        row |= {"theirs_wall": [r[0] for r in their_runs], "theirs_cpu": [r[1] for r in their_runs]}
        row |= {"theirs_s": med(row["theirs_wall"]), "theirs_cpu_s": med(row["theirs_cpu"])}
        row |= {"theirs_loss": their_runs[0][2], "ratio": row["ours_s"] / row["theirs_s"]}
        row["cpu_ratio"] = row["ours_cpu_s"] / row["theirs_cpu_s"]
    row |= {"gflop": flops / 1e9, "gemm_bound_s": flops / (gflops * 1e9)}
    row["share"] = row["gemm_bound_s"] / row["ours_s"]
    cells = [f"{label:30s}", f"{row['ours_s']:7.2f}"]
    if their_runs:
        cells += [f"{row['theirs_s']:8.2f}", f"{row['ratio']:7.2f}", f"{row['cpu_ratio']:9.2f}"]
    else:
        cells += [f"{'-':>8s}", f"{'-':>7s}", f"{'-':>9s}"]
    cells += [f"{row['gemm_bound_s']:9.2f}", f"{row['share']:6.0%}"]
    say(" ".join(cells))
    if floor_runs:
        fl: dict[str, Any] = {"wall": [r[0] for r in floor_runs], "cpu": [r[1] for r in floor_runs]}
        fl |= {"s": med(fl["wall"]), "cpu_s": med(fl["cpu"])}
        fl["share"] = row["gemm_bound_s"] / fl["s"]
        cells = [f"{'    GEMMs only (floor)':30s}", f"{fl['s']:7.2f}"]
        if their_runs:
            fl |= {"ratio": fl["s"] / row["theirs_s"], "cpu_ratio": fl["cpu_s"] / row["theirs_cpu_s"]}
            cells += [f"{row['theirs_s']:8.2f}", f"{fl['ratio']:7.2f}", f"{fl['cpu_ratio']:9.2f}"]
        else:
            cells += [f"{'-':>8s}", f"{'-':>7s}", f"{'-':>9s}"]
        cells += [f"{row['gemm_bound_s']:9.2f}", f"{fl['share']:6.0%}"]
        say(" ".join(cells))
        row["floor"] = fl
    return row


def header(title: str, theirs: str) -> None:
    cells = [f"{title:30s}", f"{'ours s':>7s}", f"{theirs:>8s}", f"{'ratio':>7s}", f"{'CPU ratio':>9s}"]
    say(" ".join([*cells, f"{'GEMM s':>9s}", f"{'share':>6s}"]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a quarter of the rows and 2 repetitions")
    parser.add_argument("--n", type=int, default=None, help="training rows (default 46,900)")
    parser.add_argument("--reps", type=int, default=None, help="epochs per measurement (default 3)")
    parser.add_argument("--batches", default="64,128", help="fine-tuning minibatch sizes (default 64,128)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    parser.add_argument("--no-rbm", action="store_true", help="skip the RBM comparison")
    parser.add_argument("--gpu", action="store_true", help="fine-tuning on the GPU: CuPy vs PyTorch CUDA")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--threads",
        type=int,
        help="threads for NumPy's BLAS and PyTorch (default: all CPUs); 1 compares the work each side does "
        "when other processes keep the CPUs busy",
    )
    args = parser.parse_args(argv)
    if args.gpu:
        global GPU
        GPU, args.no_rbm = True, True
        try:
            select_backend("cupy")
        except BackendError as exc:
            say(f"error: --gpu: {exc}")
            return 2
    if args.threads:
        global THREADS
        THREADS = args.threads
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)  # the returned limiter is kept in force for the whole run
        say(f"threads: {args.threads} (NumPy's BLAS and PyTorch)")
    n = args.n or (46_900 // 4 if args.quick else 46_900)
    reps = args.reps or (2 if args.quick else 3)
    batches = [int(b) for b in args.batches.split(",")]

    result: dict[str, Any] = {"machine": describe_machine(), "n": n, "reps": reps}
    gflops = sgemm_gflops()
    result["sgemm_gflops"] = gflops
    if GPU:
        say(f"GPU: {select_backend('cupy').device}")
        say(f"float32 GEMM (8192^3 CuPy matmul, best of 5): {gflops:.0f} GFLOP/s")
    else:
        say(f"float32 GEMM (2048^3 numpy matmul, best of 5): {gflops:.0f} GFLOP/s")
    X, y, source = load_rows(n)
    result["data"] = source
    say(f"data: {n:,} x 784 float32 from {source}")
    say(f"medians of {reps} epochs each after a warm-up, ours and theirs alternating")
    say(f"load average at start: {os.getloadavg()[0]:.2f} (other work on this machine slows both sides)")
    say("ratio = ours/theirs in wall seconds (CPU ratio: in CPU seconds of the process);")
    say("GEMM s = the epoch's FLOPs at the GEMM speed above; share = GEMM s / ours s")
    if not GPU:
        say("GEMMs only (floor) = an epoch of just the network's GEMMs in our buffers, after each of ours;")
        say("its ratio (to the same PyTorch epochs) is the lowest a NumPy/OpenBLAS implementation can reach")
    say()
    header("fine-tuning 784-800-800-10" + (" (GPU)" if GPU else ""), "PyTorch")
    result["finetune"] = []
    for batch in batches:
        flops = finetune_flops(n, batch)
        theirs = None if args.no_torch else torch_finetune(X, y, batch)
        label = f"  batch {batch} ({flops / 1e9:.0f} GFLOP)"
        floor = None if GPU else gemms_only(X, y, batch)
        row = compare(label, reps, ours_finetune(X, y, batch), theirs, flops, gflops, floor)
        result["finetune"].append({"batch": batch, **row})
    if not args.no_rbm:
        say()
        header("RBM 784x800 epoch, batch 64", "sklearn")
        try:
            theirs = sklearn_rbm(X, 64)
        except ImportError:
            theirs = None
        row = compare("  CD-1 vs BernoulliRBM PCD-1", reps, ours_rbm(X, 64), theirs, rbm_flops(n, 64), gflops)
        result["rbm"] = {"batch": 64, **row}
    say()
    first = result["finetune"][0]
    if "ratio" in first and GPU:
        say(f"ours/PyTorch on the GPU at batch {first['batch']}: {first['ratio']:.2f} (no GPU target)")
    elif "ratio" in first:
        verdict = "met" if first["ratio"] <= 0.5 else "NOT met"
        say(f"target ours/PyTorch <= 0.5 at batch {first['batch']}: {first['ratio']:.2f} ({verdict})")
        floor = first.get("floor", {})
        if "ratio" in floor:
            say(
                f"floor at batch {first['batch']}: the GEMMs alone are {floor['ratio']:.2f} of PyTorch "
                f"(ours spends {first['ours_s'] - floor['s']:.2f} s per epoch outside them)"
            )
    if "ratio" in first:
        say(
            f"same work: mean training loss of the first epoch, ours {first['ours_loss']:.4f}, "
            f"PyTorch {first['theirs_loss']:.4f}"
        )
    say(f"load average at end: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
