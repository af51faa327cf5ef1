"""The one list of feature areas. Each module listed here may define:

- `routes`: an aiohttp RouteTableDef added to the app;
- `async def startup(app, services)`: run after services open, before requests are served
  (start background jobs; register their cleanup with `app.on_cleanup`);
- `cli_commands`: [(path tuple, configure(parser), async run(args, config) -> exit code)].

A new area is one module and one line here."""

from __future__ import annotations

from types import ModuleType


def modules() -> list[ModuleType]:
    from . import recording_fetch
    from .web import health, hooks, tenant_api

    return [health, tenant_api, hooks, recording_fetch]
