"""`ec2dbn bench` and `trainer.bench`: real (tiny) benches on digits, the $/epoch and speedup arithmetic,
and one-line errors for bad input."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from matplotlib.image import imread

from ec2dbn.aws.prices import spot_price
from ec2dbn.cli import main
from ec2dbn.errors import ConfigError
from ec2dbn.insight.bench import (
    BenchRow,
    find_break_even,
    load_bench,
    local_price,
    render_summary,
    speedups,
    summarize,
    usd_per_epoch,
)
from ec2dbn.spec.catalog import Price, on_demand_price
from tests.support.moto_server import MotoServer
from tests.support.spot_moto import Row, SpotReplies, ec2_client, history_xml, spot_moto
from tests.support.trained_runs import write_job
from trainer.backend import select_backend
from trainer.bench import layers_for, parse_widths, run_bench
from trainer.errors import BackendError, JobError

__all__ = ["spot_moto"]  # the fixture, imported so pytest finds it here


def _gpu_usable() -> bool:
    try:
        select_backend("cupy")
    except BackendError:
        return False
    return True


# --- a real bench, through the CLI --------------------------------------------------------------------


def test_bench_local_writes_json_summary_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    job = write_job(tmp_path / "digits.yaml", "32", epochs=10)
    out = tmp_path / "bench"
    rc = main(["bench", str(job), "--local", "--widths", "32,16", "--epochs", "3", "--out", str(out)])
    assert rc == 0, capsys.readouterr()
    doc = json.loads((out / "bench.json").read_text())

    assert doc["complete"] is True and doc["epochs"] == 3 and doc["widths"] == [16, 32]
    assert doc["architecture"]["layers_template"] == "64-w-10"
    assert doc["data"]["n_train"] == 1203 and doc["data"]["n_test"] == 594
    env = doc["environment"]
    assert env["vcpus"] == os.cpu_count() and env["numpy_version"] and env["cpu_model"] and env["blas"]
    assert len(env["load_average"]) == 3 and len(doc["load_average_end"]) == 3
    # One row per (width, backend), in order.
    assert [(r["width"], r["backend"]) for r in doc["rows"]] == [
        (16, "numpy"),
        (16, "cupy"),
        (32, "numpy"),
        (32, "cupy"),
    ]
    gpu = _gpu_usable()
    for r in doc["rows"]:
        if r["backend"] == "cupy" and not gpu:
            assert r["status"] == "skipped"
            assert "CuPy" in r["reason"] or "GPU" in r["reason"] or "CUDA" in r["reason"]
            continue
        assert r["status"] == "ok"
        assert r["layers"] == [64, r["width"], 10]
        assert len(r["epoch_seconds"]) == 3 and r["timed_epochs"] == 2
        assert all(s > 0 for s in r["epoch_seconds"])
        # The warm-up epoch is left out of the median.
        assert r["seconds_per_epoch"] == pytest.approx(statistics.median(r["epoch_seconds"][1:]))
        assert r["samples_per_epoch"] == (1203 // 16) * 16
        assert r["samples_per_second"] == pytest.approx(r["samples_per_epoch"] / r["seconds_per_epoch"])
        assert 0.6 < r["test_accuracy"] <= 1.0  # 10 classes: chance is 0.1

    summary = (out / "summary.md").read_text()
    assert "| 16 | numpy |" in summary and "| 32 | numpy |" in summary
    assert "not billed" in summary  # a local run is priced at $0, with a note
    assert "Machine load" in summary
    img = imread(out / "bench.png")
    assert img.shape[:2] == (528, 704)  # 6.4 x 4.8 inches at 110 dpi: one panel, there is no GPU row
    assert img[..., :3].std() > 0.05  # not a blank canvas
    text = capsys.readouterr()
    assert "width 16 numpy:" in text.out  # the child's output is streamed
    assert "break-even" in text.err


def test_bench_epochs_1_uses_a_warmup_fit_and_two_hidden_layers(tmp_path: Path) -> None:
    job = write_job(tmp_path / "deep.yaml", "24, 24", epochs=5)
    lines: list[str] = []
    doc = run_bench(job, tmp_path / "out", widths=[8, 12], epochs=1, backends=["numpy"], log=lines.append)
    assert doc["warmup"]["kind"] == "warmup_fit"
    assert [r["layers"] for r in doc["rows"]] == [[64, 8, 8, 10], [64, 12, 12, 10]]
    for r in doc["rows"]:
        assert r["timed_epochs"] == 1 and r["seconds_per_epoch"] == r["epoch_seconds"][0] > 0
    assert json.loads((tmp_path / "out" / "bench.json").read_text())["rows"] == doc["rows"]
    assert any(line.startswith("width 12 numpy: ") and "s/epoch" in line for line in lines)


def test_bench_stopped_by_sigterm_keeps_the_rows_measured(tmp_path: Path) -> None:
    job = write_job(tmp_path / "digits.yaml", "32", epochs=5)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "trainer.bench", str(job), "--out", str(out), "--backends", "numpy"),
            *("--widths", ",".join(str(w) for w in range(8, 400, 8)), "--epochs", "4"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    rows: list[dict] = []
    while time.monotonic() < deadline and not rows:
        time.sleep(0.1)
        with contextlib.suppress(OSError, ValueError):  # not written yet
            rows = json.loads((out / "bench.json").read_text())["rows"]
    proc.send_signal(signal.SIGTERM)
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 3, stdout
    doc = json.loads((out / "bench.json").read_text())
    assert doc["complete"] is False and 1 <= len(doc["rows"]) < 49
    assert all(r["status"] == "ok" for r in doc["rows"])
    assert "stopped by SIGTERM" in stdout


# --- arithmetic ---------------------------------------------------------------------------------------


def _rows(pairs: dict[int, tuple[float, float]]) -> list[BenchRow]:
    out = []
    for w, (cpu, gpu) in pairs.items():
        out.append(BenchRow(w, "numpy", "ok", seconds_per_epoch=cpu))
        out.append(BenchRow(w, "cupy", "ok", seconds_per_epoch=gpu))
    return out


def test_usd_per_epoch_is_seconds_times_price_over_3600() -> None:
    assert usd_per_epoch(36.0, 0.526) == pytest.approx(0.00526)
    assert usd_per_epoch(7200.0, 1.5) == pytest.approx(3.0)
    assert usd_per_epoch(10.0, 0.0) == 0.0
    with pytest.raises(ConfigError):
        usd_per_epoch(-1.0, 1.0)
    with pytest.raises(ConfigError):
        usd_per_epoch(1.0, math.nan)


def test_summarize_prices_every_measured_row_with_the_catalog_price() -> None:
    price = on_demand_price("g4dn.xlarge", "us-east-1")
    bench = {
        "rows": [
            {"width": 100, "backend": "numpy", "status": "ok", "seconds_per_epoch": 12.0},
            {"width": 100, "backend": "cupy", "status": "ok", "seconds_per_epoch": 3.0},
            {"width": 800, "backend": "cupy", "status": "failed", "reason": "OutOfMemoryError: ..."},
        ]
    }
    s = summarize(bench, price)
    by = {(r.width, r.backend): r for r in s.rows}
    assert by[(100, "numpy")].usd_per_epoch == pytest.approx(12.0 * price.usd_per_hour / 3600)
    assert by[(100, "cupy")].usd_per_epoch == pytest.approx(3.0 * price.usd_per_hour / 3600)
    assert by[(800, "cupy")].usd_per_epoch is None and not by[(800, "cupy")].ok
    assert s.speedups == {100: pytest.approx(4.0)}
    assert price.source in s.price_note
    md = render_summary(s)
    assert "| 100 | 4.00× |" in md and "failed: OutOfMemoryError" in md


def test_bench_cost_with_an_injected_live_spot_price(spot_moto: str) -> None:
    # moto prices all spot offers at 0.00001: put a realistic reply on the wire instead.
    ec2 = ec2_client(spot_moto)
    SpotReplies(
        ec2, [(200, history_xml([Row("g4dn.xlarge", "us-east-1b", "0.2104", "2026-11-26T10:00:00Z")]))]
    )
    price = spot_price(ec2, "g4dn.xlarge", "us-east-1b")
    assert price is not None and price.usd_per_hour == pytest.approx(0.2104)
    s = summarize(
        {"rows": [{"width": 800, "backend": "cupy", "status": "ok", "seconds_per_epoch": 1.8}]}, price
    )
    assert s.rows[0].usd_per_epoch == pytest.approx(1.8 * 0.2104 / 3600)  # $0.0001052
    assert "spot" in s.price_note and "describe_spot_price_history" in s.price_note


def test_local_price_is_zero_with_a_note_or_what_the_user_says() -> None:
    price, note = local_price()
    assert price.usd_per_hour == 0.0 and "not billed" in note
    s = summarize({"rows": [{"width": 8, "backend": "numpy", "seconds_per_epoch": 2.0}]}, price, note)
    assert s.rows[0].usd_per_epoch == 0.0
    price, note = local_price(0.36)
    assert price.usd_per_hour == 0.36 and "--price-per-hour" in note
    with pytest.raises(ConfigError, match="non-negative"):
        local_price(-0.1)


def test_speedup_and_break_even_interpolated_on_log_axes() -> None:
    rows = _rows({100: (1.0, 2.0), 400: (8.0, 4.0), 1600: (80.0, 8.0)})
    sp = speedups(rows)
    assert sp == {100: pytest.approx(0.5), 400: pytest.approx(2.0), 1600: pytest.approx(10.0)}
    be = find_break_even(sp)
    # log-linear between (100, 0.5) and (400, 2): speedup 1 is halfway in log width → sqrt(100·400) = 200.
    assert be.kind == "crossing" and be.width == pytest.approx(200.0)
    assert "200" in be.describe()


def test_break_even_outside_the_measured_range_or_unknown() -> None:
    assert find_break_even({100: 1.5, 300: 3.0}).kind == "below"
    above = find_break_even({100: 0.2, 300: 0.6})
    assert (above.kind, above.width) == ("above", 300.0)
    assert find_break_even({}).kind == "unknown"
    cpu_only = [BenchRow(100, "numpy", "ok", seconds_per_epoch=1.0), BenchRow(100, "cupy", "skipped")]
    assert speedups(cpu_only) == {}


def test_summary_of_a_bench_without_rows_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no rows"):
        summarize({"rows": []}, Price(1.0, "x", "2026-01-01", "us-east-1"))
    with pytest.raises(ConfigError, match="not found"):
        load_bench(tmp_path)
    (tmp_path / "bench.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"not a bench\.json \(not valid JSON"):
        load_bench(tmp_path)


# --- bad input: one line, exit 2, nothing run ------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--local", "--widths", "100,abc"], "'abc' is not an integer"),
        (["--local", "--widths", "0,100"], "at least 1 unit"),
        (["--local", "--widths", "-5"], "at least 1 unit"),
        (["--local", "--widths", ","], "comma-separated integers"),
        (["--local", "--backends", "numpy,tpu"], "unknown backend 'tpu'"),
        (["--local", "--price-per-hour", "-1"], "non-negative"),
        (["--stack", "g4dn-spot", "--local"], "exclude each other"),
        (["--stack", "no-such-stack"], "no stack 'no-such-stack'"),
        ([], "--local"),
    ],
)
def test_bench_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], expected: str
) -> None:
    job = write_job(tmp_path / "digits.yaml")
    out = tmp_path / "out"
    rc = main(["bench", str(job), "--out", str(out), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert expected in err and err.strip().count("\n") == 0, err
    assert not out.exists()  # nothing ran


def test_bench_unknown_job_and_bad_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", str(tmp_path / "missing.yaml"), "--local"]) == 2
    assert "not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {name: digits}\nmodel: {layers: [64, 10]}\n")
    assert main(["bench", str(bad), "--local", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no hidden layer" in err and err.strip().count("\n") == 0


def test_trainer_bench_parsers() -> None:
    assert parse_widths("800, 100,100,300") == [100, 300, 800]
    assert layers_for([784, 800, 800, 10], 50) == [784, 50, 50, 10]
    with pytest.raises(JobError, match="no hidden layer"):
        layers_for([784, 10], 50)
    with pytest.raises(JobError):
        parse_widths("1.5")


@pytest.mark.skipif(_gpu_usable(), reason="needs a machine without a usable GPU")
def test_bench_with_only_skipped_rows_writes_the_summary_without_a_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    job = write_job(tmp_path / "digits.yaml")
    out = tmp_path / "out"
    assert main(["bench", str(job), "--local", "--backends", "cupy", "--widths", "8", "--out", str(out)]) == 0
    assert "skipped" in (out / "summary.md").read_text()
    assert not (out / "bench.png").exists()
    assert "no plot" in capsys.readouterr().err


def test_bench_on_a_stack_runs_in_the_region_given(
    aws: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bench --stack S --region R`: the run is planned in R. Stopped as provisioning starts (the pipeline's
    test seam), before anything exists in AWS."""
    from ec2dbn.run import pipeline

    def stop(phase: str) -> None:
        if phase == "provision":
            raise RuntimeError(f"stopped at {phase}")

    monkeypatch.setattr(pipeline, "PHASE_HOOKS", [stop])
    aws.seed_images(("us-west-2",))
    out = tmp_path / "bench-out"
    args = ["bench", "seed-mnist5k", "--stack", "g4dn-spot", "--region", "us-west-2", "--out", str(out)]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "stopped at provision" in err
    assert "• stack g4dn-spot: g4dn.xlarge (spot) in us-west-2" in err.splitlines()
