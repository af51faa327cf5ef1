"""`gateway tenant move-region`: the one way a tenant's region changes (docs/residency.md).

Re-encrypts the tenant's key material under a new tenant root key kept in the new region,
copies its blob ciphertext there, verifies every copy, destroys the old copies and logs the move in the tenant's transparency log
(gateway.tenants.accounts.move_region). Safe to run again after any interruption."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.core.commands import Command
from gateway.tenants.accounts import move_region
from gateway.transparency.log import get_audit_log


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenant", required=True, help="the tenant id")
    parser.add_argument("--region", required=True,
                        help="the region to move to (a [regions.<name>] of the config)")


async def _run(args: argparse.Namespace, services: Any) -> int:
    result = await move_region(services, get_audit_log(services), args.tenant, args.region)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"tenant {result['tenant_id']} moved from region {result['from']} to"
              f" {result['to']}: {result['blobs']} blobs, {result['key_objects']} key"
              f" objects; old copies destroyed (log entry {result['log_index']})")
    return 0


cli_commands = [Command(
    ("tenant", "move-region"), _run, _configure,
    help="move a tenant's data into another region and destroy the old copies",
    description=__doc__)]
