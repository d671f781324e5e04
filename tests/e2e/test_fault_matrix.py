"""Issue 5's fault matrix: `ec2dbn train` of a small real job under each fault, and nothing left behind.

Each row injects one fault into the real flow (moto as EC2, the fake cloud-init's loopback sshd as the
instance) and checks what the user gets: the documented exit code, ONE error line carrying the key phrase
(never a traceback), and afterwards zero ec2dbn-tagged instances, spot requests, security groups, key
pairs or volumes. AWS faults are botocore hooks on ec2dbn's own clients (tests/support/moto_server.py),
so those rows run ec2dbn in this process; Ctrl-C and a vanishing state dir need a real process. Rows that
act while the trainer runs hold it at a known point on the instance first (tests/support/hold.py), so no
row depends on how fast this machine trains.

The rows share one warm "instance disk" (remote_dir): the bootstrap's marker files make its re-run
quick, as on a reused instance, and each run has its own run id. The host-key row uses a fresh one, to
show nothing was written. The matrix is printed as a table after the last row.

Row 12, a spot interruption mid-epoch, must end on a second instance with an uninterrupted run's weights.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from ec2dbn import package_data
from ec2dbn.cli import main
from ec2dbn.run import instance_fate
from tests.e2e.helpers import (
    JOB,
    hold_on_the_instance,
    nothing_left,
    run_cli,
    train_locally_as_on_the_instance,
    write_job,
    write_stack,
)
from tests.support.fake_cloud import EC2_DESCRIBE_LAG_S
from tests.support.hold import HELD
from tests.support.moto_server import (
    MotoServer,
    add_hook,
    inject_error,
    inject_http_error,
    tagged_resources,
)
from tests.support.sshd import SshServer
from tests.support.sshd import remote_for as sshd_remote

pytestmark = pytest.mark.slow

REGION = "us-east-1"
TYPE = "g4dn.xlarge"


# ------------------------------------------------------------------------------------------ the matrix


@dataclass
class Row:
    fault: str
    code: int
    message: str
    leftovers: str


MATRIX: list[Row] = []


def _table(rows: list[Row]) -> str:
    head = ("fault", "exit", "message (first 80 chars)", "leftovers")
    body = [(r.fault, str(r.code), r.message[:80], r.leftovers) for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(4)]
    rule = "-+-".join("-" * w for w in widths)
    fmt = " | ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(x.rstrip() for x in [fmt.format(*head), rule, *(fmt.format(*b) for b in body)])


@pytest.fixture(scope="module", autouse=True)
def print_matrix(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the module's last row: the matrix as a table on the terminal (with or without -s)."""
    yield
    if not MATRIX:
        return
    text = f"\n\nfault matrix ({len(MATRIX)} rows)\n{_table(MATRIX)}"
    # What capsys.disabled() does, for a module-scoped fixture: print past pytest's output capture.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(text, flush=True)


# --------------------------------------------------------------------------------------------- set-up


@pytest.fixture(scope="module")
def instance_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The remote_dir the rows share (a warm bootstrap after the first row)."""
    return tmp_path_factory.mktemp("instance-home") / "ec2dbn"


def job_file(tmp_path: Path, name: str, epochs: int = 1) -> Path:
    """JOB with `epochs`, saved as <name>.yaml (the run id starts with the name: unique per row)."""
    job = {**JOB, "model": {**JOB["model"], "epochs": epochs}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    results: Path

    @property
    def run_dir(self) -> Path:
        (run_dir,) = self.results.iterdir()
        return run_dir

    @property
    def record(self) -> dict[str, Any]:
        return json.loads((self.run_dir / "run.json").read_text())

    @property
    def message(self) -> str:
        """The one line that tells the user the outcome."""
        if self.code in (130, 143, 129):  # 128 + SIGINT, SIGTERM, SIGHUP
            return _only(self.err, r"warning: interrupted.*")
        if self.code != 0:
            return _only(self.err, r"error: .*")
        return _only(self.err, r"finished \(exit 0\).*")


def _only(text: str, pattern: str) -> str:
    found = [line for line in text.splitlines() if re.fullmatch(pattern, line)]
    assert len(found) == 1, f"expected one line matching {pattern!r}, got {found} in:\n{text[-3000:]}"
    return found[0]


def train(tmp_path: Path, stack: Path, job: Path, capsys: pytest.CaptureFixture[str]) -> Outcome:
    """`ec2dbn train` in this process (so the injected botocore hooks apply)."""
    results = tmp_path / "results"
    code = main(["train", str(job), "--stack", str(stack), "--results", str(results)])
    captured = capsys.readouterr()
    return Outcome(code, captured.out, captured.err, results)


def train_process(
    tmp_path: Path, stack: Path, job: Path, on_line: Callable[[subprocess.Popen[str], str], None]
) -> Outcome:
    """`python -m ec2dbn train` as a process in the fixtures' environment; on_line sees its stdout."""
    results = tmp_path / "results"
    args = ["train", str(job), "--stack", str(stack), "--results", str(results)]
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}  # a hang is killed with its stacks shown
    # A hang guard, not a speed limit: as long as pytest's own timeout (300 s) allows, so a loaded
    # machine is only slower, and a real hang still fails with ec2dbn's stacks rather than pytest's.
    code, lines, err = run_cli(args, env, on_line, timeout_s=270)
    return Outcome(code, "\n".join(text for _, text in lines), err, results)


