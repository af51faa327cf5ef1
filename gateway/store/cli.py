"""`gateway storage migrate`: copy this installation (SQLite + files, as configured) into
PostgreSQL and S3-compatible stores named on the command line, then verify the copy.

Invariants:
- The source is the configured installation and must be the embedded one (SQLite): the
  command refuses anything else, and refuses a target that is the source itself or a key
  store that shares a location with the blob store (the rule `gateway serve` enforces).
- The source is only read; the gateway (every replica) should be stopped first. Running it
  again after any interruption resumes: copies are idempotent (gateway.store.transfer).
- Progress goes to stderr (a bar on a terminal, a line per stage step otherwise); stdout
  carries only the result (text, or one JSON object with --json). Neither names a tenant,
  a number or a key: counts, table names and ids of blobs whose copy differs only.
- Exit status: 0 verified equal, 1 the verification found differences, 2 refused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from gateway.core.commands import Command
from gateway.errors import ConfigError
from gateway.store import open_database
from gateway.store.keystore import open_blob_store, open_key_store
from gateway.store.transfer import transfer
from gateway.store.urls import store_location, stores_overlap


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to-database", metavar="URL", required=True,
                        help="the PostgreSQL database to copy into (postgresql://...); its"
                             " schema is created or migrated first")
    parser.add_argument("--to-blobs", metavar="URL", required=True,
                        help="the blob store to copy recordings into (s3://bucket/prefix,"
                             " or file:///dir)")
    parser.add_argument("--to-key-store", metavar="URL", required=True,
                        help="the key store to copy tenant key material into (another"
                             " bucket or prefix than --to-blobs)")


class _Progress:
    """Stage progress on stderr: a redrawn bar on a terminal (at most every 0.1 s), one
    line per 10% step otherwise (so a log file stays short)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.stage = ""
        self._last = 0.0
        self._step = -1

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            if self.tty and self.stage:
                self.stream.write("\n")
            self.stage, self._step = stage, -1
        percent = 100 * done // max(total, 1)
        if self.tty:
            now = time.monotonic()
            if now - self._last < 0.1 and done < total:
                return
            self._last = now
            filled = 30 * done // max(total, 1)
            self.stream.write(f"\r{stage:<32} [{'#' * filled}{'-' * (30 - filled)}]"
                              f" {percent:3d}% {done}/{total}")
        elif percent // 10 != self._step:
            self._step = percent // 10
            self.stream.write(f"storage migrate: {stage} {done}/{total}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.stage:
            self.stream.write("\n")
            self.stream.flush()


def _check_target(args: argparse.Namespace, config: Any) -> None:
    if config.storage.database_url:
        raise ConfigError("storage migrate copies an embedded installation (SQLite): this"
                          " config already uses storage.database_url")
    if getattr(config, "regions", None):
        raise ConfigError("storage migrate does not copy region-pinned stores ([regions]"
                          " is configured); copy each region's stores on their own")
    if not args.to_database.startswith(("postgresql://", "postgres://")):
        raise ConfigError("--to-database must be a postgresql:// URL")
    if not config.database_path.exists():
        raise ConfigError(f"no database at {config.database_path}: nothing to migrate"
                          " (is --config the installation's config?)")
    blobs = store_location(args.to_blobs, Path("/nonexistent-blobs"))
    key_store = store_location(args.to_key_store, Path("/nonexistent-keys"))
    if not args.to_blobs or not args.to_key_store:
        raise ConfigError("--to-blobs and --to-key-store need a URL")
    if stores_overlap(blobs, key_store):
        raise ConfigError("--to-key-store must be another bucket or prefix than --to-blobs"
                          " (and not inside it): key material never sits beside the"
                          " recordings it protects")
    source_blobs = store_location(config.storage.blob_url, config.blob_dir)
    source_keys = store_location(config.storage.key_store_url, config.tenant_key_dir)
    if stores_overlap(blobs, source_blobs) or stores_overlap(key_store, source_keys):
        raise ConfigError("the target stores must not be the source stores")


async def storage_migrate(args: argparse.Namespace, config: Any) -> int:
    try:
        _check_target(args, config)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    progress = _Progress(sys.stderr)
    source_db = await open_database("", config.database_path)
    target_db = None
    stores: list[Any] = []
    try:
        target_db = await open_database(args.to_database, config.database_path,
                                        pool_size=2)
        source_blobs = open_blob_store(config.storage.blob_url, config.blob_dir,
                                       config.storage.s3)
        source_keys = open_key_store(config.storage.key_store_url, config.tenant_key_dir,
                                     config.storage.s3)
        target_blobs = open_blob_store(args.to_blobs, config.blob_dir, config.storage.s3)
        target_keys = open_key_store(args.to_key_store, config.tenant_key_dir,
                                     config.storage.s3)
        stores = [source_blobs, source_keys, target_blobs, target_keys]
        started = time.monotonic()
        report = await transfer(source_db, target_db, source_blobs, target_blobs,
                                source_keys, target_keys, progress)
        progress.close()
    finally:
        for store in stores:
            close = getattr(store, "close", None)
            if close is not None:
                await close()
        if target_db is not None:
            await target_db.close()
        await source_db.close()
    data = {**report.as_dict(), "duration_seconds": round(time.monotonic() - started, 3)}
    if args.json:
        print(json.dumps(data))
    else:
        print(f"storage migrate: {sum(report.rows.values())} rows in {len(report.rows)}"
              f" tables ({report.rows_copied} copied this run), {report.blobs} blobs"
              f" ({report.blobs_copied} copied, {report.blob_bytes} bytes), {report.keys}"
              f" keys ({report.keys_copied} copied), {report.log_roots} log roots compared")
        print("verified: the copy equals the source" if report.ok else
              "NOT verified:\n  " + "\n  ".join(report.problems))
    return 0 if report.ok else 1


cli_commands = [
    Command(("storage", "migrate"), storage_migrate, _configure,
            help="copy this SQLite + files installation into PostgreSQL and S3, verified",
            description="Copy the configured (SQLite + files) installation into PostgreSQL"
                        " and S3-compatible stores: rows, recording ciphertext and tenant"
                        " key material, nothing decrypted. Resumable and idempotent: run it"
                        " again after any interruption. Verifies row counts per table, each"
                        " blob's size and SHA-256, each key's bytes and each tenant's"
                        " transparency-log root. Stop the gateway first.",
            offline=True),
]
