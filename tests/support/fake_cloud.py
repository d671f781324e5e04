"""Pytest plugin: a fake cloud-init that turns moto's instances into real SSH hosts on loopback.

moto reports instances `running` but nothing boots. `FakeCloudInit` watches moto (through a plain boto3
client) and, for each running ec2dbn instance, does what cloud-init does on a real one: installs the host
key from the instance's user-data and the key pair's public key as authorized_keys, then starts a real
sshd on 127.0.0.1. `EC2DBN_SSH_ENDPOINT` points ec2dbn at it; with `per_instance_ports` (a fleet: several
instances up at once) each instance's sshd gets its own port, written to the `EC2DBN_SSH_ENDPOINTS` file
as the instance boots, as a user's per-instance tunnels would be. Each instance has its own HOME (its own
disk). When moto says the instance is gone, its
sshd is stopped, as the machine would be. Tests can also restart an sshd (a flaky connection), boot the
next instance with the wrong host key (a man in the middle) or not boot one at all (`boot = False`).

Every instance gets a machine root of its own (EC2DBN_SYSROOT, where bootstrap looks for /etc and friends)
and a fresh HOME. With `disk` set (a folder; the stack's remote_dir goes under `disk/home`), the instance's
disk is modelled as EC2 has it: each boot starts from its image's content, which is empty for a base image
and, for an image made by CreateImage, what the source instance's disk held when the image was made (copied
the moment the image shows up, or at the latest when an instance boots from it, before anything else
touches the disk). A baked instance keeps what the builder installed only because its image carried it.
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from botocore.exceptions import ClientError

from tests.support.fake_imds import FakeImds, RoleCredentials
from tests.support.moto_server import MotoServer
from tests.support.sshd import SSH_KEYGEN, SshServer, default_env, start_sshd

#: Images made from an instance by ec2dbn (CreateImage tags them at creation); the seeded base images are not.
_MADE_BY_CREATE_IMAGE = [{"Name": "tag:ec2dbn:managed", "Values": ["true"]}]

#: A lag the fault matrices give every loss: EC2's API is eventually consistent, so an instance taken back
#: can be described as running a little after its SSH died (tests/support/fake_cloud.reclaim).
EC2_DESCRIBE_LAG_S = 2.0

GONE_STATES = ("shutting-down", "terminated", "stopping", "stopped")
#: Where boto3's credential chain looks for IMDS (botocore's own setting; 169.254.169.254 by default).
BOTO_IMDS_ENV = "AWS_EC2_METADATA_SERVICE_ENDPOINT"

#: Every command run on a fake instance carries this variable (sshd SetEnv) naming the instance, so that
#: powering it off can find what its sessions started, detached jobs included (they leave sshd's tree).
MARK = "EC2DBN_FAKE_INSTANCE"


def power_off(instance_id: str) -> list[int]:
    """Kill every process started on the fake instance, as a real power-off would: sshd's own tree dies
    with it, but a `setsid nohup` job has left that tree; it still carries the instance's mark."""
    needle = f"{MARK}={instance_id}".encode()
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in environ:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
    return killed


#: A role's trust policy that lets EC2 assume it: what an instance profile's role carries.
EC2_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