def leftovers(aws: MotoServer) -> str:
    left = tagged_resources(aws)
    return "; ".join(f"{kind}: {', '.join(ids)}" for kind, ids in left.items() if ids) or "none"


def check_row(fault: str, outcome: Outcome, aws: MotoServer, code: int, *phrases: str) -> Outcome:
    """Record the row, then assert: exit code, one outcome line with every phrase, no traceback, and
    nothing ec2dbn-tagged left in AWS."""
    try:
        message = outcome.message
    except AssertionError:
        message = "(no single outcome line)"
    left = leftovers(aws)
    MATRIX.append(Row(fault, outcome.code, message.removeprefix("error: "), left))
    assert outcome.code == code, outcome.err[-3000:]
    # ec2dbn's own traceback starts a line (a quoted remote one, like the trainer's, is inside the message)
    assert not re.search(r"^Traceback", outcome.err, re.MULTILINE), outcome.err[-3000:]
    line = outcome.message
    for phrase in phrases:
        assert phrase.lower() in line.lower(), f"{phrase!r} not in {line!r}"
    assert left == "none", f"ec2dbn-tagged resources remain: {left}"
    return outcome


def all_instances(aws: MotoServer) -> list[dict[str, Any]]:
    """Every ec2dbn instance moto ever ran in this test (terminated included)."""
    flt = [{"Name": "tag:ec2dbn:managed", "Values": ["true"]}]
    pages = aws.client("ec2", REGION).describe_instances(Filters=flt)["Reservations"]
    return [i for r in pages for i in r["Instances"]]


def offered_zones(aws: MotoServer) -> list[str]:
    resp = aws.client("ec2", REGION).describe_instance_type_offerings(
        LocationType="availability-zone", Filters=[{"Name": "instance-type", "Values": [TYPE]}]
    )
    return sorted(o["Location"] for o in resp["InstanceTypeOfferings"])


def is_spot(params: dict[str, Any]) -> bool:
    return "InstanceMarketOptions" in params


# ----------------------------------------------------------------------------------------- the checks


def test_tagged_resources_sees_open_spot_requests(aws: MotoServer) -> None:
    """The leftover check itself: a tagged open spot request counts until it is cancelled."""
    ec2 = aws.client("ec2", REGION)
    tags = [{"Key": "ec2dbn:managed", "Value": "true"}, {"Key": "ec2dbn:stack", "Value": "e2e"}]
    (req,) = ec2.request_spot_instances(
        LaunchSpecification={"ImageId": aws.images[(REGION, "ubuntu22")], "InstanceType": TYPE},
        TagSpecifications=[{"ResourceType": "spot-instances-request", "Tags": tags}],
    )["SpotInstanceRequests"]
    rid = req["SpotInstanceRequestId"]
    assert rid in tagged_resources(aws)["spot_requests"]
    ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=[rid])
    assert rid not in tagged_resources(aws)["spot_requests"]
    for inst in all_instances(aws):  # moto fulfils the request at once: end its instance too
        ec2.terminate_instances(InstanceIds=[inst["InstanceId"]])
    assert not any(tagged_resources(aws).values())


@dataclass(frozen=True)
class LaunchFault:
    """A RunInstances refusal, for spot calls only or for every call, and what the user must see."""

    id: str
    label: str
    code: str
    spot_only: bool
    stack: dict[str, Any]
    exit_code: int
    phrases: tuple[str, ...] = ()


