"""Server limits: slow and idle clients are cut off, and connections are capped.

aiohttp bounds header *sizes* but has no header timeout (a client may trickle a request
line one byte a minute), no body-idle timeout, and no connection cap. This module adds
them around aiohttp's own protocol, without changing how requests are handled:

- header timeout (`[server] header_timeout_seconds`): from the first byte of a request
  until its headers are complete. Past it the client gets a 408 problem and the
  connection is closed (a slowloris holds a slot for at most this long);
- body-idle timeout (`body_timeout_seconds`): enforced where bodies are read
  (`gateway/web/common.py body_chunks`, which every handler uses); `body_timeout()` is its
  problem (408, connection closed);
- keep-alive timeout (`keepalive_timeout_seconds`): aiohttp's own; it also closes a
  connection that never sends a first request;
- connection cap (`max_connections`): one more connection is answered 503 with
  Retry-After and closed at once, before any byte of it is parsed.

Invariants:
- Each connection is handled by aiohttp's `RequestHandler`, wrapped, never replaced: the
  wrapper only watches when a request's headers become complete (aiohttp's count of parsed
  requests) and when the connection is idle. It reads four attributes of aiohttp's
  handler; tests/hostile/test_slow_clients.py pins that behaviour against a real server.
- The canned answers here say nothing about the request (no echo of its bytes).
- A slow client costs only its own connection: nothing here waits on a client.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from prometheus_client import CollectorRegistry, Counter

from gateway.errors import DomainError

# How long a client refused at the connection cap is asked to wait before retrying.
CAP_RETRY_AFTER_SECONDS = 1


@dataclass(frozen=True)
class ServerLimits:
    header_timeout: float
    body_timeout: float
    keepalive_timeout: float
    max_connections: int

    @classmethod
    def from_config(cls, server_config) -> ServerLimits:
        return cls(server_config.header_timeout_seconds, server_config.body_timeout_seconds,
                   server_config.keepalive_timeout_seconds, server_config.max_connections)

    def runner_kwargs(self) -> dict[str, float]:
        """aiohttp's own knobs: the keep-alive timer, and how long it keeps reading an
        unread body after answering (never longer than the body-idle timeout)."""
        return {"keepalive_timeout": self.keepalive_timeout,
                "lingering_time": min(self.body_timeout, 10.0)}


def refused_counter(registry: CollectorRegistry) -> Callable[[str], None]:
    """`on_refused` for a guard: counts connections cut off, by reason."""
    counter = Counter("gateway_connections_refused",
                      "Connections refused at the cap (at_capacity) or closed because their"
                      " headers were too slow (header_timeout)", ["reason"], registry=registry)
    return lambda reason: counter.labels(reason).inc()


def body_timeout(seconds: float) -> DomainError:
    """408 for a request body that stopped arriving; the connection is closed after it."""
    error = DomainError(408, "request-timeout", "request timeout",
                        f"no body bytes for {seconds:g} seconds")
    error.hints["close"] = "1"
    return error


def _canned(status: int, reason: str, slug: str, title: str,
            headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 problem response for a connection no handler will ever see."""
    body = json.dumps({"type": f"urn:vgw:problem:{slug}", "title": title,
                       "status": status}).encode()
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/problem+json",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + body


HEADER_TIMEOUT_RESPONSE = _canned(408, "Request Timeout", "request-timeout",
                                  "request headers not received in time")
AT_CAPACITY_RESPONSE = _canned(503, "Service Unavailable", "at-capacity",
                               "too many connections",
                               {"Retry-After": str(CAP_RETRY_AFTER_SECONDS)})


class ConnectionGuard:
    """The protocol factory a listening socket uses: counts live connections and wraps
    each aiohttp handler in a `_GuardedConnection`."""

    def __init__(self, handler_factory: Callable[[], RequestHandler], limits: ServerLimits,
                 on_refused: Callable[[str], None] | None = None) -> None:
        self.handler_factory = handler_factory
        self.limits = limits
        self.active = 0
        # Called with "at_capacity" or "header_timeout" (a metric counts them).
        self.on_refused = on_refused or (lambda reason: None)

    def __call__(self) -> asyncio.Protocol:
        return _GuardedConnection(self)


class _GuardedConnection(asyncio.Protocol):
    def __init__(self, guard: ConnectionGuard) -> None:
        self.guard = guard
        self.inner: RequestHandler | None = None
        self.transport: asyncio.Transport | None = None
        self.header_timer: asyncio.TimerHandle | None = None
        self.requests_when_armed = 0

    # -- asyncio.Protocol ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transports are not subclasses of asyncio.Transport: no isinstance.
        self.transport = transport  # type: ignore[assignment]
        if self.guard.active >= self.guard.limits.max_connections:
            self.guard.on_refused("at_capacity")
            transport.write(AT_CAPACITY_RESPONSE)
            transport.close()
            return
        self.guard.active += 1
        self.inner = self.guard.handler_factory()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        inner = self.inner
        if inner is None:
            return
        parsed_before = inner._request_count
        # Idle: no request being handled or queued, so these bytes start (or continue)
        # the headers of the next one. Body bytes arrive while a request is in flight.
        idle = inner._current_request is None and not inner._messages
        inner.data_received(data)
        if inner._request_count != parsed_before:
            self._disarm()
        elif idle and self.header_timer is None:
            self.requests_when_armed = inner._request_count
            self.header_timer = asyncio.get_running_loop().call_later(
                self.guard.limits.header_timeout, self._headers_late)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.inner is not None:
            self.guard.active -= 1
            inner, self.inner = self.inner, None
            inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    # -- the header timer ---------------------------------------------------------------
    def _disarm(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _headers_late(self) -> None:
        self.header_timer = None
        inner, transport = self.inner, self.transport
        if inner is None or transport is None or transport.is_closing():
            return
        if inner._request_count != self.requests_when_armed:
            return          # the headers completed after all
        if inner._request_in_progress or inner._current_request is not None:
            # Armed in the moment between a request's headers being parsed and its
            # handler starting (aiohttp starts it as a task): what arrived were body bytes
            # of a request now being handled, which the body-idle timeout governs.
            return
        self.guard.on_refused("header_timeout")
        transport.write(HEADER_TIMEOUT_RESPONSE)
        transport.close()


class GuardedTCPSite(web.BaseSite):
    """A TCP listener whose connections go through a `ConnectionGuard`."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, limits: ServerLimits,
                 on_refused: Callable[[str], None] | None = None) -> None:
        super().__init__(runner)
        self.host, self.port = host, port
        self.limits = limits
        self.on_refused = on_refused
        self.guard: ConnectionGuard | None = None

    @property
    def name(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self.guard = ConnectionGuard(server, self.limits, self.on_refused)
        self._server = await asyncio.get_running_loop().create_server(
            self.guard, self.host, self.port, reuse_address=True)
