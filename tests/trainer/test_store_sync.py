"""The uploader (trainer.store_sync) as on an instance: the composed line (trainer.sidecars) run by bash in a
run's workdir, a real trainer, the real uploader with boto3's own credential chain reading a role's
credentials (moto STS AssumeRole) from a fake IMDSv2, S3/EC2 served by moto through a proxy a test can cut.

Files land under the run prefix equal to the local ones, sync.json last with the trainer's exit code; a
store cut mid-run costs the training nothing (uploads fail, then work again, the final sync is verified);
cut for good, the uploader exits 1 and terminates nothing; a detached run's instance terminates itself
through the EC2 API; the line exits with the trainer's code; the trainer never imports boto3.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.exceptions import NoCredentialsError

from tests.support.fake_cloud import EC2_TRUST_POLICY, assume_role_credentials
from tests.support.fake_imds import FakeImds
from tests.support.hold import HELD, TrainerHold
from tests.support.moto_server import ACCOUNT_ID, MotoServer
from tests.support.tcp_proxy import TcpProxy
from tests.trainer.trainer_fixtures import REPO, trainer_env, write_job
from trainer.contract import STORE_MANIFEST, STORE_RECOVERED_MARKER, STORE_RETRY_MARKER
from trainer.sidecars import EXIT_CODE_FILE, StoreTarget, shell_command
from trainer.spot_watch import shell_command as spot_shell_command

REGION = "us-east-1"
BUCKET = f"ec2dbn-runs-{ACCOUNT_ID}-{REGION}"
PREFIX = "team/runs/r-0001/"  # a store prefix ("team/") + runs/<run-id>/
MODEL = dict(layers=[64, 48, 10], learn_rates=0.3, learn_rate_decays=0.9, epochs=5, minibatch_size=32)
ROLE = "ec2dbn-test-us-east-1"


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits data as an .npz (each trainer process then skips importing scikit-learn)."""
    datasets = pytest.importorskip("sklearn.datasets")
    path = tmp_path_factory.mktemp("store-data") / "digits.npz"
    data = datasets.load_digits()
    np.savez(path, X=(data.data / 16.0).astype(np.float32), y=data.target)
    return path


@dataclass
class Instance:
    """A fake instance: a real moto instance id, its IMDS serving that id and its role's credentials, and
    the proxy through which it reaches the store."""

    instance_id: str
    imds: FakeImds
    proxy: TcpProxy
    moto: MotoServer
    #: True: the endpoints come as AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL_EC2 instead of AWS_ENDPOINT_URL.
    per_service_endpoints: bool = False

    def env(self) -> dict[str, str]:
        """What the job's processes see: no keys, boto3 pointed at the IMDS and (through the proxy) moto."""
        env = {k: v for k, v in trainer_env().items() if not k.startswith("AWS_")}
        services = ("_S3", "_EC2") if self.per_service_endpoints else ("",)
        return env | {
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.imds.url,
            "EC2DBN_IMDS_URL": self.imds.url,
            **{f"AWS_ENDPOINT_URL{service}": self.proxy.url for service in services},
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def state(self) -> str:
        ec2 = self.moto.client("ec2", REGION)
        return ec2.describe_instances(InstanceIds=[self.instance_id])["Reservations"][0]["Instances"][0][
            "State"
        ]["Name"]


@pytest.fixture
def instance(aws: MotoServer) -> Iterator[Instance]:
    s3, ec2, iam = aws.client("s3", REGION), aws.client("ec2", REGION), aws.client("iam", REGION)
    s3.create_bucket(Bucket=BUCKET)
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(EC2_TRUST_POLICY), Path="/ec2dbn/")
    image = aws.images[(REGION, "ubuntu22")]
    iid = ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1)["Instances"][0][
        "InstanceId"
    ]
    role = iam.get_role(RoleName=ROLE)["Role"]["Arn"]
    imds = FakeImds(instance_id=iid, credentials=assume_role_credentials(aws, role, iid, REGION))
    host, port = aws.url.removeprefix("http://").split(":")
    proxy = TcpProxy(host, int(port))
    try:
        yield Instance(iid, imds, proxy, aws)
    finally:
        proxy.stop()
        imds.stop()


