"""The instance's cloud-config (host keys, self-terminating deadline) and the local state dir."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from ec2dbn.errors import ConfigError, Ec2dbnError
from ec2dbn.stack import state, userdata


def test_cloud_config_installs_the_generated_host_key_and_nothing_else() -> None:
    key = userdata.generate_host_key("ec2dbn-t")
    deadline = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    text = userdata.render(key, deadline, stack="t")
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    assert doc["ssh_keys"] == {"ed25519_private": key.private_openssh, "ed25519_public": key.public}
    assert doc["ssh_deletekeys"] is True and doc["ssh_pwauth"] is False
    # cloud-init generates host keys only when ssh_keys is absent; an empty ssh_genkeytypes (what
    # this said before) is refused by its schema (tests/aws/test_cloud_config_schema.py).
    assert "ssh_genkeytypes" not in doc
    # The two halves belong together.
    private = serialization.load_ssh_private_key(key.private_openssh.encode(), password=None)
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert key.public.split()[:2] == public.decode().split()
    assert doc["write_files"][0] == {
        "path": "/etc/ec2dbn/deadline",
        "permissions": "0644",
        "content": "2030-01-02T03:04:05Z\n",
    }
    assert len(text.encode()) < 16 * 1024  # EC2's user-data limit


def _run_bootcmd(tmp_path: Path, deadline: datetime, systemd_run_ok: bool = True) -> list[str]:
    """Run the bootcmd shell with fake systemd-run/shutdown on PATH; returns what they were asked to do."""
    text = userdata.render(userdata.generate_host_key(), deadline, stack="t")
    argv = yaml.safe_load(text)["bootcmd"][0]
    assert argv[:2] == ["sh", "-c"]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls"
    for tool, rc in (("systemd-run", 0 if systemd_run_ok else 1), ("shutdown", 0)):
        script = bindir / tool
        script.write_text(f'#!/bin/sh\necho "{tool} $*" >> {log}\nexit {rc}\n')
        script.chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin"}
    subprocess.run(argv, env=env, check=True, timeout=10)
    return log.read_text().splitlines()


def test_deadline_arms_a_timer_for_the_time_left(tmp_path: Path) -> None:
    calls = _run_bootcmd(tmp_path, datetime.now(timezone.utc) + timedelta(hours=2))
    assert len(calls) == 1 and calls[0].startswith("systemd-run --unit=ec2dbn-deadline")
    seconds = int(calls[0].split("--on-active=")[1].split("s ")[0])
    assert 7190 <= seconds <= 7200
    assert calls[0].endswith("/sbin/shutdown -h now")


def test_boot_after_the_deadline_shuts_down_at_once(tmp_path: Path) -> None:
    calls = _run_bootcmd(tmp_path, datetime.now(timezone.utc) - timedelta(minutes=5))
    assert calls == ["shutdown -h now ec2dbn: max_lifetime reached"]


def test_without_systemd_run_it_falls_back_to_shutdown_plus_minutes(tmp_path: Path) -> None:
    calls = _run_bootcmd(tmp_path, datetime.now(timezone.utc) + timedelta(minutes=90), systemd_run_ok=False)
    assert calls[-1] in ("shutdown -h +90", "shutdown -h +89")


def test_state_dir_permissions_and_atomic_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "h"
    home.mkdir(mode=0o755)  # too open: ec2dbn tightens it
    monkeypatch.setenv("EC2DBN_HOME", str(home))
    st = state.StackState(name="t", region="us-east-1", instance_id="i-1", public_ip="198.51.100.1")
    path = state.save(st)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp files left behind
    assert state.load("t") == st
    assert state.names() == ["t"]
    key = state.write_private_key(
        "t", "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----"
    )
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # Unknown fields survive a round trip (later versions may add some).
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "recoveries": [1]}))
    state.save(state.load("t"))  # type: ignore[arg-type]
    assert json.loads(path.read_text())["recoveries"] == [1]
    assert state.remove("t") and not path.parent.exists() and state.load("t") is None


def test_corrupt_state_is_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EC2DBN_HOME", str(tmp_path))
    state.stack_dir("t").joinpath("state.json").write_text("{not json")
    with pytest.raises(Ec2dbnError, match=r"unreadable.*ec2dbn teardown t") as exc:
        state.load("t")
    assert "\n" not in str(exc.value)


def test_known_hosts_and_ssh_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EC2DBN_HOME", str(tmp_path))
    monkeypatch.delenv(state.SSH_ENDPOINT_ENV, raising=False)
    key = userdata.generate_host_key()
    path = state.write_known_hosts(
        "t", ["198.51.100.1", "ec2-x.amazonaws.com", "", "198.51.100.1"], key.public
    )
    assert path.read_text() == f"198.51.100.1,ec2-x.amazonaws.com {' '.join(key.public.split()[:2])}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    st = state.StackState(name="t", region="us-east-1", public_ip="198.51.100.1")
    assert st.ssh_endpoint() == ("198.51.100.1", 22)
    monkeypatch.setenv(state.SSH_ENDPOINT_ENV, "127.0.0.1:2222")
    assert st.ssh_endpoint() == ("127.0.0.1", 2222)
    assert state.endpoint_host_pattern("127.0.0.1", 2222) == "[127.0.0.1]:2222"
    monkeypatch.setenv(state.SSH_ENDPOINT_ENV, "127.0.0.1:notaport")
    with pytest.raises(ConfigError, match="EC2DBN_SSH_ENDPOINT"):
        st.ssh_endpoint()


def test_default_home_is_under_the_user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EC2DBN_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert state.home() == tmp_path / ".ec2dbn"
    assert stat.S_IMODE(os.stat(tmp_path / ".ec2dbn").st_mode) == 0o700
