"""Middleware: problem+json for every error, and per-route metrics and access logs.

Routes are labelled by their template (`/v1/calls/{call_id}`), never the concrete path, so
no id or caller-chosen string reaches a metric label or a log line."""

from __future__ import annotations

import itertools
import logging
import os
import time

from aiohttp import web

from gateway.errors import DomainError
from gateway.web.common import services
from gateway.web.problems import problem_response

log = logging.getLogger("gateway.http")
# Request ids: a per-process prefix and a counter; cheap, unique, and meaningless outside.
_REQUEST_PREFIX = os.urandom(3).hex()
_request_counter = itertools.count(1)


def route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def problems_and_metrics(request: web.Request, handler) -> web.StreamResponse:
    started = time.perf_counter()
    request_id = f"{_REQUEST_PREFIX}-{next(_request_counter)}"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except DomainError as problem:
        status = problem.status_hint
        return problem_response(problem)
    except web.HTTPException as exc:
        # aiohttp's own 404/405 for unknown routes and methods, rendered our way.
        status = exc.status
        slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status, "http-error")
        problem = DomainError(exc.status, slug, exc.reason)
        if exc.status == 405 and "Allow" in exc.headers:
            problem.hints["allow"] = exc.headers["Allow"]
        return problem_response(problem)
    except (ConnectionResetError, TimeoutError):
        status = 499
        raise
    except Exception:
        status = 500
        log.exception("unhandled error", extra={"request_id": request_id,
                                                "route": route_template(request)})
        return problem_response(DomainError(500, "internal-error", "internal error",
                                        f"request id {request_id}"))
    finally:
        route = route_template(request)
        elapsed = time.perf_counter() - started
        metrics = services(request).metrics
        metrics.http_requests.labels(request.method, route, str(status)).inc()
        metrics.http_latency.labels(route).observe(elapsed)
        log.info("request", extra={"method": request.method, "route": route,
                                   "status": status, "request_id": request_id,
                                   "duration_ms": round(elapsed * 1000, 2)})
