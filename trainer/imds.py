"""A minimal IMDSv2 client (standard library only): what the spot watcher (trainer.spot_watch) and the
uploader (trainer.store_sync: the instance id) ask EC2's instance metadata service. GETs carry a session
token fetched with `PUT /latest/api/token` and renewed before its TTL runs out and on a 401; the first
contact failing means there is no IMDS here.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable
from urllib.parse import urlsplit

DEFAULT_IMDS_URL = "http://169.254.169.254"
IMDS_URL_ENV = "EC2DBN_IMDS_URL"
TOKEN_PATH = "/latest/api/token"
SPOT_ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"
TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"

MAX_TOKEN_TTL_S = 21600  # what IMDS allows (6 h)
CONNECT_TIMEOUT_S = 1.0  # IMDS is a link-local hop away: anything slower means it is not there
READ_TIMEOUT_S = 1.0
_MAX_BODY = 64 * 1024


class ImdsUnavailable(Exception):
    """The first contact failed: there is no IMDS here (not on EC2, or metadata is turned off)."""


class ImdsError(Exception):
    """One request failed (timeout, connection reset, an unexpected status): retry on the next poll."""


class ImdsClient:
    """A minimal IMDSv2 client: GETs carry a session token, fetched with PUT and renewed before it expires.

    base_url: e.g. http://169.254.169.254 (http or https, host, optional port; a path is ignored).
    token_ttl: seconds asked for the token (1..21600); it is renewed when less than min(60, ttl/4) s remain.
    """

    def __init__(
        self,
        base_url: str,
        token_ttl: int = MAX_TOKEN_TTL_S,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        read_timeout: float = READ_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(base_url)
        host = parts.hostname
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError(f"IMDS URL must look like http://169.254.169.254, got {base_url!r}")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"IMDS URL has a bad port: {base_url!r}") from None
        if not 1 <= token_ttl <= MAX_TOKEN_TTL_S:
            raise ValueError(f"token TTL must be 1..{MAX_TOKEN_TTL_S} seconds, got {token_ttl}")
        self.base_url = f"{parts.scheme}://{parts.netloc}"
        self._https = parts.scheme == "https"
        self._host, self._port = host, port
        self.token_ttl = token_ttl
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._clock = clock
        self._token: str | None = None
        self._token_expires = 0.0
        self.tokens_fetched = 0

    def url(self, path: str) -> str:
        return self.base_url + path

    def open_session(self) -> None:
        """Fetch the first token. Raises ImdsUnavailable when IMDS does not answer or refuses a token."""
        try:
            self._fetch_token()
        except ImdsError as exc:
            raise ImdsUnavailable(str(exc)) from None

    def get(self, path: str) -> bytes | None:
        """The body of a metadata GET, or None on 404 (nothing there). Raises ImdsError otherwise.

        A 401 means the token expired or IMDS restarted: one retry with a fresh token.
        """
        for attempt in (1, 2):
            status, body = self._request("GET", path, {TOKEN_HEADER: self._valid_token()})
            if status == 200:
                return body
            if status == 404:
                return None
            if status == 401 and attempt == 1:
                self._token = None
                continue
            raise ImdsError(f"GET {path} answered HTTP {status}")
        raise AssertionError("unreachable")

    def _valid_token(self) -> str:
        margin = min(60.0, self.token_ttl / 4)
        if self._token is None or self._clock() >= self._token_expires - margin:
            self._fetch_token()
        assert self._token is not None
        return self._token

    def _fetch_token(self) -> None:
        asked = self._clock()
        status, body = self._request("PUT", TOKEN_PATH, {TOKEN_TTL_HEADER: str(self.token_ttl)})
        if status != 200:
            raise ImdsError(f"the session token request (PUT {TOKEN_PATH}) answered HTTP {status}")
        token = body.decode("ascii", errors="replace").strip()
        if not token or not token.isprintable() or " " in token:
            raise ImdsError(f"the session token request (PUT {TOKEN_PATH}) returned no usable token")
        self._token, self._token_expires = token, asked + self.token_ttl
        self.tokens_fetched += 1

    def _request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body) of one request on a fresh connection. Errors name the URL, never the headers."""
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self.connect_timeout)
        try:
            conn.connect()
            if conn.sock is not None:
                conn.sock.settimeout(self.read_timeout)
            conn.request(method, path, headers=headers)
            resp = conn.getresponse()
            return resp.status, resp.read(_MAX_BODY)
        except TimeoutError:
            raise ImdsError(f"{method} {self.url(path)} timed out") from None
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise ImdsError(f"{method} {self.url(path)} failed: {reason}") from None
        finally:
            conn.close()


def instance_id(base_url: str) -> str | None:
    """This instance's id (i-...) from IMDSv2 at `base_url`; None off EC2, when IMDS does not answer or
    answers something that is no instance id (the uploader then writes null and terminates nothing)."""
    try:
        client = ImdsClient(base_url)
        client.open_session()
        body = client.get(INSTANCE_ID_PATH)
    except (ValueError, ImdsError, ImdsUnavailable):
        return None
    text = (body or b"").decode("ascii", errors="replace").strip()
    return text if text.startswith("i-") and text.isprintable() and " " not in text else None
