"""How well `ec2dbn sweep` keeps its slots busy: 8 points on 4 fake instances, against the same 8 points
run one after another with `ec2dbn train`, in the same run (moto as EC2, one real loopback sshd per
instance, each instance its own disk — the harness of tests/e2e).

    scheduling efficiency = Σ point train times ÷ (slots × sweep wall time)      (target ≥ 85 %)
    per-point overhead    = (Σ slots' busy spans − Σ point train times) ÷ points     (target ≤ 2 s)

A point's train time is its `follow` phase (from the detached trainer's start to its exit, as ec2dbn sees
it). The sweep's wall time is the time it holds capacity: from its start (planning, launching the fleet,
bootstrapping) until the last instance is torn down — what is billed; drawing the learning curves and
the summary afterwards is printed apart. A slot's busy span runs from its first point taking it to its
last point giving it back: what it holds beyond training (connect, ship, start, following latency, pull,
the hand-over to the next point) is the per-point overhead. Each side runs in its own process,
alternating over --rounds, and the figures are reported as median (range).

The four fake instances share this machine's cores: each instance's trainer gets one BLAS thread
(OPENBLAS_NUM_THREADS=1, set on the "instance", like a --local --parallel worker), but four of them on two
cores run at about half speed, so a point trains longer in the sweep than alone. That stretches the sweep's
train times (the efficiency's numerator) as a real fleet would not; the sequential side's train times are
printed beside them so the difference shows. OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are left as they are.

    python -m benchmarks.bench_sweep [--rounds 2] [--epochs 100]   # from the repository root (~8 min a round)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from trainer.strict_json import write_json  # noqa: E402

POINTS = 8
INSTANCES = 4
RATES = [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5]
EFFICIENCY_TARGET = 0.85
OVERHEAD_TARGET_S = 2.0


def job(folder: Path, epochs: int, rate: float | None = None) -> Path:
    """784-300-10 on 3,750 real digits (`rate` None: the sweep's job, its grid over learn_rates)."""
    import yaml

    spec: dict[str, Any] = {
        "data": {"name": "mnist-5k", "test_size": 0.25, "seed": 7},
        "model": {"layers": [784, 300, 10], "learn_rates": rate or 0.3, "epochs": epochs},
        "backend": "numpy",
    }
    if rate is None:
        spec["sweep"] = {"grid": {"model.learn_rates": RATES[:POINTS]}}
    path = folder / (f"point-{rate:g}.yaml" if rate else "sweep.yaml")
    path.write_text(yaml.safe_dump(spec))
    return path


def side(name: str, epochs: int, out: Path) -> None:
    """One side, in this process: moto + the fake fleet, then the sweep or the 8 sequential trains."""
    from ec2dbn.cli import main
    from tests.e2e.helpers import write_stack
    from tests.support.fake_cloud import FakeCloudInit
    from tests.support.moto_server import MotoServer, aws_environment

    work = Path(tempfile.mkdtemp(prefix=f"ec2dbn-bench-sweep-{name}-"))
    moto = MotoServer()
    moto.seed_images()
    os.environ.update(aws_environment(moto.url, work))
    cloud = FakeCloudInit(moto, work / "instances", per_instance_ports=True)
    cloud.env.update({"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    os.environ["EC2DBN_SSH_ENDPOINTS"] = str(cloud.endpoints_file)
    cloud.start()
    stack = write_stack(work, remote_dir="~/ec2dbn")
    results = work / "results"
    try:
        start = time.monotonic()
        if name == "sweep":
            args = ["sweep", str(job(work, epochs)), "--stack", str(stack), "--instances", str(INSTANCES)]
            codes = [main([*args, "--results", str(results)])]
        else:
            codes = [
                main(["train", str(job(work, epochs, r)), "--stack", str(stack), "--results", str(results)])
                for r in RATES[:POINTS]
            ]
        wall = time.monotonic() - start
    finally:
        cloud.stop()
        moto.stop()
    if any(codes):
        raise SystemExit(f"{name}: exit codes {codes}")
    runs = sorted(results.rglob("run.json"))
    records = [json.loads(p.read_text()) for p in runs]
    sweeps = [json.loads(p.read_text()) for p in results.glob("*/sweep.json")]
    write_json(out, {"wall_s": wall, "runs": records, "sweep": sweeps[0] if sweeps else None})


def figures(sweep: dict[str, Any], seq: dict[str, Any]) -> dict[str, float]:
    """The round's figures. A slot's busy span runs from its first point taking it to its last point's
    end; what the spans hold beyond training (connect, ship, start, follow latency, pull, the hand-over
    to the next point) is the per-point overhead. Before the first span: the fleet's launch and
    bootstrap; after the last: teardown and summary."""
    train = {r["run_id"]: r["phases"]["follow"] for r in sweep["runs"]}
    points = sweep["sweep"]["points"]
    spans: dict[str, tuple[float, float]] = {}
    for p in points:
        first, last = spans.get(p["slot"], (p["started_s"], p["ended_s"]))
        spans[p["slot"]] = (min(first, p["started_s"]), max(last, p["ended_s"]))
    busy = sum(end - start for start, end in spans.values())
    seq_train = [r["phases"]["follow"] for r in seq["runs"]]
    held = sweep["sweep"]["capacity_s"]
    return {
        "efficiency": sum(train.values()) / (INSTANCES * held),
        "overhead_s": (busy - sum(train.values())) / POINTS,
        "setup_s": min(p["started_s"] for p in points),
        "wind_down_s": held - max(p["ended_s"] for p in points),
        "summary_s": sweep["wall_s"] - held,
        "sweep_wall_s": held,
        "sweep_train_s": statistics.mean(train.values()),
        "seq_wall_s": seq["wall_s"],
        "seq_train_s": statistics.mean(seq_train),
        "seq_overhead_s": (seq["wall_s"] - sum(seq_train)) / POINTS,
        "speedup": seq["wall_s"] / sweep["wall_s"],
    }


def run_side(name: str, epochs: int, folder: Path) -> dict[str, Any]:
    out = folder / f"{name}.json"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_sweep",
            "--side",
            name,
            "--epochs",
            str(epochs),
            "--out",
            str(out),
        ],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return json.loads(out.read_text())


def spread(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def main_bench() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--side", choices=["sweep", "train"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.side:
        side(args.side, args.epochs, args.out)
        return
    folder = Path(tempfile.mkdtemp(prefix="ec2dbn-bench-sweep-"))
    rows = []
    for k in range(args.rounds):
        sweep = run_side("sweep", args.epochs, folder)
        seq = run_side("train", args.epochs, folder)
        rows.append(figures(sweep, seq))
        print(
            f"round {k + 1}: " + ", ".join(f"{key} {value:.3g}" for key, value in rows[-1].items()),
            flush=True,
        )
    col = {key: [r[key] for r in rows] for key in rows[0]}
    print(
        f"\nec2dbn sweep: {POINTS} points (784-300-10, {args.epochs} epochs, 3,750 mnist-5k digits, NumPy) "
        f"on {INSTANCES} fake instances vs {POINTS} × `ec2dbn train`, {args.rounds} round(s), median (range)"
    )
    print(
        f"  scheduling efficiency   {spread([100 * x for x in col['efficiency']], '.1f')} %   (target ≥ 85 %)"
    )
    print(f"  per-point overhead      {spread(col['overhead_s'], '.2f')} s   (target ≤ 2 s)")
    print(
        f"  once per sweep          {spread(col['setup_s'], '.1f')} s to launch and bootstrap the fleet, "
        f"{spread(col['wind_down_s'], '.1f')} s to tear down; then {spread(col['summary_s'], '.1f')} s "
        "drawing the learning curves and the summary (nothing billed)"
    )
    print(
        f"  sweep wall              {spread(col['sweep_wall_s'], '.1f')} s; a point trains "
        f"{spread(col['sweep_train_s'], '.1f')} s (4 trainers on this machine's cores)"
    )
    print(
        f"  8 × train wall          {spread(col['seq_wall_s'], '.1f')} s; a point trains "
        f"{spread(col['seq_train_s'], '.1f')} s alone; "
        f"overhead per run {spread(col['seq_overhead_s'], '.1f')} s"
    )
    print(f"  sweep speedup           {spread(col['speedup'], '.2f')}×")


if __name__ == "__main__":
    main_bench()
