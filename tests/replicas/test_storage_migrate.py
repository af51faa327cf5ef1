"""`gateway storage migrate` (issue 10, item 4): an embedded installation (SQLite + files)
built through the real HTTP API is copied into PostgreSQL + S3; the first run is killed
part-way, the second resumes, the third finds nothing to do; then `gateway serve` on the
new config reads every call, recording, grant and log entry as before."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import psycopg

from tests.support.postgres import PostgresDatabase
from tests.support.seaweedfs import SeaweedS3, free_ports

from .cluster import ROOT, Replica, auth, cli_json, request, run_cli, storage_toml
from .steps import call, calls, deliver, delivery, standard_integration

OK = (200, 201, 202)


def _config(path: Path, data_dir: Path, storage: str = "") -> Replica:
    port, metrics_port = free_ports(2)
    path.write_text(f'[server]\nlisten = "127.0.0.1:{port}"\n'
                    f'public_base_url = "https://gateway.example.com"\n'
                    f'[metrics]\nlisten = "127.0.0.1:{metrics_port}"\n[logging]\n'
                    f'level = "WARNING"\n[storage]\ndata_dir = "{data_dir}"\n{storage}')
    return Replica(path.stem, path, port, metrics_port, {}, path.with_suffix(".log"))


async def _snapshot(http: aiohttp.ClientSession, gateway: Replica, tenant: dict[str, str],
                    recording_ids: list[str], log_size: int) -> dict:
    listed = await calls(http, gateway, tenant)
    details = [await call(http, gateway, tenant, c["id"]) for c in listed]
    audio = {}
    for rec in recording_ids:
        path = f"/v1/recordings/{rec}/audio"
        _, whole, _ = await request(http, gateway, "GET", path, headers=auth(tenant))
        status, part, _ = await request(http, gateway, "GET", path,
                                        headers={**auth(tenant), "Range": "bytes=70000-200000"})
        assert status == 206
        audio[rec] = (whole, part)
    status, grants, _ = await request(http, gateway, "GET", "/v1/access-requests",
                                      headers=auth(tenant))
    assert status == 200, grants
    status, entries, _ = await request(http, gateway, "GET",
                                       f"/v1/transparency/entries?start=0&end={log_size}",
                                       headers=auth(tenant))
    assert status == 200, entries
    # The log's current size is left out: every read of the log is itself logged.
    return {"calls": listed, "details": details, "audio": audio, "grants": grants,
            "entries": entries["entries"]}


async def test_an_embedded_installation_migrates_resumably_and_reads_as_before(
        tmp_path: Path, postgres: PostgresDatabase, seaweedfs: SeaweedS3):
    data_dir = tmp_path / "data"
    # SQLite + files; [storage.s3] names the S3 endpoint the migration will copy into
    # (unused until then), as the operator sets it before `gateway storage migrate`.
    old = _config(tmp_path / "embedded.toml", data_dir,
                  f'[storage.s3]\nendpoint_url = "{seaweedfs.endpoint_url}"\n')
    assert run_cli(old.config, "init").returncode == 0
    old.start()
    try:
        tenant = cli_json(old.config, "tenant", "create", "--name", "moving")
        staff = cli_json(old.config, "staff", "create", "--name", "Sam", "--employer", "Op",
                         "--country", "GB")
        staff_auth = {"Authorization": f"Bearer {staff['token']}"}
        async with aiohttp.ClientSession() as http:
            integration, secret = await standard_integration(http, old, tenant)
            for i in range(30):
                for status in ("ringing", "completed"):
                    assert await deliver(http, old, integration,
                                         delivery(secret, f"m-{i}", status,
                                                  from_number=f"+1415555{i:04d}")) in OK
            listed = await calls(http, old, tenant)
            uploads = {}
            for size, c in zip((6 * 1024 * 1024 + 7, 300_000, 90_000), listed[:3], strict=True):
                audio = os.urandom(size)
                status, body, _ = await request(
                    http, old, "POST", f"/v1/calls/{c['id']}/recordings",
                    headers={**auth(tenant), "Content-Type": "audio/wav"}, data=audio)
                assert status == 201, body
                uploads[body["id"]] = audio
            status, _, _ = await request(http, old, "PUT", "/v1/access-policy",
                                         headers=auth(tenant),
                                         json={"rules": {"*": {"technical": "auto_approve"}}})
            assert status == 200
            for n, c in enumerate(listed[:3]):
                status, body, _ = await request(
                    http, old, "POST", "/v1/staff/access-requests", headers=staff_auth,
                    json={"tenant": tenant["tenant_id"], "scope": {"calls": [c["id"]]},
                          "purpose": "fault_diagnostics", "reference": f"OPS-{n}",
                          "level": "technical", "duration_seconds": 3600})
                assert status == 201, body
                status, _, _ = await request(http, old, "GET",
                                             f"/v1/staff/diagnostics/calls/{c['id']}",
                                             headers=staff_auth)
                assert status == 200
            _, checkpoint, _ = await request(http, old, "GET", "/v1/transparency/checkpoint",
                                             headers=auth(tenant))
            before = await _snapshot(http, old, tenant, list(uploads), checkpoint["size"])
    finally:
        old.stop()
    for rec, audio in uploads.items():
        assert before["audio"][rec] == (audio, audio[70000:200001])

    schema = f"m_{secrets.token_hex(6)}"
    with psycopg.connect(postgres.url, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    database_url = f"{postgres.url}?options=-csearch_path%3D{schema}"
    prefix = f"m-{secrets.token_hex(6)}"
    target = ["--to-database", database_url, "--to-blobs", f"s3://gw-blobs/{prefix}",
              "--to-key-store", f"s3://gw-keys/{prefix}"]
    env = {**os.environ, **seaweedfs.env()}
    try:
        # Refusals first: the key store beside the blobs, and a source that is not SQLite.
        refused = run_cli(old.config, "storage", "migrate", "--to-database", database_url,
                          "--to-blobs", f"s3://gw-blobs/{prefix}",
                          "--to-key-store", f"s3://gw-blobs/{prefix}/keys", env=env)
        assert refused.returncode == 2 and "key-store" in refused.stderr

        # Run 1, killed with -9 as soon as it reports copying rows.
        first = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config",
                                  str(old.config), "storage", "migrate", *target], cwd=ROOT,
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        seen = []
        for line in first.stderr:
            seen.append(line)
            if "rows:" in line:
                first.send_signal(signal.SIGKILL)
                break
        first.wait(30)
        assert first.returncode == -signal.SIGKILL, "".join(seen)

        # Run 2 resumes and verifies; run 3 finds everything in place.
        second = run_cli(old.config, "storage", "migrate", *target, "--json", env=env,
                         timeout=300)
        assert second.returncode == 0, second.stdout + second.stderr
        report = json.loads(second.stdout)
        assert report["ok"] and report["problems"] == []
        assert report["keys_copied"] == 0 and report["keys"] >= 1      # run 1 got that far
        assert report["rows_copied"] > 0 and report["blobs"] == 3
        assert report["log_roots_compared"] >= 1
        assert report["rows"]["calls"] == 30 and report["rows"]["call_events"] == 60
        assert "storage migrate:" in second.stderr          # progress on stderr, not stdout
        third = json.loads(run_cli(old.config, "storage", "migrate", *target, "--json",
                                   env=env, timeout=300).stdout)
        assert third["ok"] and (third["rows_copied"], third["blobs_copied"],
                                third["keys_copied"]) == (0, 0, 0)

        # The new config: same data_dir (root and signing keys), the new stores.
        new = _config(tmp_path / "scaled.toml", data_dir,
                      storage_toml(database_url, seaweedfs, prefix))
        new.env = seaweedfs.env()
        new.start()
        try:
            async with aiohttp.ClientSession() as http:
                after = await _snapshot(http, new, tenant, list(uploads), checkpoint["size"])
            assert after == before
            verified = run_cli(new.config, "audit", "verify", "--tenant", tenant["tenant_id"],
                               env=env)
            assert verified.returncode == 0, verified.stdout + verified.stderr
        finally:
            new.stop()
    finally:
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")
