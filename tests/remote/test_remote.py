"""Remote against a real sshd on 127.0.0.1: pinning, endpoint override, waiting, streaming, files.

The sshd runs on this machine, so what a command does "remotely" can be checked on the local disk.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from ec2dbn.errors import ConfigError, HostKeyMismatchError, RemoteError
from ec2dbn.events import RecordingReporter
from ec2dbn.ssh.remote import Remote, load_pinned_keys
from ec2dbn.stack.state import SSH_ENDPOINT_ENV, parse_endpoint
from tests.support.sshd import SshServer, _keygen, remote_for, start_sshd


def _other_host_key(tmp_path: Path) -> str:
    key = tmp_path / "impostor_ed25519"
    _keygen(key)
    return key.with_suffix(".pub").read_text()


def test_pinned_key_accepted_and_output_captured(remote: Remote) -> None:
    result = remote.run("echo out; echo err >&2; exit 0")
    assert (result.exit_code, result.stdout, result.stderr) == (0, "out\n", "err\n")


def test_known_hosts_file_pins_for_whichever_address_is_used(sshd: SshServer, tmp_path: Path) -> None:
    # The stack's known_hosts names the instance's public IP; we connect to a loopback endpoint.
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"# pinned at launch\n203.0.113.7 {sshd.host_public_key}\n")
    with Remote(sshd.host, sshd.port, sshd.user, sshd.client_key, known_hosts) as r:
        assert r.run("echo ok").stdout == "ok\n"


def test_wrong_host_key_is_refused_and_nothing_runs(sshd: SshServer, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    r = Remote(sshd.host, sshd.port, sshd.user, sshd.client_key, _other_host_key(tmp_path))
    with pytest.raises(HostKeyMismatchError) as err:
        r.run(f"touch {marker}")
    message = str(err.value)
    assert "\n" not in message and "ec2dbn teardown" in message and f"{sshd.host}:{sshd.port}" in message
    assert not marker.exists()
    # Never retried while waiting either: it fails at once, not after the timeout.
    start = time.monotonic()
    with pytest.raises(HostKeyMismatchError):
        r.wait_until_reachable(timeout_s=30)
    assert time.monotonic() - start < 10
    # The server never saw an authentication attempt.
    assert "Accepted publickey" not in sshd.log.read_text()


def test_a_key_of_another_type_is_a_mismatch_too(sshd: SshServer, tmp_path: Path) -> None:
    rsa = tmp_path / "host_rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(rsa)], check=True)
    r = Remote(sshd.host, sshd.port, sshd.user, sshd.client_key, rsa.with_suffix(".pub").read_text())
    with pytest.raises(HostKeyMismatchError):
        r.run("true")


def test_pinned_key_text_is_validated() -> None:
    with pytest.raises(ConfigError):
        load_pinned_keys("ssh-ed25519 not-base64!!")
    with pytest.raises(ConfigError):
        load_pinned_keys("/nonexistent/known_hosts")


def test_wrong_client_key_is_a_clear_remote_error(sshd: SshServer, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    _keygen(stranger)
    r = Remote(sshd.host, sshd.port, sshd.user, stranger, sshd.host_public_key)
    with pytest.raises(RemoteError, match="refused SSH login") as err:
        r.run("true")
    assert not isinstance(err.value, HostKeyMismatchError)


def test_ssh_endpoint_override(sshd: SshServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """$EC2DBN_SSH_ENDPOINT is parsed by state.parse_endpoint; the address it gives really connects."""
    monkeypatch.setenv(SSH_ENDPOINT_ENV, f"{sshd.host}:{sshd.port}")
    host, port = parse_endpoint(f"{sshd.host}:{sshd.port}")
    assert (host, port) == (sshd.host, sshd.port)
    with Remote(host, port, sshd.user, sshd.client_key, sshd.host_public_key) as r:
        assert r.run("echo via-override").stdout == "via-override\n"
    assert parse_endpoint("[::1]:2200") == ("::1", 2200)
    assert parse_endpoint("bastion.example") == ("bastion.example", 22)
    for bad in ("host:notaport", "host:0", ":22"):
        with pytest.raises(ConfigError, match=SSH_ENDPOINT_ENV):
            parse_endpoint(bad)


def test_wait_until_reachable_retries_until_sshd_starts(tmp_path: Path) -> None:
    server = start_sshd(tmp_path / "late", start=False)
    starter = threading.Timer(1.5, server.start)
    starter.start()
    reporter = RecordingReporter()
    try:
        with remote_for(server) as r:
            waited = r.wait_until_reachable(timeout_s=30, reporter=reporter)
            assert waited >= 1.2
            assert r.run("echo up").stdout == "up\n"
    finally:
        starter.join()
        server.stop()
    assert reporter.lines("wait") == [f"waiting for SSH on 127.0.0.1:{server.port}"]


def test_wait_until_reachable_times_out_with_the_last_error(tmp_path: Path) -> None:
    server = start_sshd(tmp_path / "never", start=False)  # keys exist, nothing listens
    start = time.monotonic()
    with pytest.raises(
        RemoteError, match=r"did not become reachable within 2s \(last error: .*connect"
    ) as err:
        remote_for(server).wait_until_reachable(timeout_s=2)
    assert 1.5 < time.monotonic() - start < 10
    assert "\n" not in str(err.value)


def test_run_streams_lines_as_they_are_produced(remote: Remote) -> None:
    seen: list[tuple[float, str]] = []
    result = remote.run(
        "echo a; sleep 1; echo b >&2; printf c", stream=lambda line: seen.append((time.monotonic(), line))
    )
    finished = time.monotonic()
    assert [line for _, line in seen] == ["a", "b", "c"]
    assert finished - seen[0][0] > 0.7  # "a" arrived while the command was still sleeping
    assert result.stdout == "a\nc" and result.stderr == "b\n"


def test_run_check_timeout_and_exit_codes(remote: Remote) -> None:
    with pytest.raises(RemoteError, match=r"exit code 3: oops"):
        remote.run("echo oops >&2; exit 3")
    assert remote.run("exit 3", check=False).exit_code == 3
    with pytest.raises(RemoteError, match="did not finish within"):
        remote.run("sleep 5", timeout=0.5)
    assert remote.run("echo still-usable").stdout == "still-usable\n"


def test_put_tree_ships_one_archive(remote: Remote, tmp_path: Path) -> None:
    pkg = tmp_path / "local" / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("x = 1\n")
    (pkg / "sub" / "data.bin").write_bytes(bytes(range(256)) * 100)
    (pkg / "__pycache__").mkdir()
    (pkg / "__pycache__" / "mod.cpython-311.pyc").write_bytes(b"junk")
    (pkg / "stale.pyc").write_bytes(b"junk")
    job = tmp_path / "local" / "my job.yaml"
    job.write_text("model: {}\n")
    dest = tmp_path / "remote dir" / "run"

    sent = remote.put_tree(
        {"pkg": pkg, "job.yaml": job, "data/copy.bin": pkg / "sub" / "data.bin"}, str(dest)
    )

    assert 0 < sent < 25600  # compressed
    assert (dest / "pkg" / "__init__.py").read_text() == "x = 1\n"
    assert (dest / "pkg" / "sub" / "data.bin").read_bytes() == bytes(range(256)) * 100
    assert (dest / "data" / "copy.bin").read_bytes() == bytes(range(256)) * 100
    assert (dest / "job.yaml").read_text() == "model: {}\n"
    assert not (dest / "pkg" / "__pycache__").exists() and not (dest / "pkg" / "stale.pyc").exists()


def test_put_tree_rejects_bad_names_and_missing_files(remote: Remote, tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(ValueError):
        remote.put_tree({"../escape": f}, str(tmp_path / "d"))
    with pytest.raises(ConfigError, match="no such file"):
        remote.put_tree({"x": tmp_path / "missing"}, str(tmp_path / "d"))
    assert not (tmp_path / "d").exists()


def test_put_tree_reports_a_failing_unpack(remote: Remote, tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(RemoteError, match="unpacking the upload"):
        remote.put_tree({"f": f}, str(blocker / "sub"))


def test_get_file_put_file_read_from_exists(remote: Remote, tmp_path: Path) -> None:
    src = tmp_path / "remote" / "metrics.json"
    src.parent.mkdir()
    src.write_bytes(b'{"err": 0.02}\n')
    local = tmp_path / "results" / "run-1" / "metrics.json"
    remote.get_file(str(src), local)
    assert local.read_bytes() == b'{"err": 0.02}\n'
    with pytest.raises(RemoteError, match="does not exist"):
        remote.get_file(str(tmp_path / "remote" / "nope"), tmp_path / "results" / "nope")
    assert sorted(p.name for p in local.parent.iterdir()) == ["metrics.json"]  # no partial file left

    target = tmp_path / "remote" / "new" / "dir" / "checkpoint.npz"
    remote.put_file(local, str(target))
    assert target.read_bytes() == local.read_bytes()
    assert [p.name for p in target.parent.iterdir()] == ["checkpoint.npz"]

    assert remote.read_from(str(src), 0) == b'{"err": 0.02}\n'
    assert remote.read_from(str(src), 2, limit=3) == b"err"
    assert remote.read_from(str(src), 999) == b""
    assert remote.read_from(str(tmp_path / "missing.log"), 0) == b""
    assert remote.exists(str(src)) and remote.exists(str(tmp_path)) and not remote.exists(str(tmp_path / "x"))


def test_dropped_connection_is_reopened_by_the_next_call(sshd: SshServer, remote: Remote) -> None:
    assert remote.run("echo 1").stdout == "1\n"
    sshd.stop()
    with pytest.raises(RemoteError):
        remote.run("echo 2")
    sshd.start()
    assert remote.run("echo 3").stdout == "3\n"


def test_connection_dropping_mid_command_is_reported_not_rerun(sshd: SshServer, remote: Remote) -> None:
    cut = threading.Timer(0.5, sshd.stop)
    cut.start()
    with pytest.raises(RemoteError, match="lost the SSH connection"):
        remote.run("sleep 5")
    cut.join()


def test_nothing_listening_is_a_remote_error(tmp_path: Path) -> None:
    server = start_sshd(tmp_path / "s", start=False)
    with pytest.raises(RemoteError, match="cannot connect"):
        remote_for(server).run("true")
