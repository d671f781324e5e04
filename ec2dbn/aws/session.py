"""The one place ec2dbn creates AWS clients.

Credentials, profile and endpoints come only from boto3's default chain, so AWS_PROFILE, AWS_REGION,
AWS_ENDPOINT_URL and the per-service AWS_ENDPOINT_URL_EC2 / _SSM / _STS work unchanged (boto3 >= 1.34
reads them; tests reach moto that way). The region is always passed explicitly: the stack decides it.
Every call a client here can make must be allowed by the policy `ec2dbn iam-policy` prints
(ec2dbn.aws.iam_policy); the test suite records them all and checks.

Every client uses botocore's "standard" retry mode, which retries throttling (RequestLimitExceeded) and
transient errors with jittered exponential backoff.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import boto3
import botocore.session
from botocore.config import Config

from ec2dbn import __version__
from ec2dbn.spec.catalog import check_region

#: Attempts per call, the first included (standard mode's default is 3; EC2 throttles in bursts).
#: AWS_MAX_ATTEMPTS, when set, wins (boto3's own setting).
MAX_ATTEMPTS = 6

RETRY_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
    user_agent_extra=f"ec2dbn/{__version__}",
    connect_timeout=10,
    read_timeout=60,
)


def _config() -> Config:
    """RETRY_CONFIG, or standard mode with botocore reading AWS_MAX_ATTEMPTS when the user set it."""
    if os.environ.get("AWS_MAX_ATTEMPTS"):
        return RETRY_CONFIG.merge(Config(retries={"mode": "standard"}))
    return RETRY_CONFIG


#: Test seam: (event name, handler) pairs registered on every client this module creates, e.g.
#: ("before-call.ec2.RunInstances", handler) to make EC2 answer InsufficientInstanceCapacity.
#: Only tests append here; production code never does.
EVENT_HOOKS: list[tuple[str, Callable[..., Any]]] = []

# botocore parses the (large) EC2 service model per session; sharing the loader keeps each new
# session cheap. Credentials are NOT shared: each Aws object builds a fresh session from the environment.
_loader: Any = None


_lock = threading.Lock()


def _session() -> boto3.session.Session:
    global _loader
    with _lock:
        core = botocore.session.Session()
        if _loader is None:
            _loader = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _loader)
        session = boto3.session.Session(botocore_session=core)
        paths = _loader.search_paths  # boto3 appends its own data path on every session: keep it once
        paths[:] = list(dict.fromkeys(paths))
        return session


class Aws:
    """Clients for one region, created on first use from one session (so one credential resolution).

    The region must be one botocore knows (ConfigError otherwise, before any call): an unknown one would
    only fail later as an endpoint that cannot be reached, which reads like a network problem.
    """

    def __init__(self, region: str) -> None:
        self.region = check_region(region)
        self._session: boto3.session.Session | None = None
        self._clients: dict[str, Any] = {}

    def client(self, service: str, config: Config | None = None) -> Any:
        """The `service` client of this region; `config` (used when the client is first made) replaces
        the standard retries and timeouts, for best-effort calls such as the Price List API's."""
        if service not in self._clients:
            from ec2dbn.aws.errors import translate

            try:
                if self._session is None:
                    self._session = _session()
                c = self._session.client(service, region_name=self.region, config=config or _config())
            except Exception as exc:  # ProfileNotFound and friends, raised while reading config
                raise translate(exc, region=self.region, action="reading AWS configuration") from exc
            for event, handler in EVENT_HOOKS:
                c.meta.events.register(event, handler)
            self._clients[service] = c
        return self._clients[service]

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    @property
    def ssm(self) -> Any:
        return self.client("ssm")

    @property
    def sts(self) -> Any:
        return self.client("sts")

    @property
    def quotas(self) -> Any:
        return self.client("service-quotas")
