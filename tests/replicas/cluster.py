"""Two (or more) real `gateway serve` processes on one PostgreSQL schema and one pair of
SeaweedFS S3 prefixes: the multi-replica harness (issue 10, item 3).

Invariants:
- Each replica is what an operator runs: `python -m gateway.cli --config X serve` in a
  subprocess with its own data dir (only the operator's root.key and signing.key, copied
  from the first replica's `gateway init`, as a deployment copies them to every machine),
  its own [server] listen and [metrics] listen, and the same storage URLs.
- AWS credentials reach the replicas only through the environment the `seaweedfs`
  fixture exports; the throwaway test CA reaches them only through SSL_CERT_FILE (the
  fetcher keeps https and certificate checks on).
- Every replica is stopped (SIGTERM, then SIGKILL) by `Cluster.close`; a test that kills
  one with -9 restarts it with `restart`, so the module's cluster stays whole.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.ingest.fakes import TlsMaterial
from tests.support.seaweedfs import BUCKETS, SeaweedS3, free_ports

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_BASE_URL = "https://gateway.example.com"   # behind one load balancer: one public URL
# A cold `gateway serve` (imports, PostgreSQL pool, S3 client) answers /readyz in ~2 s
# here; 60 s leaves room for a loaded 2-core box.
START_TIMEOUT_SECONDS = 60.0

# Short intervals so background work (fetch jobs, notices, rotation, sweeps) runs within
# a test; leases short enough that a killed replica's job is taken over in seconds.
TUNING = """
[logging]
level = "WARNING"
[recording_fetch]
allow_private_addresses = true
poll_interval_seconds = 0.2
base_delay_seconds = 0.2
max_delay_seconds = 1.0
connect_timeout_seconds = 2.0
read_timeout_seconds = 2.0
timeout_seconds = 4.0
lease_seconds = 5.0
[recording_fetch.allowed_hosts]
standard = ["127.0.0.1"]
[staff_access]
notify_allow_http = true
notify_allow_private_addresses = true
notify_backoff_seconds = 0.2
notify_backoff_max_seconds = 1.0
notify_timeout_seconds = 2.0
sweep_interval_seconds = 1.0
[retention]
sweep_interval_seconds = 0.5
batch_size = 3
[keys]
grace_seconds = 1.0
poll_interval_seconds = 0.2
lease_seconds = 5.0
"""


def ip_tls(directory: Path) -> TlsMaterial:
    """A throwaway CA and a server certificate for 127.0.0.1 (an IP SAN: the fetcher checks
    the certificate against the address the URL names)."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vgw replica test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "server.pem", directory / "server.key"
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca_pem)
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    (directory / "ca.pem").write_bytes(ca_pem)
    return TlsMaterial(ca_pem, cert_file, key_file)


def storage_toml(database_url: str, s3: SeaweedS3, prefix: str) -> str:
    return (f'database_url = "{database_url}"\n'
            f'blob_url = "s3://{BUCKETS[0]}/{prefix}"\n'
            f'key_store_url = "s3://{BUCKETS[1]}/{prefix}"\n'
            f'[storage.s3]\nendpoint_url = "{s3.endpoint_url}"\nregion = "{s3.region}"\n')


def run_cli(config: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gateway.cli", "--config", str(config), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def cli_json(config: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = run_cli(config, *args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


@dataclass
class Replica:
    name: str
    config: Path
    port: int
    metrics_port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "--config", str(self.config), "serve"],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env}, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"replica {self.name} exited {self.proc.returncode}:\n"
                                   + self.log.read_text(errors="replace")[-3000:])
            if time.monotonic() > deadline:
                raise RuntimeError(f"replica {self.name} not ready")
            time.sleep(0.1)

    def _ready(self) -> bool:
        import urllib.error
        import urllib.request
        if not _answers(self.port):
            return False
        try:
            with urllib.request.urlopen(self.url + "/readyz", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self) -> None:
        self.kill()
        self.start()


@dataclass
class Cluster:
    replicas: list[Replica]
    database_url: str
    workdir: Path
    env: dict[str, str]
    configs: list[Path] = field(default_factory=list)

    @property
    def a(self) -> Replica:
        return self.replicas[0]

    @property
    def b(self) -> Replica:
        return self.replicas[1]

    def tenant(self, name: str = "acme") -> dict[str, str]:
        """`gateway tenant create` run against replica A's config, as an operator would
        (names are unique per installation: a random suffix keeps tests apart)."""
        return cli_json(self.a.config, "tenant", "create", "--name",
                        f"{name}-{secrets.token_hex(3)}", env=self.env)

    def staff(self) -> dict[str, str]:
        return cli_json(self.a.config, "staff", "create", "--name", "Sam", "--employer",
                        "Operator Ltd", "--country", "GB", env=self.env)

    def close(self) -> None:
        for replica in self.replicas:
            replica.stop()


def start_cluster(workdir: Path, database_url: str, s3: SeaweedS3, tls: TlsMaterial,
                  count: int = 2) -> Cluster:
    prefix = f"r-{secrets.token_hex(6)}"
    env = {**s3.env(), "SSL_CERT_FILE": str(tls.cert_file.parent / "ca.pem")}
    replicas = []
    for index in range(count):
        name = "ab"[index] if index < 2 else str(index)
        data_dir = workdir / f"replica-{name}"
        data_dir.mkdir(parents=True)
        port, metrics_port = free_ports(2)
        config = workdir / f"replica-{name}.toml"
        config.write_text(
            f'[server]\nlisten = "127.0.0.1:{port}"\npublic_base_url = "{PUBLIC_BASE_URL}"\n'
            f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n'
            f'[storage]\ndata_dir = "{data_dir}"\n' + storage_toml(database_url, s3, prefix)
            + TUNING)
        replicas.append(Replica(name, config, port, metrics_port, env,
                                workdir / f"replica-{name}.log"))
    done = run_cli(replicas[0].config, "init", env=env)
    assert done.returncode == 0, done.stderr
    first = workdir / "replica-a"
    for replica in replicas[1:]:
        for key_file in ("root.key", "signing.key"):
            shutil.copy2(first / key_file, workdir / f"replica-{replica.name}" / key_file)
    cluster = Cluster(replicas, database_url, workdir, env)
    try:
        for replica in replicas:
            replica.start()
    except BaseException:
        cluster.close()
        raise
    return cluster


async def request(http: aiohttp.ClientSession, replica: Replica, method: str, path: str,
                  **kwargs: Any) -> tuple[int, Any, Any]:
    """One request to one replica; returns (status, JSON body or bytes, headers)."""
    async with http.request(method, replica.url + path, **kwargs) as response:
        raw = await response.read()
        body: Any = raw
        if "json" in response.headers.get("Content-Type", ""):
            body = json.loads(raw)
        return response.status, body, response.headers


def auth(tenant: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant['api_key']}"}
