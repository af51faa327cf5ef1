"""The `gateway` command: init, serve, tenant and staff administration.

Every command takes `--config PATH` (or $GATEWAY_CONFIG). `--json` prints one JSON object
for machines; without it the output is for people."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.web_runner import GracefulExit

from gateway.config import Config, ConfigError, load_config
from gateway.core.commands import Command
from gateway.core.logs import setup_logging
from gateway.errors import DomainError
from gateway.services import GatewayServices, NotInitialised, init_storage, open_services

# One line per command group in `gateway --help`.
GROUP_HELP = {
    "tenant": "create and offboard tenants",
    "staff": "support staff accounts",
    "audit": "verify transparency logs and print their verifier keys",
    "retention": "run the retention sweep by hand",
    "keys": "rotate tenant keys and show their state",
    "dev": "development helpers: signed sample deliveries",
    "storage": "move an installation to other storage backends",
}


def emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data) if getattr(args, "json", False) else text)


async def with_services(config: Config, fn: Callable[[GatewayServices], Awaitable[int]]) -> int:
    services = await open_services(config)
    try:
        return await fn(services)
    finally:
        await services.close()


async def cmd_init(args: argparse.Namespace, config: Config) -> int:
    created = init_storage(config)
    from gateway.store import open_database
    db = await open_database(config.storage.database_url,
                             config.database_path)  # applies the migrations
    await db.close()
    emit(args, {"data_dir": str(config.data_dir), "created": created},
         f"initialised {config.data_dir}" + (f" (created {', '.join(created)})" if created
                                             else " (already initialised)"))
    return 0


async def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    from gateway.app import serve
    await serve(config)
    return 0


async def cmd_tenant_create(args: argparse.Namespace, config: Config) -> int:
    from gateway.tenants.accounts import create_tenant

    async def run(svc: GatewayServices) -> int:
        tenant_id, api_key = await create_tenant(svc.db, svc.keyring, svc.clock, args.name,
                                                 region=args.region, directory=svc.regions)
        emit(args, {"tenant_id": tenant_id, "api_key": api_key,
                    **({"region": args.region} if args.region else {})},
             f"tenant {tenant_id}\napi key (shown once): {api_key}")
        return 0
    return await with_services(config, run)


async def cmd_staff_create(args: argparse.Namespace, config: Config) -> int:
    from gateway.tenants.accounts import create_staff

    async def run(svc: GatewayServices) -> int:
        staff_id, pseudonym, token = await create_staff(
            svc.db, svc.clock, name=args.name, employer=args.employer, country=args.country)
        emit(args, {"staff_id": staff_id, "pseudonym": pseudonym, "token": token},
             f"staff {staff_id} ({pseudonym})\ntoken (shown once): {token}")
        return 0
    return await with_services(config, run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="PATH",
                        help="TOML config file (default: $GATEWAY_CONFIG; see"
                             " config.example.toml)")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(path: tuple[str, ...], run, configure=None, help_text: str = "",
            description: str = "") -> None:
        parent = sub
        for name in path[:-1]:
            existing = parent.choices.get(name)
            if existing is None:
                existing = parent.add_parser(name, help=GROUP_HELP.get(name, ""),
                                             description=GROUP_HELP.get(name))
                existing.add_subparsers(dest=f"{name}_command", required=True)
            parent = next(a for a in existing._actions
                          if isinstance(a, argparse._SubParsersAction))
        p = parent.add_parser(path[-1], help=help_text, description=description or help_text)
        p.add_argument("--json", action="store_true",
                       help="print one JSON object (for scripts) instead of text")
        if configure:
            configure(p)
        p.set_defaults(run=run)

    add(("init",), cmd_init, help_text="create the data directory, keys and schema")
    add(("serve",), cmd_serve, help_text="serve the API and the metrics listener")
    def tenant_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--name", required=True,
                       help="the tenant's display name (kept encrypted)")
        p.add_argument("--region", help="pin the tenant's data to this [regions.<name>]"
                                        " (default: the [storage] stores)")
    add(("tenant", "create"), cmd_tenant_create, tenant_args,
        "create a tenant and print its API key (shown once)")

    def staff_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--name", required=True, help="the person's name (kept encrypted;"
                                                      " tenants see a pseudonym)")
        p.add_argument("--employer", required=True, help="the company that employs them")
        p.add_argument("--country", required=True, help="ISO 3166-1 alpha-2, e.g. DE")
    add(("staff", "create"), cmd_staff_create, staff_args, "create a support staff account")
    from gateway import features
    from gateway.dev import cli as dev_cli
    for area in [*features.modules(), dev_cli]:
        for command in getattr(area, "cli_commands", []):
            if isinstance(command, Command):
                run = command.run if command.offline else _opening_services(command.run)
                add(command.path, run, command.configure, command.help, command.description)
            else:  # (path, configure, run(args, config)): commands not yet moved to Command
                path, configure, run = command
                add(path, run, configure)
    return parser


def _opening_services(run: Callable[[argparse.Namespace, Any], Awaitable[int]]
                      ) -> Callable[[argparse.Namespace, Config], Awaitable[int]]:
    """The CLI opens the services once and hands them to an area's command."""
    async def opened(args: argparse.Namespace, config: Config) -> int:
        return await with_services(config, lambda svc: run(args, svc))
    return opened


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    setup_logging(config.logging.level)
    try:
        if args.run is cmd_serve:
            from gateway.app import event_loop_factory
            with asyncio.Runner(loop_factory=event_loop_factory()[0]) as runner:
                return runner.run(args.run(args, config))
        return asyncio.run(args.run(args, config))
    except (ConfigError, NotInitialised) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        if isinstance(exc, NotInitialised) and not (args.config or
                                                    os.environ.get("GATEWAY_CONFIG")):
            # Without a config the defaults put the data directory under the current
            # directory: the usual cause is running from elsewhere, not a missing init.
            print("gateway: no --config and no $GATEWAY_CONFIG, so the built-in defaults"
                  " (./data under this directory) were used. If the gateway is set up"
                  " elsewhere, pass --config PATH to its config file; `gateway init` here"
                  " would create a second, empty data directory.", file=sys.stderr)
        return 2
    except DomainError as problem:
        print(f"gateway: {problem.title}: {problem.detail or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except GracefulExit:  # SIGTERM/SIGINT while serving: aiohttp's normal, clean stop
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
