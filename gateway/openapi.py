"""The OpenAPI 3.1 document served at /v1/openapi.json. A test checks that it lists exactly
the routes the app serves, so it cannot drift. Add each new route here."""

from __future__ import annotations

from typing import Any

PROBLEM = {"description": "problem details (RFC 9457)",
           "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}
TENANT_AUTH = [{"tenantKey": []}]
STAFF_AUTH = [{"staffToken": []}]


def op(summary: str, *, auth: list | None = TENANT_AUTH, ok: str = "200",
       ok_description: str = "OK", body: dict | None = None, params: list | None = None,
       errors: tuple[str, ...] = ("401", "404", "422"), content: str = "application/json",
       tag: str = "tenant") -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary, "tags": [tag],
        "responses": {ok: {"description": ok_description}, **{e: PROBLEM for e in errors}}}
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


PATHS: dict[str, dict[str, Any]] = {
    "/healthz": {"get": op("liveness", auth=None, errors=(), tag="ops")},
    "/readyz": {"get": op("readiness: database and blob store reachable", auth=None,
                          errors=("503",), tag="ops")},
    "/v1/openapi.json": {"get": op("this document", auth=None, errors=(), tag="ops")},
    "/v1/integrations": {
        "post": op("connect a platform; credentials are write-only", ok="201",
                   body={"$ref": "#/components/schemas/IntegrationCreate"},
                   errors=("400", "401", "413", "415", "422")),
        "get": op("list integrations (never their credentials)", errors=("401",))},
    "/v1/integrations/{integration_id}": {
        "parameters": [p("integration_id")],
        "get": op("one integration"),
        "delete": op("disable an integration", ok="204")},
    "/v1/calls": {"get": op("list calls, newest first, cursor-paginated", params=[
        q("status", "canonical status"), q("since", "RFC 3339, inclusive"),
        q("until", "RFC 3339, exclusive"), q("cursor", "next_cursor of the previous page"),
        q("limit", "1-200, default 50", {"type": "integer"})])},
    "/v1/calls/{call_id}": {"parameters": [p("call_id")],
                            "get": op("one call with parties, events and recordings")},
    "/v1/calls/{call_id}/recordings": {
        "parameters": [p("call_id")],
        "post": op("upload a recording (any bytes, streamed)", ok="201",
                   body={"type": "string", "format": "binary"}, content="*/*",
                   errors=("401", "404", "413", "422"))},
    "/v1/recordings/{recording_id}": {"parameters": [p("recording_id")],
                                      "get": op("recording metadata")},
    "/v1/recordings/{recording_id}/audio": {
        "parameters": [p("recording_id")],
        "get": op("the audio as uploaded; honours a single Range", ok_description="audio",
                  errors=("401", "404", "416"))},
    "/v1/hooks/{platform}/{integration_id}": {
        "parameters": [p("platform"), p("integration_id")],
        "post": op("platform webhook; authenticated by the platform's signature", auth=None,
                   errors=("400", "401", "404", "413", "422"), tag="platform"),
        "get": op("subscription handshake (WhatsApp hub.challenge)", auth=None,
                  errors=("401", "404"), tag="platform")},
}

SCHEMAS: dict[str, Any] = {
    "Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {
        "type": {"type": "string", "description": "stable urn:vgw:problem:<slug>"},
        "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "field": {"type": "string"}}},
    "IntegrationCreate": {"type": "object", "required": ["platform", "credentials"],
                          "properties": {
                              "platform": {"enum": ["standard", "twilio", "telnyx", "vonage",
                                                    "whatsapp"]},
                              "name": {"type": "string", "maxLength": 100},
                              "credentials": {"type": "object"},
                              "options": {"type": "object",
                                          "properties": {"store_audio": {"type": "boolean"}}}}},
}


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
                               "description": "staff token (vgws_...)"}}}}
