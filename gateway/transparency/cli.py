"""`gateway audit verify` and `gateway audit public-key`.

Verification never trusts a key it is handed by what it verifies: a bundle's own key is
used only when the operator says so with --trust-bundle-key (and the output says so)."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any

import keys
from gateway.core.commands import Command
from gateway.store import open_database
from gateway.transparency.checkpoint import CheckpointError, verifier_key_string
from gateway.transparency.log import origin_prefix_from_url, verify_stored_log
from gateway.transparency.verify import VerifyReport, verify_bundle


def _configure_verify(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--tenant", metavar="TENANT_ID",
                       help="verify this tenant's log as stored in the database")
    group.add_argument("--bundle", metavar="FILE",
                       help="verify an export bundle file (offline)")
    parser.add_argument("--trusted-key", metavar="VKEY",
                        help="the verifier key you pinned (default: the operator key from"
                             " this gateway's config, when it has one)")
    parser.add_argument("--trust-bundle-key", action="store_true",
                        help="with --bundle and no trusted key: check against the key inside"
                             " the bundle (proves only internal consistency)")


async def _stored_origin(config: Any, tenant_id: str) -> str:
    db = await open_database(config.storage.database_url, config.database_path)
    try:
        row = await db.fetchone("SELECT origin FROM audit_heads WHERE tenant_id = ?",
                                (tenant_id,))
    finally:
        await db.close()
    if row is not None:
        return row["origin"]
    return f"{origin_prefix_from_url(config.server.public_base_url)}/tenants/{tenant_id}"


async def _cmd_verify(args: argparse.Namespace, config: Any) -> int:
    trusted = args.trusted_key
    public = None
    if trusted is None and config.signing_key_path.exists():
        public = keys.OperatorSigningKey.load(config.signing_key_path).public_key_raw()
    if args.tenant:
        if trusted is None and public is None:
            print("gateway: no --trusted-key and no signing key in the config: nothing to"
                  " verify against")
            return 2
        if trusted is None:
            trusted = verifier_key_string(await _stored_origin(config, args.tenant), public)
        db = await open_database(config.storage.database_url, config.database_path)
        try:
            report = await verify_stored_log(db, args.tenant, trusted)
        finally:
            await db.close()
    else:
        try:
            bundle = json.loads(Path(args.bundle).read_text())
        except (OSError, ValueError) as exc:
            print(f"gateway: cannot read bundle: {type(exc).__name__}")
            return 2
        if trusted is None and public is not None and isinstance(bundle, dict) and \
                isinstance(bundle.get("key_name"), str):
            try:
                trusted = verifier_key_string(bundle["key_name"], public)
            except ValueError:
                trusted = None
        if trusted is None and not args.trust_bundle_key:
            print("gateway: no trusted key: a bundle checked against its own key proves only"
                  " that it is consistent with itself. Pass --trusted-key with the verifier"
                  " key you pinned (`gateway audit public-key --tenant ID` on the gateway, or"
                  " GET /v1/transparency/public-key), or --trust-bundle-key to check anyway.")
            return 2
        try:
            report = verify_bundle(bundle, trusted_key=trusted)
        except CheckpointError:  # pragma: no cover - verify_bundle reports, never raises
            return 1
        if trusted is None:
            report.warnings.append("no trusted key: checked against the bundle's own key, "
                                   "which proves nothing until compared with the pinned one")
    _print_report(args, report)
    return 0 if report.ok else 1


def _print_report(args: argparse.Namespace, report: VerifyReport) -> None:
    if getattr(args, "json", False):
        print(json.dumps(report.as_dict()))
        return
    print(("OK" if report.ok else "FAILED") + f": {report.entries} entries, "
          f"{report.checkpoints} checkpoints, verified up to size {report.verified_size}")
    for line in report.problems:
        print(f"problem: {line}")
    for line in report.warnings:
        print(f"warning: {line}")
    if report.verifier_key:
        print(f"key: {report.verifier_key}")


async def _cmd_public_key(args: argparse.Namespace, config: Any) -> int:
    public = keys.OperatorSigningKey.load(config.signing_key_path).public_key_raw()
    origin = await _stored_origin(config, args.tenant)
    vkey = verifier_key_string(origin, public)
    if getattr(args, "json", False):
        print(json.dumps({"origin": origin, "key_name": origin, "verifier_key": vkey,
                          "public_key": base64.b64encode(public).decode()}))
    else:
        print(vkey)
    return 0


cli_commands = [
    Command(("audit", "verify"), _cmd_verify, _configure_verify, offline=True,
            help="verify a tenant's transparency log (stored, or an export bundle)"),
    Command(("audit", "public-key"), _cmd_public_key,
            lambda p: p.add_argument("--tenant", required=True, metavar="TENANT_ID",
                                     help="the tenant whose log key to print"),
            offline=True, help="print the verifier key a tenant pins for its log"),
]
