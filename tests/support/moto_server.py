"""Pytest plugin: moto as a real HTTP server (strict validation on), reached the way users reach AWS.

- `moto_server` (session): one ThreadedMotoServer on a free port for the whole run.
- `aws` (function): wipes moto (POST /moto-api/reset), seeds the public SSM image parameters that moto
  lacks, creates the instance roles' permissions boundary (an administrator's one-time step), and points
  boto3's default chain at moto through AWS_ENDPOINT_URL with fake credentials; the ec2dbn state dir
  goes to tmp_path (EC2DBN_HOME) and the caller IP is fixed (EC2DBN_CALLER_IP).
- `inject_error` / `inject_http_error` / `count_calls`: botocore event hooks added through
  `ec2dbn.aws.session.EVENT_HOOKS` to every client ec2dbn creates, to make EC2 answer with errors moto
  never produces (capacity, quotas, throttling, DependencyViolation).
- `tagged_resources`: lists ec2dbn-tagged resources with plain boto3, independently of ec2dbn's code
  (spot requests included: tests/support/ec2_strict.py makes moto close them with their instance, as EC2).

Run as a program, it starts the same strict, seeded server for trying ec2dbn by hand:
    python -m tests.support.moto_server --port 5000
    AWS_ENDPOINT_URL=http://127.0.0.1:5000 AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x ec2dbn launch --spot
"""

from __future__ import annotations

import os

# moto reads these when it is first imported: strict instance type, AMI and key pair validation.
for _var in (
    "MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION",
    "MOTO_ENABLE_AMI_VALIDATION",
    "MOTO_ENABLE_KEYPAIR_VALIDATION",
):
    os.environ.setdefault(_var, "true")

import argparse  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import boto3  # noqa: E402
import pytest  # noqa: E402
from botocore.awsrequest import AWSResponse  # noqa: E402

ACCOUNT_ID = "123456789012"
DEFAULT_CREDENTIALS = ("testing", "testing")
CALLER_IP = "203.0.113.7"
SEED_REGIONS = ("us-east-1",)

#: What each image alias resolves to in the seeded moto: (AMI name, as the real publisher names it).
SEED_IMAGES = {
    "dlami-ubuntu22": "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20250101",
    "dlami-ubuntu24": "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04) 20250101",
    "ubuntu22": "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20250101",
    "ubuntu24": "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20250101",
}

_ENV_CLEARED = (
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_EC2",
    "AWS_ENDPOINT_URL_SSM",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_IAM",
    "AWS_ENDPOINT_URL_S3",
    "EC2DBN_SSH_ENDPOINT",
    "EC2DBN_SSH_ENDPOINTS",
)


class MotoServer:
    """A running moto server: its URL, a reset, image seeding and raw boto3 clients for assertions."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        from moto.server import ThreadedMotoServer

        from tests.support import moto_patches

        moto_patches.apply()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per request otherwise
        self._server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
        self._server.start()
        h, p = self._server.get_host_and_port()
        self.url = f"http://{h}:{p}"
        self.images: dict[tuple[str, str], str] = {}
        self._session = boto3.session.Session()
        self._clients: dict[tuple[str, str], Any] = {}
        self._credentials = DEFAULT_CREDENTIALS

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200
        self.images.clear()

    def client(self, service: str, region: str = "us-east-1") -> Any:
        """A plain boto3 client on moto (no ec2dbn code, no injected hooks), cached per service and region."""
        if (service, region) not in self._clients:
            key, secret = self._credentials
            self._clients[(service, region)] = self._session.client(
                service,
                region_name=region,
                endpoint_url=self.url,
                aws_access_key_id=key,
                aws_secret_access_key=secret,
            )
        return self._clients[(service, region)]

    def use_credentials(self, key: str, secret: str) -> None:
        """The harness's own clients (`client`) sign with these from now on (an IAM user's, once moto
        enforces IAM: see `enforce_iam`)."""
        self._credentials = (key, secret)
        self._clients.clear()

    def enforce_iam(self, on: bool) -> None:
        """Make moto check every request against the caller's IAM policies (on), or accept all (off).

        moto's own switch (POST /moto-api/reset-auth with INITIAL_NO_AUTH_ACTION_COUNT): 0 = from the next
        request on, inf = never. It is process-wide, like the server.
        """
        data = b"0" if on else b"inf"
        req = urllib.request.Request(  # not form data: moto reads the raw body
            f"{self.url}/moto-api/reset-auth",
            method="POST",
            data=data,
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 200

    def create_boundary(self) -> None:
        """What an IAM administrator does once per account before stored runs (README): the instance roles'
        permissions boundary from `ec2dbn iam-policy --boundary`, made with a plain client (not ec2dbn's,
        not recorded: ec2dbn's own policy may not create it)."""
        from ec2dbn.aws import iam_policy
        from trainer import strict_json

        self.client("iam").create_policy(
            PolicyName=iam_policy.BOUNDARY_NAME,
            Path=iam_policy.ROLE_PATH,
            PolicyDocument=strict_json.dumps(iam_policy.boundary_policy()),
        )

    def seed_images(self, regions: tuple[str, ...] = SEED_REGIONS) -> None:
        """Register one AMI per alias and publish it under the alias's public SSM parameter, as AWS does.

        moto refuses put_parameter under /aws/, so the parameter goes straight into moto's SSM backend
        (this server runs in our process).
        """
        from moto.ssm.models import Parameter, ssm_backends

        from ec2dbn.aws.images import SSM_PARAMETERS

        for region in regions:
            ec2 = self.client("ec2", region)
            backend = ssm_backends[ACCOUNT_ID][region]
            for alias, name in SEED_IMAGES.items():
                image_id = ec2.register_image(
                    Name=name, RootDeviceName="/dev/sda1", Architecture="x86_64", VirtualizationType="hvm"
                )["ImageId"]
                self.images[(region, alias)] = image_id
                param = SSM_PARAMETERS[alias]
                backend._parameters[param].append(
                    Parameter(
                        account_id=ACCOUNT_ID,
                        name=param,
                        value=image_id,
                        parameter_type="String",
                        description=None,
                        allowed_pattern=None,
                        keyid=None,
                        last_modified_date=datetime.now(timezone.utc),
                        version=1,
                        data_type="aws:ec2:image",
                    )
                )


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = MotoServer()
    try:
        yield server
    finally:
        server.stop()


def aws_environment(url: str, home: Path) -> dict[str, str]:
    """The environment a user would have: boto3's default chain pointed at `url` with fake credentials."""
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "EC2DBN_HOME": str(home / "ec2dbn-home"),
        "EC2DBN_CALLER_IP": CALLER_IP,
    }


