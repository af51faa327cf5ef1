"""Middleware: problem+json for every error, and per-route metrics and access logs.

Routes are labelled by their template (`/v1/calls/{call_id}`), never the concrete path, so
no id or caller-chosen string reaches a metric label or a log line.

Every request passes through here, so the bookkeeping is kept small (issue 12): metric
label children are bound once (`Metrics.observe_request`), the access line is buffered and
written off the request path (`gateway/core/logs.py AccessLog`), and a request id is only
formatted when something prints it."""

from __future__ import annotations

import itertools
import logging
import os
import time
from time import perf_counter

from aiohttp import web

from gateway.core.logs import AccessLog
from gateway.errors import DomainError
from gateway.web.common import SERVICES
from gateway.web.problems import problem_response

log = logging.getLogger("gateway.http")
# Request ids: a per-process prefix and a counter; cheap, unique, and meaningless outside.
_REQUEST_PREFIX = os.urandom(3).hex()
_request_counter = itertools.count(1)
# The app's access log (build_app sets it from [logging]); without one, lines go through
# `log` as they happen.
ACCESS_LOG = web.AppKey("access_log", AccessLog)


def access_log(sample: float) -> AccessLog:
    return AccessLog(_REQUEST_PREFIX, sample)


def route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def problems_and_metrics(request: web.Request, handler) -> web.StreamResponse:
    started = perf_counter()
    number = next(_request_counter)
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
        request_id = f"{_REQUEST_PREFIX}-{number}"
        log.exception("unhandled error", extra={"request_id": request_id,
                                                "route": route_template(request)})
        return problem_response(DomainError(500, "internal-error", "internal error",
                                        f"request id {request_id}"))
    finally:
        route = route_template(request)
        elapsed = perf_counter() - started
        app = request.app
        app[SERVICES].metrics.observe_request(request.method, route, status, elapsed)
        access = app.get(ACCESS_LOG)
        if access is not None:
            access.record(request.method, route, status, number, elapsed, time.time())
        else:
            log.info("request", extra={"method": request.method, "route": route,
                                       "status": status,
                                       "request_id": f"{_REQUEST_PREFIX}-{number}",
                                       "duration_ms": round(elapsed * 1000, 2)})
