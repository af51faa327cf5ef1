"""The one list of feature areas. Each module listed here may define:

- `routes`: an aiohttp RouteTableDef added to the app;
- `async def startup(app, services)`: run after services open, before requests are served
  (start background jobs; register their cleanup with `app.on_cleanup`);
- `cli_commands`: [(path tuple, configure(parser), async run(args, config) -> exit code)];
- `def register(services)`: called by `open_services` (server and CLI alike) before anything
  runs: attach hooks such as `recordings.recovery_handlers` and ingest subscribers.

A new area is one module and one line here."""

from __future__ import annotations

from types import ModuleType


def modules() -> list[ModuleType]:
    from gateway.access import service as staff_access
    from gateway.ingest import recording_fetch
    from gateway.lifecycle import area as lifecycle
    from gateway.media import feature as media
    from gateway.store import cli as storage_cli
    from gateway.tenants import cli as tenant_cli
    from gateway.transparency import cli as audit_cli
    from gateway.transparency import log as audit
    from gateway.web import (
        access_api,
        health,
        hooks,
        keys_api,
        regions_api,
        retention_api,
        staff_api,
        subjects_api,
        tenant_api,
        transparency_api,
    )

    return [health, audit, audit_cli, tenant_api, hooks, recording_fetch, staff_access, staff_api,
            access_api, transparency_api,
            lifecycle, retention_api, subjects_api, keys_api, media, storage_cli,
            regions_api, tenant_cli]
