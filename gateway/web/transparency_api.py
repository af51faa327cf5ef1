"""The tenant's transparency log (bearer tenant key): checkpoint, entries, proofs, export.

Reads of the log are themselves logged: each request appends a `log_read` entry (durably,
before answering; if that fails the read is refused) and then answers, so the entry is
part of the tree the answer describes. An entry that audit retention expired is served as
`"state": "expired"` with its leaf hash and no bytes (docs/transparency.md §7); the others
as `"state": "kept"`. Formats: docs/transparency.md."""

from __future__ import annotations

import base64
import json
import logging

from aiohttp import web

from gateway.errors import DomainError, invalid
from gateway.tenants.accounts import TenantPrincipal
from gateway.transparency.entries import decode_entry
from gateway.transparency.log import MAX_ENTRIES_PAGE, AuditLog, get_audit_log
from gateway.transparency.merkle import hash_leaf
from gateway.transparency.verify import ExpiredEntry
from gateway.web.common import json_response, require_tenant, services

log = logging.getLogger("gateway.transparency_api")
routes = web.RouteTableDef()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _int(request: web.Request, name: str, *, default: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None:
        if default is None:
            raise invalid(name, "is required")
        return default
    # 18 digits: every value fits a signed 64-bit column (a 19-digit one may not).
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise invalid(name, "must be a non-negative integer below 10^18")
    return int(raw)


async def _logged(request: web.Request, tenant: TenantPrincipal, endpoint: str,
                  **details: int) -> tuple[TenantPrincipal, AuditLog]:
    """Log the read (durably) before answering it. The caller authenticated `tenant`
    first: no parameter is looked at before the credentials are."""
    audit = get_audit_log(services(request))
    entry = {"kind": "log_read", "actor": {"type": "tenant", "id": f"key-{tenant.key_id}"},
             "outcome": "served", "details": {"endpoint": endpoint, **details}}
    try:
        await audit.append(tenant.tenant_id, entry)
    except Exception as exc:
        log.error("log read refused: audit append failed (%s)", type(exc).__name__)
        raise DomainError(503, "audit-unavailable", "access refused",
                      "the read could not be logged, so it was refused") from None
    return tenant, audit


@routes.get("/v1/transparency/public-key")
async def public_key(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    audit = get_audit_log(services(request))
    origin = await audit.origin(tenant.tenant_id)
    return json_response({"origin": origin, "key_name": origin, "algorithm": "ed25519",
                          "public_key": _b64(audit.public_key),
                          "verifier_key": await audit.verifier_key(tenant.tenant_id)})


@routes.get("/v1/transparency/checkpoint")
async def checkpoint(request: web.Request) -> web.Response:
    tenant, audit = await _logged(request, await require_tenant(request), "checkpoint")
    cp = await audit.checkpoint(tenant.tenant_id)
    return json_response({"origin": await audit.origin(tenant.tenant_id), **cp.as_dict()},
                         headers={"Cache-Control": "no-store"})


@routes.get("/v1/transparency/entries")
async def entries(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    start = _int(request, "start", default=0)
    end = _int(request, "end", default=start + 100)
    if end <= start:
        raise invalid("end", "must be greater than start")
    if end - start > MAX_ENTRIES_PAGE:
        raise invalid("end", f"at most {MAX_ENTRIES_PAGE} entries per page")
    tenant, audit = await _logged(request, tenant, "entries", start=start, end=end)
    rows = await audit.entries_or_expired(tenant.tenant_id, start, end)
    return json_response({
        "start": start, "end": start + len(rows), "size": await audit.size(tenant.tenant_id),
        "entries": [_entry_item(start + i, data) for i, data in enumerate(rows)]})


def _entry_item(seq: int, data: bytes | ExpiredEntry) -> dict:
    if isinstance(data, ExpiredEntry):
        return {"seq": seq, "state": "expired", "data": None,
                "leaf_hash": _b64(data.leaf_hash), "entry": None}
    return {"seq": seq, "state": "kept", "data": _b64(data), "leaf_hash": _b64(hash_leaf(data)),
            "entry": decode_entry(data)}


@routes.get("/v1/transparency/proofs/inclusion")
async def inclusion(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    index, size = _int(request, "index"), _int(request, "size")
    if index >= size:
        raise invalid("index", "must be smaller than size")
    tenant, audit = await _logged(request, tenant, "inclusion_proof", index=index, size=size)
    if size > await audit.size(tenant.tenant_id):
        raise invalid("size", "larger than the log")
    proof = await audit.inclusion_proof(tenant.tenant_id, index, size)
    [data] = await audit.entries_or_expired(tenant.tenant_id, index, index + 1)
    leaf = data.leaf_hash if isinstance(data, ExpiredEntry) else hash_leaf(data)
    return json_response({"index": index, "size": size, "leaf_hash": _b64(leaf),
                          "root": _b64(await audit.root(tenant.tenant_id, size)),
                          "proof": [_b64(p) for p in proof]})


@routes.get("/v1/transparency/proofs/consistency")
async def consistency(request: web.Request) -> web.Response:
    tenant = await require_tenant(request)
    old, new = _int(request, "old"), _int(request, "new")
    if old > new:
        raise invalid("old", "must not exceed new")
    tenant, audit = await _logged(request, tenant, "consistency_proof", old=old, new=new)
    if new > await audit.size(tenant.tenant_id):
        raise invalid("new", "larger than the log")
    proof = await audit.consistency_proof(tenant.tenant_id, old, new)
    return json_response({"old": old, "new": new,
                          "old_root": _b64(await audit.root(tenant.tenant_id, old)),
                          "new_root": _b64(await audit.root(tenant.tenant_id, new)),
                          "proof": [_b64(p) for p in proof]})


@routes.get("/v1/transparency/export")
async def export(request: web.Request) -> web.StreamResponse:
    """The bundle of docs/transparency.md §4, streamed page by page: every entry up to a
    fresh checkpoint, and every stored checkpoint up to it (oldest first)."""
    tenant, audit = await _logged(request, await require_tenant(request), "export")
    cp = await audit.checkpoint(tenant.tenant_id)
    origin = await audit.origin(tenant.tenant_id)
    response = web.StreamResponse(headers={
        "Content-Type": "application/json", "Cache-Control": "no-store",
        "Content-Disposition": f'attachment; filename="transparency-{tenant.tenant_id}.json"'})
    await response.prepare(request)
    head = {"origin": origin, "key_name": origin, "public_key": _b64(audit.public_key)}
    await response.write(json.dumps(head)[:-1].encode() + b', "entries": [')
    for start in range(0, cp.size, MAX_ENTRIES_PAGE):
        rows = await audit.entries_or_expired(tenant.tenant_id, start,
                                              min(start + MAX_ENTRIES_PAGE, cp.size))
        chunk = ", ".join(json.dumps(d.as_dict() if isinstance(d, ExpiredEntry) else _b64(d))
                          for d in rows)
        await response.write((", " if start else "").encode() + chunk.encode())
    await response.write(b'], "checkpoints": [')
    after, first = -1, True
    while True:
        page = [c for c in await audit.checkpoints(tenant.tenant_id, after=after)
                if c.size <= cp.size]
        if not page:
            break
        chunk = ", ".join(json.dumps(c.note) for c in page)
        await response.write((b"" if first else b", ") + chunk.encode())
        first, after = False, page[-1].size
        if after >= cp.size:
            break
    await response.write(b"]}")
    await response.write_eof()
    return response