LAUNCH_FAULTS = [
    LaunchFault(
        "capacity-everywhere",
        "InsufficientInstanceCapacity in every AZ, spot and on-demand",
        "InsufficientInstanceCapacity",
        False,
        {},
        1,
        ("no capacity in us-east-1",),
    ),
    LaunchFault(
        "spot-quota-fallback",
        "MaxSpotInstanceCountExceeded, fallback on-demand",
        "MaxSpotInstanceCountExceeded",
        True,
        {},
        0,
    ),
    LaunchFault(
        "spot-quota-no-fallback",
        "MaxSpotInstanceCountExceeded, fallback none",
        "MaxSpotInstanceCountExceeded",
        True,
        {"fallback": "none"},
        1,
        ("us-east-1", "L-3819A6DF"),
    ),
    LaunchFault(
        "vcpu-quota",
        "VcpuLimitExceeded (on-demand stack)",
        "VcpuLimitExceeded",
        False,
        {"market": "on-demand"},
        1,
        ("us-east-1", "L-DB2E81BA", "Running On-Demand G and VT instances"),
    ),
    LaunchFault(
        "spot-price-fallback",
        "SpotMaxPriceTooLow, fallback on-demand",
        "SpotMaxPriceTooLow",
        True,
        {},
        0,
    ),
    LaunchFault(
        "spot-price-no-fallback",
        "SpotMaxPriceTooLow, fallback none",
        "SpotMaxPriceTooLow",
        True,
        {"fallback": "none"},
        1,
        ("spot price is above max_price",),
    ),
]


@pytest.mark.parametrize("f", LAUNCH_FAULTS, ids=lambda f: f.id)
def test_launch_refusals(
    f: LaunchFault, fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path, capsys
) -> None:
    zones = offered_zones(aws)
    assert len(zones) > 1, "the fallback across zones needs several zones"
    inj = inject_error(
        "RunInstances", f.code, "injected refusal", times=None, when=is_spot if f.spot_only else None
    )
    stack = write_stack(tmp_path, remote_dir=str(instance_disk), **f.stack)
    outcome = check_row(
        f.label, train(tmp_path, stack, job_file(tmp_path, f.id), capsys), aws, f.exit_code, *f.phrases
    )

    launched = all_instances(aws)
    if f.exit_code == 0:  # fell back: trained on an on-demand instance
        assert outcome.record["market"] == "on-demand" and outcome.record["status"] == "finished"
        assert (outcome.run_dir / "metrics.json").is_file()
        assert "falling back to on-demand" in outcome.err
        (inst,) = launched
        assert inst.get("InstanceLifecycle") != "spot"
    else:  # refused: nothing ran, and the key pair and security group made for it are gone again
        assert launched == []
        assert outcome.record["status"] == "failed" and outcome.record["exit_code"] == 1
    if f.code == "InsufficientInstanceCapacity":
        assert inj.injected == inj.calls == 2 * len(zones)  # every zone, spot then on-demand
    else:  # a quota or price refusal is not retried zone by zone: one spot try, then on-demand
        assert inj.injected == 1
        assert inj.calls == (2 if f.exit_code == 0 else 1)


def test_request_limit_bursts_are_retried(
    fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path, capsys
) -> None:
    run = inject_http_error("RunInstances", "RequestLimitExceeded", "Request limit exceeded.", times=3)
    describe = inject_http_error(
        "DescribeInstances", "RequestLimitExceeded", "Request limit exceeded.", times=2
    )
    stack = write_stack(tmp_path, remote_dir=str(instance_disk))
    outcome = check_row(
        "RequestLimitExceeded bursts (3 RunInstances, 2 DescribeInstances)",
        train(tmp_path, stack, job_file(tmp_path, "throttled"), capsys),
        aws,
        0,
        "finished",
    )
    assert (run.injected, describe.injected) == (3, 2)
    assert run.calls == 4  # three throttled sends, then the one that reached EC2
    assert len(all_instances(aws)) == 1  # retried with one ClientToken: one instance, not four
    assert outcome.record["market"] == "spot"


def test_security_group_dependency_violation_is_retried(
    fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path, capsys
) -> None:
    inj = inject_http_error(
        "DeleteSecurityGroup",
        "DependencyViolation",
        "resource sg-x has a dependent object",
        times=3,
        status=400,
    )
    stack = write_stack(tmp_path, remote_dir=str(instance_disk))
    outcome = check_row(
        "DependencyViolation on the first 3 DeleteSecurityGroup",
        train(tmp_path, stack, job_file(tmp_path, "sgretry"), capsys),
        aws,
        0,
        "finished",
    )
    assert (inj.injected, inj.calls) == (3, 4)
    assert "still in use; retrying" in outcome.err
    assert (
        aws.client("ec2", REGION).describe_security_groups(
            Filters=[{"Name": "group-name", "Values": ["ec2dbn-e2e"]}]
        )["SecurityGroups"]
        == []
    )


