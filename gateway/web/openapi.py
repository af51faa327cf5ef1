"""The OpenAPI 3.1 document served at /v1/openapi.json. A test checks that it lists exactly
the routes the app serves, so it cannot drift. Add each new route here.

Long because it is the whole API document: one entry per operation and one schema per
response body, kept in one file so a reader sees the API in one place (schemathesis and
the console read the served copy)."""

from __future__ import annotations

from typing import Any

import adapters

PROBLEM = {"description": "problem details (RFC 9457)",
           "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
TENANT_AUTH = [{"tenantKey": []}]
STAFF_AUTH = [{"staffToken": []}]


# Answers any operation may give besides its own (issue 13, item 6: every status code an
# operation returns is declared): a store that cannot serve now (503 + Retry-After), and
# for a request with a body: undecodable (400), too slow (408), too large (413), not JSON
# (415). Authenticated operations answer 401 before looking at anything else.
STORE_ERRORS = ("503",)
BODY_ERRORS = ("400", "408", "413", "415")


def op(summary: str, *, auth: list | None = TENANT_AUTH, ok: str = "200",
       ok_description: str = "OK", body: dict | None = None, params: list | None = None,
       errors: tuple[str, ...] = ("401", "404", "422"), content: str = "application/json",
       tag: str = "tenant", ok_schema: dict | None = None,
       ok_content: str | None = "application/json") -> dict[str, Any]:
    """One operation. `ok_schema` is the success body's schema (an object of any shape
    when not given); `ok_content` None means the success answer has no body (204) or is
    not JSON (audio, HTML, SDP: pass that media type)."""
    codes = set(errors) | set(STORE_ERRORS)
    if auth is not None:
        codes.add("401")
    if body is not None:
        codes |= set(BODY_ERRORS) if content == "application/json" else {"400", "408",
                                                                         "413"}
    success: dict[str, Any] = {"description": ok_description}
    if ok == "204":
        ok_content = None
    if ok_content is not None:
        schema = ok_schema if ok_schema is not None else (
            {"type": "object"} if ok_content == "application/json" else {"type": "string"})
        success["content"] = {ok_content: {"schema": schema}}
    operation: dict[str, Any] = {
        "summary": summary, "tags": [tag],
        "responses": {ok: success, **{e: PROBLEM for e in sorted(codes)}}}
    if auth is not None:
        operation["security"] = auth
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {content: {"schema": body}}}
    if params:
        operation["parameters"] = params
    return operation


