"""Is the trainer fast on this CPU? Ours against PyTorch (a fine-tuning epoch) and scikit-learn (an RBM
epoch), each side in a process of its own, alternating, over several rounds; then the seed run's wall time.

    python benchmarks/bench_trainer.py           # 3 rounds, batch 64, all threads and 1 thread, the seed run
    python benchmarks/bench_trainer.py --rows 11725 --rounds 2 --no-seed-run     # a quick look
    python benchmarks/bench_trainer.py --gpu     # CuPy against PyTorch CUDA, on the GPU

Method. A measurement is a fresh process (benchmarks/bench_sides.py) that loads the data, warms up, times
--epochs epochs of one side and reports each epoch's wall and CPU seconds; its medians are that measurement.
A round measures every side once, one after the other (the order reversed every other round, so a drift
in the machine's load falls on both sides alike). Each round gives a ratio ours/peer; the report is the
median and the range of the --rounds ratios, in wall seconds and in CPU seconds (all threads of each
process: on a shared machine they move less with other work than wall seconds do, but spin-waiting threads
count). Two sides never share a process: PyTorch's OpenMP threads spin on after its epochs and would take
the cores from OpenBLAS during ours (issue #18).

Sides, on 784-800-800-10 over --rows rows of Fashion-MNIST (Debian's dataset-fashion-mnist; uniform noise
without it): ours (trainer.loop.train, NumPy backend) against PyTorch (the same network, loss and update
rule: gdbn's momentum = torch.optim.SGD(momentum=m, dampening=m), L2 on weights only) at each --batches size;
"GEMMs only", the floor: an epoch of nothing but the network's GEMMs in our step's buffers, the least any
NumPy/OpenBLAS step could take; and one CD-1 epoch of the first RBM (784 -> 800, binary units, batch 64)
against scikit-learn's BernoulliRBM (PCD-1, the same GEMM count per minibatch). "GEMM-bound s" is the epoch's
FLOPs at the float32 GEMM speed a 2048³ numpy matmul reaches with the same threads.

Threads: every --threads setting (default: all CPUs, then 1) holds for both sides alike: OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS and MKL_NUM_THREADS in the child's environment, threadpoolctl and torch.set_num_threads
inside it. Some machines set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (for old OpenBLAS builds; they force a
slower kernel on a current NumPy): the children run without them unless --keep-openblas-env, and the header
says which were unset. The BLAS kernel actually in use is read back with threadpoolctl in each child.

The seed run (benchmarks/bench_seed_run.py): `python -m trainer run examples/seed-fashion.yaml` in a fresh
process (load, 10 epochs each scored on the test set, checkpoints, report): its whole wall time, and where
it goes.

--gpu keeps the same-process design on the GPU: one process per round runs ours on CuPy and the same PyTorch
code on CUDA (TF32 off) epoch by epoch alternately; both run on the GPU, so the CPU threads sit idle.
Without a usable GPU it prints one line and exits 2. There is no GPU floor or RBM peer.

Exit codes: 0 done, 2 bad arguments or no GPU for --gpu, 1 a side crashed (its last line is printed).
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_report import (  # noqa: E402 - after sys.path
    blas_summary,
    header_lines,
    load_average,
    machine,
    table_lines,
    threads_text,
    verdict_lines,
)
from benchmarks.bench_seed_run import report_lines, time_seed_run  # noqa: E402
from trainer.strict_json import dumps  # noqa: E402

SIDES_SCRIPT = Path(__file__).with_name("bench_sides.py")
SEED_JOB = ROOT / "examples" / "seed-fashion.yaml"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
LAYERS = (784, 800, 800, 10)
BLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
SCHEMA = "ec2dbn-bench-trainer/2"


def say(text: str = "") -> None:
    print(text, flush=True)


class SideFailed(Exception):
    """A child exited non-zero: exit_code and its last stderr line."""

    def __init__(self, side: str, exit_code: int, line: str) -> None:
        super().__init__(
            f"{side}: {line}" if exit_code == 2 else f"side {side} failed (exit {exit_code}): {line}"
        )
        self.exit_code = exit_code


# ----------------------------------------------------------------------------------------------- children


def without_overrides(base: Mapping[str, str], keep_openblas: bool) -> dict[str, str]:
    """A copy of the environment `base` without BLAS_OVERRIDES (unless kept); `base` is left as it is."""
    return {k: v for k, v in base.items() if keep_openblas or k not in BLAS_OVERRIDES}


def child_env(base: Mapping[str, str], threads: int, keep_openblas: bool) -> dict[str, str]:
    """A side's environment: `base` without BLAS_OVERRIDES (unless kept), every THREAD_VARS at `threads`."""
    return without_overrides(base, keep_openblas) | dict.fromkeys(THREAD_VARS, str(threads))


