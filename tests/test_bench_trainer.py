"""benchmarks/bench_trainer.py's plumbing, never its speed: every side in a process of its own, alternating
round by round at the thread count asked for; the header (CPU, ISA level, BLAS kernel, OpenBLAS overrides,
load average) and the seed run's breakdown in its JSON; one line and exit 2 for --gpu without a GPU."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.bench_report import isa_level
from benchmarks.bench_trainer import BLAS_OVERRIDES, THREAD_VARS, child_env
from tests.support.trained_runs import write_job
from tests.trainer.test_backend import HAS_GPU

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_trainer.py"


def bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), *args, "--json", str(out)], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc, json.loads(out.read_text(encoding="utf-8"))


def check_rounds(side: dict[str, Any], rounds: int, epochs: int, threads: int) -> None:
    """Each round's figures are the medians of that process's epochs, run with `threads` in every pool."""
    assert len(side["rounds"]) == rounds
    for rec in side["rounds"]:
        assert len(rec["epochs_wall"]) == len(rec["epochs_cpu"]) == epochs
        assert rec["wall_s"] == statistics.median(rec["epochs_wall"]) > 0
        assert rec["cpu_s"] == statistics.median(rec["epochs_cpu"]) > 0
        assert rec["pool_threads"] == [threads] and rec["blas"]["threads"] == threads
    assert side["wall_s"] == statistics.median(r["wall_s"] for r in side["rounds"])


def check_ratio(row: dict[str, Any], ours: dict[str, Any], peer: dict[str, Any]) -> None:
    for key, field in (("ratio", "wall_s"), ("cpu_ratio", "cpu_s")):
        spread = row[key]
        pairs = zip(ours["rounds"], peer["rounds"], strict=True)
        assert spread["rounds"] == pytest.approx([o[field] / p[field] for o, p in pairs])
        assert spread["min"] <= spread["median"] <= spread["max"]
        assert spread["median"] == pytest.approx(statistics.median(spread["rounds"]))


@pytest.mark.slow
def test_tiny_run_alternates_processes_and_writes_header_rounds_and_seed_breakdown(tmp_path: Path) -> None:
    job = write_job(tmp_path / "digits.yaml", "32", epochs=3)
    args = ("--rows", "500", "--rounds", "2", "--epochs", "2", "--threads", "1", "--no-torch")
    proc, doc = bench(tmp_path, *args, "--seed-job", str(job), "--keep-openblas-env")

    m = doc["machine"]
    assert m["cpu"] and m["cores"] == os.cpu_count() and m["linux"] == platform.release()
    assert m["isa"] in ("AVX-512", "AVX2", "AVX", "SSE", platform.machine())
    probe = doc["probes"]["1"]
    assert probe["blas"]["library"] and probe["blas"]["kernel"] and probe["blas"]["threads"] == 1
    assert probe["info"]["sgemm_gflops"] > 0
    present = {k: os.environ[k] for k in BLAS_OVERRIDES if k in os.environ}
    assert doc["openblas_overrides"] == {"set": present, "kept": True}  # tests never change them
    assert len(doc["load_average_start"]) == len(doc["load_average_end"]) == 3

    (setting,) = doc["settings"]
    assert setting["threads"] == 1
    first, second = setting["rounds"]
    assert first["order"] == ["ours@64", "floor@64", "ours-rbm@64", "sklearn-rbm@64"]  # --no-torch
    assert second["order"] == first["order"][::-1]
    finetune, rbm = setting["comparisons"]
    assert "peer" not in finetune and "ratio" not in finetune
    for side in (finetune["ours"], finetune["floor"], rbm["ours"], rbm["peer"]):
        check_rounds(side, rounds=2, epochs=2, threads=1)
    assert rbm["peer_name"] == "scikit-learn" and math.isfinite(rbm["ours"]["loss"])
    check_ratio(rbm, rbm["ours"], rbm["peer"])

    seed = doc["seed_run"]
    assert seed["exit_code"] == 0 and len(seed["epoch_seconds"]) == 3 and 0.6 < seed["test_accuracy"] <= 1
    parts = seed["parts"]
    assert sum(parts.values()) == pytest.approx(seed["wall_s"])
    assert min(parts.values()) >= 0 and parts["epochs"] == pytest.approx(sum(seed["epoch_seconds"]))
    assert any(text.startswith("Epoch 3:") for _, text in seed["lines"])
    for text in ("ISA ", "kernel ", "round 2/2", "seed run:", "load average"):
        assert text in proc.stdout


@pytest.mark.slow
def test_pytorch_runs_in_its_own_process_with_the_same_thread_count(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    args = ("--rows", "500", "--rounds", "1", "--epochs", "1", "--threads", "1", "--no-rbm", "--no-floor")
    proc, doc = bench(tmp_path, *args, "--no-seed-run", "--keep-openblas-env")
    assert doc["probes"]["1"]["info"]["torch"]["threads"] == 1
    (setting,) = doc["settings"]
    assert setting["rounds"][0]["order"] == ["ours@64", "torch@64"]
    (row,) = setting["comparisons"]
    assert row["peer_name"] == "PyTorch" and math.isfinite(row["peer"]["loss"])
    check_rounds(row["peer"], rounds=1, epochs=1, threads=1)  # its OpenMP pool as well as the BLAS
    check_ratio(row, row["ours"], row["peer"])
    assert "ours/PyTorch at batch 64, 1 thread:" in proc.stdout


@pytest.mark.skipif(HAS_GPU, reason="needs a machine without a usable GPU")
def test_gpu_without_a_gpu_is_one_line_and_exit_2() -> None:
    cmd = [sys.executable, str(BENCH), "--gpu", "--no-seed-run", "--keep-openblas-env"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: --gpu: ")
    assert "GPU" in proc.stderr


@pytest.mark.parametrize("args", [("--rounds", "0"), ("--threads", "two"), ("--batches", "64,")])
def test_bad_arguments_exit_2_before_anything_runs(args: tuple[str, ...]) -> None:
    proc = subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr


def test_children_run_without_the_openblas_overrides_and_with_the_threads_asked_for() -> None:
    """On a copy of a made-up environment: the tests themselves never change the real OPENBLAS_* variables."""
    base = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512k", "OMP_NUM_THREADS": "8", "HOME": "/h"}
    env = child_env(base, 1, keep_openblas=False)
    assert not set(BLAS_OVERRIDES) & set(env) and env["HOME"] == "/h"
    assert {k: env[k] for k in THREAD_VARS} == dict.fromkeys(THREAD_VARS, "1")
    assert child_env(base, 2, keep_openblas=True)["OPENBLAS_CORETYPE"] == "Haswell"
    assert base["OPENBLAS_CORETYPE"] == "Haswell" and base["OMP_NUM_THREADS"] == "8"  # a copy; base untouched


@pytest.mark.parametrize(
    ("flags", "level"),
    [
        ({"sse2", "avx", "avx2", "fma", "avx512f", "avx512bw"}, "AVX-512"),
        ({"sse2", "avx", "avx2", "fma"}, "AVX2"),
        ({"sse2", "avx"}, "AVX"),
        ({"sse2"}, "SSE"),
    ],
)
def test_isa_level_from_cpuinfo_flags(flags: set[str], level: str) -> None:
    assert isa_level(flags) == level


def test_seed_run_split_never_has_a_negative_part_when_a_line_is_stamped_late() -> None:
    """The reader stamps a line when it gets it: here `model:` arrives late, so the span to epoch 1's line
    is 30 µs shorter than the epoch the trainer timed. The gap is 0, not negative; the parts still add up."""
    from benchmarks.bench_seed_run import split_wall_time

    lines = [
        (0.10, "ec2dbn trainer"),
        (0.50, "data: 500 rows"),
        (0.50001, "model: 784-32-10"),
        (1.49998, "Epoch 1: train loss 0.5"),
        (2.70, "Epoch 2: train loss 0.4"),
        (2.80, "Test accuracy 0.9"),
    ]
    metrics = {"epochs": [{"seconds": 1.0, "eval_seconds": 0.0}, {"seconds": 1.0, "eval_seconds": 0.05}]}
    parts = split_wall_time(lines, metrics, wall=2.9)
    assert min(parts.values()) >= 0
    assert parts["before_epoch_1"] == pytest.approx(0.00001)  # model - data; the epoch's gap is 0, not -30 µs
    assert parts["between_epochs"] == pytest.approx(0.15002)
    assert sum(parts.values()) == pytest.approx(2.9)