def assume_role_credentials(
    moto: MotoServer, role_arn: str, session_name: str, region: str = "us-east-1"
) -> RoleCredentials:
    """A role's temporary credentials from moto's STS AssumeRole, as EC2 gets them for an instance profile
    (12 hours: boto3 then has no reason to refresh them mid-test)."""
    creds = moto.client("sts", region).assume_role(
        RoleArn=role_arn, RoleSessionName=session_name, DurationSeconds=43200
    )["Credentials"]
    role = role_arn.rsplit("/", 1)[1]
    return RoleCredentials(
        role, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], creds["Expiration"]
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FakeCloudInit:
    """Boots a real sshd for every running ec2dbn instance in moto; one SSH port for all of them, or
    (per_instance_ports) one each, listed in `endpoints_file`."""

    def __init__(
        self, moto: MotoServer, workdir: Path, region: str = "us-east-1", per_instance_ports: bool = False
    ) -> None:
        self.moto = moto
        self.workdir = workdir
        self.region = region
        self.port = _free_port()
        self.per_instance_ports = per_instance_ports
        #: `INSTANCE_ID 127.0.0.1:PORT` per booted instance (EC2DBN_SSH_ENDPOINTS), in per-instance mode.
        self.endpoints_file = workdir / "ssh-endpoints"
        self.servers: dict[str, SshServer] = {}
        self.booted: list[str] = []
        self.wrong_host_key = False
        #: False: instances run but never boot an sshd (a broken image, a blackholed port 22).
        self.boot = True
        #: The next `never_boot` instances seen running never boot an sshd (no line of theirs ever comes
        #: to the endpoints file): an instance lost before SSH. Their ids go to `unbooted`.
        self.never_boot = 0
        self.unbooted: list[str] = []
        #: True: each booted instance gets its own fake metadata service (IMDSv2), which its commands
        #: reach through EC2DBN_IMDS_URL (the spot watcher) and AWS_EC2_METADATA_SERVICE_ENDPOINT (boto3's
        #: credential chain), as a real instance reaches 169.254.169.254. It serves the instance's id and,
        #: for an instance launched with an instance profile, its role's credentials (moto STS AssumeRole,
        #: as EC2 does); without a profile it has none (404), as on EC2.
        self.with_imds = False
        self.imds: dict[str, FakeImds] = {}
        self.reclaimed: set[str] = set()
        self._late_terminations: list[threading.Timer] = []
        #: Extra variables for the commands of instances booted from now on (sshd SetEnv); tests put a
        #: TrainerHold's variable here. Nothing of this machine's own environment goes in by default.
        self.env: dict[str, str] = {}
        self.errors: list[BaseException] = []
        #: The instances' disk (see the module doc): None keeps the old model, one shared remote_dir.
        self.disk: Path | None = None
        #: image id -> the disk as CreateImage captured it (only with `disk`).
        self.image_disks: dict[str, Path] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="fake-cloud-init", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        for timer in self._late_terminations:
            timer.cancel()
        self._thread.join(timeout=10)
        with self._lock:
            for server in self.servers.values():
                server.stop()
            for imds in self.imds.values():
                imds.stop()

    def reclaim(self, instance_id: str, describe_lag_s: float = 0.0) -> None:
        """EC2 takes the instance back: it is powered off here at once (its sshd and everything started
        on it killed; never booted later from a describe that predates this) and terminated in moto.

        describe_lag_s: EC2's API is eventually consistent, so DescribeInstances may go on saying
        `running` for a while after the machine is gone; moto terminates it only after this long.
        """
        with self._lock:
            self.reclaimed.add(instance_id)
            server = self.servers.pop(instance_id, None)
            if server is not None:
                server.stop()
            power_off(instance_id)
        if describe_lag_s <= 0:
            self.moto.client("ec2", self.region).terminate_instances(InstanceIds=[instance_id])
            return
        timer = threading.Timer(describe_lag_s, self._terminate_late, args=(instance_id,))
        timer.daemon = True
        self._late_terminations.append(timer)
        timer.start()

    def _terminate_late(self, instance_id: str) -> None:
        with contextlib.suppress(Exception):  # moto may already be stopping with the test
            self.moto.client("ec2", self.region).terminate_instances(InstanceIds=[instance_id])

    def _list_endpoint(self, instance_id: str, port: int) -> None:
        """Add the instance's line to the endpoints file (atomically: ec2dbn reads it at any moment)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        old = self.endpoints_file.read_text() if self.endpoints_file.exists() else ""
        tmp = self.endpoints_file.with_suffix(".tmp")
        tmp.write_text(f"{old}{instance_id} 127.0.0.1:{port}\n")
        tmp.replace(self.endpoints_file)

    def wait_seen(self, instance_id: str, timeout_s: float = 60.0) -> None:
        """Until the poller has seen `instance_id` running and decided its fate (booted, never to boot,
        reclaimed): a test that asks "will this one boot?" asks after the fake decided, not before."""
        give_up = time.monotonic() + timeout_s
        while time.monotonic() < give_up:
            with self._lock:
                if any(instance_id in seen for seen in (self.booted, self.unbooted, self.reclaimed)):
                    return
            time.sleep(0.05)
        raise AssertionError(f"the fake cloud never saw {instance_id} running")

    def restart_sshd(self, instance_id: str | None = None) -> None:
        """Kill and restart an instance's sshd (same port and keys): the connection drops, then returns."""
        with self._lock:
            server = self.servers[instance_id or self.booted[-1]]
            server.restart()

    def _loop(self) -> None:
        ec2 = self.moto.client("ec2", self.region)
        while not self._stop.is_set():
            try:
                self._poll(ec2)
            except ClientError as exc:
                # moto's threaded server sometimes answers 500 when a request races another's tags
                # ("dictionary changed size during iteration"): look again, as a real poller would.
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) < 500:
                    self.errors.append(exc)
            except Exception as exc:  # surfaced by the fixture; the loop must survive moto resets
                self.errors.append(exc)
            self._stop.wait(0.1)

    def _poll(self, ec2: object) -> None:
        if self.disk is not None:
            images = ec2.describe_images(Owners=["self"], Filters=_MADE_BY_CREATE_IMAGE)["Images"]  # type: ignore[attr-defined]
            with self._lock:
                for image in images:
                    self._capture(image["ImageId"])
        pages = ec2.describe_instances(  # type: ignore[attr-defined]
            Filters=[{"Name": "tag:ec2dbn:managed", "Values": ["true"]}]
        )["Reservations"]
        for inst in (i for r in pages for i in r["Instances"]):
            iid, status = inst["InstanceId"], inst["State"]["Name"]
            with self._lock:
                if status == "running" and not self.boot:
                    continue
                if iid in self.reclaimed or iid in self.unbooted:
                    continue
                if status == "running" and self.never_boot > 0 and iid not in self.servers:
                    self.never_boot -= 1
                    self.unbooted.append(iid)
                    continue
                if status == "running" and iid not in self.servers and iid not in self.booted:
                    self.servers[iid] = self._boot(ec2, inst)
                    self.booted.append(iid)
                elif status == "running" and iid in self.imds and self.imds[iid].credentials is None:
                    # moto associates a RunInstances' profile just after the instance shows up running
                    # (EC2 launches with it): serve its credentials as soon as the association is there
                    self.imds[iid].credentials = self._profile_credentials(inst)
                elif status in GONE_STATES and iid in self.servers:
                    self.servers.pop(iid).stop()
                    power_off(iid)

    def _profile_credentials(self, inst: dict) -> RoleCredentials | None:
        """The credentials EC2 would serve this instance: its profile's role, assumed (moto STS)."""
        profile = (inst.get("IamInstanceProfile") or {}).get("Arn")
        if not profile:
            return None
        iam = self.moto.client("iam", self.region)
        roles = iam.get_instance_profile(InstanceProfileName=profile.rsplit("/", 1)[1])["InstanceProfile"][
            "Roles"
        ]
        if not roles:
            return None  # a profile without a role: EC2 serves no credentials either
        return assume_role_credentials(self.moto, roles[0]["Arn"], inst["InstanceId"], self.region)

    def _capture(self, image_id: str) -> None:
        """The disk as it is now becomes image `image_id`'s content (once; made by our CreateImage)."""
        if self.disk is None or image_id in self.image_disks:
            return
        target = self.workdir / "images" / image_id
        if self.disk.exists():
            shutil.copytree(self.disk, target, symlinks=True)
        else:
            target.mkdir(parents=True)
        self.image_disks[image_id] = target

    def image_disk(self, image_id: str, timeout_s: float = 60.0) -> Path:
        """The disk image `image_id` captured, once the watcher has seen the image (it polls)."""
        give_up = time.monotonic() + timeout_s
        while image_id not in self.image_disks:
            assert time.monotonic() < give_up, f"the fake cloud never saw image {image_id}"
            time.sleep(0.1)
        return self.image_disks[image_id]

    def _fresh_disk(self, ec2: object, image_id: str) -> None:
        """Boot from `image_id`: the disk becomes the image's content (empty for a base image)."""
        assert self.disk is not None
        ours = ec2.describe_images(  # type: ignore[attr-defined]
            Owners=["self"], ImageIds=[image_id], Filters=_MADE_BY_CREATE_IMAGE
        )["Images"]
        if ours:
            self._capture(image_id)
        shutil.rmtree(self.disk, ignore_errors=True)
        if image_id in self.image_disks:
            shutil.copytree(self.image_disks[image_id], self.disk, symlinks=True)
        (self.disk / "home").mkdir(parents=True, exist_ok=True)

    def _boot(self, ec2: object, inst: dict) -> SshServer:
        iid = inst["InstanceId"]
        folder = self.workdir / iid
        folder.mkdir(parents=True, exist_ok=True)
        raw = ec2.describe_instance_attribute(InstanceId=iid, Attribute="userData")  # type: ignore[attr-defined]
        cloud_config = yaml.safe_load(base64.b64decode(raw["UserData"]["Value"]).decode())
        root = folder / "root"
        home = folder / "home"
        if self.disk is not None:
            self._fresh_disk(ec2, inst["ImageId"])
            root, home = self.disk, self.disk / "home"
        (root / "etc" / "ssh").mkdir(parents=True, exist_ok=True)
        home.mkdir(parents=True, exist_ok=True)
        # cloud-init's work on this boot: the instance's own host key and the key pair's public key
        host_key = root / "etc" / "ssh" / "ssh_host_ed25519_key"
        if self.wrong_host_key:
            subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        else:
            host_key.write_text(cloud_config["ssh_keys"]["ed25519_private"])
            host_key.chmod(0o600)
        pair = ec2.describe_key_pairs(  # type: ignore[attr-defined]
            KeyNames=[inst["KeyName"]], IncludePublicKey=True
        )["KeyPairs"][0]
        (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
        (home / ".ssh" / "authorized_keys").write_text(pair["PublicKey"].rstrip("\n") + "\n")
        env = {**default_env(), **self.env, MARK: iid, "HOME": str(home), "EC2DBN_SYSROOT": str(root)}
        if self.with_imds:
            self.imds[iid] = FakeImds(instance_id=iid, credentials=self._profile_credentials(inst))
            env["EC2DBN_IMDS_URL"] = env[BOTO_IMDS_ENV] = self.imds[iid].url
        port = _free_port() if self.per_instance_ports else self.port
        server = start_sshd(
            folder, host_key_path=host_key, authorized_keys=pair["PublicKey"], port=port, env=env
        )
        if self.per_instance_ports:
            self._list_endpoint(iid, port)
        return server


@contextlib.contextmanager
def running_cloud(cloud: FakeCloudInit) -> Iterator[FakeCloudInit]:
    """Start the fake cloud-init; stop it (and every sshd) afterwards, re-raising what its loop met."""
    if not os.path.exists("/usr/sbin/sshd"):
        pytest.skip("/usr/sbin/sshd is not installed (apt-get install openssh-server)")
    cloud.start()
    try:
        yield cloud
    finally:
        cloud.stop()
        if cloud.errors:
            raise cloud.errors[0]


@pytest.fixture
def fake_cloud(aws: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCloudInit]:
    """moto + a fake cloud-init; ec2dbn's SSH goes to the loopback sshd of whichever instance is up."""
    cloud = FakeCloudInit(aws, tmp_path / "instances")
    monkeypatch.setenv("EC2DBN_SSH_ENDPOINT", cloud.endpoint)
    monkeypatch.setenv("EC2DBN_SSH_TIMEOUT", "60")
    with running_cloud(cloud):
        yield cloud


@pytest.fixture
def fake_fleet(aws: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeCloudInit]:
    """moto + a fake cloud-init booting each instance's sshd on its own port: several instances up at
    once (a sweep's fleet), reached through the EC2DBN_SSH_ENDPOINTS file."""
    cloud = FakeCloudInit(aws, tmp_path / "instances", per_instance_ports=True)
    monkeypatch.setenv("EC2DBN_SSH_ENDPOINTS", str(cloud.endpoints_file))
    monkeypatch.setenv("EC2DBN_SSH_TIMEOUT", "60")
    with running_cloud(cloud):
        yield cloud
