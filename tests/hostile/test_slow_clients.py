"""Slow and idle clients against a real `gateway serve` (issue 13, item 3).

Timeouts are set small here ([server] header 1 s, body 1 s, keep-alive 2 s, 40
connections) so each cut-off is observed within seconds. Raw sockets play the clients:
a slowloris trickling headers, a slow body (on an unauthenticated webhook too), an idle
connection, and a flood past the connection cap, while a well-behaved client is served
promptly throughout.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from tests.hostile.conftest import Served, served_gateway

HEADER_TIMEOUT = BODY_TIMEOUT = 1.0
# Longer than the header timeout: a connection that never completes its headers is closed
# by whichever is shorter (aiohttp's keep-alive timer starts at connect), silently.
KEEPALIVE = 2.0
MAX_CONNECTIONS = 40


@pytest.fixture(scope="module")
def slow_served() -> Iterator[Served]:
    yield from served_gateway(server=(
        f"header_timeout_seconds = {HEADER_TIMEOUT}\nbody_timeout_seconds = {BODY_TIMEOUT}\n"
        f"keepalive_timeout_seconds = {KEEPALIVE}\nmax_connections = {MAX_CONNECTIONS}\n"))


def connect(served: Served) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", served.gw.port), timeout=10)
    return sock


def read_until_closed(sock: socket.socket, limit: float = 10.0) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    sock.settimeout(limit)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data, time.monotonic() - started


def trickle(sock: socket.socket, payload: bytes, every: float, stop: threading.Event) -> None:
    for byte in payload:
        if stop.is_set():
            return
        try:
            sock.send(bytes([byte]))
        except OSError:
            return
        time.sleep(every)


def assert_prompt(served: Served, budget: float = 1.0) -> None:
    started = time.monotonic()
    response = requests.get(served.url + "/v1/calls", headers=served.tenant_auth, timeout=10)
    assert response.status_code == 200
    assert time.monotonic() - started < budget


def test_slowloris_headers_are_cut_off_and_do_not_delay_others(slow_served: Served):
    stop = threading.Event()
    socks = [connect(slow_served) for _ in range(10)]
    request = b"GET /v1/calls HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"a" * 200
    threads = [threading.Thread(target=trickle, args=(s, request, 0.2, stop), daemon=True)
               for s in socks]
    for thread in threads:
        thread.start()
    try:
        assert_prompt(slow_served)              # others are served while they trickle
        data, elapsed = read_until_closed(socks[0])
        assert data.startswith(b"HTTP/1.1 408"), data[:100]
        assert b"application/problem+json" in data
        assert elapsed < HEADER_TIMEOUT + 3
    finally:
        stop.set()
        for sock in socks:
            sock.close()


def test_slow_body_on_an_unauthenticated_webhook_is_cut_off(slow_served: Served):
    sock = connect(slow_served)
    path = "/v1/hooks/standard/00000000-0000-4000-8000-000000000000"
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Content-Length: 1000\r\n\r\n{".encode())
    data, elapsed = read_until_closed(sock)
    # Either the integration is unknown before the body is read (404), or the body
    # stalls (408); both answer quickly and close instead of waiting for the client.
    assert data.startswith((b"HTTP/1.1 408", b"HTTP/1.1 404")), data[:100]
    assert elapsed < BODY_TIMEOUT + 10
    sock.close()


def test_slow_body_on_an_authenticated_json_route_gets_408(slow_served: Served):
    sock = connect(slow_served)
    token = slow_served.tenant_auth["Authorization"]
    sock.sendall(("PUT /v1/retention HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                  f"\r\nAuthorization: {token}\r\nContent-Length: 100\r\n\r\n{{").encode())
    data, elapsed = read_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert b"request-timeout" in data
    assert elapsed < BODY_TIMEOUT + 3
    sock.close()


def test_idle_connections_are_closed(slow_served: Served):
    never_spoke = connect(slow_served)
    data, elapsed = read_until_closed(never_spoke)
    assert data == b"" and elapsed < KEEPALIVE + 3
    kept_alive = connect(slow_served)
    kept_alive.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data, elapsed = read_until_closed(kept_alive)
    assert data.startswith(b"HTTP/1.1 200") and elapsed < KEEPALIVE + 3


def test_connections_past_the_cap_get_503_and_the_cap_frees_up(slow_served: Served):
    held = [connect(slow_served) for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.2)
    try:
        extra = connect(slow_served)
        data, _ = read_until_closed(extra, limit=5)
        assert data.startswith(b"HTTP/1.1 503"), data[:100]
        assert b"Retry-After: 1" in data and b"at-capacity" in data
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.3)
    assert_prompt(slow_served)


def test_a_long_steady_upload_is_not_cut_by_the_header_timeout(slow_served: Served):
    """The header timeout covers headers only: an upload that takes several times longer,
    its bytes flowing steadily (within the body-idle timeout), is stored whole."""
    import uuid
    from datetime import UTC, datetime

    from tests.support.signers import call_updated, new_whsec, standard_delivery
    auth = slow_served.tenant_auth
    secret = new_whsec()
    integration = requests.post(slow_served.url + "/v1/integrations", headers=auth,
                                timeout=10, json={"platform": "standard",
                                                  "credentials": {"secret": secret}}).json()
    raw, headers = standard_delivery(secret, call_updated(f"c-{uuid.uuid4()}", "completed"),
                                     datetime.now(UTC))
    hook = f"{slow_served.url}/v1/hooks/standard/{integration['id']}"
    assert requests.post(hook, data=raw, headers=headers, timeout=10).status_code == 200
    call_id = requests.get(slow_served.url + "/v1/calls", headers=auth,
                           timeout=10).json()["items"][0]["id"]

    def steady_body() -> Iterator[bytes]:
        for _ in range(int(HEADER_TIMEOUT * 3 / 0.1)):     # ~3 header timeouts long
            time.sleep(0.1)                                  # well within the body timeout
            yield b"\x01" * 4096

    started = time.monotonic()
    upload = requests.post(f"{slow_served.url}/v1/calls/{call_id}/recordings",
                           headers={**auth, "Content-Type": "audio/wav"}, data=steady_body(),
                           timeout=30)
    assert time.monotonic() - started > HEADER_TIMEOUT * 2
    assert upload.status_code == 201, upload.text
    assert upload.json()["length"] == 30 * 4096
