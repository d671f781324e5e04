"""`ec2dbn catalog` through the CLI entry point: offline table and JSON, and --live against moto."""

from __future__ import annotations

import json

import pytest

from ec2dbn.cli import main
from ec2dbn.spec import catalog
from tests.support.spot_moto import spot_moto

__all__ = ["spot_moto"]  # the fixture, imported so pytest finds it here


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """No credentials and an EC2 endpoint nobody listens on: any AWS call would fail the command."""
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:9")


def _rows(out: str) -> dict[str, str]:
    """Table lines keyed by the instance type in their first cell."""
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells and "." in cells[0] and " " not in cells[0]:
            rows[cells[0]] = line
    return rows


def test_catalog_table_offline(offline: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog"]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert set(rows) == {t.name for t in catalog.all_types()}
    assert "1 × T4" in rows["g4dn.xlarge"] and "16 GiB" in rows["g4dn.xlarge"]
    assert "0.526" in rows["g4dn.xlarge"] and "7.5" in rows["g4dn.xlarge"]
    assert "0.34" in rows["c6i.2xlarge"] and "—" in rows["c6i.2xlarge"]
    assert "retired (refused): use g4dn.xlarge" in rows["g2.2xlarge"]
    assert "retired (refused): use g4dn.xlarge" in rows["g3s.xlarge"]
    assert "retired (refused): use g5.2xlarge" in rows["p3.2xlarge"]
    assert "previous" not in rows["g5.xlarge"]
    assert "us-east-1" in out  # default region without AWS_REGION
    assert catalog.catalog_date() in out
    assert "add --live" in out


def test_catalog_gpu_only(offline: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "--gpu"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert "g4dn.xlarge" in rows and "p5.48xlarge" in rows and "g2.2xlarge" in rows
    assert not any(name.startswith(("c6i.", "c7i.", "m6i.", "m7i.")) for name in rows)


def test_catalog_json_region_fallback(offline: None, capsys: pytest.CaptureFixture[str]) -> None:
    # sa-east-1: a region the bundled table has no prices for (it covers six; see catalog.yaml)
    assert main(["catalog", "--gpu", "--json", "--region", "sa-east-1"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["region"] == "sa-east-1" and doc["live"] is False
    assert doc["catalog_date"] == catalog.catalog_date()
    assert doc["price_note"].endswith("region sa-east-1 may differ")
    by_name = {t["name"]: t for t in doc["types"]}
    assert all(t["gpu_count"] > 0 for t in doc["types"])
    g4 = by_name["g4dn.xlarge"]
    assert (g4["gpu_model"], g4["gpu_compute_capability"], g4["on_demand_usd_per_hour"]) == (
        "NVIDIA T4",
        "7.5",
        0.526,
    )
    assert "spot_usd_per_hour" not in g4
    assert by_name["g2.2xlarge"]["retired"] is True and by_name["g2.2xlarge"]["suggestion"] == "g4dn.xlarge"


def test_catalog_bad_region_exit_2(offline: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "--region", "mars-1"]) == 2
    err = capsys.readouterr().err
    assert "'mars-1' is not an AWS region; known: " in err and "Traceback" not in err


def test_catalog_live_through_default_chain(
    spot_moto: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # boto3's default chain finds moto through AWS_ENDPOINT_URL_EC2, as a user's profile would find AWS.
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", spot_moto)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-west-2")
    assert main(["catalog", "--gpu", "--live", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["region"] == "us-west-2" and doc["live"] is True
    by_name = {t["name"]: t for t in doc["types"]}
    g4 = by_name["g4dn.xlarge"]
    assert g4["spot_usd_per_hour"] == pytest.approx(0.00001)  # moto's price for everything
    assert "us-west-2" in g4["spot_source"]
    assert by_name["g2.2xlarge"]["spot_usd_per_hour"] is None  # retired: not even asked

    assert main(["catalog", "--live", "--region", "us-east-1"]) == 0
    out = capsys.readouterr().out
    assert "Spot $/h" in out and "0.00001" in _rows(out)["g4dn.xlarge"]


def test_catalog_live_without_credentials_is_one_line(
    offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["catalog", "--live"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no AWS credentials found: set AWS_PROFILE")  # as every verb says it
    assert "\n" not in err
