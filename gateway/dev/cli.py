"""`gateway dev send-webhook`: post one signed sample call event to a running gateway, as
the integration's platform would, and print the gateway's id of the call it created.

    CALL=$(gateway dev send-webhook --integration "$INTEGRATION")

Invariants:
- The signature is made with the integration's own stored credentials (decrypted here, on
  the operator's host, never printed) over the integration's webhook URL, which is built
  from [server] public_base_url exactly as the platform would see it; `--post-to` only
  changes where the bytes are sent (e.g. straight to the local port behind a proxy).
- A refusal exits 1 and prints the gateway's problem title and detail: the same words a
  platform's delivery log would show.
- stdout carries the call id only (or one JSON object with --json), so it can be captured.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any
from urllib.parse import urlsplit

import aiohttp

import adapters
from gateway.core.commands import Command
from gateway.dev.samples import (
    SAMPLE_FROM,
    SAMPLE_STATUSES,
    SAMPLE_TO,
    SampleCall,
    SigningError,
    new_platform_call_id,
    sign_sample,
)
from gateway.errors import not_found

# Long enough for a gateway under load to make one delivery durable, short enough that a
# wrong --post-to fails while the user still waits for it.
POST_TIMEOUT_SECONDS = 30.0


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--integration", required=True, metavar="INTEGRATION_ID",
                        help="the integration to deliver to (its platform decides how the"
                             " sample is signed; the id is in POST /v1/integrations' answer)")
    parser.add_argument("--status", choices=SAMPLE_STATUSES, default="completed",
                        help="the call status the sample reports (default: completed)")
    parser.add_argument("--direction", choices=adapters.DIRECTIONS, default="inbound",
                        help="call direction (default: inbound)")
    parser.add_argument("--call-id", metavar="PLATFORM_CALL_ID",
                        help="the platform's id of the call (default: a new one); reuse it"
                             " to send a later status of the same call")
    parser.add_argument("--from", dest="from_number", default=SAMPLE_FROM, metavar="NUMBER",
                        help=f"calling party (default: the fictional {SAMPLE_FROM})")
    parser.add_argument("--to", dest="to_number", default=SAMPLE_TO, metavar="NUMBER",
                        help=f"called party (default: the fictional {SAMPLE_TO})")
    parser.add_argument("--duration", type=int, default=42, metavar="SECONDS",
                        help="duration of a finished call (default: 42)")
    parser.add_argument("--signing-key", metavar="BASE64",
                        help="Telnyx only: the Ed25519 private key (base64 of 32 bytes)"
                             " matching the integration's public_key; Telnyx keeps its"
                             " private key, so the gateway has none")
    parser.add_argument("--post-to", metavar="BASE_URL",
                        help="send to this base URL instead of [server] public_base_url"
                             " (the signature still covers the public URL), e.g."
                             " http://127.0.0.1:8080 behind a proxy")


async def send_webhook(args: argparse.Namespace, services: Any) -> int:
    row = await services.db.fetchone(
        "SELECT platform FROM integrations WHERE id = ? AND disabled_at IS NULL",
        (args.integration,))
    if row is None:
        raise not_found("integration")
    integration = await services.integrations.load_for_delivery(row["platform"],
                                                                args.integration)
    signed_url = services.integrations.webhook_url(integration)
    try:
        call = SampleCall(args.call_id or new_platform_call_id(integration.platform),
                          status=args.status, direction=args.direction,
                          from_number=args.from_number, to_number=args.to_number,
                          duration_seconds=args.duration)
        delivery = sign_sample(integration.platform, call, integration.credentials,
                               signed_url, services.clock.now(), signing_key=args.signing_key)
    except SigningError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    target = delivery.url
    if args.post_to:
        parts = urlsplit(delivery.url)
        target = args.post_to.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query
                                                           else "")
    try:
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_SECONDS)) as http:
            async with http.request(delivery.method, target, data=delivery.body,
                                    headers=delivery.headers) as response:
                status = response.status
                text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        print(f"gateway: could not reach {target.split('/v1/')[0]} ({type(exc).__name__}):"
              " is the gateway running, and is [server] public_base_url (or --post-to) its"
              " address?", file=sys.stderr)
        return 1
    answer = _json_or_none(text)
    if not 200 <= status < 300:
        title = answer.get("title") if isinstance(answer, dict) else None
        detail = answer.get("detail") if isinstance(answer, dict) else None
        print(f"gateway: the gateway answered {status}"
              + (f" {title}" if title else "") + (f": {detail}" if detail else ""),
              file=sys.stderr)
        return 1
    found = await services.db.fetchone(
        "SELECT id FROM calls WHERE integration_id = ? AND platform_call_id = ?",
        (integration.id, call.platform_call_id))
    call_id = found["id"] if found is not None else None
    if args.json:
        print(json.dumps({"call_id": call_id, "platform": integration.platform,
                          "platform_call_id": call.platform_call_id, "http_status": status,
                          "answer": answer}))
    elif call_id is None:
        print("gateway: delivered, but no call was stored (the integration's platform event"
              " carried no call)", file=sys.stderr)
        return 1
    else:
        print(call_id)
    return 0


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


cli_commands = [
    Command(("dev", "send-webhook"), send_webhook, _configure,
            help="sign a sample call event the way the integration's platform does, post"
                 " it, and print the call id"),
]
