"""CPU vs GPU by network size, on one machine: `python -m trainer.bench JOB.yaml --out DIR`.

For each hidden width w it trains the job's network with every hidden layer set to w (784-800-800-10
becomes 784-w-w-10) on each backend asked for — NumPy (BLAS on all the vCPUs it is allowed) and CuPy (the
GPU; recorded as skipped, with the reason, where no GPU is usable) — on the same data with the same seed,
and writes DIR/bench.json (strict JSON): s/epoch, samples/s and test accuracy per (width, backend), plus the
machine. A (width, backend) whose training diverges (trainer.divergence) is a row with status "diverged" and
the trainer's message as its reason; the other rows are still measured.

Timing: only fine-tuning epochs are trained and timed (pretraining is switched off: it is a different
kernel mix and the seed experiment has none). The first epoch pays one-off costs — CuPy compiling its
kernels, cuBLAS and the memory pool starting, BLAS threads spinning up — so it is a warm-up and is not
timed when there are at least 2 epochs; with `--epochs 1` a warm-up fit of one epoch on the first
`WARMUP_BATCHES` minibatches runs first instead. s/epoch is the median of the timed epochs; the epoch
times are the trainer's own (they exclude the one-off copy of the data to the device and include waiting
for the GPU to finish). bench.json is rewritten after every row, so a stopped bench keeps what it measured.

Runs on the instance: imports only numpy, pyyaml and `trainer`. Exit codes: 0 done, 1 crashed,
2 bad job or arguments, 3 stopped by SIGINT/SIGTERM (bench.json holds the rows finished so far).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from trainer import DBN
from trainer.backend import cpu_name, select_backend
from trainer.config import Job, load_job
from trainer.contract import BENCH_FILE, EXIT_STOPPED
from trainer.data import Dataset, load_data
from trainer.divergence import Diverged
from trainer.errors import BackendError, JobError, TrainerError
from trainer.strict_json import write_json

BENCH_SCHEMA = "ec2dbn-bench/1"
DEFAULT_WIDTHS = (100, 300, 800, 1600, 3200)
DEFAULT_EPOCHS = 2  # one warm-up epoch + one timed epoch
BACKENDS = ("numpy", "cupy")
#: Minibatches in the warm-up fit used when only one epoch is trained.
WARMUP_BATCHES = 20
#: Environment variables that change how fast NumPy's BLAS runs; recorded so results can be explained.
BLAS_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)


class _Stop(Exception):
    """SIGINT/SIGTERM arrived: stop after writing what was measured."""


# ------------------------------------------------------------------------------------------ inputs


def parse_widths(text: str) -> list[int]:
    """'100,300,800' → [100, 300, 800] (sorted, duplicates dropped). Raises JobError naming a bad item."""
    items = [t.strip() for t in str(text).split(",")]
    if not any(items):
        raise JobError("--widths: expected comma-separated integers >= 1, e.g. 100,300,800")
    widths: set[int] = set()
    for item in items:
        try:
            w = int(item)
        except ValueError:
            raise JobError(f"--widths: {item!r} is not an integer (expected e.g. 100,300,800)") from None
        if w < 1:
            raise JobError(f"--widths: a hidden layer needs at least 1 unit, got {w}")
        widths.add(w)
    return sorted(widths)


def parse_backends(text: str) -> list[str]:
    """'numpy,cupy' → ['numpy', 'cupy']. Raises JobError for anything else."""
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if not names:
        raise JobError(f"--backends: expected a comma-separated subset of {', '.join(BACKENDS)}")
    for name in names:
        if name not in BACKENDS:
            raise JobError(f"--backends: unknown backend {name!r} (expected {', '.join(BACKENDS)})")
    return list(dict.fromkeys(names))


def layers_for(template: Sequence[int], width: int) -> list[int]:
    """The job's layers with every hidden layer set to `width`: [784, 800, 800, 10] → [784, w, w, 10]."""
    if len(template) < 3:
        raise JobError(
            f"model.layers: the bench varies hidden layer widths, but {list(template)} has no hidden layer"
        )
    return [template[0], *([width] * (len(template) - 2)), template[-1]]


# ------------------------------------------------------------------------------------- environment


def environment() -> dict[str, Any]:
    """The machine the numbers come from: CPU, vCPUs, GPU, library versions, BLAS and its settings."""
    cpu = cpu_name().removeprefix("cpu: ")
    cpu_model = cpu.rsplit(" (", 1)[0]
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = os.cpu_count() or 1
    env: dict[str, Any] = {
        "cpu_model": cpu_model,
        "vcpus": os.cpu_count() or 1,
        "vcpus_allowed": allowed,
        "gpu_name": None,
        "gpu_reason": None,
        "numpy_version": np.__version__,
        "cupy_version": None,
        "blas": _blas(),
        "blas_env": {k: os.environ[k] for k in BLAS_ENV if k in os.environ},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average": _load(),
    }
    try:
        gpu = select_backend("cupy")
        env["gpu_name"] = gpu.device.removeprefix("gpu: ")
    except BackendError as exc:  # "backend cupy needs a usable CUDA GPU: <why>; use --backend ..."
        why = str(exc).split("; use --backend")[0]
        env["gpu_reason"] = why.replace("backend cupy needs a usable CUDA GPU: ", "", 1)
    try:
        import cupy  # type: ignore[import-not-found]

        env["cupy_version"] = cupy.__version__
    except Exception:  # not installed, or a broken CUDA install: the version is simply unknown
        pass
    return env


