"""A moto server for the cost and catalog tests, plus a way to make it answer with real-looking spot prices.

moto prices every spot offer at 0.00001 USD/h, so tests that need realistic prices put an EC2 XML
response on the wire with a botocore `before-send` hook: the request is still built by the real client
(and recorded here, so tests can check what was asked) and the reply goes through botocore's real parser.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto.server import ThreadedMotoServer

_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"


@pytest.fixture(scope="session")
def spot_moto() -> Iterator[str]:
    """Endpoint URL of a moto server on a free loopback port (started once per test session)."""
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        srv.stop()


def ec2_client(endpoint: str, region: str = "us-east-1") -> Any:
    return boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@dataclass(frozen=True)
class Row:
    instance_type: str
    az: str
    price: str  # as EC2 sends it, e.g. "0.210400"
    timestamp: str  # ISO 8601 with Z
    product: str = "Linux/UNIX"


def history_xml(rows: list[Row], next_token: str = "") -> bytes:
    items = "".join(
        f"<item><instanceType>{r.instance_type}</instanceType>"
        f"<productDescription>{r.product}</productDescription><spotPrice>{r.price}</spotPrice>"
        f"<timestamp>{r.timestamp}</timestamp><availabilityZone>{r.az}</availabilityZone></item>"
        for r in rows
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><DescribeSpotPriceHistoryResponse xmlns="{_NS}">'
        f"<requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>"
        f"<spotPriceHistorySet>{items}</spotPriceHistorySet><nextToken>{next_token}</nextToken>"
        f"</DescribeSpotPriceHistoryResponse>"
    ).encode()


def error_xml(code: str, message: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error><Code>{code}</Code>'
        f"<Message>{message}</Message></Error></Errors><RequestID>ea966190-f9aa-478e</RequestID></Response>"
    ).encode()


class _Raw:
    """The slice of urllib3's response that botocore's AWSResponse reads."""

    def __init__(self, body: bytes) -> None:
        self._body = io.BytesIO(body)

    def stream(self, amt: int = 1024, decode_content: bool = False) -> Iterator[bytes]:
        while chunk := self._body.read(amt):
            yield chunk


class SpotReplies:
    """Answers DescribeSpotPriceHistory calls from a queue of (status, body); records each request's params.

    Other operations pass through to moto untouched.
    """

    def __init__(self, client: Any, replies: list[tuple[int, bytes]]) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, list[str]]] = []
        client.meta.events.register("before-send.ec2.DescribeSpotPriceHistory", self._send)

    def _send(self, request: Any, **_: Any) -> AWSResponse | None:
        body = request.body.decode() if isinstance(request.body, bytes) else str(request.body or "")
        self.requests.append(parse_qs(body))
        if not self.replies:
            return None  # reach moto
        status, payload = self.replies.pop(0)
        headers = {"Content-Type": "text/xml;charset=UTF-8", "Content-Length": str(len(payload))}
        return AWSResponse(request.url, status, headers, _Raw(payload))