@pytest.fixture
def aws(moto_server: MotoServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A clean, seeded moto and a user environment pointing at it; injected hooks removed afterwards."""
    from ec2dbn.aws import network, price_list, session
    from tests.support import authz_record

    moto_server.reset()
    price_list.price_list_price.cache_clear()  # the Price List API's answers are cached per process
    moto_server.seed_images()
    moto_server.create_boundary()
    for var in _ENV_CLEARED:
        monkeypatch.delenv(var, raising=False)
    for var, value in aws_environment(moto_server.url, tmp_path).items():
        monkeypatch.setenv(var, value)
    # Security-group deletion retries quickly here (the real pacing waits for EC2 to detach ENIs).
    monkeypatch.setattr(network, "SG_DELETE_BACKOFF", (0.01, 0.02, 0.05))
    hooks_before = list(session.EVENT_HOOKS)
    session.EVENT_HOOKS.append(("before-parameter-build", _record_operation))
    session.EVENT_HOOKS.append(("before-parameter-build", authz_record.record))
    try:
        yield moto_server
    finally:
        session.EVENT_HOOKS[:] = hooks_before


#: Every AWS operation ec2dbn's own clients prepared in this test session, as the IAM action it needs
#: ('ec2:RunInstances'): checked against `ec2dbn iam-policy` when the session ends.
OPERATIONS_SEEN: set[str] = set()


def _record_operation(model: Any, **_: Any) -> None:
    from ec2dbn.aws.iam_policy import action_of

    OPERATIONS_SEEN.add(action_of(model.service_model.signing_name, model.name))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when a test made ec2dbn call an AWS operation its IAM policy does not allow: every
    operation must be an action of the policy (`ec2dbn iam-policy`), and every authorization request AWS
    would evaluate for the recorded calls must be Allowed by a real evaluator
    (tests/support/policy_proof.py)."""
    from ec2dbn.aws.iam_policy import actions
    from tests.support import policy_proof

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def say(line: str, **markup: bool) -> None:
        if reporter is not None:
            reporter.write_line(line, **markup)

    missing = sorted(OPERATIONS_SEEN - actions())
    if missing:
        say(
            f"ec2dbn called AWS operations its IAM policy (`ec2dbn iam-policy`) lacks: {', '.join(missing)}",
            red=True,
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    cache = getattr(session.config, "cache", None)  # absent with -p no:cacheprovider
    if cache is not None:
        policy_proof.keep_records(cache.mkdir("ec2dbn") / "authz-records.jsonl")
    verdict = policy_proof.verdict()
    if verdict.skipped:
        say(f"IAM policy proof skipped: {verdict.skipped}", yellow=True)
    elif verdict.failures:
        say(f"IAM policy proof: {verdict.summary}", red=True)
        for line in verdict.failures:
            say(f"  {line}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    elif verdict.summary:
        say(f"IAM policy proof: {verdict.summary}", green=True)


# -------------------------------------------------------------------------------------- error injection


@dataclass
class Injection:
    """A registered hook: how often it fired and how often it answered with an error."""

    event: str
    calls: int = 0
    injected: int = 0
    params: list[dict[str, Any]] = field(default_factory=list)


def add_hook(event: str, handler: Callable[..., Any]) -> None:
    """Register a botocore event handler on every client ec2dbn creates from now on (this test only)."""
    from ec2dbn.aws import session

    session.EVENT_HOOKS.append((event, handler))


_register = add_hook


def inject_error(
    operation: str,
    code: str,
    message: str = "injected by the test",
    *,
    times: int | None = 1,
    service: str = "ec2",
    when: Callable[[dict[str, Any]], bool] | None = None,
    status: int = 400,
) -> Injection:
    """Make `operation` (e.g. "RunInstances") fail with `code` for its first `times` calls (None: always),
    optionally only for calls whose params satisfy `when`. Short-circuits before the request is sent, so
    botocore's retries do not see it (use inject_http_error for errors that should be retried)."""
    inj = Injection(f"before-call.{service}.{operation}")
    lock = threading.Lock()
    key = f"ec2dbn-test-params-{id(inj)}"

    def record(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        # The API parameters as the caller passed them (before-call only sees the serialized request).
        context[key] = dict(params)

    def handler(context: dict[str, Any], **_: Any) -> Any:
        params = context.get(key, {})
        with lock:
            inj.calls += 1
            inj.params.append(params)
            if when is not None and not when(params):
                return None
            if times is not None and inj.injected >= times:
                return None
            inj.injected += 1
        body = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return AWSResponse("http://injected", status, {}, None), body

    _register(f"before-parameter-build.{service}.{operation}", record)
    _register(inj.event, handler)
    return inj


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def inject_http_error(
    operation: str,
    code: str,
    message: str = "injected",
    *,
    times: int = 1,
    status: int = 503,
    service: str = "ec2",
) -> Injection:
    """Answer the first `times` HTTP sends of `operation` with an EC2 XML error: the real parser and
    botocore's retry logic see it, exactly as if AWS had sent it."""
    inj = Injection(f"before-send.{service}.{operation}")
    lock = threading.Lock()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        "<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>"
    ).encode()

    def handler(request: Any, **_: Any) -> Any:
        with lock:
            inj.calls += 1
            if inj.injected >= times:
                return None
            inj.injected += 1
        return AWSResponse(request.url, status, {"Content-Type": "text/xml"}, _Raw(body))

    _register(inj.event, handler)
    return inj


def count_calls(event: str = "before-send") -> Injection:
    """Count every request ec2dbn's clients send (or those matching `event`), changing nothing."""
    inj = Injection(event)
    lock = threading.Lock()

    def handler(**kwargs: Any) -> None:
        with lock:
            inj.calls += 1
        return None

    _register(event, handler)
    return inj


# ----------------------------------------------------------------------------------- independent checks


MANAGED_TAG = {"Key": "ec2dbn:managed", "Value": "true"}


def tagged_resources(server: MotoServer, region: str = "us-east-1") -> dict[str, list[str]]:
    """Every live resource tagged ec2dbn:managed=true, listed with plain boto3 (not ec2dbn's discovery)."""
    ec2 = server.client("ec2", region)
    flt = [{"Name": "tag:ec2dbn:managed", "Values": ["true"]}]
    instances = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=flt)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    ours = {  # every ec2dbn instance ever run, terminated included: a fleet's requests may be untagged
        i["InstanceId"] for r in ec2.describe_instances(Filters=flt)["Reservations"] for i in r["Instances"]
    }
    spot = [
        r["SpotInstanceRequestId"]
        for r in ec2.describe_spot_instance_requests()["SpotInstanceRequests"]
        if r["State"] in ("open", "active")
        and (r.get("InstanceId") in ours or MANAGED_TAG in (r.get("Tags") or []))
    ]
    groups = [g["GroupId"] for g in ec2.describe_security_groups(Filters=flt)["SecurityGroups"]]
    keys = [k["KeyName"] for k in ec2.describe_key_pairs(Filters=flt)["KeyPairs"]]
    volumes = [
        v["VolumeId"] for v in ec2.describe_volumes(Filters=flt)["Volumes"] if v["State"] not in ("deleted",)
    ]

    def managed(item: dict[str, Any]) -> bool:  # moto ignores DescribeFleets' tag filters: check here
        return {"Key": "ec2dbn:managed", "Value": "true"} in (item.get("Tags") or [])

    fleets = [
        f["FleetId"]
        for f in ec2.describe_fleets()["Fleets"]
        if managed(f) and not str(f.get("FleetState", "")).startswith("deleted")
    ]
    templates = [
        t["LaunchTemplateId"] for t in ec2.describe_launch_templates()["LaunchTemplates"] if managed(t)
    ]
    return {
        "instances": instances,
        "spot_requests": spot,
        "security_groups": groups,
        "key_pairs": keys,
        "volumes": volumes,
        "fleets": fleets,
        "launch_templates": templates,
    }


def _main() -> None:
    parser = argparse.ArgumentParser(
        description="A strict moto server with AWS's public image parameters seeded."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    server = MotoServer(args.host, args.port)
    server.seed_images()
    server.create_boundary()
    print(
        f"moto listening on {server.url} (strict validation on, images seeded in {', '.join(SEED_REGIONS)}, "
        "the role boundary made)"
    )
    print(f"  export AWS_ENDPOINT_URL={server.url} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    _main()