def q(name: str, description: str, schema: dict | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string"}}


def p(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _items(name: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items"],
            "properties": {"items": {"type": "array", "items": _ref(name)}}}


def _page(name: str) -> dict[str, Any]:
    page = _items(name)
    page["required"] = ["items", "next_cursor"]
    page["properties"]["next_cursor"] = {"type": ["string", "null"]}
    return page


_TIME = {"type": ["string", "null"], "format": "date-time"}
_TEXT = {"type": ["string", "null"]}

PATHS: dict[str, dict[str, Any]] = {
    "/healthz": {"get": op("liveness", auth=None, errors=(), tag="ops", ok_schema={
        "type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}})},
    "/readyz": {"get": op("readiness: database and blob store reachable and writable, with "
                          "at least [storage] min_free_bytes free (503 names what fails)",
                          auth=None, errors=("503",), tag="ops", ok_schema=_ref("Readiness"))},
    "/v1/openapi.json": {"get": op("this document", auth=None, errors=(), tag="ops")},
    "/v1/integrations": {
        "post": op("connect a platform; credentials are write-only", ok="201",
                   body={"$ref": "#/components/schemas/IntegrationCreate"},
                   errors=("400", "401", "413", "415", "422"), ok_schema=_ref("Integration")),
        "get": op("list integrations (never their credentials)", errors=("401",),
                  ok_schema=_items("Integration"))},
    "/v1/integrations/{integration_id}": {
        "parameters": [p("integration_id")],
        "get": op("one integration", ok_schema=_ref("Integration")),
        "delete": op("disable an integration", ok="204")},
    "/v1/calls": {"get": op("list calls, newest first, cursor-paginated", params=[
        q("status", "canonical status"), q("since", "RFC 3339, inclusive"),
        q("until", "RFC 3339, exclusive"), q("cursor", "next_cursor of the previous page"),
        q("limit", "1-200, default 50", {"type": "integer"})], ok_schema=_page("Call"))},
    "/v1/calls/{call_id}": {"parameters": [p("call_id")],
                            "get": op("one call with parties, events and recordings",
                                      ok_schema=_ref("Call"))},
    "/v1/calls/{call_id}/recordings": {
        "parameters": [p("call_id")],
        "post": op("upload a recording (any bytes, streamed)", ok="201",
                   body={"type": "string", "format": "binary"}, content="*/*",
                   errors=("401", "404", "413", "422", "507"), ok_schema=_ref("Recording"))},
    "/v1/recordings/{recording_id}": {"parameters": [p("recording_id")],
                                      "get": op("recording metadata",
                                                ok_schema=_ref("Recording"))},
    "/v1/recordings/{recording_id}/audio": {
        "parameters": [p("recording_id")],
        "get": op("the audio as uploaded; honours a single Range", ok_description="audio",
                  errors=("401", "404", "416"), ok_content="*/*")},
    "/v1/hooks/{platform}/{integration_id}": {
        "parameters": [p("platform"), p("integration_id")],
        "post": op("platform webhook; authenticated by the platform's signature. Events "
                   "with an unusable field are answered 200 and counted as rejected "
                   "(docs/platforms.md)", auth=None, ok_schema=_ref("WebhookAck"),
                   errors=("400", "401", "403", "404", "408", "413", "422"), tag="platform"),
        "get": op("subscription handshake (WhatsApp hub.challenge; Twilio may also send "
                  "status callbacks by GET)", auth=None, ok_content="*/*",
                  errors=("400", "401", "403", "404", "422"), tag="platform")},
}

SCHEMAS: dict[str, Any] = {
    "Readiness": {"type": "object", "required": ["status", "checks"], "properties": {
        "status": {"enum": ["ready", "not-ready"]},
        "checks": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "failing": {"type": "array", "items": {"type": "string"}}}},
    "Integration": {"type": "object",
                    "required": ["id", "platform", "name", "options", "created_at",
                                 "webhook_url"],
                    "not": {"required": ["credentials"]},
                    "properties": {"id": {"type": "string", "format": "uuid"},
                                   "platform": {"enum": list(adapters.PLATFORMS)},
                                   "name": _TEXT, "options": {"type": "object"},
                                   "created_at": {"type": "string", "format": "date-time"},
                                   "webhook_url": {"type": "string"}}},
    "Call": {"type": "object",
             "required": ["id", "integration_id", "platform", "platform_call_id", "status",
                          "direction", "from", "to", "started_at", "ended_at",
                          "duration_seconds", "created_at", "updated_at"],
             "properties": {"id": {"type": "string", "format": "uuid"},
                            "integration_id": {"type": "string"},
                            "platform": {"type": "string"},
                            "platform_call_id": {"type": "string"},
                            "status": _TEXT, "direction": _TEXT, "from": _TEXT, "to": _TEXT,
                            "started_at": _TIME, "ended_at": _TIME,
                            "duration_seconds": {"type": ["integer", "null"]},
                            "created_at": _TIME, "updated_at": _TIME,
                            "events": {"type": "array", "items": {"type": "object"}},
                            "recordings": {"type": "array", "items": {"type": "object"}}}},
    "Recording": {"type": "object", "required": ["id", "call_id", "state"],
                  "properties": {"id": {"type": "string", "format": "uuid"},
                                 "call_id": {"type": "string", "format": "uuid"},
                                 "state": {"enum": ["available", "incomplete"]},
                                 "content_type": _TEXT,
                                 "length": {"type": ["integer", "null"], "minimum": 0}}},
    "WebhookAck": {"type": "object", "required": ["accepted", "duplicates"],
                   "properties": {"accepted": {"type": "integer", "minimum": 0},
                                  "duplicates": {"type": "integer", "minimum": 0},
                                  "rejected": {"type": "integer", "minimum": 1}}},
    "Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {
        "type": {"type": "string", "description": "stable urn:vgw:problem:<slug>"},
        "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "field": {"type": "string"}}},
    "IntegrationCreate": {"type": "object", "required": ["platform", "credentials"],
                          "properties": {
                              "platform": {"enum": list(adapters.PLATFORMS)},
                              "name": {"type": "string", "maxLength": 100},
                              "credentials": {"type": "object"},
                              "options": {"type": "object",
                                          "properties": {"store_audio": {"type": "boolean"}}}}},
}


# -- recording metadata and the technical stats measured at ingest (gateway/media/stats.py) --
_NUM = {"type": "number"}
_INT = {"type": "integer"}
SCHEMAS["RecordingStats"] = {
    "type": ["object", "null"],
    "description": "what the gateway measured about the audio while it arrived (live"
                   " streams, WHIP, WhatsApp); null for uploads and platform downloads,"
                   " which are stored as received. Levels are dBFS (-100 = digital silence).",
    "properties": {
        "duration_seconds": _NUM, "codec": {"type": "string"}, "sample_rate": _INT,
        "channels": _INT, "channel_names": {"type": "array", "items": {"type": "string"}},
        "per_channel": {"type": "array", "items": {"type": "object", "properties": {
            "rms_dbfs": _NUM, "peak_dbfs": _NUM, "clipped_ratio": _NUM, "dc_offset": _NUM,
            "silence_ratio": _NUM}}},
        "one_way_audio": {"type": ["boolean", "null"],
                          "description": "one channel silent while the other carries"
                                         " speech; null for one channel"},
        "longest_gap_ms": _NUM, "frames_received": _INT,
        "frames_lost": {"type": ["integer", "null"],
                        "description": "null when the platform's frames carry no sequence"},
        "frames_reordered": {"type": ["integer", "null"]}, "frames_late": _INT,
        "frames_duplicated": _INT, "silence_filled_seconds": _NUM, "timestamp_jumps": _INT,
        "envelope": {"type": "object", "properties": {
            "resolution_seconds": _NUM,
            "rms_dbfs": {"type": "array", "description": "per channel, one level per bucket",
                         "items": {"type": "array", "items": _NUM}}}},
        "stored": {"type": "object", "description": "the stored WAV's layout"},
        "end_reason": {"type": "string"}}}
SCHEMAS["Recording"] = {
    "type": "object", "required": ["id", "call_id", "state", "content_type", "length", "stats"],
    "properties": {
        "id": {"type": "string"}, "call_id": {"type": "string"},
        "state": {"enum": ["available", "incomplete"]}, "source": {"type": "string"},
        "content_type": {"type": "string"}, "length": _INT, "audio_url": {"type": "string"},
        "stats": {"$ref": "#/components/schemas/RecordingStats"}}}
PATHS["/v1/recordings/{recording_id}"]["get"]["responses"]["200"] = {
    "description": "recording metadata and its technical stats",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Recording"}}}}

# -- staff access, tenant access policy, transparency log (docs/staff-access.md) ------------
def _staff_access_paths() -> dict[str, dict[str, Any]]:
    from gateway.access.diagnostics import json_schema

    SCHEMAS["TechnicalView"] = json_schema()
    SCHEMAS["AccessGrant"] = {
        "type": "object", "required": ["id", "tenant_id", "staff", "purpose", "level",
                                       "reference", "scope", "state", "created_at"],
        "properties": {"id": {"type": "string", "format": "uuid"},
                       "tenant_id": {"type": "string", "format": "uuid"},
                       "staff": {"type": "object", "required": ["id"]},
                       "purpose": {"type": "string"}, "level": {"enum": ["technical", "audio"]},
                       "reference": {"type": "string"}, "scope": {"type": "object"},
                       "state": {"enum": ["pending", "approved", "denied", "expired",
                                          "revoked", "used"]},
                       "single_use": {"type": "boolean"},
                       "duration_seconds": {"type": ["integer", "null"]},
                       "created_at": {"type": "string", "format": "date-time"}}}
    grant, grants = _ref("AccessGrant"), _page("AccessGrant")
    b64 = {"type": "string", "contentEncoding": "base64"}
    proof = {"type": "array", "items": b64}
    SCHEMAS["AccessRequestCreate"] = {
        "type": "object", "additionalProperties": False,
        "required": ["tenant", "scope", "purpose", "reference"],
        "properties": {
            "tenant": {"type": "string", "format": "uuid"},
            "scope": {"oneOf": [
                {"type": "object", "required": ["calls"], "additionalProperties": False,
                 "properties": {"calls": {"type": "array", "minItems": 1,
                                          "items": {"type": "string", "format": "uuid"}}}},
                {"type": "object", "required": ["window"], "additionalProperties": False,
                 "properties": {"window": {
                     "type": "object", "required": ["since", "until"],
                     "properties": {"since": {"type": "string", "format": "date-time"},
                                    "until": {"type": "string", "format": "date-time"}}}}}]},
            "purpose": {"enum": ["operability", "fault_diagnostics", "integration_analysis",
                                 "legal_request"]},
            "reference": {"type": "string", "maxLength": 64},
            "level": {"enum": ["technical", "audio"], "default": "technical"},
            "duration_seconds": {"type": "integer", "minimum": 60},
            "single_use": {"type": "boolean", "default": False}}}
    action = {"enum": ["auto_approve", "require_approval", "deny"]}
    SCHEMAS["AccessPolicy"] = {
        "type": "object", "additionalProperties": False, "properties": {
            "rules": {"type": "object", "description": "{purpose or *: {level or *: action}}",
                      "additionalProperties": {"type": "object",
                                               "additionalProperties": action}},
            "pending_ttl_seconds": {"type": ["integer", "null"], "minimum": 60},
            "max_grant_seconds": {"type": ["integer", "null"], "minimum": 60},
            "staff": {"type": ["object", "null"], "additionalProperties": False,
                      "description": "who may even ask (docs/residency.md); a request from"
                                     " outside these lists is refused 403 and logged",
                      "properties": {
                          "countries": {"type": "array", "maxItems": 250, "items": {
                              "type": "string", "pattern": "^[A-Z]{2}$"}},
                          "employers": {"type": "array", "maxItems": 50,
                                        "items": {"type": "string"}}}}}}
    SCHEMAS["AccessWebhook"] = {
        "type": "object", "required": ["url", "secret"], "additionalProperties": False,
        "properties": {"url": {"type": "string", "format": "uri"},
                       "secret": {"type": "string", "description": "whsec_<base64>, write-only"}}}
    staff = dict(auth=STAFF_AUTH, tag="staff")
    transparency = dict(tag="transparency", errors=("401", "422", "503"))
    view_ok = {"description": "the technical view (allow-listed fields only)",
               "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TechnicalView"}}}}
    technical = op("technical view of one call under an active grant; the read is logged "
                   "first", errors=("401", "403", "422", "503"),
                   params=[q("grant", "use this grant id")], **staff)
    technical["responses"]["200"] = view_ok
    return {
        "/v1/staff/access-requests": {
            "post": op("request access to a tenant's calls (403 when the tenant's staff rule"
                       " or the operator's transfer rule refuses; logged)", ok="201",
                       body={"$ref": "#/components/schemas/AccessRequestCreate"},
                       errors=("400", "401", "403", "413", "415", "422"), ok_schema=grant,
                       **staff),
            "get": op("this staff member's requests and grants", errors=("401", "422"),
                      params=[q("state", "pending|approved|denied|expired|revoked|used"),
                              q("cursor", "next_cursor of the previous page"),
                              q("limit", "1-200, default 50", {"type": "integer"})],
                      ok_schema=grants, **staff)},
        "/v1/staff/access-requests/{request_id}": {
            "parameters": [p("request_id")],
            "get": op("one of this staff member's requests", ok_schema=grant, **staff)},
        "/v1/staff/diagnostics/calls/{call_id}": {"parameters": [p("call_id")],
                                                 "get": technical},
        "/v1/staff/diagnostics/calls/{call_id}/audio": {
            "parameters": [p("call_id")],
            "get": op("a recording of the call under an active audio grant; the read is "
                      "logged first", ok_description="audio", ok_content="*/*",
                      errors=("401", "403", "404", "416", "422", "503"),
                      params=[q("grant", "use this grant id"),
                              q("recording", "recording id (default: the latest)")], **staff)},
        "/v1/access-policy": {
            "get": op("the access policy, its effective matrix and the webhook endpoint",
                      errors=("401",)),
            "put": op("set the access policy", body={"$ref": "#/components/schemas/AccessPolicy"},
                      errors=("400", "401", "413", "415", "422"))},
        "/v1/access-policy/webhook": {
            "put": op("set the endpoint notified of requests and decisions (Standard Webhooks)",
                      body={"$ref": "#/components/schemas/AccessWebhook"},
                      errors=("400", "401", "413", "415", "422")),
            "delete": op("stop notifications", ok="204", errors=("401",))},
        "/v1/access-requests": {"get": op("staff access requests and grants, newest first",
                                          errors=("401", "422"), params=[
            q("state", "pending|approved|denied|expired|revoked|used"),
            q("cursor", "next_cursor of the previous page"),
            q("limit", "1-200, default 50", {"type": "integer"})], ok_schema=grants)},
        "/v1/access-requests/{request_id}": {"parameters": [p("request_id")],
                                             "get": op("one access request",
                                                       ok_schema=grant)},
        "/v1/access-requests/{request_id}/approve": {
            "parameters": [p("request_id")],
            "post": op("approve a pending request; the grant clock starts now",
                       errors=("401", "404", "409"), ok_schema=grant)},
        "/v1/access-requests/{request_id}/deny": {
            "parameters": [p("request_id")],
            "post": op("deny a pending request", errors=("401", "404", "409"),
                       ok_schema=grant)},
        "/v1/grants/{grant_id}/revoke": {
            "parameters": [p("grant_id")],
            "post": op("revoke an active grant (effective for the next read)",
                       errors=("401", "404", "409"), ok_schema=grant)},
        "/v1/transparency/public-key": {
            "get": op("the operator's checkpoint key and the verifier key to pin",
                      tag="transparency", errors=("401",))},
        "/v1/transparency/checkpoint": {
            "get": op("the latest signed checkpoint (C2SP signed note); logged",
                      ok_schema={"type": "object", "required": ["origin", "size"],
                                 "properties": {"origin": {"type": "string"},
                                                "size": {"type": "integer", "minimum": 0}}},
                      **transparency)},
        "/v1/transparency/entries": {
            "get": op("entries [start, end), at most 1000; logged", params=[
                q("start", "first seq", {"type": "integer"}),
                q("end", "seq after the last", {"type": "integer"})],
                ok_schema={"type": "object", "required": ["start", "end", "size", "entries"],
                           "properties": {"start": {"type": "integer", "minimum": 0},
                                          "end": {"type": "integer", "minimum": 0},
                                          "size": {"type": "integer", "minimum": 0},
                                          "entries": {"type": "array", "items": {
                                              "type": "object",
                                              "required": ["seq", "data", "leaf_hash"],
                                              "properties": {"data": b64,
                                                             "leaf_hash": b64}}}}},
                **transparency)},
        "/v1/transparency/proofs/inclusion": {
            "get": op("RFC 9162 inclusion proof of entry index in the tree of size; logged",
                      params=[q("index", "entry seq", {"type": "integer"}),
                              q("size", "tree size", {"type": "integer"})],
                      ok_schema={"type": "object",
                                 "required": ["index", "size", "leaf_hash", "root", "proof"],
                                 "properties": {"leaf_hash": b64, "root": b64,
                                                "proof": proof}}, **transparency)},
        "/v1/transparency/proofs/consistency": {
            "get": op("RFC 9162 consistency proof from size old to size new; logged",
                      params=[q("old", "older tree size", {"type": "integer"}),
                              q("new", "newer tree size", {"type": "integer"})],
                      ok_schema={"type": "object",
                                 "required": ["old", "new", "old_root", "new_root", "proof"],
                                 "properties": {"old_root": b64, "new_root": b64,
                                                "proof": proof}}, **transparency)},
        "/v1/transparency/export": {
            "get": op("bundle of all entries and checkpoints for `gateway audit verify "
                      "--bundle`; logged", **transparency)},
    }


PATHS.update(_staff_access_paths())


# -- retention, legal holds, data-subject requests, keys (docs/retention-and-dsr.md) --------
def _retention_paths() -> dict[str, dict[str, Any]]:
    from gateway.lifecycle.data_classes import DATA_CLASSES  # the one list of classes

    SCHEMAS["RetentionPolicy"] = {
        "type": "object", "additionalProperties": False,
        "description": "days per data class; a class left out (or null) uses the operator"
                       " default. Out of the operator's bounds: 422 naming the bound.",
        "properties": {
            # Days, or the GET shape ({"days": N, ...}; "source": "default" keeps the
            # default), so a client can PUT back what it read. Wrapped in "classes" too.
            **{c.name: {"oneOf": [{"type": ["integer", "null"], "minimum": 0},
                                  {"type": "object"}],
                        "description": c.description} for c in DATA_CLASSES},
            "classes": {"type": "object"}}}
    SCHEMAS["LegalHoldCreate"] = {
        "type": "object", "required": ["scope", "reason"], "additionalProperties": False,
        "properties": {"scope": {"enum": ["tenant", "call", "phone_number"]},
                       "call_id": {"type": "string", "format": "uuid"},
                       "phone_number": {"type": "string", "description": "any formatting"},
                       "reason": {"type": "string", "maxLength": 500},
                       "ends_at": {"type": "string", "format": "date-time"}}}
    SCHEMAS["SubjectRequest"] = {
        "type": "object", "required": ["phone_number"],
        "properties": {"phone_number": {"type": "string", "description": "any formatting;"
                                        " normalised to E.164"},
                       "corrected_number": {"type": "string", "description": "rectify only"},
                       "lift": {"type": "boolean", "description": "restrict only: lift it"}}}
    subject = {"$ref": "#/components/schemas/SubjectRequest"}
    body_errors = ("400", "401", "413", "415", "422")

    def dsr(summary: str) -> dict[str, Any]:
        return {"post": op(summary, body=subject, errors=body_errors, tag="subjects")}

    return {
        "/v1/retention": {
            "get": op("the effective retention policy, its defaults and the operator bounds",
                      errors=("401",), tag="retention"),
            "put": op("set days per data class (PUT: classes left out use the default)",
                      body={"$ref": "#/components/schemas/RetentionPolicy"},
                      errors=body_errors, tag="retention")},
        "/v1/retention/preview": {
            "get": op("what the next sweep would delete, per class, and what it keeps",
                      errors=("401",), tag="retention")},
        "/v1/legal-holds": {
            "post": op("hold the tenant, a call or a phone number: held data is never deleted",
                       ok="201", body={"$ref": "#/components/schemas/LegalHoldCreate"},
                       errors=("400", "401", "404", "413", "415", "422"), tag="retention"),
            "get": op("legal holds, active and released", errors=("401",), tag="retention")},
        "/v1/legal-holds/{hold_id}": {
            "parameters": [p("hold_id")],
            "get": op("one legal hold", errors=("401", "404"), tag="retention"),
            "delete": op("release a hold: its data becomes eligible for deletion again",
                         ok="204", errors=("401", "404"), tag="retention")},
        "/v1/subjects/search": dsr("calls where the number is a party"),
        "/v1/subjects/export": dsr("a JSON bundle (streamed) of the calls, events and "
                                   "recordings (base64) where the number is a party"),
        "/v1/subjects/erase": dsr("delete the calls where the number is a party; held "
                                  "calls are reported, not deleted"),
        "/v1/subjects/restrict": dsr("restrict (or lift) processing of those calls"),
        "/v1/subjects/rectify": dsr("replace the number by corrected_number in those calls"),
        "/v1/subjects/requests": {
            "get": op("data-subject requests, newest first", errors=("401", "422"),
                      params=[q("limit", "1-500, default 100", {"type": "integer"})],
                      tag="subjects")},
        "/v1/subjects/requests/{request_id}": {
            "parameters": [p("request_id")],
            "get": op("one request: status, due date and receipt", errors=("401", "404"),
                      tag="subjects")},
        "/v1/keys": {
            "get": op("key versions and the latest rotation", errors=("401",), tag="keys")},
        "/v1/keys/rotate": {
            "post": op("add a key version; a background job rewraps and reseals, then "
                       "destroys the old version", ok="202", errors=("401", "409"),
                       tag="keys")},
        "/v1/keys/rotation": {
            "get": op("the latest rotation and its progress", errors=("401", "404"),
                      tag="keys")},
    }


PATHS.update(_retention_paths())


# -- live audio (docs/live-audio.md) ---------------------------------------------------------
def _live_audio_paths() -> dict[str, dict[str, Any]]:
    ingest = [{"ingestToken": []}]
    sdp = {"type": "string", "description": "SDP offer (RFC 8866)"}
    whip_post = op("WHIP (RFC 9725): publish audio; answers 201 with the SDP answer and a "
                   "Location to DELETE. OPTIONS answers Accept-Post: application/sdp",
                   auth=ingest, ok="201", ok_description="SDP answer (recvonly)",
                   ok_content="application/sdp",
                   body=sdp, content="application/sdp",
                   errors=("400", "401", "404", "413", "415", "503"), tag="platform")
    whip_post["responses"]["201"]["headers"] = {
        "Location": {"schema": {"type": "string"}, "description": "the session URL"}}
    return {
        "/v1/media/{platform}/{integration_id}": {
            "parameters": [p("platform"), p("integration_id")],
            "get": op(f"media WebSocket ({'|'.join(adapters.MEDIA_STREAM_PLATFORMS)}): "
                      "upgrade authenticated by the platform's signature or an ingest token "
                      "(?token= or bearer), as its descriptor's upgrade_auth says; audio "
                      "recorded live; bad frames close 1007/1008",
                      auth=None, ok="101", ok_description="switching protocols", ok_content=None,
                      errors=("404", "426"), tag="platform")},
        "/v1/whip/{integration_id}": {"parameters": [p("integration_id")], "post": whip_post},
        "/v1/whip/{integration_id}/{session_id}": {
            "parameters": [p("integration_id"), p("session_id")],
            "delete": op("end a WHIP session; its recording is finished", auth=ingest,
                         errors=("401", "404"), tag="platform")},
        "/v1/integrations/{integration_id}/ingest-tokens": {
            "parameters": [p("integration_id")],
            "post": op("create an ingest token (shown once) for Telnyx media and WHIP",
                       ok="201", errors=("401", "404", "409")),
            "get": op("list ingest tokens (ids and times, never the secret)",
                      errors=("401", "404"))},
        "/v1/integrations/{integration_id}/ingest-tokens/{token_id}": {
            "parameters": [p("integration_id"), p("token_id")],
            "delete": op("revoke an ingest token", ok="204", errors=("401", "404"))},
    }


PATHS.update(_live_audio_paths())

# -- browser console (docs/console.md) ----------------------------------------------------------
def _console_paths() -> dict[str, dict[str, Any]]:
    page = {"get": op("console page (HTML, ES modules; strict CSP)", auth=None, errors=(),
                      content="text/html", ok_content="text/html", tag="console")}
    session_ops = {}
    for base, who, field in (("/console/session", "tenant API key", "api_key"),
                             ("/console/staff/session", "staff token", "token")):
        session_ops[base] = {
            "post": op(f"sign in: exchange the {who} for an HttpOnly SameSite=Strict session "
                       "cookie; the body holds the CSRF token for X-CSRF-Token",
                       auth=None, ok="201", tag="console", errors=("400", "401", "403", "422"),
                       body={"type": "object", "required": [field],
                             "properties": {field: {"type": "string"}}}),
            "get": op("the current session and its CSRF token (cookie)", auth=None,
                      errors=("401",), tag="console"),
            "delete": op("sign out: ends the session server-side (needs X-CSRF-Token)",
                         auth=None, ok="204", errors=("403",), tag="console")}
    return {
        "/console": {"get": op("redirect to /console/", auth=None, ok="308", errors=(),
                               ok_content=None, tag="console")},
        "/console/": page,
        "/console/staff/": page,
        "/console/assets/{path}": {
            "parameters": [p("path")],
            "get": op("console static asset (ETag, no-cache)", auth=None, errors=("404",),
                      ok_content="*/*", tag="console")},
        **session_ops,
    }


PATHS.update(_console_paths())

# -- data residency (docs/residency.md) -------------------------------------------------------
def _residency_paths() -> dict[str, dict[str, Any]]:
    nullable = {"type": ["string", "null"]}
    tenant = {"type": "object", "required": ["id", "region"], "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "state": {"type": "string"},
        "created_at": {"type": "string"}, "region": nullable, "moving_to": nullable}}
    item = {"type": "object", "required": ["index", "time", "country", "region",
                                           "legal_basis", "leaf_hash"],
            "properties": {"index": {"type": "integer", "minimum": 0},
                           "time": {"type": "string"}, "leaf_hash": {"type": "string"},
                           "country": {"type": "string"}, "region": {"type": "string"},
                           "legal_basis": nullable, "staff": {"type": "object"},
                           "purpose": nullable, "reference": nullable,
                           "grant_id": nullable, "endpoint": nullable}}
    report = {"type": "object", "required": ["items", "next_cursor", "log_size"],
              "properties": {"items": {"type": "array", "items": item},
                             "next_cursor": nullable,
                             "log_size": {"type": "integer", "minimum": 0}}}
    return {
        "/v1/tenant": {"get": op("this tenant: id, name and the region its data lives in",
                                 errors=("401",), ok_schema=tenant)},
        "/v1/transfers": {"get": op(
            "staff reads from outside the tenant's region (transfers), from its "
            "transparency log: each item carries the entry index for an inclusion proof; "
            "logged", errors=("401", "422", "503"), tag="transparency", ok_schema=report,
            params=[q("since", "RFC 3339: transfers at or after this time"),
                    q("cursor", "next_cursor of the previous page"),
                    q("limit", "1-200, default 50", {"type": "integer"})])},
    }


PATHS.update(_residency_paths())


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "Voice-call data gateway", "version": "1"},
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "tenantKey": {"type": "http", "scheme": "bearer",
                              "description": "tenant API key (vgw_...)"},
                "staffToken": {"type": "http", "scheme": "bearer",
                               "description": "staff token (vgws_...)"},
                "ingestToken": {"type": "http", "scheme": "bearer",
                                "description": "per-integration ingest token (vgwi_...)"}}}}