def workdir_with_job(tmp_path: Path, digits: Path, **model: object) -> Path:
    """A run's workdir as ec2dbn ships it: job.yaml (the data named by path), out/ made by the trainer."""
    work = tmp_path / "run"
    work.mkdir()
    write_job(work / "job.yaml", {"name": str(digits)}, {**MODEL, **model}, backend="numpy")
    return work


def start_line(
    work: Path, instance: Instance, target: StoreTarget, hold: TrainerHold | None = None
) -> subprocess.Popen[bytes]:
    """The composed line under bash in `work`, its output appended to job.log as the detached wrapper does."""
    line = shell_command(shlex.quote(sys.executable), "job.yaml --out out", "out", interval=0.2, store=target)
    with open(work / "job.log", "ab") as log:
        return subprocess.Popen(
            ["bash", "-c", line],
            cwd=work,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=instance.env() | (hold.env if hold else {}) | {"PYTHONPATH": str(REPO)},
            start_new_session=True,  # its own process group, as the detached wrapper's setsid gives
        )


def finish(proc: subprocess.Popen[bytes], timeout: float = 300) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def wait_for(condition: Callable[[], object], what: str, timeout: float = 120) -> None:
    """Until `condition()` is true; generous, since the machine may be busy (nothing here is a timing)."""
    give_up = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < give_up, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)


def log_text(work: Path) -> str:
    return (work / "job.log").read_text(errors="replace")