def test_ssh_never_comes_up(
    fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    fake_cloud.boot = False
    monkeypatch.setenv("EC2DBN_SSH_TIMEOUT", "5")
    stack = write_stack(tmp_path, remote_dir=str(instance_disk))
    outcome = check_row(
        "SSH never comes up (timeout 5 s)",
        train(tmp_path, stack, job_file(tmp_path, "nossh"), capsys),
        aws,
        1,
        "did not become reachable within 5s",
    )
    assert len(all_instances(aws)) == 1  # launched once, not relaunched in a loop
    assert "bootstrap" not in outcome.record["phases"]


def test_host_key_mismatch(fake_cloud, aws: MotoServer, tmp_path: Path, capsys) -> None:
    fake_cloud.wrong_host_key = True
    fresh_disk = tmp_path / "impostor-home" / "ec2dbn"
    stack = write_stack(tmp_path, remote_dir=str(fresh_disk))
    check_row(
        "host key mismatch (an impostor sshd)",
        train(tmp_path, stack, job_file(tmp_path, "impostor"), capsys),
        aws,
        1,
        "host key",
        "nothing was run on it",
    )
    assert not fresh_disk.parent.exists()  # no bootstrap upload, no job: nothing ran on the impostor


def test_bootstrap_script_fails(
    fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    # The real scripts, with check.sh failing at its end as a broken image would make it fail.
    scripts = tmp_path / "bootstrap"
    shutil.copytree(
        package_data.bootstrap_dir(), scripts, ignore=shutil.ignore_patterns("__pycache__", "*.py")
    )
    check = scripts / "check.sh"
    check.write_text(check.read_text() + 'echo "check: injected failure" >&2\nexit 7\n')
    monkeypatch.setattr("ec2dbn.ssh.bootstrap.bootstrap_dir", lambda: scripts)
    stack = write_stack(tmp_path, remote_dir=str(instance_disk))
    outcome = check_row(
        "bootstrap script fails (check.sh exits 7)",
        train(tmp_path, stack, job_file(tmp_path, "badboot"), capsys),
        aws,
        1,
        "bootstrap script check.sh failed with exit code 7",
        "[check] python: ",  # the script's last lines, verbatim
        "check: injected failure",
    )
    assert "run" not in outcome.record["phases"]  # the trainer never started
    assert "check.sh failed with exit code 7" in (outcome.run_dir / "bootstrap.log").read_text()


def test_trainer_crashes(
    fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    broken = tmp_path / "broken" / "trainer"
    shutil.copytree(package_data.trainer_dir(), broken, ignore=shutil.ignore_patterns("__pycache__"))
    (broken / "__main__.py").write_text(
        'print("Epoch 1:  loss 2.0  err 0.5  (0:00:01)", flush=True)\n'
        'raise RuntimeError("injected crash in the trainer")\n'
    )
    monkeypatch.setattr("ec2dbn.run.instance_files.trainer_dir", lambda: broken)
    stack = write_stack(tmp_path, remote_dir=str(instance_disk))
    outcome = check_row(
        "the trainer crashes",
        train(tmp_path, stack, job_file(tmp_path, "crash"), capsys),
        aws,
        1,
        "the trainer failed (exit 1",
        "injected crash in the trainer",
        "Epoch 1:",
    )
    assert outcome.record["status"] == "failed" and "teardown" in outcome.record["phases"]


def _remote_run(disk: Path, run_id: str) -> Path:
    return disk / "runs" / run_id


def test_sigint_mid_training_stops_the_trainer(
    fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path
) -> None:
    sent: list[float] = []

    def interrupt(proc: subprocess.Popen[str], line: str) -> None:
        if line.startswith(HELD) and not sent:
            proc.send_signal(signal.SIGINT)  # ec2dbn only: the trainer runs in its own session remotely
            sent.append(time.time())

    epochs = 4
    stack = write_stack(tmp_path, remote_dir=str(instance_disk))
    # Held after epoch 1 (never released): ec2dbn's stop is what ends it, however fast the CPU.
    with hold_on_the_instance(fake_cloud, tmp_path, epoch=2) as hold:
        outcome = check_row(
            "SIGINT to ec2dbn after the first epoch",
            train_process(tmp_path, stack, job_file(tmp_path, "sigint", epochs), interrupt),
            aws,
            130,
            "interrupted",
        )
    assert sent
    record = outcome.record
    assert record["status"] == "interrupted" and record["exit_code"] == 130
    assert "teardown" in record["phases"]
    # The remote trainer was stopped (SIGTERM → checkpoint → exit 3), not left running or killed.
    remote = _remote_run(instance_disk, record["run_id"])
    assert (remote / "job.exit").read_text().strip() == "3"
    assert f"stopped by SIGTERM at {hold.position};" in (remote / "job.log").read_text()
    done = [json.loads(x) for x in (remote / "out" / "metrics.jsonl").read_text().splitlines() if x]
    assert [r["epoch"] for r in done] == [1]
    # ...and the checkpoint it wrote on the way out is the one pulled into results/<run-id>/.
    pulled = outcome.run_dir / "checkpoint.npz"
    assert pulled.read_bytes() == (remote / "out" / "checkpoint.npz").read_bytes()
    assert "stopped by SIGTERM" in (outcome.run_dir / "job.log").read_text()
    assert "stopped by SIGTERM" in outcome.out  # the user saw where it stopped
    # ...and the command that continues it (issue 27).
    resume = f"continue it with ec2dbn train --resume {record['run_id']} --results {outcome.results}"
    assert resume in outcome.err.splitlines()


def test_a_connection_wedged_by_an_interrupt_is_abandoned(sshd: SshServer) -> None:
    """Row 11's hazard, made deterministic. A KeyboardInterrupt landing between paramiko's
    `clear_to_send_lock.acquire()` and its `try:` leaves that lock held: every later send on the
    connection (a command, a channel close, the keepalive) blocks forever, close() included. That is
    how Ctrl-C once hung `ec2dbn train`; TrainFlow now abandons such a connection and opens a new one."""
    remote = sshd_remote(sshd)
    assert remote.run("echo one").stdout.strip() == "one"
    transport = remote._connected().get_transport()
    assert transport is not None
    transport.clear_to_send_lock.acquire()  # what the interrupt leaves behind
    try:
        stuck = threading.Thread(target=remote.run, args=("true",), daemon=True)
        stuck.start()
        stuck.join(2.0)
        assert stuck.is_alive(), "a command on the wedged connection should never get out"
        remote.abandon()
        got: list[str] = []
        fresh = threading.Thread(target=lambda: got.append(remote.run("echo two").stdout), daemon=True)
        fresh.start()
        fresh.join(20.0)
        assert got == ["two\n"], "no command got through after abandon()"
        assert remote._connected().get_transport() is not transport  # a new connection
    finally:
        transport.clear_to_send_lock.release()
        stuck.join(5.0)
        transport.close()
        remote.close()


def test_state_dir_deleted_mid_run(fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path) -> None:
    home = Path(os.environ["EC2DBN_HOME"])
    deleted: list[float] = []

    def delete_home(proc: subprocess.Popen[str], line: str) -> None:
        if line.startswith(HELD) and not deleted:
            assert (home / "stacks" / "e2e" / "id_ed25519").is_file()
            shutil.rmtree(home)
            deleted.append(time.time())
            hold.release()

    epochs = 4
    stack = write_stack(tmp_path, remote_dir=str(instance_disk))
    # The SSH connection is open and the key is in memory: the job finishes; teardown finds all by tags.
    # The trainer is held after epoch 1 until the folder is gone, so the deletion lands mid-run.
    with hold_on_the_instance(fake_cloud, tmp_path, epoch=2) as hold:
        outcome = check_row(
            "state dir ($EC2DBN_HOME) deleted after the first epoch",
            train_process(tmp_path, stack, job_file(tmp_path, "nohome", epochs), delete_home),
            aws,
            0,
            "finished",
        )
    assert deleted
    remote = _remote_run(instance_disk, outcome.record["run_id"])
    assert (remote / "job.exit").stat().st_mtime > deleted[0], "training had ended before the deletion"
    epochs_seen = [line for line in outcome.out.splitlines() if line.startswith("Epoch ")]
    assert len(epochs_seen) == epochs
    assert outcome.record["status"] == "finished"
    assert not (home / "stacks" / "e2e").exists()  # no half-written state resurrected


# Row 12: issue 5's "done when" — a spot interruption mid-epoch survived with identical final weights.
def test_spot_interruption_mid_epoch_resumes_on_a_new_instance_with_identical_weights(
    fake_cloud, aws, tmp_path: Path
) -> None:
    fake_cloud.with_imds = True
    stack = write_stack(tmp_path)
    job = write_job(tmp_path, epochs=4)
    results = tmp_path / "results"
    announced: list[str] = []

    def announce_when_held(_proc: subprocess.Popen[str], line: str) -> None:
        if not announced and line.startswith(HELD):
            announced.append(fake_cloud.booted[0])
            fake_cloud.imds[announced[0]].announce_spot_interruption(action="terminate", in_seconds=120)
        elif line.startswith("stopped by SIGTERM"):
            hold.release()  # the next instance resumes past the point anyway; no file left behind

    # Held mid-epoch 2 until the notice (polled every 2 s on the instance) has stopped it, however fast
    # the CPU: the checkpoint is mid-epoch, at a known minibatch.
    with hold_on_the_instance(fake_cloud, tmp_path, epoch=2, minibatch=3) as hold:
        code, lines, err = run_cli(
            ["train", str(job), "--stack", str(stack), "--results", str(results)],
            dict(os.environ),
            on_line=announce_when_held,
        )
    outcome = [s for s in err.splitlines() if s.startswith(("finished", "failed", "error"))]
    MATRIX.append(
        Row(
            "spot interruption mid-epoch (notice via IMDSv2)",
            code,
            outcome[-1] if outcome else "",
            leftovers(aws),
        )
    )
    assert code == 0, err[-4000:]
    assert announced

    # Two instances: the interrupted one and the one that finished the job.
    assert len(fake_cloud.booted) == 2 and fake_cloud.booted[0] == announced[0]
    assert any(text.startswith("Spot interruption notice") for _, text in lines)
    assert any(text.startswith(f"stopped by SIGTERM at {hold.position};") for _, text in lines)
    (run_dir,) = results.iterdir()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished"
    (recovery,) = record["recoveries"]
    assert recovery["instance_id"] == announced[0] and "spot interruption" in recovery["reason"]
    assert recovery["checkpoint"] is True
    assert record["instance_id"] == fake_cloud.booted[1]
    assert len(record["segments"]) == 2
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, 5))
    nothing_left(aws)

    # The same job, uninterrupted, here with the instance's environment: bitwise the same weights.
    local_dir = train_locally_as_on_the_instance(job, tmp_path / "local")
    with np.load(run_dir / "model.npz") as a, np.load(local_dir / "model.npz") as b:
        weights = [k for k in a.files if a[k].dtype.kind == "f"]
        assert weights
        for key in weights:
            np.testing.assert_array_equal(a[key], b[key])


# ---------------------------------------------------------------------------- issue 13: the one pipeline


@pytest.fixture
def phase_hook(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[str], None]], None]:
    """Install a callable told each pipeline phase as it starts (ec2dbn.run.pipeline.PHASE_HOOKS)."""
    from ec2dbn.run import pipeline

    hooks: list[Callable[[str], None]] = []
    monkeypatch.setattr(pipeline, "PHASE_HOOKS", hooks)
    return hooks.append


