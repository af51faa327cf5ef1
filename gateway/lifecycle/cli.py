"""The lifecycle area's `gateway` subcommands: `retention run`, `keys rotate`, `keys status`,
`keys rotate-tenant-root`, `keys rotate-blind-index` and `tenant offboard`.

Invariants:
- Each is a `Command` whose `run(args, services)` receives services the CLI already opened
  (gateway/cli.py opens and closes them); nothing here imports gateway.cli or
  gateway.services.
- `--json` prints one JSON object for machines; without it the output is for people.
  Neither ever prints a phone number, a key or a tenant's name.
- Offboarding cannot be undone: it asks for the tenant id on a terminal and needs `--yes`
  anywhere else.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from typing import Any

from gateway.core.clock import parse_iso
from gateway.core.commands import Command
from gateway.errors import invalid, not_found
from gateway.lifecycle.blind_index import get_blind_index_service
from gateway.lifecycle.offboarding import OPERATOR_ACTOR, get_offboarding
from gateway.lifecycle.progress import ProgressBar
from gateway.lifecycle.retention import get_retention
from gateway.lifecycle.rotation import OPEN_STATES, get_key_service
from gateway.tenants.root_rotation import (
    ROTATE_ROOT_HELP,
    configure_rotate_root,
    keys_rotate_root,
    rotate_tenant_root_key,
)
from gateway.transparency.log import get_audit_log


# -- retention run ---------------------------------------------------------------------------
def _configure_run(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="report what would be deleted; change nothing")
    parser.add_argument("--tenant", action="append", help="only this tenant (repeatable)")
    parser.add_argument("--orphans", action="store_true",
                        help="also scan the blob store for orphaned files and keys")


async def retention_run(args: argparse.Namespace, services: Any) -> int:
    service = get_retention(services)
    bar = None
    if sys.stdout.isatty() and not args.json:
        bar = ProgressBar(await service.estimate(args.tenant))
    report = await service.sweep(dry_run=args.dry_run, tenant_ids=args.tenant,
                                 progress=bar.advance if bar else None)
    if args.orphans and not args.dry_run:
        report.orphans = await service.scan_orphans()
    if bar is not None:
        bar.close()
    data = report.as_dict()
    if args.json:
        print(json.dumps(data))
    else:
        verb = "would delete" if args.dry_run else "deleted"
        parts = ", ".join(f"{k} {v}" for k, v in data["deleted"].items())
        print(f"retention {verb}: {parts} ({len(report.tenants)} tenants,"
              f" {data['duration_seconds']} s)")
        held = [t.tenant_id for t in report.tenants if t.held]
        if held:
            print(f"tenants under a legal hold (nothing deleted): {', '.join(held)}")
    return 0


# -- tenant offboard -------------------------------------------------------------------------
def _configure_offboard(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("tenant_id", help="the tenant's id (UUID)")
    parser.add_argument("--yes", action="store_true",
                        help="do not ask; required when stdin is not a terminal")
    parser.add_argument("--override-holds", action="store_true",
                        help="offboard even though legal holds are active (recorded in"
                             " the receipt)")


async def tenant_offboard(args: argparse.Namespace, services: Any) -> int:
    try:
        tenant_id = str(uuid.UUID(args.tenant_id))
    except ValueError:
        print("gateway: tenant id must be a UUID", file=sys.stderr)
        return 2
    if not args.yes:
        if not sys.stdin.isatty():
            print("gateway: offboarding destroys every key and all data of the tenant and"
                  " cannot be undone; stdin is not a terminal, so nothing can ask you to"
                  " confirm: pass --yes to confirm", file=sys.stderr)
            return 2
        typed = input(f"Offboarding destroys every key and all data of tenant {tenant_id}."
                      " Type the tenant id to confirm: ").strip()
        if typed != tenant_id:
            print("gateway: not confirmed", file=sys.stderr)
            return 1
    receipt = await get_offboarding(services).offboard(
        tenant_id, override_holds=args.override_holds)
    if args.json:
        print(json.dumps(receipt))
    else:
        rows = sum(receipt.get("deleted_rows", {}).values())
        print(f"tenant {tenant_id} offboarded: {len(receipt.get('key_versions_destroyed', []))}"
              f" key version(s) destroyed, {rows} rows deleted, blobs deleted")
        if not receipt.get("tenant_root_key_destroyed"):
            print("warning: this tenant had no tenant root key file (created before tenant"
                  " key files): its rows in database backups stay readable with the root key")
    return 0


# -- keys rotate / status --------------------------------------------------------------------
async def _known_tenant(services: Any, raw: str) -> str:
    """The tenant id named on the command line, if such a tenant exists (a clear error,
    not a traceback, for a typo)."""
    try:
        tenant_id = str(uuid.UUID(raw))
    except ValueError:
        raise invalid("--tenant", "must be a UUID") from None
    if await services.db.fetchone("SELECT 1 FROM tenants WHERE id = ?", (tenant_id,)) is None:
        raise not_found("tenant")
    return tenant_id


def _configure_rotate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True, help="the tenant's id (UUID)")
    parser.add_argument("--wait", action="store_true",
                        help="stay until the old version is destroyed (after the grace time)")


async def keys_rotate(args: argparse.Namespace, services: Any) -> int:
    tenant_id = await _known_tenant(services, args.tenant)
    service = get_key_service(services)
    current = await service.rotation(tenant_id, required=False)
    if current is None or current["state"] not in OPEN_STATES:
        await service.start_rotation(tenant_id, OPERATOR_ACTOR)
    last_line = None
    while True:
        await service.run_pending()
        current = await service.rotation(tenant_id)
        if current["state"] in ("completed", "blocked") or not args.wait:
            break
        # --wait can take [keys] grace_seconds (2 min by default): say what it waits for,
        # on stderr so stdout keeps the one result line (or JSON object).
        line = _rotation_progress(current, services.clock.now())
        if line != last_line:
            print(line, file=sys.stderr, flush=True)
            last_line = line
        await asyncio.sleep(min(service.cfg.poll_interval_seconds, 5.0))
    if args.json:
        print(json.dumps(current))
    else:
        p = current["progress"]
        print(f"rotation {current['id']}: {current['state']}, version {current['to_version']},"
              f" {p['items_done']}/{p['items_total']} items"
              + (f"; old versions destroyed no earlier than {current['grace_until']}"
                 if current["state"] == "waiting" else ""))
    return 0 if current["state"] != "blocked" else 1


def _rotation_progress(rotation: dict[str, Any], now: Any) -> str:
    p = rotation["progress"]
    line = (f"rotation {rotation['state']}: {p['items_done']}/{p['items_total']} items"
            " rewrapped or resealed")
    if rotation["state"] == "waiting" and rotation.get("grace_until"):
        left = (parse_iso(rotation["grace_until"]) - now).total_seconds()
        # Rounded to 10 s so the line changes (and prints) a few times a minute, not per poll.
        line += (f"; the old version is destroyed after the grace time ([keys] grace_seconds),"
                 f" about {max(0, round(left / 10) * 10):.0f} s from now")
    return line


async def keys_status(args: argparse.Namespace, services: Any) -> int:
    status = await get_key_service(services).status(await _known_tenant(services, args.tenant))
    print(json.dumps(status) if args.json else json.dumps(status, indent=2))
    return 0


async def keys_rotate_tenant_root(args: argparse.Namespace, services: Any) -> int:
    tenant_id = await _known_tenant(services, args.tenant)
    result = await rotate_tenant_root_key(services, get_audit_log(services), tenant_id)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"tenant {tenant_id}: new tenant root key; {result['key_rows_rewrapped']} key"
              f" row(s) and {result['segments_rewrapped']} unit-key segment(s) rewrapped;"
              f" old key destroyed (log entry {result['log_index']})")
    return 0


def _configure_rotate_blind_index(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True, help="the tenant's id (UUID)")
    parser.add_argument("--wait", action="store_true",
                        help="stay until the reindex completes and the old key is destroyed"
                             " (after [keys] grace_seconds)")


async def keys_rotate_blind_index(args: argparse.Namespace, services: Any) -> int:
    tenant_id = await _known_tenant(services, args.tenant)
    service = get_blind_index_service(services)
    await service.start_reindex(tenant_id, rotate_key=True, reason="rotation",
                                actor=OPERATOR_ACTOR)
    while True:
        more = await service.run_pending()
        state = await service.state(tenant_id)
        if state["reindex"] is None or not args.wait:
            break
        if not more:
            await asyncio.sleep(min(service.cfg.poll_interval_seconds, 5.0))
    if args.json:
        print(json.dumps(state))
    elif state["reindex"] is None:
        print(f"tenant {tenant_id}: blind index now under key version {state['bik_version']}"
              f" ({state['bits']} bits); the old key is destroyed")
    else:
        r = state["reindex"]
        print(f"tenant {tenant_id}: reindexing to key version {r['to_bik_version']}"
              f" ({r['phase']}, {r['rows_done']} rows done); the running gateway finishes it"
              " and then destroys the old key")
    return 0


_ROTATE_BLIND_INDEX_HELP = """\
Add a new blind-index key version and reindex the tenant's calls and legal holds under
it (a resumable job: the running gateway finishes it if this command stops). Searches
and erasures match under both keys meanwhile. When the reindex completes the old key is
destroyed and a key_event is logged in the tenant's transparency log."""


