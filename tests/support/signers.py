"""Sign like a platform: deliveries made with the platform's own SDK (Standard Webhooks
here; each platform suite's senders build on these), never with the code under test."""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import datetime
from typing import Any

from standardwebhooks.webhooks import Webhook


def new_whsec() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def standard_delivery(secret: str, body: dict[str, Any] | bytes, when: datetime,
                      msg_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A Standard Webhooks delivery as a sender built on the reference library makes it."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    signature = Webhook(secret).sign(msg_id, when, raw.decode("utf-8", "surrogateescape"))
    return raw, {"webhook-id": msg_id, "webhook-timestamp": str(int(when.timestamp())),
                 "webhook-signature": signature, "content-type": "application/json"}


def call_updated(call_id: str, status: str, *, direction: str = "inbound",
                 from_number: str = "+14155550100", to_number: str = "+14155550199",
                 started_at: str | None = None, ended_at: str | None = None,
                 duration: int | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"call_id": call_id, "status": status, "direction": direction,
                            "from": from_number, "to": to_number}
    if started_at:
        data["started_at"] = started_at
    if ended_at:
        data["ended_at"] = ended_at
    if duration is not None:
        data["duration_seconds"] = duration
    return {"type": "call.updated", "data": data}