def running_instances(aws: MotoServer) -> list[str]:
    return [i["InstanceId"] for i in all_instances(aws) if i["State"]["Name"] in ("pending", "running")]


FAULT_PHASES = ("plan", "provision", "connect", "bootstrap", "ship", "run", "follow", "pull")


@pytest.mark.parametrize("phase", FAULT_PHASES)
def test_an_unexpected_exception_in_any_phase_tears_down(
    phase: str, phase_hook, fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path, capsys
) -> None:
    """A bug (a plain RuntimeError, not one of ec2dbn's errors) at the start of each phase in turn: one
    error line, exit 1, nothing tagged left, and a final run.json that says failed."""

    def bug(name: str) -> None:
        if name == phase:
            raise RuntimeError(f"injected bug at the start of {phase}")

    phase_hook(bug)
    stack = write_stack(tmp_path, remote_dir=str(instance_disk))
    outcome = check_row(
        f"unexpected RuntimeError at the start of {phase}",
        train(tmp_path, stack, job_file(tmp_path, f"bug-{phase}"), capsys),
        aws,
        1,
        "unexpected RuntimeError",
        f"injected bug at the start of {phase}",
    )
    record = outcome.record
    assert (record["status"], record["exit_code"]) == ("failed", 1)
    assert ("teardown" in record["phases"]) == (phase != "plan")  # nothing to remove before provisioning
    assert record["recoveries"] == []  # the instance was still running: a real failure, not a loss


