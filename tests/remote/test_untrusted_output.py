"""What an instance sends back is untrusted: command output and pulled files are bounded.

Against a real loopback sshd. The memory figures are the peak resident set (VmHWM) of a separate Python
process that runs one command through `Remote`: its growth over the run, not the machine's speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ec2dbn.errors import ConfigError, RemoteError
from ec2dbn.ssh.output import CAPTURE_BYTES, MAX_LINE_CHARS, PULL_LIMIT_ENV, pull_limit_bytes
from ec2dbn.ssh.remote import Remote
from tests.support.sshd import SshServer

REPO = Path(__file__).resolve().parents[2]

#: Output sizes (MiB) several times any bound the client may keep: growth beyond the bound shows.
OUTPUT_MB = 48
#: What the client may grow by while receiving OUTPUT_MB: buffers, a captured tail, paramiko's window.
GROWTH_BOUND_MB = 16

_PROBE = textwrap.dedent(
    """
    import json, sys
    from ec2dbn.ssh.remote import Remote

    def peak_mb():
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

    host, port, user, key, pin, mode, cmd = sys.argv[1:]
    r = Remote(host, int(port), user, key, pin)
    r.run("true")  # connected, everything imported: the baseline
    seen = {"lines": 0, "longest": 0, "chars": 0}

    def on_line(line):
        seen["lines"] += 1
        seen["chars"] += len(line)
        seen["longest"] = max(seen["longest"], len(line))

    before = peak_mb()
    result = r.run(cmd, stream=on_line if mode == "stream" else None)
    grew = peak_mb() - before
    print(json.dumps({"grew_mb": grew, "stdout_len": len(result.stdout), "tail": result.stdout[-20:],
                      "exit": result.exit_code, **seen}))
    """
)


def _probe(sshd: SshServer, mode: str, cmd: str) -> dict:
    args = [sshd.host, str(sshd.port), sshd.user, str(sshd.client_key), sshd.host_public_key, mode, cmd]
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_streamed_output_is_not_buffered_whole(sshd: SshServer) -> None:
    # OUTPUT_MB of 100-character lines, every one handed to the callback, none kept.
    got = _probe(sshd, "stream", f"head -c {OUTPUT_MB}M /dev/zero | tr '\\0' a | fold -w 100")
    assert got["lines"] == OUTPUT_MB * 1024 * 1024 // 100 + 1
    assert got["chars"] == OUTPUT_MB * 1024 * 1024
    assert got["grew_mb"] < GROWTH_BOUND_MB, got


def test_one_endless_line_reaches_the_stream_in_bounded_pieces(sshd: SshServer) -> None:
    got = _probe(sshd, "stream", f"head -c {OUTPUT_MB}M /dev/zero | tr '\\0' a")
    assert got["chars"] == OUTPUT_MB * 1024 * 1024
    assert got["longest"] == MAX_LINE_CHARS
    assert got["grew_mb"] < GROWTH_BOUND_MB, got


def test_captured_output_keeps_only_its_tail(sshd: SshServer) -> None:
    got = _probe(sshd, "plain", f"head -c {OUTPUT_MB}M /dev/zero | tr '\\0' a; echo; echo the-end")
    assert got["stdout_len"] == CAPTURE_BYTES
    assert got["tail"].endswith("a\nthe-end\n")  # the last lines (what an error message quotes) survive
    assert got["grew_mb"] < GROWTH_BOUND_MB, got


def test_a_failing_command_quotes_its_last_line_after_huge_output(remote: Remote) -> None:
    with pytest.raises(RemoteError) as err:
        remote.run("head -c 8M /dev/zero | tr '\\0' x; echo; echo 'disk full' >&2; exit 3")
    assert "exit code 3: disk full" in str(err.value)


def test_byte_reads_keep_at_most_what_was_asked(remote: Remote, tmp_path: Path) -> None:
    big = tmp_path / "big.log"
    big.write_bytes(b"0123456789" * 1000)
    assert remote.read_from(str(big), 10, limit=25) == b"0123456789012345678901234"
    # A remote that ignores the limit (an instance is untrusted) still gives no more than was asked.
    raw = remote.run_bytes(f"cat {big}", limit=1000)
    assert raw.stdout == b"0123456789" * 100


# ------------------------------------------------------------------------------------------ pulls


def test_a_pull_over_the_limit_is_refused_with_one_clear_line(
    remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "remote" / "model.npz"
    src.parent.mkdir()
    src.write_bytes(b"\0" * (3 * 1024 * 1024 + 1))
    monkeypatch.setenv(PULL_LIMIT_ENV, "3")
    local = tmp_path / "results" / "model.npz"
    with pytest.raises(RemoteError) as err:
        remote.get_file(str(src), local)
    message = str(err.value)
    assert "\n" not in message
    assert "model.npz" in message and "3.0 MiB" in message and f"{PULL_LIMIT_ENV}=3" in message
    assert not local.exists() and not list(local.parent.glob(".*part"))  # nothing half-pulled
    # At the limit it is pulled, and the connection is still usable.
    monkeypatch.setenv(PULL_LIMIT_ENV, "4")
    remote.get_file(str(src), local)
    assert local.stat().st_size == src.stat().st_size
    assert remote.run("echo ok").stdout == "ok\n"


def test_a_file_bigger_than_its_size_says_is_cut_off_while_pulled(
    remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # /dev/zero says it has 0 bytes and then delivers as many as are read, like a file that grows while
    # it is pulled or a server that misreports sizes: the limit holds while the bytes arrive.
    monkeypatch.setenv(PULL_LIMIT_ENV, "2")
    local = tmp_path / "results" / "job.log"
    with pytest.raises(RemoteError) as err:
        remote.get_file("/dev/zero", local)
    assert "sent more than 2.0 MiB, over the pull limit" in str(err.value)
    assert not local.exists() and not list(local.parent.glob(".*part"))
    assert remote.run("echo ok").stdout == "ok\n"


@pytest.mark.parametrize("value", ["0", "-5", "lots", "1.5", "99999999999999999999"])
def test_a_bad_pull_limit_is_a_config_error(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(PULL_LIMIT_ENV, value)
    with pytest.raises(ConfigError) as err:
        pull_limit_bytes()
    assert PULL_LIMIT_ENV in str(err.value) and "\n" not in str(err.value)


def test_the_default_pull_limit_is_documented(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PULL_LIMIT_ENV, raising=False)
    default_mb = pull_limit_bytes() // (1024 * 1024)
    readme = (REPO / "README.md").read_text()
    assert f"{PULL_LIMIT_ENV}" in readme and f"{default_mb:,} MiB" in readme