def store_objects(moto: MotoServer) -> dict[str, bytes]:
    """Every object under the run prefix, read with plain boto3 (test credentials): {relative key: bytes}."""
    s3 = moto.client("s3", REGION)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX).get("Contents", [])]
    return {k[len(PREFIX) :]: s3.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def assert_store_has_the_run(work: Path, moto: MotoServer, exit_code: int) -> dict:
    """Each local file (job.yaml, job.log, every file of out/) is in the store byte for byte, and sync.json
    names exactly those with their size and MD5 and the exit code. Returns the manifest."""
    objects = store_objects(moto)
    manifest = json.loads(objects.pop(STORE_MANIFEST))
    local = {"job.yaml": work / "job.yaml", **{f"out/{p.name}": p for p in (work / "out").iterdir()}}
    for name, path in local.items():
        assert objects.get(name) == path.read_bytes(), name
    # job.log is the one file still written after the final sync (by the line itself): a prefix of it.
    assert (work / "job.log").read_bytes().startswith(objects["job.log"])
    assert set(manifest["files"]) == set(objects) == set(local) | {"job.log"}
    for name, entry in manifest["files"].items():
        assert entry == {"size": len(objects[name]), "md5": hashlib.md5(objects[name]).hexdigest()}, name
    assert manifest["exit_code"] == exit_code
    return manifest


# -------------------------------------------------------------------------------------------- the runs


def test_a_run_lands_in_the_store_and_sync_json_is_written_last(
    tmp_path: Path, digits: Path, instance: Instance
) -> None:
    work = workdir_with_job(tmp_path, digits)
    code = finish(start_line(work, instance, StoreTarget(BUCKET, PREFIX, REGION, interval=0.5)))
    log = log_text(work)
    assert code == 0, log
    manifest = assert_store_has_the_run(work, instance.moto, 0)
    assert manifest["status"] == "finished" and manifest["instance_id"] == instance.instance_id
    assert {"out/model.npz", "out/checkpoint.npz", "out/metrics.jsonl", "out/train.log"} <= set(
        manifest["files"]
    )
    assert "store: final sync verified (" in log and f"in s3://{BUCKET}/{PREFIX}" in log, log
    assert STORE_RETRY_MARKER not in log and "Traceback" not in log
    # The proxy saw every PUT: job.yaml first, sync.json last (and once). How many checkpoints went out
    # while training depends on the machine's speed; that they go out at all is the next tests' business.
    puts = [path for method, path in instance.proxy.requests if method == "PUT"]
    assert puts[0].endswith(f"/{PREFIX}job.yaml") and puts[-1].endswith(f"/{PREFIX}{STORE_MANIFEST}"), puts
    assert sum(p.endswith(STORE_MANIFEST) for p in puts) == 1
    assert instance.state() == "running"  # not asked to terminate
    # boto3 got its credentials from IMDS (IMDSv2 throughout): the role name, then the role's document.
    gets = [r.path for r in instance.imds.metadata_gets()]
    assert "/latest/meta-data/iam/security-credentials/" in gets
    assert all(r.token == "valid" for r in instance.imds.metadata_gets())
    assert not (work / EXIT_CODE_FILE).with_suffix(".tmp").exists()


def test_a_stop_saves_the_checkpoint_and_the_line_exits_with_the_trainers_code(
    tmp_path: Path, digits: Path, instance: Instance
) -> None:
    """SIGTERM to the job's process group (what `stop_job` sends): the trainer checkpoints and exits 3, the
    uploader survives the signal and still puts that checkpoint in the store; the line exits 3."""
    work = workdir_with_job(tmp_path, digits, epochs=30)
    with TrainerHold(tmp_path / "hold", 2, 3) as hold:
        proc = start_line(work, instance, StoreTarget(BUCKET, PREFIX, REGION), hold)
        wait_for(lambda: HELD in log_text(work), "the trainer to be held mid-epoch 2")
        os.killpg(proc.pid, signal.SIGTERM)
        code = finish(proc)
    log = log_text(work)
    assert code == 3, log
    manifest = assert_store_has_the_run(work, instance.moto, 3)
    assert manifest["status"] == "interrupted" and "out/checkpoint.npz" in manifest["files"]
    assert "Traceback" not in log


def test_a_spot_notice_gets_its_checkpoint_and_record_into_the_store(
    tmp_path: Path, digits: Path, instance: Instance
) -> None:
    """The two-minute notice: the watcher records it and stops the trainer (checkpoint, exit 3); both the
    checkpoint and interruption.json reach the store, and sync.json says the run was interrupted."""
    work = workdir_with_job(tmp_path, digits, epochs=30)
    with TrainerHold(tmp_path / "hold", 2, 3) as hold:
        proc = start_line(work, instance, StoreTarget(BUCKET, PREFIX, REGION), hold)
        wait_for(lambda: HELD in log_text(work), "the trainer to be held mid-epoch 2")
        notice = instance.imds.announce_spot_interruption("terminate", in_seconds=120)
        code = finish(proc)
    log = log_text(work)
    assert code == 3, log
    assert f"Spot interruption notice: terminate at {notice['time']}" in log
    manifest = assert_store_has_the_run(work, instance.moto, 3)
    assert {"out/checkpoint.npz", "out/interruption.json"} <= set(manifest["files"])
    assert json.loads(store_objects(instance.moto)["out/interruption.json"])["kind"] == "spot-interruption"


def test_the_store_cut_mid_run_costs_the_training_nothing(
    tmp_path: Path, digits: Path, instance: Instance
) -> None:
    work = workdir_with_job(tmp_path, digits)
    with TrainerHold(tmp_path / "hold", 2, 0) as hold:
        proc = start_line(work, instance, StoreTarget(BUCKET, PREFIX, REGION, interval=0.5), hold)
        wait_for(lambda: HELD in log_text(work), "the trainer to be held at epoch 2")
        wait_for(
            lambda: "out/checkpoint.npz" in store_objects(instance.moto), "epoch 1's checkpoint in the store"
        )
        instance.proxy.cut()
        hold.release()
        # Training goes on and ends while the store is unreachable; the uploader says so and keeps trying.
        wait_for(lambda: (work / "out" / "model.npz").exists(), "the trainer to finish")
        wait_for(lambda: STORE_RETRY_MARKER in log_text(work), "the uploader's retry line")
        assert proc.poll() is None  # the line waits for the final sync
        instance.proxy.restore()
        code = finish(proc)
    log = log_text(work)
    assert code == 0, log
    retry = log.index(STORE_RETRY_MARKER)
    assert "; retrying every 0.5s" in log[retry:].splitlines()[0]
    assert log.index(STORE_RECOVERED_MARKER) > retry
    assert log.count(STORE_RETRY_MARKER) == 1  # one line, not one per attempt
    assert log.index("store: final sync verified") > log.index(STORE_RECOVERED_MARKER)
    assert_store_has_the_run(work, instance.moto, 0)


def test_a_store_cut_for_good_fails_the_sync_and_terminates_nothing(
    tmp_path: Path, digits: Path, instance: Instance
) -> None:
    work = workdir_with_job(tmp_path, digits, epochs=2)
    instance.proxy.cut()
    target = StoreTarget(BUCKET, PREFIX, REGION, terminate_when_done=True, interval=0.5, final_timeout=3)
    code = finish(start_line(work, instance, target))
    log = log_text(work)
    assert code == 0, log  # the trainer's code: the training itself went fine
    assert STORE_RETRY_MARKER in log and STORE_RECOVERED_MARKER not in log
    assert "store: final sync NOT verified after 3s" in log and "the instance stays up" in log, log
    assert "terminating" not in log and "Traceback" not in log
    assert instance.state() == "running"
    instance.proxy.restore()
    assert STORE_MANIFEST not in store_objects(instance.moto)


def test_a_detached_run_terminates_its_own_instance_through_the_ec2_api(
    tmp_path: Path, digits: Path, instance: Instance
) -> None:
    work = workdir_with_job(tmp_path, digits, epochs=2)
    instance.per_service_endpoints = True  # the standard per-service variables are honoured too
    target = StoreTarget(BUCKET, PREFIX, REGION, terminate_when_done=True)
    code = finish(start_line(work, instance, target))
    log = log_text(work)
    assert code == 0, log
    assert_store_has_the_run(work, instance.moto, 0)
    assert f"terminating {instance.instance_id} through the EC2 API" in log, log
    assert instance.state() in ("shutting-down", "terminated")
    assert ("POST", "/") in instance.proxy.requests  # the EC2 query API, through the instance's network


def uploader_by_hand(tmp_path: Path, *extra: str) -> list[str]:
    """`python -m trainer.store_sync ...` for a run whose trainer is gone already (its files: job.yaml and
    a 1,000-byte out/checkpoint.npz), as someone would run it by hand on the instance."""
    work = tmp_path / "run"
    (work / "out").mkdir(parents=True)
    (work / "job.yaml").write_text("data: {}\n")
    (work / "out" / "checkpoint.npz").write_bytes(b"x" * 1000)
    gone = subprocess.Popen(["true"])
    gone.wait()
    argv = ["--pid", str(gone.pid), "--workdir", str(work), "--bucket", BUCKET, "--prefix", PREFIX]
    return [sys.executable, "-m", "trainer.store_sync", *argv, "--region", REGION, *extra]


def test_the_uploader_exits_1_when_the_sync_cannot_be_verified_and_says_why(
    tmp_path: Path, instance: Instance
) -> None:
    """Run by hand against a process that is already gone, with an unreachable store: exit 1, one line each
    on stdout (retry, NOT verified), nothing on stderr, no credential in either."""
    instance.proxy.cut()
    proc = subprocess.run(
        uploader_by_hand(tmp_path, "--final-timeout", "1", "--terminate-when-done"),
        env=instance.env() | {"PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.count(STORE_RETRY_MARKER) == 1 and "final sync NOT verified" in proc.stdout
    creds = instance.imds.credentials
    assert creds is not None and creds.secret_access_key not in proc.stdout and creds.token not in proc.stdout
    assert instance.state() == "running"


def test_credentials_that_come_late_are_picked_up(tmp_path: Path, instance: Instance) -> None:
    """No role credentials yet (a profile still propagating): the uploader says uploads fail for want of
    credentials, keeps trying, and once IMDS serves them it finishes and verifies, no restart needed."""
    credentials, instance.imds.credentials = instance.imds.credentials, None
    out = tmp_path / "uploader.out"
    with open(out, "wb") as fh:
        proc = subprocess.Popen(
            uploader_by_hand(tmp_path, "--interval", "0.5"),
            env=instance.env() | {"PYTHONPATH": str(REPO)},
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: STORE_RETRY_MARKER in out.read_text(), "the uploader to meet the missing credentials"
        )
        instance.imds.credentials = credentials
        assert proc.wait(timeout=120) == 0, out.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = out.read_text()
    assert f"{STORE_RETRY_MARKER} (NoCredentialsError: no instance profile credentials)" in text, text
    assert text.index(STORE_RECOVERED_MARKER) > text.index(STORE_RETRY_MARKER)
    assert store_objects(instance.moto)["out/checkpoint.npz"] == b"x" * 1000


# ---------------------------------------------------------------------------- credentials, imports, line


def test_boto3_reads_the_instance_profile_from_the_fake_imds_and_none_without_one(instance: Instance) -> None:
    env = instance.env()
    old = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        creds = boto3.session.Session().get_credentials()
        assert creds is not None and creds.method == "iam-role"
        assert creds.access_key == instance.imds.credentials.access_key_id  # type: ignore[union-attr]
        instance.imds.credentials = None  # an instance launched without a profile: 404, as on EC2
        session = boto3.session.Session()
        assert session.get_credentials() is None
        with pytest.raises(NoCredentialsError):
            session.client("s3", region_name=REGION).list_buckets()
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_the_trainer_process_imports_no_boto3(tmp_path: Path, digits: Path) -> None:
    work = workdir_with_job(tmp_path, digits, epochs=1)
    code = (
        "import runpy, sys\n"
        "sys.argv = ['trainer', 'run', 'job.yaml', '--out', 'out']\n"
        "try:\n"
        "    runpy.run_module('trainer', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    print('exit', exc.code)\n"
        "print('imported', sorted(m for m in ('boto3', 'botocore', 's3transfer') if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=work, env=trainer_env(), capture_output=True, text=True, timeout=300
    )
    assert "exit 0" in proc.stdout and "imported []" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    probe = "import sys, trainer.sidecars, trainer.spot_watch; print('boto3' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True).stdout == (
        "False\n"
    )


def test_without_a_store_the_line_is_the_spot_watchers() -> None:
    assert shell_command('"$PY"', "job.yaml --out out", "out") == spot_shell_command(
        '"$PY"', "job.yaml --out out", "out"
    )
    line = shell_command('"$PY"', "job.yaml --out out", "out", store=StoreTarget("b", "p/runs/r 1/", REGION))
    assert "--bucket b --prefix 'p/runs/r 1/' --region us-east-1 --interval 10" in line
    assert "--terminate-when-done" not in line and "--final-timeout" not in line
    assert line.endswith('wait "$_s"; [ -n "$_sig" ] || break; done; exit "$_rc"')
    with pytest.raises(ValueError, match="run prefix"):
        shell_command("python3", "j.yaml", "out", store=StoreTarget("b", "runs/r", REGION))
    detached = StoreTarget("b", "runs/r/", REGION, terminate_when_done=True, final_timeout=30)
    line = shell_command('"$PY"', "job.yaml --out out", "out", store=detached)
    assert "--final-timeout 30 --terminate-when-done ) & _s=$!" in line
    if shutil.which("shellcheck"):
        check = subprocess.run(
            ["shellcheck", "-s", "bash", "-"], input=f"PY=python3\n{line}\n", capture_output=True, text=True
        )
        assert check.returncode == 0, check.stdout


def test_without_boto3_the_uploader_says_so_in_one_line(tmp_path: Path) -> None:
    """A venv that bootstrap did not give boto3: one line in the job's log, exit 1, never a traceback."""
    code = (
        "import runpy, sys\n"
        "sys.modules['boto3'] = None  # an import of it now raises ImportError\n"
        "sys.argv = ['store_sync', '--pid', '1', '--workdir', '.', '--bucket', 'b', '--prefix', 'runs/r/',"
        " '--region', 'us-east-1']\n"
        "runpy.run_module('trainer.store_sync', run_name='__main__')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=trainer_env(), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("store: cannot upload (") and proc.stderr.count("\n") == 1, proc.stderr
    assert "bootstrap's python step installs boto3" in proc.stderr