@pytest.mark.parametrize("phase", ("connect", "bootstrap", "ship", "run"))
def test_an_instance_lost_in_any_phase_is_recovered(
    phase: str, phase_hook, fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path, capsys
) -> None:
    """EC2 takes the instance back just as a phase starts (the fake cloud powers it off: its sshd and
    every session die; EC2 says so a little later): the run recovers on a new instance and finishes."""
    lost: list[str] = []

    def reclaim(name: str) -> None:
        if name == phase and not lost:
            lost.extend(running_instances(aws))
            for iid in lost:
                fake_cloud.reclaim(iid, describe_lag_s=EC2_DESCRIBE_LAG_S)  # EC2 says so a little later

    phase_hook(reclaim)
    stack = write_stack(tmp_path, remote_dir=str(instance_disk))
    outcome = check_row(
        f"instance lost at the start of {phase}",
        train(tmp_path, stack, job_file(tmp_path, f"lost-{phase}", epochs=2), capsys),
        aws,
        0,
        "finished",
    )
    (recovery,) = outcome.record["recoveries"]
    assert recovery["instance_id"] == lost[0] and "went away" in recovery["reason"]
    assert outcome.record["instance_id"] not in lost
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]


def test_ssh_silent_while_ec2_says_running_is_a_failure_not_a_loss(
    phase_hook, fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """The other side of EC2's lag: the instance's sshd dies as ship starts and EC2 goes on saying the
    instance runs. Once the settle wait is over the ship's own error stands: exit 1, no recovery, no
    second instance, nothing left."""
    monkeypatch.setattr(instance_fate, "SETTLE_S", 3.0)
    silenced: list[str] = []

    def silence(name: str) -> None:
        if name == "ship" and not silenced:
            silenced.extend(running_instances(aws))
            for iid in silenced:
                fake_cloud.servers[iid].stop()  # sshd gone; the machine, for EC2, still running

    phase_hook(silence)
    stack = write_stack(tmp_path, remote_dir=str(instance_disk))
    outcome = check_row(
        "SSH silent while EC2 says running",
        train(tmp_path, stack, job_file(tmp_path, "silent"), capsys),
        aws,
        1,
        "127.0.0.1",
    )
    assert len(silenced) == 1
    assert outcome.record["recoveries"] == [] and outcome.record["status"] == "failed"
    assert len(all_instances(aws)) == 1
    assert "waiting for SSH" in outcome.err  # the settle wait said what it waited for


def reclaim_at_launch(aws: MotoServer, times: int) -> list[str]:
    """Make EC2 take back the first `times` instances the moment RunInstances returns them (before they
    ever run: spot capacity reclaimed at once). Returns the ids taken, as they are."""
    taken: list[str] = []

    def after_run(parsed: dict[str, Any], **_: Any) -> None:
        if len(taken) < times:
            ids = [i["InstanceId"] for i in parsed.get("Instances", [])]
            taken.extend(ids)
            aws.client("ec2", REGION).terminate_instances(InstanceIds=ids)

    add_hook("after-call.ec2.RunInstances", after_run)
    return taken


@pytest.mark.parametrize("times", (1, 2), ids=("before-running", "replacement-reclaimed-too"))
def test_an_instance_lost_before_it_runs_is_recovered(
    times: int, fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path, capsys
) -> None:
    taken = reclaim_at_launch(aws, times)
    stack = write_stack(tmp_path, remote_dir=str(instance_disk))
    label = "instance lost before running" if times == 1 else "its replacement lost before running too"
    outcome = check_row(
        label, train(tmp_path, stack, job_file(tmp_path, f"gone-{times}"), capsys), aws, 0, "finished"
    )
    assert len(taken) == times
    assert [r["instance_id"] for r in outcome.record["recoveries"]] == taken
    assert outcome.record["instance_id"] not in taken
    assert len(all_instances(aws)) == times + 1


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)], ids=("TERM", "HUP")
)
def test_sigterm_and_sighup_end_like_ctrl_c(
    signum: int, code: int, fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path
) -> None:
    """`kill` or a closed terminal (SIGHUP) mid-run: the trainer checkpoints, results are pulled, the stack
    is torn down, and run.json ends `interrupted` with 128 + the signal number."""
    sent: list[int] = []

    def stop(proc: subprocess.Popen[str], line: str) -> None:
        if line.startswith(HELD) and not sent:
            proc.send_signal(signum)
            sent.append(signum)

    name = signal.Signals(signum).name
    stack = write_stack(tmp_path, remote_dir=str(instance_disk))
    with hold_on_the_instance(fake_cloud, tmp_path, epoch=2):
        outcome = check_row(
            f"{name} to ec2dbn after the first epoch",
            train_process(tmp_path, stack, job_file(tmp_path, f"sig{name.lower()}", 4), stop),
            aws,
            code,
            "interrupted",
            name,
        )
    record = outcome.record
    assert (record["status"], record["exit_code"]) == ("interrupted", code)
    assert "teardown" in record["phases"]
    remote = _remote_run(instance_disk, record["run_id"])
    assert (remote / "job.exit").read_text().strip() == "3"  # stopped after its checkpoint, not killed
    assert (outcome.run_dir / "checkpoint.npz").read_bytes() == (
        remote / "out" / "checkpoint.npz"
    ).read_bytes()


