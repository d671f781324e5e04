"""A fake EC2 instance metadata service (IMDSv2 only) on loopback, for the spot watcher's tests.

It is a real HTTP server (ThreadingHTTPServer on 127.0.0.1, a port the OS picks) that behaves like IMDS
with `HttpTokens: required`, the setting ec2dbn launches with:

- `PUT /latest/api/token` needs `X-aws-ec2-metadata-token-ttl-seconds` in 1..21600 (else 400) and returns a
  token that expires after that many seconds;
- every GET needs a live token in `X-aws-ec2-metadata-token` (else 401);
- `/latest/meta-data/spot/instance-action` and `/latest/meta-data/events/recommendations/rebalance` answer
  404 until the test calls `announce_spot_interruption()` / `recommend_rebalance()`, then 200 with the
  JSON EC2 serves (`{"action": "terminate", "time": "2017-09-18T08:22:00Z"}`, `{"noticeTime": ...}`);
- `/latest/meta-data/instance-id` answers the `instance_id` given (404 without one: not how EC2 is, but
  the spot watcher's tests need no id);
- `/latest/meta-data/iam/security-credentials/` answers the role's name and `.../<role>` the JSON EC2
  serves for an instance profile's role (Code, LastUpdated, Type "AWS-HMAC", AccessKeyId,
  SecretAccessKey, Token, Expiration) once `credentials` are given; without an instance profile both
  answer 404, as on EC2. boto3's credential chain reads them (AWS_EC2_METADATA_SERVICE_ENDPOINT=url).

Every request is recorded (`requests`) so tests can assert IMDSv2 was used throughout. Use the class
directly (`with FakeImds() as imds: ...`) or the `fake_imds` fixture (stopped after the test).
"""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

TOKEN_PATH = "/latest/api/token"
SPOT_ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"
CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"


@dataclass(frozen=True)
class ImdsRequest:
    """One request as the fake saw it. token: "valid", "invalid" (unknown or expired) or "missing"."""

    method: str
    path: str
    token: str
    status: int
    at: float  # time.monotonic() when answered


def imds_time(at: datetime) -> str:
    """2017-09-18T08:22:00Z, as IMDS writes times."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RoleCredentials:
    """An instance profile's role credentials as IMDS serves them (from STS AssumeRole in the tests)."""

    role: str
    access_key_id: str
    secret_access_key: str
    token: str
    expiration: datetime

    def document(self) -> dict[str, str]:
        """The JSON body of /latest/meta-data/iam/security-credentials/<role>, as EC2 writes it."""
        return {
            "Code": "Success",
            "LastUpdated": imds_time(datetime.now(timezone.utc)),
            "Type": "AWS-HMAC",
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key,
            "Token": self.token,
            "Expiration": imds_time(self.expiration),
        }


class FakeImds:
    """The fake IMDS server; `url` is its base URL (for EC2DBN_IMDS_URL / --imds-url, and for boto3's
    AWS_EC2_METADATA_SERVICE_ENDPOINT). `instance_id` and `credentials` may be set at any time."""

    def __init__(self, instance_id: str | None = None, credentials: RoleCredentials | None = None) -> None:
        self.instance_id = instance_id
        self.credentials = credentials
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # token -> expiry (monotonic seconds)
        self._spot: dict[str, str] | None = None
        self._rebalance: dict[str, str] | None = None
        self._failures: list[int] = []
        self.requests: list[ImdsRequest] = []
        self.tokens_issued: list[str] = []
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    # ----------------------------------------------------------------------------------- test controls

    def announce_spot_interruption(
        self, action: str = "terminate", in_seconds: float = 120
    ) -> dict[str, str]:
        """From now on instance-action answers 200 with {"action", "time"}; returns that document."""
        doc = {
            "action": action,
            "time": imds_time(datetime.now(timezone.utc) + timedelta(seconds=in_seconds)),
        }
        with self._lock:
            self._spot = doc
        return doc

    def recommend_rebalance(self) -> dict[str, str]:
        """From now on the rebalance recommendation answers 200 with {"noticeTime"}; returns it."""
        doc = {"noticeTime": imds_time(datetime.now(timezone.utc))}
        with self._lock:
            self._rebalance = doc
        return doc

    def expire_tokens(self) -> None:
        """Every token issued so far stops working (what an IMDS restart does): GETs with them get 401."""
        with self._lock:
            self._tokens.clear()

    def fail_next(self, count: int, status: int = 503) -> None:
        """The next `count` requests (of any kind) answer `status` with an empty body."""
        with self._lock:
            self._failures.extend([status] * count)

    def metadata_gets(self) -> list[ImdsRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == "GET"]

    def token_puts(self) -> list[ImdsRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == "PUT"]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeImds:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------- the server

    def _answer(self, method: str, path: str, headers: Any) -> tuple[int, bytes, dict[str, str]]:
        now = time.monotonic()
        token = headers.get(TOKEN_HEADER)
        extra: dict[str, str] = {}
        with self._lock:
            state = (
                "missing" if token is None else ("valid" if self._tokens.get(token, 0) > now else "invalid")
            )
            if self._failures:
                status, body = self._failures.pop(0), b""
            elif method == "PUT":
                status, body, extra = self._token(headers.get(TTL_HEADER), path, now)
            elif state != "valid":
                status, body = 401, b""
            else:
                status, body = self._metadata(path)
            self.requests.append(ImdsRequest(method, path, state, status, now))
        return status, body, extra

    def _metadata(self, path: str) -> tuple[int, bytes]:
        """(status, body) of a metadata GET with a valid token."""
        creds = self.credentials
        if path == INSTANCE_ID_PATH:
            return (200, self.instance_id.encode()) if self.instance_id else (404, b"")
        if creds is not None and path == CREDENTIALS_PATH:
            return 200, creds.role.encode()
        if creds is not None and path == CREDENTIALS_PATH + creds.role:
            return 200, json.dumps(creds.document(), indent=2).encode()
        doc = {SPOT_ACTION_PATH: self._spot, REBALANCE_PATH: self._rebalance}.get(path)
        return (200, json.dumps(doc).encode()) if doc else (404, b"")

    def _token(self, ttl: str | None, path: str, now: float) -> tuple[int, bytes, dict[str, str]]:
        if path != TOKEN_PATH:
            return 405, b"", {}
        if ttl is None or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
            return 400, b"", {}
        token = secrets.token_urlsafe(40)
        self._tokens[token] = now + int(ttl)
        self.tokens_issued.append(token)
        return 200, token.encode(), {TTL_HEADER: ttl}

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self) -> None:
                status, body, extra = fake._answer(self.command, self.path, self.headers)
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = _reply

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        return Handler


@pytest.fixture
def fake_imds() -> Iterator[FakeImds]:
    """A running FakeImds, stopped after the test."""
    with FakeImds() as imds:
        yield imds