def _load() -> list[float] | None:
    """The 1/5/15-minute load averages: other work on the machine makes CPU timings noisy (BLAS threads
    spin-wait for cores they do not get), so a bench records how busy the machine was."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _blas() -> str:
    """'scipy-openblas 0.3.27 (OpenBLAS ... Haswell MAX_THREADS=64)' from numpy's build configuration."""
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]  # type: ignore[index]
    except Exception:  # older NumPy without mode="dicts", or an unexpected layout
        return "unknown"
    text = f"{cfg.get('name', 'unknown')} {cfg.get('version', '')}".strip()
    detail = cfg.get("openblas configuration")
    return f"{text} ({' '.join(str(detail).split())})" if detail else text


# --------------------------------------------------------------------------------------- measuring


def estimator_params(job: Job, layers: Sequence[int], epochs: int, backend: str) -> dict[str, Any]:
    """DBN keyword arguments: the job's hyperparameters, with these layers and epochs, no pretraining."""
    params = job.model.to_dict()
    params.pop("layers")
    params.pop("eval_test_every_epoch")  # a `trainer run` option: the estimator has no test set to score
    params["epochs_pretrain"] = 0
    params["epochs"] = epochs
    return {"layer_sizes": list(layers), **params, "backend": backend, "verbose": 0}