def other_terminal(*args: str, **env: str) -> tuple[int, str]:
    """`ec2dbn ARGS` run as a second process, as from another terminal: (exit code, stderr)."""
    code, _lines, err = run_cli(list(args), {**os.environ, **env}, timeout_s=200)
    return code, err


def test_a_teardown_from_another_terminal_stops_the_run_without_relaunching(
    fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path
) -> None:
    torn: list[tuple[int, str]] = []

    def tear_down(_proc: subprocess.Popen[str], line: str) -> None:
        if line.startswith(HELD) and not torn:
            torn.append(other_terminal("teardown", "e2e", "--yes"))

    stack = write_stack(tmp_path, remote_dir=str(instance_disk))
    with hold_on_the_instance(fake_cloud, tmp_path, epoch=2):
        outcome = check_row(
            "`ec2dbn teardown` from another terminal during the run",
            train_process(tmp_path, stack, job_file(tmp_path, "torn", 4), tear_down),
            aws,
            1,
            "was torn down by `ec2dbn teardown`",
            "not relaunching",
        )
    assert torn and torn[0][0] == 0, torn
    assert len(fake_cloud.booted) == 1  # a deliberate end is not a spot loss: nothing relaunched
    record = outcome.record
    assert (record["status"], record["recoveries"]) == ("torn-down", [])
    assert (outcome.run_dir / "checkpoint.npz").is_file()  # what was copied back before the end stays