_ROTATE_TENANT_ROOT_HELP = """\
Replace a tenant's root key (the key in the key store that wraps the tenant's key rows
and unit-key segments): a new key is stored, everything the old one wrapped is rewrapped
under it, then the old key is destroyed and a key_event is logged in the tenant's
transparency log. No record or recording is re-encrypted. A database backup taken
before the rotation no longer opens with the tenant's keys. Safe to run again after an
interruption: it finishes the rotation it started."""


cli_commands = [
    Command(("retention", "run"), retention_run, _configure_run,
            help="delete what the retention policies say is due (batched, resumable)"),
    Command(("tenant", "offboard"), tenant_offboard, _configure_offboard,
            help="destroy every key and all data of a tenant, keeping the receipt",
            description="Destroy every key and all data of a tenant, keeping the receipt."
                        " This cannot be undone. On a terminal it asks you to type the"
                        " tenant id; in a script (stdin not a terminal) pass --yes."),
    Command(("keys", "rotate"), keys_rotate, _configure_rotate,
            help="add a key version; rewrap and reseal; destroy the old version"),
    Command(("keys", "status"), keys_status,
            lambda p: p.add_argument("--tenant", required=True, help="the tenant's id (UUID)"),
            help="a tenant's key versions and its latest rotation"),
    Command(("keys", "rotate-root"), keys_rotate_root, configure_rotate_root,
            help="replace the root key, rewrap everything under it, destroy the old one",
            description=ROTATE_ROOT_HELP),
    Command(("keys", "rotate-tenant-root"), keys_rotate_tenant_root,
            lambda p: p.add_argument("--tenant", required=True, help="the tenant's id (UUID)"),
            help="new tenant root key; rewrap what it wraps; destroy the old key",
            description=_ROTATE_TENANT_ROOT_HELP),
    Command(("keys", "rotate-blind-index"), keys_rotate_blind_index,
            _configure_rotate_blind_index,
            help="new blind-index key; reindex calls and holds; destroy the old key",
            description=_ROTATE_BLIND_INDEX_HELP),
]
