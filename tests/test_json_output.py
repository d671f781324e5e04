"""`--json` for scripts on plan, report, status, teardown and bench: stdout is one strict JSON document
(jq and JSON.parse read it: no NaN, no Infinity, nothing else on stdout; progress goes to stderr), and it
says what the table says. Against moto as a real server and the real trainer."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from ec2dbn.cli import main
from ec2dbn.run.results import RunRecord
from tests.support.moto_server import MotoServer, tagged_resources
from tests.support.strict_json import loads_strict
from tests.support.trained_runs import digits_runs, write_job

__all__ = ["digits_runs"]

REPO = Path(__file__).resolve().parents[1]


def _json(capsys: pytest.CaptureFixture[str], *argv: str, code: int = 0) -> Any:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert rc == code, err
    assert "Traceback" not in err
    return loads_strict(out)  # the whole of stdout, strictly


def test_plan_json(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _json(capsys, "plan", str(REPO / "examples" / "seed-mnist.yaml"), "--json")
    assert doc["stack"] == "g4dn-spot" and doc["region"] == "us-east-1"
    assert doc["image"]["id"].startswith("ami-") and doc["image"]["requested"] == "dlami-ubuntu22"
    assert doc["access"]["cidr"].endswith("/32") and doc["markets"][0] == "spot"
    first = doc["candidates"][0]
    assert first["instance_type"] == "g4dn.xlarge" and first["zones"]
    assert first["on_demand"]["usd_per_hour"] > 0 and first["on_demand"]["source"]
    assert doc["hourly"]["usd_per_hour"] > 0 and doc["max_cost_usd"] > 0
    assert doc["checks"] and all(c["outcome"] == "allowed" for c in doc["checks"][:2])
    # No group yet: RunInstances is not dry-run against the VPC's default group, and says so.
    assert all(
        c["outcome"].startswith("skipped: the security group does not exist") for c in doc["checks"][2:]
    )
    assert doc["job"]["epochs"] == 10 and doc["job"]["layers"] == [784, 800, 800, 10]
    assert doc["estimate"]["usd"] > 0 and "epochs" in doc["estimate"]["line"]
    assert not any(tagged_resources(aws).values())


def test_launch_dry_run_json_is_the_same_plan(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _json(capsys, "launch", "--dry-run", "--json")
    assert doc["stack"] == "g4dn-spot" and doc["checks"] and "job" not in doc


def test_status_and_teardown_json(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert _json(capsys, "status", "--json") == []
    launched = _json(capsys, "launch", "--spot", "--no-bootstrap", "--json")
    assert launched["name"] == "g4dn-spot" and launched["reused"] is False
    (row,) = _json(capsys, "status", "--json")
    assert row["instance_id"] == launched["instance_id"]
    assert row["name"] == "g4dn-spot" and row["state"] in ("pending", "running")
    assert row["instance_type"] == "g4dn.xlarge" and row["price"]["usd_per_hour"] > 0

    doc = _json(capsys, "teardown", "g4dn-spot", "--yes", "--json")
    assert doc["name"] == "g4dn-spot" and doc["region"] == "us-east-1"
    assert len(doc["terminated"]) == 1 and doc["terminated"][0].startswith("i-")
    assert len(doc["deleted_security_groups"]) == 1 and doc["deleted_key_pairs"] == ["ec2dbn-g4dn-spot"]
    assert doc["remaining"] == "nothing" and doc["errors"] == []
    assert _json(capsys, "status", "--json") == []


def test_teardown_all_json(aws: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["launch", "--spot", "--no-bootstrap", "--name", "one"]) == 0
    assert main(["launch", "--spot", "--no-bootstrap", "--name", "two"]) == 0
    capsys.readouterr()
    doc = _json(capsys, "teardown", "--all", "--yes", "--json")
    assert sorted(s["name"] for s in doc["stacks"]) == ["one", "two"]
    assert all(len(s["terminated"]) == 1 for s in doc["stacks"])
    assert doc["remaining"] == {"us-east-1": "nothing"} and doc["failures"] == []


def test_report_json_is_strict_with_non_finite_numbers(
    digits_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = shutil.copytree(digits_runs[0], tmp_path / "results" / "r-1")
    record = RunRecord(run_id="r-1", job="j.yaml", mode="ec2", price_usd_per_hour=float("nan"))
    record.cost_usd = float("inf")
    record.save(run)
    doc = _json(capsys, "report", str(run), "--json")
    (row,) = doc["runs"]
    assert row["run_id"] == "r-1" and row["cost_usd"] is None and row["usd_per_epoch"] is None
    assert row["seconds_per_epoch"] > 0 and row["test_accuracy"] > 0.8


def test_bench_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("sklearn")
    job = write_job(tmp_path / "job.yaml", "16", 2)
    out = tmp_path / "bench"
    argv = ["bench", str(job), "--local", "--widths", "8,16", "--epochs", "2", "--out", str(out)]
    doc = _json(capsys, *argv, "--backends", "numpy", "--no-plot", "--json")
    assert doc["out_dir"] == str(out)
    assert [(r["width"], r["backend"], r["status"]) for r in doc["rows"]] == [
        (8, "numpy", "ok"),
        (16, "numpy", "ok"),
    ]
    assert all(r["seconds_per_epoch"] > 0 and r["usd_per_epoch"] == 0 for r in doc["rows"])
    assert doc["break_even"] == {"kind": "unknown", "width": None}
    assert doc["price"]["usd_per_hour"] == 0 and doc["price_note"]
    assert sorted(Path(p).name for p in doc["written"]) == ["bench.json", "summary.md"]