def test_a_second_train_on_a_busy_stack_is_refused(
    fake_cloud, aws: MotoServer, instance_disk: Path, tmp_path: Path
) -> None:
    """While run A trains, run B on the same stack is refused — from this machine (the local lease) and
    from another one with no state dir (the instance's `ec2dbn:run` tag) — and A finishes undisturbed."""
    second: list[tuple[int, str]] = []
    stack = write_stack(tmp_path, remote_dir=str(instance_disk))
    job_b = job_file(tmp_path, "second", 1)
    hold = hold_on_the_instance(fake_cloud, tmp_path, epoch=2)

    def try_second(_proc: subprocess.Popen[str], line: str) -> None:
        if line.startswith(HELD) and not second:
            results = str(tmp_path / "results-b")
            second.append(other_terminal("train", str(job_b), "--stack", str(stack), "--results", results))
            elsewhere = str(tmp_path / "another-machine")
            second.append(
                other_terminal(
                    "train", str(job_b), "--stack", str(stack), "--results", results, EC2DBN_HOME=elsewhere
                )
            )
            hold.release()

    with hold:
        outcome = check_row(
            "a second `train` on the busy stack",
            train_process(tmp_path, stack, job_file(tmp_path, "first", 3), try_second),
            aws,
            0,
            "finished",
        )
    run_id = outcome.record["run_id"]
    assert [code for code, _ in second] == [2, 2], second
    for _, err in second:
        (line,) = [x for x in err.splitlines() if x.startswith("error:")]
        assert f"stack e2e is in use by run {run_id}" in line and "--name" in line
    assert len(fake_cloud.booted) == 1
    assert [e["epoch"] for e in json.loads((outcome.run_dir / "metrics.json").read_text())["epochs"]] == [
        1,
        2,
        3,
    ]
    assert not (tmp_path / "results-b").exists() or not any((tmp_path / "results-b").iterdir())


def test_two_runs_of_one_job_started_together_get_their_own_folders(tmp_path: Path) -> None:
    """Two `train --local` of the same job at the same moment: two run folders, neither run's files mixed
    into the other's (the remote run folder takes the same unique id)."""
    job = job_file(tmp_path, "twin", 2)
    results = tmp_path / "results"
    codes: list[int] = []
    runs = [
        threading.Thread(
            target=lambda: codes.append(
                run_cli(["train", "--local", str(job), "--results", str(results)], dict(os.environ))[0]
            )
        )
        for _ in range(2)
    ]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert codes == [0, 0]
    folders = sorted(results.iterdir())
    assert len(folders) == 2
    for folder in folders:
        epochs = [json.loads(x)["epoch"] for x in (folder / "metrics.jsonl").read_text().splitlines() if x]
        assert epochs == [1, 2]
        assert json.loads((folder / "run.json").read_text())["status"] == "finished"