def run_side(side: str, env: dict[str, str], *args: str) -> dict[str, Any]:
    """Run bench_sides.py SIDE in a fresh process; its JSON line, plus "process_s" (the whole process)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(SIDES_SCRIPT), side, *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SideFailed(side, proc.returncode, tail.removeprefix("error: "))
    doc = json.loads(proc.stdout.strip().splitlines()[-1])
    return doc | {"process_s": time.perf_counter() - t0}


@dataclass(frozen=True)
class Pair:
    """One comparison: ours against a peer (and the floor), each a (run name, batch) key of the rounds."""

    label: str
    peer_name: str
    batch: int
    ours: str
    peer: str | None
    floor: str | None
    flops: float


def finetune_flops(n: int, batch: int) -> float:
    """FLOPs of one fine-tuning epoch: per sample 2*(forward + weight gradients + backpropagated deltas)."""
    pairs = list(itertools.pairwise(LAYERS))
    weights = sum(a * b for a, b in pairs)
    deltas = sum(a * b for a, b in pairs[1:])  # no delta is sent back to the pixels
    return 2.0 * (2 * weights + deltas) * (n // batch) * batch


def rbm_flops(n: int, batch: int) -> float:
    """FLOPs of one CD-1 epoch of the 784 x 800 RBM: 3 GEMMs per minibatch + the 2-batch statistics GEMM."""
    return 2.0 * 5 * LAYERS[0] * LAYERS[1] * (n // batch) * batch


def measure_rounds(
    jobs: list[tuple[str, int]],
    rounds: int,
    epochs: int,
    threads: int,
    env: dict[str, str],
    data: Path,
    extra: tuple[str, ...] = (),
) -> tuple[dict[tuple[str, int], list[dict[str, Any]]], list[dict[str, Any]]]:
    """Every (side, batch) job once per round, in a fresh process each, the order reversed every other round.
    Returns per (run name, batch) one record per round (medians of its epochs, the epochs, the first loss,
    the child's BLAS), and per round the order it ran in and the load average after it."""
    got: dict[tuple[str, int], list[dict[str, Any]]] = {}
    rounds_done: list[dict[str, Any]] = []
    for r in range(rounds):
        cells, order = [], jobs if r % 2 == 0 else jobs[::-1]
        for side, batch in order:
            args = ["--data", str(data), "--batch", str(batch), "--epochs", str(epochs)]
            doc = run_side(side, env, *args, "--threads", str(threads), *extra)
            for name, run in doc["runs"].items():
                rec = {"wall_s": statistics.median(run["wall"]), "cpu_s": statistics.median(run["cpu"])}
                rec |= {"epochs_wall": run["wall"], "epochs_cpu": run["cpu"], "loss": run["loss"]}
                rec |= {"process_s": doc["process_s"], "blas": blas_summary(doc["pools"])}
                rec["pool_threads"] = sorted({p["num_threads"] for p in doc["pools"]})  # every pool's
                got.setdefault((name, batch), []).append(rec)
                cells.append(f"{name}@{batch} {rec['wall_s']:.2f} s ({rec['cpu_s']:.2f} CPU)")
        rounds_done.append(
            {"order": [f"{side}@{batch}" for side, batch in order], "load_average": load_average()}
        )
        say(
            f"  round {r + 1}/{rounds}: "
            + ", ".join(cells)
            + f"; load {rounds_done[-1]['load_average'][0]:.2f}"
        )
    return got, rounds_done


def spread(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "rounds": values}


def side_summary(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """A side over the rounds: median of the rounds' wall and CPU medians, and the rounds themselves."""
    walls, cpus = [r["wall_s"] for r in recs], [r["cpu_s"] for r in recs]
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus), "loss": recs[0]["loss"]} | {
        "rounds": recs
    }


