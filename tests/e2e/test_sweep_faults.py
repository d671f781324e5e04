"""`ec2dbn sweep` under faults: partial capacity, an instance reclaimed mid-sweep, a point crashing, Ctrl-C
mid-sweep (then --resume), and --max-cost reached. Each row: the exit code, each point's state, and
nothing ec2dbn-tagged left in AWS (instances, spot requests, fleets, launch templates, security groups,
key pairs, volumes). The rows are printed as a table after the last one.

Rows that act while points train hold the trainers at a known point first (trainer/hold.py, given to
every fake instance through its sshd), so nothing depends on how fast this machine is.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from ec2dbn import package_data
from ec2dbn.cli import main
from ec2dbn.spec import catalog
from ec2dbn.sweep.budget import instance_floor_usd, point_estimate_usd
from tests.e2e.helpers import hold_on_the_instance, run_cli, write_stack
from tests.support.fleet_faults import short_fleets
from tests.support.hold import HELD
from tests.support.moto_server import MotoServer, tagged_resources
from tests.support.sshd import default_env
from trainer.config import parse_job

pytestmark = pytest.mark.slow

#: 784-50-10 on 600 real digits: seconds per point, and the learning rate changes every number.
JOB = {
    "data": {"name": "mnist-5k", "test_size": 0.25, "seed": 7, "limit": 600},
    "model": {"layers": [784, 50, 10], "learn_rates": 0.3, "learn_rate_decays": 0.9, "epochs": 2},
    "backend": "numpy",
}
THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Row:
    fault: str
    code: int
    states: str
    leftovers: str


ROWS: list[Row] = []


@pytest.fixture(scope="module", autouse=True)
def print_rows(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not ROWS:
        return
    width = max(len(r.fault) for r in ROWS)
    lines = [f"{'fault':<{width}} | exit | points | leftovers", "-" * (width + 40)]
    lines += [f"{r.fault:<{width}} | {r.code:<4} | {r.states} | {r.leftovers}" for r in ROWS]
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n\nsweep fault matrix ({len(ROWS)} rows)\n" + "\n".join(lines), flush=True)


def job_file(tmp_path: Path, rates: list[float], **model: Any) -> Path:
    job = {**JOB, "model": {**JOB["model"], **model}, "sweep": {"grid": {"model.learn_rates": rates}}}
    path = tmp_path / "sweep-job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def stack_file(tmp_path: Path, **overrides: Any) -> Path:
    return write_stack(tmp_path, remote_dir="~/ec2dbn", **overrides)


def the_sweep(results: Path) -> tuple[Path, dict[str, Any]]:
    (sweep_dir,) = results.iterdir()
    return sweep_dir, json.loads((sweep_dir / "sweep.json").read_text())


def states(record: dict[str, Any]) -> dict[str, str]:
    return {p["point_id"]: p["status"] for p in record["points"]}


def check(fault: str, code: int, want_code: int, record: dict[str, Any], aws: MotoServer, err: str) -> None:
    left = tagged_resources(aws)
    leftovers = "; ".join(f"{k}: {', '.join(v)}" for k, v in left.items() if v) or "none"
    summary = ", ".join(f"{k} {v}" for k, v in states(record).items())
    ROWS.append(Row(fault, code, summary, leftovers))
    assert code == want_code, err[-4000:]
    # ec2dbn's own traceback starts a line (a point's quoted one, like the trainer's, is inside a message)
    assert not re.search(r"^Traceback", err, re.MULTILINE), err[-4000:]
    assert leftovers == "none", leftovers


def sweep_process(tmp_path: Path, args: list[str], on_line: Any = None) -> tuple[int, list[str], str]:
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    code, lines, err = run_cli(["sweep", *args, "--results", str(tmp_path / "results")], env, on_line, 270)
    return code, [text for _, text in lines], err


def is_held(line: str, held: set[str]) -> set[str]:
    """Add the point whose trainer says (in a `[pNN] ...` line of the sweep's output) it is held."""
    point, _, text = line.partition("] ")
    if point.startswith("[p") and text.startswith(HELD):
        held.add(point[1:])
    return held


def local_reference(tmp_path: Path, point_dir: Path) -> Path:
    """`ec2dbn train --local` of the point's own job.yaml with the fake instance's environment."""
    results = tmp_path / f"local-{point_dir.name}"
    home = tmp_path / "local-home"
    home.mkdir(exist_ok=True)
    env = {**default_env(), **THREADS, "HOME": str(home), "PYTHONFAULTHANDLER": "1"}
    code, _, err = run_cli(["train", "--local", str(point_dir / "job.yaml"), "--results", str(results)], env)
    assert code == 0, err[-3000:]
    (run_dir,) = results.iterdir()
    return run_dir


def same_weights(a_dir: Path, b_dir: Path) -> None:
    with np.load(a_dir / "model.npz") as a, np.load(b_dir / "model.npz") as b:
        keys = [k for k in a.files if a[k].dtype.kind == "f"]
        assert keys
        for key in keys:
            np.testing.assert_array_equal(a[key], b[key])


# --------------------------------------------------------------------------------------------- rows


def test_partial_capacity_runs_every_point_on_fewer_instances(
    fake_fleet, aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_fleet.env.update(THREADS)
    shortage = short_fleets(spot=1, on_demand=1)  # 3 asked: EC2 has 1 spot and 1 on-demand
    job, stack = job_file(tmp_path, [0.1, 0.3, 1.0, 3.0]), stack_file(tmp_path)
    code = main(
        ["sweep", str(job), "--stack", str(stack), "--instances", "3", "--results", str(tmp_path / "results")]
    )
    err = capsys.readouterr().err
    _sweep_dir, record = the_sweep(tmp_path / "results")
    check("partial capacity (1 spot + 1 on-demand of 3)", code, 0, record, aws, err)
    assert shortage.asked == [("spot", 3), ("on-demand", 2)]
    assert "partial capacity" in err and "InsufficientInstanceCapacity" in err
    (group,) = record["groups"]
    assert sorted(i["market"] for i in group["instances"]) == ["on-demand", "spot"]
    assert set(states(record).values()) == {"finished"}


def test_an_instance_reclaimed_mid_sweep_hands_its_point_to_another_slot(
    fake_fleet, aws: MotoServer, tmp_path: Path
) -> None:
    fake_fleet.env.update(THREADS)
    job, stack = job_file(tmp_path, [0.1, 0.3, 1.0, 3.0]), stack_file(tmp_path)
    held: set[str] = set()
    taken: list[str] = []
    with hold_on_the_instance(fake_fleet, tmp_path, epoch=2) as hold:

        def act(_proc: subprocess.Popen[str], line: str) -> None:
            if is_held(line, held) >= {"p01", "p02"} and not taken:
                _, record = the_sweep(tmp_path / "results")
                taken.append(next(p["instance_id"] for p in record["points"] if p["point_id"] == "p01"))
                fake_fleet.reclaim(taken[0])
                hold.release()

        code, _lines, err = sweep_process(
            tmp_path, [str(job), "--stack", str(stack), "--instances", "2"], act
        )
    sweep_dir, record = the_sweep(tmp_path / "results")
    check("one instance reclaimed mid-sweep", code, 0, record, aws, err)
    assert taken and set(states(record).values()) == {"finished"}
    (group,) = record["groups"]
    assert group["replacements"] == 1 and len(group["instances"]) == 3
    assert [i["status"] for i in group["instances"] if i["instance_id"] == taken[0]] == ["lost"]
    run = json.loads((sweep_dir / "p01" / "run.json").read_text())
    (recovery,) = run["recoveries"]
    assert recovery["instance_id"] == taken[0] and "went away" in recovery["reason"]
    assert recovery["checkpoint"] is True and run["instance_id"] != taken[0]
    metrics = json.loads((sweep_dir / "p01" / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    same_weights(sweep_dir / "p01", local_reference(tmp_path, sweep_dir / "p01"))


def test_a_crashing_point_is_failed_and_the_sweep_goes_on(
    fake_fleet, aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch
) -> None:
    broken = tmp_path / "broken" / "trainer"
    shutil.copytree(package_data.trainer_dir(), broken, ignore=shutil.ignore_patterns("__pycache__"))
    (broken / "__main__.py").rename(broken / "real_main.py")
    (broken / "__main__.py").write_text(
        "import sys\nfrom pathlib import Path\nimport yaml\n"
        "if yaml.safe_load(Path(sys.argv[2]).read_text())['model']['learn_rates'][0] == 1.0:\n"
        "    raise RuntimeError('injected crash of the point with learn_rates 1.0')\n"
        "from trainer.real_main import main\nsys.exit(main())\n"
    )
    monkeypatch.setattr("ec2dbn.run.instance_files.trainer_dir", lambda: broken)
    job, stack = job_file(tmp_path, [0.1, 1.0, 0.3]), stack_file(tmp_path)
    code = main(
        ["sweep", str(job), "--stack", str(stack), "--instances", "2", "--results", str(tmp_path / "results")]
    )
    err = capsys.readouterr().err
    sweep_dir, record = the_sweep(tmp_path / "results")
    check("one point crashes", code, 1, record, aws, err)
    assert states(record) == {"p01": "finished", "p02": "failed", "p03": "finished"}
    (failed,) = [p for p in record["points"] if p["status"] == "failed"]
    assert "injected crash of the point with learn_rates 1.0" in failed["error"]
    assert "failed" in (sweep_dir / "summary.md").read_text()


def test_ctrl_c_mid_sweep_keeps_what_finished_and_resume_runs_the_rest(
    fake_fleet, aws: MotoServer, tmp_path: Path
) -> None:
    fake_fleet.env.update(THREADS)
    job, stack = job_file(tmp_path, [0.1, 0.3, 1.0, 3.0]), stack_file(tmp_path)
    held: set[str] = set()
    sent: list[bool] = []
    with hold_on_the_instance(fake_fleet, tmp_path, epoch=2) as hold:

        def interrupt(proc: subprocess.Popen[str], line: str) -> None:
            if len(is_held(line, held)) == 2 and not sent:
                proc.send_signal(signal.SIGINT)
                sent.append(True)

        args = [str(job), "--stack", str(stack), "--instances", "2"]
        code, _, err = sweep_process(tmp_path, args, interrupt)
        sweep_dir, record = the_sweep(tmp_path / "results")
        check("Ctrl-C mid-sweep (two points held in epoch 2)", code, 130, record, aws, err)
        assert record["status"] == "interrupted"
        assert sorted(states(record).values()) == ["interrupted", "interrupted", "skipped", "skipped"]
        for pid in held:  # the trainer was stopped (checkpoint first) and its checkpoint came back
            assert f"stopped by SIGTERM at {hold.position};" in (sweep_dir / pid / "job.log").read_text()
            assert (sweep_dir / pid / "checkpoint.npz").is_file()
        hold.release()
    code, _lines, err = sweep_process(tmp_path, ["--resume", sweep_dir.name])
    _, record = the_sweep(tmp_path / "results")
    check("--resume after Ctrl-C", code, 0, record, aws, err)
    assert set(states(record).values()) == {"finished"}
    for pid in held:
        assert (
            "resuming from out/checkpoint.npz at fine-tuning, start of epoch 2"
            in (sweep_dir / pid / "train.log").read_text()
        )
        same_weights(sweep_dir / pid, local_reference(tmp_path, sweep_dir / pid))


def test_max_cost_stops_launching_and_ends_gracefully(
    fake_fleet, aws: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_fleet.env.update(THREADS)
    epochs = 20  # the estimate (20 × the T4 guess) is what the budget counts, however fast they run
    job = job_file(tmp_path, [0.1, 0.2, 0.3, 0.5, 1.0, 2.0], epochs=epochs)
    stack = stack_file(tmp_path, market="on-demand")
    price = catalog.on_demand_price("g4dn.xlarge", "us-east-1").usd_per_hour
    est = point_estimate_usd(
        parse_job({**JOB, "model": {**JOB["model"], "epochs": epochs}}), "g4dn.xlarge", price, 1
    )
    limit = 3 * instance_floor_usd(price) + 3.5 * est  # three instances' minute and three points fit
    args = [str(job), "--stack", str(stack), "--instances", "3", "--max-cost", f"{limit:.6f}"]
    code = main(["sweep", *args, "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err
    _, record = the_sweep(tmp_path / "results")
    check(f"--max-cost ${limit:.4f} reached (3 of 6 points fit)", code, 1, record, aws, err)
    assert sorted(states(record).values()) == ["finished"] * 3 + ["skipped"] * 3
    assert record["status"] == "stopped" and "--max-cost" in record["stop_reason"]
    assert record["cost_usd"] <= limit
    assert f"sweep --resume {record['sweep_id']}" in err
