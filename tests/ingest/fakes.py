"""A fake platform media server for recording fetch tests: real HTTPS on 127.0.0.1 with a
certificate for the platforms' own host names, issued by a throwaway CA, plus a resolver
that points those names (and any other) at it. The gateway's fetcher runs unchanged:
https only, certificate verification on, host allow-list on."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Every name the fake answers for (the certificate covers them all). evil.example.net is a
# host no allow-list names: tests assert it is never contacted, so it must be reachable.
FAKE_HOSTS = ("api.twilio.com", "media.twiliocdn.com", "api.nexmo.com", "api.telnyx.com",
              "s3.amazonaws.com", "media.example.com", "evil.example.net")


@dataclass
class TlsMaterial:
    ca_pem: bytes
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """Trusts the throwaway CA only: verification stays on, hostname checks too."""
        return ssl.create_default_context(cadata=self.ca_pem.decode())

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx


def _key_usage(**on: bool) -> x509.KeyUsage:
    names = ("digital_signature", "content_commitment", "key_encipherment",
             "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
             "encipher_only", "decipher_only")
    return x509.KeyUsage(**{n: on.get(n, False) for n in names})


def make_tls(directory: Path, names: tuple[str, ...] = FAKE_HOSTS) -> TlsMaterial:
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vgw throwaway test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                          + ca_cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return TlsMaterial(ca_cert.public_bytes(serialization.Encoding.PEM), cert_file, key_file)


class FakeResolver(AbstractResolver):
    """Answers every name with one address and port (the fake server), recording lookups.
    It never asks real DNS, so a test cannot reach the internet by accident."""

    def __init__(self, port: int, address: str = "127.0.0.1") -> None:
        self.port = port
        self.address = address
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        self.lookups.append(host)
        return [{"hostname": host, "host": self.address, "port": self.port,
                 "family": socket.AF_INET, "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        pass


@dataclass
class Seen:
    method: str
    host: str
    path_qs: str
    headers: dict[str, str]


Action = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class FakePlatform:
    """Routes (host, path) to a script of actions; the last action repeats. Every request,
    routed or not, is recorded."""

    requests: list[Seen] = field(default_factory=list)
    routes: dict[tuple[str, str], list[Action]] = field(default_factory=dict)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    _runner: Any = None

    def route(self, host: str, path: str, *actions: Action) -> None:
        self.routes[(host, path)] = list(actions)

    def seen(self, host: str | None = None) -> list[Seen]:
        return [r for r in self.requests if host is None or r.host == host]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        host = (request.host or "").rsplit(":", 1)[0] if request.host.count(":") == 1 \
            else request.host
        self.requests.append(Seen(request.method, host, request.path_qs,
                                  dict(request.headers)))
        actions = self.routes.get((host, request.path))
        if not actions:
            return web.Response(status=404)
        action = actions.pop(0) if len(actions) > 1 else actions[0]
        return await action(request)

    async def start(self, tls: TlsMaterial) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock, ssl_context=tls.server_context()).start()

    async def close(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- actions ---------------------------------------------------------------------------
    @staticmethod
    def audio(data: bytes, content_type: str = "audio/wav",
              check: Callable[[web.Request], int | None] | None = None) -> Action:
        """Serve `data` in 64 KiB writes; `check(request)` may return a status to refuse."""
        async def action(request: web.Request) -> web.StreamResponse:
            if check is not None and (refusal := check(request)) is not None:
                return web.Response(status=refusal)
            response = web.StreamResponse(headers={"Content-Type": content_type})
            response.content_length = len(data)
            await response.prepare(request)
            for i in range(0, len(data), 65536):
                await response.write(data[i:i + 65536])
            await response.write_eof()
            return response
        return action

    @staticmethod
    def status(code: int) -> Action:
        async def action(request: web.Request) -> web.StreamResponse:
            return web.Response(status=code, text="nope")
        return action

    @staticmethod
    def redirect(location: str, code: int = 302) -> Action:
        async def action(request: web.Request) -> web.StreamResponse:
            return web.Response(status=code, headers={"Location": location})
        return action

    def stall(self, data: bytes = b"", content_type: str = "audio/wav") -> Action:
        """Send the headers and `data` (a first part of a larger body), then hang until the
        test ends: a read timeout, or a download in flight when the gateway stops."""
        async def action(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse(headers={"Content-Type": content_type})
            response.content_length = len(data) + 1_000_000
            await response.prepare(request)
            if data:
                await response.write(data)
            await self.release.wait()
            return response
        return action