def summarize(pair: Pair, got: dict[tuple[str, int], list[dict[str, Any]]], gflops: float) -> dict[str, Any]:
    """One comparison's figures: each side's medians, the ratios' median and range over the rounds."""
    ours = got[(pair.ours, pair.batch)]
    row: dict[str, Any] = {"what": pair.label, "batch": pair.batch, "peer_name": pair.peer_name}
    row |= {
        "ours": side_summary(ours),
        "gflop": pair.flops / 1e9,
        "gemm_bound_s": pair.flops / (gflops * 1e9),
    }
    peer = got.get((pair.peer, pair.batch)) if pair.peer else None
    if peer:
        row["peer"] = side_summary(peer)
        row["ratio"] = spread([o["wall_s"] / p["wall_s"] for o, p in zip(ours, peer, strict=True)])
        row["cpu_ratio"] = spread([o["cpu_s"] / p["cpu_s"] for o, p in zip(ours, peer, strict=True)])
    floor = got.get((pair.floor, pair.batch)) if pair.floor else None
    if floor:
        row["floor"] = side_summary(floor)
        if peer:
            row["floor"]["ratio"] = spread(
                [f["wall_s"] / p["wall_s"] for f, p in zip(floor, peer, strict=True)]
            )
            row["floor"]["cpu_ratio"] = spread(
                [f["cpu_s"] / p["cpu_s"] for f, p in zip(floor, peer, strict=True)]
            )
    return row


# ----------------------------------------------------------------------------------------------- main


def write_rows(n: int, folder: Path) -> str:
    """X.npy (n, 784) float32 in [0, 1] and y.npy (n,) int64 in folder; returns where they come from."""
    import numpy as np

    if FASHION_DIR.is_dir():
        from trainer.config import DataConfig
        from trainer.data import load_data

        data = load_data(DataConfig("fashion-mnist"))  # the seed's split: 46,900 training rows
        reps = -(-n // len(data.X_train))
        X, y = np.tile(data.X_train, (reps, 1))[:n], np.tile(data.y_train, reps)[:n]
        source = "Fashion-MNIST (Debian)"
    else:
        rng = np.random.default_rng(0)
        X, y, source = rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n), "uniform noise"
    np.save(folder / "X.npy", np.ascontiguousarray(X, dtype=np.float32))
    np.save(folder / "y.npy", np.asarray(y, dtype=np.int64))
    return source


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of alternating processes (default 3)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per process (default 3)")
    parser.add_argument("--rows", type=int, default=46_900, help="training rows (default 46,900)")
    parser.add_argument("--batches", default="64", help="fine-tuning minibatch sizes (default 64)")
    parser.add_argument(
        "--threads",
        default="all,1",
        help="thread settings, both sides alike (default all,1: all CPUs, then 1)",
    )
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    parser.add_argument("--no-rbm", action="store_true", help="skip the RBM comparison")
    parser.add_argument("--no-floor", action="store_true", help="skip the GEMMs-only floor")
    parser.add_argument("--no-seed-run", action="store_true", help="skip timing the seed run")
    parser.add_argument("--seed-job", type=Path, default=SEED_JOB, help="the job of the seed run")
    parser.add_argument(
        "--keep-openblas-env", action="store_true", help="leave OPENBLAS_CORETYPE/L2_SIZE set"
    )
    parser.add_argument("--gpu", action="store_true", help="fine-tuning on the GPU: CuPy vs PyTorch CUDA")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    try:
        args.batch_sizes = [int(b) for b in args.batches.split(",")]
        args.thread_counts = list(
            dict.fromkeys((os.cpu_count() or 1) if t == "all" else int(t) for t in args.threads.split(","))
        )
    except ValueError:
        parser.error("--batches and --threads take comma-separated whole numbers (--threads also 'all')")
    if min([args.rounds, args.epochs, args.rows, *args.batch_sizes, *args.thread_counts]) < 1:
        parser.error("--rounds, --epochs, --rows, --batches and --threads must be at least 1")
    if args.gpu:
        args.thread_counts, args.no_rbm, args.no_floor = [os.cpu_count() or 1], True, True
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    has_torch = importlib.util.find_spec("torch") is not None and not args.no_torch
    has_sklearn = importlib.util.find_spec("sklearn") is not None
    present = {k: os.environ[k] for k in BLAS_OVERRIDES if k in os.environ}
    result: dict[str, Any] = {"schema": SCHEMA, "argv": sys.argv[1:] if argv is None else argv}
    result |= {"machine": machine(), "load_average_start": load_average(), "gpu": args.gpu}
    result["openblas_overrides"] = {"set": present, "kept": args.keep_openblas_env}
    result |= {"rows": args.rows, "rounds": args.rounds, "epochs_per_process": args.epochs, "probes": {}}
    envs = {t: child_env(os.environ, t, args.keep_openblas_env) for t in args.thread_counts}
    try:  # first, so that --gpu without a GPU prints its one line and nothing else
        for t in args.thread_counts:
            doc = run_side("probe", envs[t], "--threads", str(t), *(["--gpu"] if args.gpu else []))
            result["probes"][t] = {
                "info": doc["info"],
                "blas": blas_summary(doc["pools"]),
                "pools": doc["pools"],
            }
    except SideFailed as exc:
        print(f"error: {'--gpu: ' if args.gpu else ''}{exc}", file=sys.stderr, flush=True)
        return exc.exit_code if exc.exit_code == 2 else 1
    for line in header_lines(result):
        say(line)
    if args.gpu and not has_torch:
        say("PyTorch is not installed (pip install -e '.[bench]'): only ours is timed")
    elif not has_torch:
        say(
            "PyTorch skipped"
            + (" (--no-torch)" if args.no_torch else " (not installed: pip install -e '.[bench]')")
        )
    pairs = make_pairs(args, has_torch, has_sklearn)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
            result["data"] = write_rows(args.rows, Path(tmp))
            say(f"data: {args.rows:,} x 784 float32 from {result['data']}")
            say(f"each side in its own process; {args.rounds} rounds, medians of {args.epochs} epoch(s) each")
            load, cores = result["load_average_start"][0], result["machine"]["cores"]
            say(f"load average (1 min) at start: {load:.2f} on {cores} cores")
            if load > cores / 2:
                say("  the machine is busy: other processes share the cores, so the figures (wall seconds")
                say("  above all, and most at all threads) carry their load; rerun on a quiet machine")
            result["settings"] = []
            for t in args.thread_counts:  # the JSON after each setting: a long run stopped early keeps them
                setting = measure_setting(args, pairs, t, envs[t], Path(tmp), result["probes"][t])
                result["settings"].append(setting)
                save(args.json, result)
    except SideFailed as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code if exc.exit_code == 2 else 1
    if not args.no_seed_run:
        say()
        seed_env = without_overrides(os.environ, args.keep_openblas_env)  # all threads, as a user runs it
        result["seed_run"] = time_seed_run(args.seed_job, seed_env, say, "cupy" if args.gpu else None)
        for line in report_lines(result["seed_run"]):
            say(line)
    say()
    for line in verdict_lines(result["settings"], args.gpu):
        say(line)
    result["load_average_end"] = load_average()
    start, end = result["load_average_start"][0], result["load_average_end"][0]
    say(f"load average (1 min): {start:.2f} at start, {end:.2f} at end")
    save(args.json, result)
    return 0