def measure(
    job: Job, data: Dataset, width: int, backend: str, epochs: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Train one (width, backend) row and return it (status "ok", or "failed" / "diverged" with why)."""
    layers = layers_for(job.model.layers, width)
    row: dict[str, Any] = {"width": width, "backend": backend, "layers": layers}
    b = job.model.minibatch_size
    try:
        if epochs == 1:  # the documented warm-up step: one epoch on a few minibatches, not timed
            n = min(len(data.y_train), WARMUP_BATCHES * b)
            DBN(**estimator_params(job, layers, 1, backend)).fit(data.X_train[:n], data.y_train[:n])
        t0 = time.perf_counter()
        clf = DBN(**estimator_params(job, layers, epochs, backend)).fit(data.X_train, data.y_train)
        fit_seconds = time.perf_counter() - t0
        accuracy = clf.score(data.X_test, data.y_test)
    except Diverged as exc:  # this width's steps are too large: a result, and the next row may not diverge
        log(f"width {width} {backend}: diverged ({exc})")
        return {**row, "status": "diverged", "reason": str(exc)}
    except TrainerError:
        raise  # a bad job or data set: every row would fail the same way
    except (MemoryError, RuntimeError, ValueError) as exc:  # e.g. CuPy's OutOfMemoryError (a MemoryError)
        reason = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
        log(f"width {width} {backend}: failed ({reason})")
        return {**row, "status": "failed", "reason": reason}

    epoch_seconds = [float(r["seconds"]) for r in clf.history_ if r["phase"] == "finetune"]
    timed = epoch_seconds[1:] if epochs >= 2 else epoch_seconds
    spe = statistics.median(timed)
    samples = (len(data.y_train) // b) * b  # the trainer drops the last partial minibatch, like nolearn
    last = [r for r in clf.history_ if r["phase"] == "finetune"][-1]
    row.update(
        status="ok",
        reason=None,
        device=clf.backend_.device,
        epoch_seconds=epoch_seconds,
        timed_epochs=len(timed),
        seconds_per_epoch=spe,
        samples_per_epoch=samples,
        samples_per_second=samples / spe if spe > 0 else None,
        test_accuracy=accuracy,
        final_loss=float(last["loss"]),
        final_err=float(last["err"]),
        fit_seconds=fit_seconds,
    )
    times = ", ".join(f"{s:.3f}" for s in epoch_seconds)
    log(
        f"width {width} {backend}: {spe:.3f} s/epoch (epochs: {times} s), "
        f"{row['samples_per_second']:,.0f} samples/s, test accuracy {accuracy:.4f}"
    )
    return row


def run_bench(
    job_path: Path,
    out_dir: Path,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    epochs: int = DEFAULT_EPOCHS,
    backends: Sequence[str] = BACKENDS,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every (width, backend), writing out_dir/bench.json after each row; return the document.

    Raises JobError / DataError (bad job, widths, epochs or data) before anything is measured.
    """
    if epochs < 1:
        raise JobError(f"--epochs: expected an integer >= 1, got {epochs}")
    if not widths or any(w < 1 for w in widths):
        raise JobError(f"--widths: expected integers >= 1, got {list(widths)}")
    job = load_job(job_path)
    template = list(job.model.layers)
    layers_for(template, 1)  # refuse a network without hidden layers before loading any data
    log(f"bench: loading {job.data.name}")
    data = load_data(job.data)
    log(f"bench: {data.describe()}")
    env = environment()
    log(
        f"bench: cpu {env['cpu_model']} ({env['vcpus']} vCPUs), "
        f"gpu {env['gpu_name'] or 'none'}, numpy {env['numpy_version']}, blas {env['blas']}"
    )
    if env["blas_env"]:
        log(f"bench: BLAS settings from the environment: {env['blas_env']}")
    pretrain_note = (
        "off (the job's epochs_pretrain were ignored: the bench times fine-tuning)"
        if any(job.model.epochs_pretrain)
        else "off"
    )
    doc: dict[str, Any] = {
        "schema": BENCH_SCHEMA,
        "job": str(job_path),
        "started_at": _now(),
        "finished_at": None,
        "complete": False,
        "data": {
            "name": job.data.name,
            "source": data.source,
            "n_train": len(data.y_train),
            "n_test": len(data.y_test),
            "n_features": data.n_features,
            "n_classes": data.n_classes,
            "test_size": job.data.test_size,
            "seed": job.data.seed,
            "limit": job.data.limit,
        },
        "architecture": {
            "job_layers": template,
            "layers_template": "-".join([str(template[0]), *["w"] * (len(template) - 2), str(template[-1])]),
        },
        "model": {**replace(job.model, epochs=epochs).to_dict(), "epochs_pretrain": 0},
        "pretraining": pretrain_note,
        "epochs": epochs,
        "warmup": _warmup(epochs, job.model.minibatch_size),
        "widths": list(widths),
        "backends": list(backends),
        "environment": env,
        "rows": [],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(out_dir, doc)
    for width in widths:
        for backend in backends:
            if backend == "cupy" and env["gpu_name"] is None:
                reason = env["gpu_reason"] or "no usable GPU"
                log(f"width {width} cupy: skipped ({reason})")
                doc["rows"].append(
                    {"width": width, "backend": backend, "status": "skipped", "reason": reason}
                )
            else:
                log(f"width {width} {backend}: training {'-'.join(map(str, layers_for(template, width)))}")
                doc["rows"].append(measure(job, data, width, backend, epochs, log))
            _write(out_dir, doc)
    doc["complete"] = True
    doc["finished_at"] = _now()
    doc["load_average_end"] = _load()
    _write(out_dir, doc)
    return doc


def _warmup(epochs: int, minibatch_size: int) -> dict[str, Any]:
    if epochs >= 2:
        return {
            "kind": "first_epoch",
            "description": "epoch 1 is a warm-up, not timed; s/epoch is "
            + ("epoch 2's time" if epochs == 2 else f"the median of epochs 2-{epochs}"),
        }
    return {
        "kind": "warmup_fit",
        "description": (
            f"a warm-up fit of 1 epoch on {WARMUP_BATCHES} minibatches of {minibatch_size} runs first, "
            "not timed; the one epoch is timed"
        ),
    }


def _write(out_dir: Path, doc: dict[str, Any]) -> None:
    """bench.json, atomically (a reader never sees half a file), as strict JSON."""
    write_json(out_dir / BENCH_FILE, doc)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.bench",
        description="Time the job's network at several hidden widths on NumPy and CuPy; write bench.json.",
        epilog="example: python -m trainer.bench examples/seed-fashion.yaml --out results/b --widths 100,800",
    )
    parser.add_argument("job", type=Path, help="job YAML (its data and model sections are used)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for bench.json")
    parser.add_argument(
        "--widths",
        default=",".join(map(str, DEFAULT_WIDTHS)),
        help="hidden layer widths, comma-separated [default: %(default)s]",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=DEFAULT_EPOCHS,
        help="epochs per row, the first being a warm-up when >= 2 [default: %(default)s]",
    )
    parser.add_argument(
        "--backends", default=",".join(BACKENDS), help="backends to time [default: %(default)s]"
    )
    args = parser.parse_args(argv)

    def log(line: str) -> None:
        print(line, flush=True)

    def on_signal(signum: int, _frame: Any) -> None:
        raise _Stop(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        widths = parse_widths(args.widths)
        backends = parse_backends(args.backends)
        run_bench(args.job, args.out, widths, args.epochs, backends, log)
    except TrainerError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except (_Stop, KeyboardInterrupt) as exc:
        why = str(exc) or "SIGINT"
        print(f"bench: stopped by {why}; {args.out / BENCH_FILE} holds the rows finished so far", flush=True)
        return EXIT_STOPPED
    finally:
        signal.signal(signal.SIGTERM, previous)
    log(f"bench: wrote {args.out / BENCH_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
