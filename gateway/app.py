"""The app factory: one route table per area, one middleware, and cleanup contexts for
everything with a lifetime (database, background jobs, metrics listener).

`gateway serve` runs on uvloop where it is installed (a dependency; issue 12 measured the
stock asyncio loop's own overhead and socket I/O as a large share of each webhook) and on
the stock asyncio loop otherwise; the "serving" log line names the loop."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway import features
from gateway.config import Config, parse_listen
from gateway.core.clock import Clock
from gateway.core.metrics import Metrics
from gateway.services import GatewayServices, open_services
from gateway.web.common import SERVICES
from gateway.web.console.routes import setup_console
from gateway.web.middleware import ACCESS_LOG, access_log, problems_and_metrics
from gateway.web.server import GuardedTCPSite, ServerLimits, refused_counter

# Allocations between two young-generation collections (CPython's default: 700).
GC_YOUNG_THRESHOLD = 10_000
log = logging.getLogger("gateway.app")

# Largest body aiohttp buffers on its own. Uploads and webhooks are read as streams with
# their own limits (config [limits]); this only bounds stray request.read() calls.
CLIENT_MAX_SIZE = 1024 * 1024


def build_app(config: Config, clock: Clock | None = None,
              services: GatewayServices | None = None) -> web.Application:
    # Bodies are taken as sent: signatures cover the bytes on the wire, uploads are stored
    # byte for byte, and an undecodable Content-Encoding can no longer fail inside aiohttp
    # with a plain-text 400 before our problem+json middleware sees it.
    app = web.Application(middlewares=[problems_and_metrics], client_max_size=CLIENT_MAX_SIZE,
                          handler_args={"auto_decompress": False})
    app[ACCESS_LOG] = access_log(config.logging.access_log_sample)
    areas = features.modules()
    for area in areas:
        if hasattr(area, "routes"):
            app.add_routes(area.routes)
    setup_console(app)  # the browser console: /console/ pages, sessions, security headers

    async def lifetime(app: web.Application):
        svc = services or await open_services(config, clock)
        app[SERVICES] = svc
        await svc.recordings.recover()
        for area in areas:
            if hasattr(area, "startup"):
                await area.startup(app, svc)
        svc.metrics.up.set(1)
        yield
        svc.metrics.up.set(0)
        app[ACCESS_LOG].flush()
        if services is None:
            await svc.close()

    app.cleanup_ctx.append(lifetime)
    return app


def build_metrics_app(metrics: Metrics) -> web.Application:
    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=await metrics.exposition(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", scrape)
    return app


def event_loop_factory() -> tuple[Callable[[], asyncio.AbstractEventLoop], str]:
    """The loop `gateway serve` runs on, and its name for the log: uvloop where it is
    installed (it is a dependency, but has no build for some platforms), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop, "asyncio"
    return uvloop.new_event_loop, "uvloop"


def running_loop_name() -> str:
    module = type(asyncio.get_running_loop()).__module__
    return "uvloop" if module.startswith("uvloop") else "asyncio"


async def serve(config: Config, clock: Clock | None = None) -> None:
    """Run the API listener and the metrics listener until cancelled."""
    services = await open_services(config, clock)
    app = build_app(config, clock, services)
    limits = ServerLimits.from_config(config.server)
    runner = web.AppRunner(app, handle_signals=True,
                           shutdown_timeout=config.server.shutdown_timeout,
                           **limits.runner_kwargs())
    metrics_runner = web.AppRunner(build_metrics_app(services.metrics))
    await runner.setup()
    await metrics_runner.setup()
    host, port = parse_listen(config.server.listen)
    mhost, mport = parse_listen(config.metrics.listen)
    await GuardedTCPSite(runner, host, port, limits,
                         refused_counter(services.metrics.registry)).start()
    await web.TCPSite(metrics_runner, mhost, mport).start()
    log.info("serving", extra={"route": f"{host}:{port}", "loop": running_loop_name()})
    # What start-up made (modules, the app, the services) lives as long as the process:
    # moved out of the collector's sight, so a full collection no longer walks it all
    # (measured: ~70 ms per full collection, and ~4x less collector time per webhook).
    gc.collect()
    gc.freeze()
    # A young-generation pass costs about the same however many objects were allocated
    # since the last (what a request allocates is mostly freed by then; what survives is
    # the requests in flight), so passing 10x less often costs ~10x less.
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await metrics_runner.cleanup()
        await services.close()