def save(path: Path | None, result: dict[str, Any]) -> None:
    """Write the figures so far to --json (complete once "load_average_end" is in)."""
    if path is not None:
        path.write_text(dumps(result, indent=2) + "\n", encoding="utf-8")


def make_pairs(args: argparse.Namespace, has_torch: bool, has_sklearn: bool) -> list[Pair]:
    pairs = [
        Pair(
            f"fine-tuning, batch {b}" + (" (GPU)" if args.gpu else ""),
            "PyTorch",
            b,
            "ours",
            "torch" if has_torch else None,
            None if args.no_floor else "floor",
            finetune_flops(args.rows, b),
        )
        for b in args.batch_sizes
    ]
    if not args.no_rbm:
        peer = "sklearn-rbm" if has_sklearn else None
        pairs.append(
            Pair("RBM epoch, batch 64", "scikit-learn", 64, "ours-rbm", peer, None, rbm_flops(args.rows, 64))
        )
    return pairs


def measure_setting(
    args: argparse.Namespace,
    pairs: list[Pair],
    threads: int,
    env: dict[str, str],
    data: Path,
    probe: dict[str, Any],
) -> dict[str, Any]:
    """All rounds at one thread setting; prints its table and returns its figures."""
    if args.gpu:
        jobs = [("gpu", b) for b in args.batch_sizes]  # ours and PyTorch in one process, on the GPU
        extra = () if pairs[0].peer else ("--no-torch",)
    else:
        jobs = list(dict.fromkeys((s, p.batch) for p in pairs for s in (p.ours, p.peer, p.floor) if s))
        extra = ()
    say()
    say(f"{threads_text(threads)}, both sides" + (" (the GPU does the work)" if args.gpu else ""))
    got, rounds = measure_rounds(jobs, args.rounds, args.epochs, threads, env, data, extra)
    rows = [summarize(p, got, probe["info"]["sgemm_gflops"]) for p in pairs]
    for line in table_lines(rows):
        say(line)
    return {"threads": threads, "comparisons": rows, "rounds": rounds}


if __name__ == "__main__":
    sys.exit(main())
