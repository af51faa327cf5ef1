"""Twilio Voice: status callbacks, recording status callbacks, and the signature check used
by the Media Streams WebSocket upgrade (PROTOCOLS.md, "Twilio").

Signature (`X-Twilio-Signature`), step by step, as Twilio's own RequestValidator does it:
1. Start from the URL Twilio requested, query string included, exactly as written.
2. Form POST: append name + value for every body parameter, names sorted; a repeated name
   contributes each of its values, values sorted and de-duplicated.
   JSON POST: the URL carries `bodySHA256=<hex sha256 of the raw body>`; check that hash
   and append no parameters. GET (status callbacks may use GET; the Media Streams upgrade
   always does): no parameters, the query string is already part of the URL.
3. base64(HMAC-SHA1(auth token, that string)).
4. Accept if it matches for the URL as given, with its port removed, or with the scheme's
   default port added (Twilio's own validator tries the last two; the first is implied).

Twilio signs no timestamp. Replays are bounded by the event's own `Timestamp` (RFC 2822)
against MAX_EVENT_AGE, and inside that window by the dedupe key.

Refusals carry a `detail` that says what to fix (`TwilioSignatureError`): a stale
Timestamp, or a signature that does not match the URL rebuilt from the gateway's public
base URL, the most common integration mistake. When the signature does match the URL the
request arrived at (its Host header), the detail says so. It never echoes a signature,
token or request value: only the configured public origin and the setting's name. This
tells an attacker nothing, since without the auth token no signature matches any URL.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

from . import _common as c
from ._platform import DIAG_TOKEN, UPGRADE_SIGNATURE, MediaStream, PlatformDescriptor
from .events import (
    TERMINAL_STATUSES,
    CallEvent,
    Event,
    MalformedError,
    RecordingAvailable,
    SignatureError,
    WebhookRequest,
)
from .media import twilio as media_twilio

NAME = "twilio"

SIGNATURE_HEADER = "x-twilio-signature"
BODY_HASH_PARAM = "bodySHA256"

# How old an authentic callback may be. Twilio does not retry status callbacks unless the
# URL carries connection overrides (#rc up to 5 retries within #rt, minutes in total), and
# its delivery queue is measured in seconds to minutes even during incidents. 24 hours is
# two orders of magnitude above that, so no genuine late delivery is lost, while a captured
# callback cannot be replayed after a day; inside the window the dedupe key (which the
# gateway keeps for at least this long) stops it.
MAX_EVENT_AGE = timedelta(hours=24)

# A status callback carries about 20-40 parameters; 200 leaves room for every optional
# one (AMD, SIP headers, Stream params) and stops a parameter flood early.
MAX_FORM_FIELDS = 200
# A SHA-1 HMAC is 20 bytes: 28 base64 characters; anything much longer is not a signature.
MAX_SIGNATURE_CHARS = 64

_ACCOUNT_SID_RE = re.compile(r"AC[0-9a-fA-F]{32}\Z")
_AUTH_TOKEN_RE = re.compile(r"[0-9a-fA-F]{32}\Z")
_HEX64_RE = re.compile(r"[0-9a-fA-F]{64}\Z")
# A Host / X-Forwarded-Host value worth trying as the URL Twilio signed (host[:port] only).
_HOST_HEADER_RE = re.compile(r"[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?\Z")
_FORWARDED_PROTOS = ("https", "http")

# Twilio CallStatus -> canonical status. "initiated" (Twilio has started dialling) is the
# canonical "queued": the call exists but is not yet ringing.
STATUS_MAP = {
    "queued": "queued",
    "initiated": "queued",
    "ringing": "ringing",
    "in-progress": "in-progress",
    "completed": "completed",
    "busy": "busy",
    "failed": "failed",
    "no-answer": "no-answer",
    "canceled": "canceled",
}
# Twilio Direction -> canonical direction. Elastic SIP Trunking: "originating" calls come
# from the PSTN into the tenant's PBX (inbound); "terminating" calls go out from it.
# Values not listed map to None (direction unknown), not to an error.
DIRECTION_MAP = {
    "inbound": "inbound",
    "outbound-api": "outbound",
    "outbound-dial": "outbound",
    "trunking-originating": "inbound",
    "trunking-terminating": "outbound",
}
# Technical-only parameters copied to diagnostics. Never Digits, numbers, names, AnsweredBy
# or free text (ErrorMessage).
DIAGNOSTIC_PARAMS = ("ErrorCode", "CallbackSource", "SipResponseCode")

_DEFAULT_PORTS = {"https": "443", "wss": "443", "http": "80", "ws": "80"}
# Recording media is served from Twilio's API hosts (api.twilio.com and regional
# api.<edge>.<region>.twilio.com); the account's credentials go nowhere else.
RECORDING_HOSTS = (".twilio.com",)
_MEDIA_EXTENSIONS = {".wav": "audio/wav", ".mp3": "audio/mpeg"}
DEFAULT_MEDIA_EXTENSION = ".wav"

Params = dict[str, list[str]]


# --- refusals -----------------------------------------------------------------------------


class TwilioSignatureError(SignatureError):
    """A SignatureError whose `detail` is safe to show the sender and says what to fix."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(outcome)
        self.detail = detail


STALE_DETAIL = (
    "the callback's Timestamp is more than 24 hours old (or in the future): Twilio signs no"
    " timestamp, so the gateway refuses old callbacks to bound replays")
MISSING_DETAIL = "no X-Twilio-Signature header: Twilio signs every callback it sends"


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return scheme + "://" + rest.split("/", 1)[0].split("?", 1)[0].rpartition("@")[2]


def _url_mismatch_detail(url: str, arrived_matches: bool) -> str:
    setting = f"[server] public_base_url ({_origin(url)})"
    if arrived_matches:
        return ("X-Twilio-Signature matches the URL this request was sent to, not the one"
                f" rebuilt from {setting}: set public_base_url to the scheme, host and port"
                " Twilio calls")
    return ("X-Twilio-Signature does not match the URL rebuilt from"
            f" {setting} with this integration's auth token: public_base_url must be"
            " exactly the scheme, host and port Twilio calls (behind a proxy, the outside"
            " URL), and auth_token the account's primary auth token")


def _arrived_urls(request: WebhookRequest, url: str) -> list[str]:
    """The URL rebuilt from the request's own Host (and X-Forwarded-*) headers instead of
    the configured base: used only to explain a refusal, never to accept a delivery."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return []
    tail = rest[len(rest.split("/", 1)[0]):]
    hosts = [h for h in (c.header(request.headers, "x-forwarded-host"),
                         c.header(request.headers, "host"))
             if h and _HOST_HEADER_RE.match(h.strip())]
    proto = c.header(request.headers, "x-forwarded-proto")
    schemes = [p for p in dict.fromkeys([(proto or "").strip().lower(), *_FORWARDED_PROTOS])
               if p in _FORWARDED_PROTOS]
    candidates = [f"{s}://{h.strip()}{tail}" for h in dict.fromkeys(hosts) for s in schemes]
    return [u for u in candidates if u != url]


# --- credentials --------------------------------------------------------------------------


@c.contained
def validate_credentials(credentials: Mapping[str, Any]) -> dict[str, Any]:
    creds = c.cred_mapping(credentials)
    return {
        "account_sid": c.req_cred(creds, "account_sid", pattern=_ACCOUNT_SID_RE),
        "auth_token": c.req_cred(creds, "auth_token", pattern=_AUTH_TOKEN_RE),
    }


# --- signature ----------------------------------------------------------------------------


def _url_variants(url: str) -> list[str]:
    """The URL as given, without its port, and with the scheme's default port."""
    variants = [url]
    scheme, sep, rest = url.partition("://")
    if not sep:
        return variants
    end = len(rest)
    for stop in "/?#":
        index = rest.find(stop)
        if index != -1:
            end = min(end, index)
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hostport = netloc.rpartition("@")
    if hostport.startswith("["):  # IPv6 literal: the port follows "]:"
        host, _, after = hostport.partition("]")
        host, port = host + "]", after[1:]
    elif ":" in hostport:
        host, _, port = hostport.partition(":")
    else:
        host, port = hostport, ""
    prefix = scheme + "://" + userinfo + at
    variants.append(prefix + host + tail)
    default = _DEFAULT_PORTS.get(scheme.lower())
    if not port and default:
        variants.append(prefix + host + ":" + default + tail)
    return list(dict.fromkeys(variants))


def _signature_base(url: str, params: Params) -> bytes:
    parts = [url]
    for name in sorted(params):
        for value in sorted(set(params[name])):
            parts.append(name + value)
    return "".join(parts).encode("utf-8", "surrogatepass")


def compute_signature(auth_token: str, url: str, params: Params) -> str:
    """base64 HMAC-SHA1 over URL + sorted params (also used by tests and the gateway's
    signing helpers for local development)."""
    digest = c.hmac_digest(auth_token.encode("utf-8"), _signature_base(url, params), "sha1")
    return base64.b64encode(digest).decode("ascii")


def _parse_query_pairs(text: str, field: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(
            text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS, errors="strict"
        )
    except ValueError:  # includes UnicodeDecodeError and "too many fields"
        raise MalformedError(field, "not valid form encoding") from None


def _to_params(pairs: list[tuple[str, str]]) -> Params:
    params: Params = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return params


def _query_of(url: str) -> str:
    without_fragment = url.partition("#")[0]
    return without_fragment.partition("?")[2]


def _verified_params(request: WebhookRequest, credentials: Mapping[str, Any]) -> Params:
    """Verify the signature; return the parameters the callback carries."""
    creds = c.cred_mapping(credentials)
    token = c.req_cred(creds, "auth_token", max_len=256)
    method = c.method(request)
    url = c.request_url(request)
    body = c.body_bytes(request.body)
    signature = c.header(request.headers, SIGNATURE_HEADER)
    if not signature:
        raise TwilioSignatureError("missing_signature", MISSING_DETAIL)
    if len(signature) > MAX_SIGNATURE_CHARS or not signature.isascii():
        raise SignatureError()

    query = _to_params(_parse_query_pairs(_query_of(url), "url"))
    body_hash = query.get(BODY_HASH_PARAM)
    if method == "GET":
        signed: Params = {}
        params = query
    elif body_hash is not None:
        # JSON body: bind the raw bytes through the signed URL's hash, then sign the URL.
        if len(body_hash) != 1 or not _HEX64_RE.match(body_hash[0]):
            raise SignatureError()
        if not c.constant_time_equal(body_hash[0].lower(), c.sha256_hex(body)):
            raise SignatureError()
        signed = {}
        params = {}  # filled from the JSON body once authenticated
    else:
        signed = params = _to_params(_parse_query_pairs(c.decode_utf8(body, "body"), "body"))

    if not _signed_over_any(token, _url_variants(url), signed, signature):
        arrived = [variant for candidate in _arrived_urls(request, url)
                   for variant in _url_variants(candidate)]
        raise TwilioSignatureError("bad_signature", _url_mismatch_detail(
            url, _signed_over_any(token, arrived, signed, signature)))

    if method != "GET" and body_hash is not None:
        params = _json_params(body)
    return params


def _signed_over_any(token: str, urls: list[str], signed: Params, signature: str) -> bool:
    ok = False
    for candidate in urls:  # every candidate is computed: no early exit to time
        if c.constant_time_equal(compute_signature(token, candidate, signed), signature):
            ok = True
    return ok


@c.contained
def verify(request: WebhookRequest, credentials: Mapping[str, Any], now: datetime | None = None) -> None:
    """Signature check only (e.g. the Media Streams upgrade: GET on the wss:// URL, no
    params). Raises SignatureError; Twilio signs no timestamp, so `now` is unused."""
    _verified_params(request, credentials)


def _json_params(body: bytes) -> Params:
    """A JSON callback's top-level scalar fields, as the form fields they stand for."""
    doc = c.obj(c.load_json(body), "body")
    params: Params = {}
    for name, value in doc.items():
        if isinstance(value, str):
            params[name] = [value]
        elif isinstance(value, int) and not isinstance(value, bool):
            params[name] = [str(value)]
    return params


# --- parsing ------------------------------------------------------------------------------


# Every parameter this adapter reads. A repeated one (with differing values) is ambiguous
# and refused; repeats of parameters we do not read (e.g. Digits) are signed and ignored.
READ_PARAMS = (
    "CallSid", "CallStatus", "Direction", "From", "To", "CallDuration", "Timestamp",
    "SequenceNumber", "RecordingSid", "RecordingStatus", "RecordingUrl",
    "RecordingDuration", "RecordingChannels", *DIAGNOSTIC_PARAMS,
)


def _flatten(params: Params) -> dict[str, str]:
    for name in READ_PARAMS:
        if len(set(params.get(name, ()))) > 1:
            raise MalformedError(name, "repeated")
    return {name: values[0] for name, values in params.items() if name in READ_PARAMS}


@c.contained
def verify_and_parse(
    request: WebhookRequest, credentials: Mapping[str, Any], now: datetime
) -> list[Event]:
    method = c.method(request)
    if method not in ("POST", "GET"):
        raise MalformedError("method", "must be POST or GET")
    now = c.utc(now)
    params = _verified_params(request, credentials)
    f = _flatten(params)

    occurred_at = c.opt_time(f, "Timestamp", "Timestamp", c.parse_rfc2822)
    if occurred_at is not None:
        try:
            c.check_window(occurred_at, now, max_age=MAX_EVENT_AGE)
        except SignatureError:
            raise TwilioSignatureError("stale", STALE_DETAIL) from None

    call_sid = c.req_id(f, "CallSid", "CallSid")
    if c.opt_id(f, "RecordingSid", "RecordingSid") is not None:
        return _recording(f, call_sid, occurred_at)
    return [_call_event(f, params, call_sid, occurred_at)]


def _call_event(
    f: Mapping[str, str], params: Params, call_sid: str, occurred_at: datetime | None
) -> CallEvent:
    raw_status = c.opt_enum(f, "CallStatus", "CallStatus")
    status = None
    if raw_status is not None:
        status = STATUS_MAP.get(raw_status.lower())
        if status is None:
            raise MalformedError("CallStatus", "unknown value")
    raw_direction = c.opt_enum(f, "Direction", "Direction")
    sequence = c.opt_int(f, "SequenceNumber", "SequenceNumber")
    if sequence is not None:
        dedupe = f"{call_sid}:{raw_status or '-'}:{sequence}"
    else:
        canonical = json.dumps(sorted((k, sorted(set(v))) for k, v in params.items()))
        digest = c.sha256_hex(canonical.encode("utf-8", "surrogatepass"))
        dedupe = f"{call_sid}:{raw_status or '-'}:h{digest[:32]}"
    diagnostics = {}
    for name in DIAGNOSTIC_PARAMS:
        value = c.token_or_none(f.get(name))
        if value is not None:
            diagnostics[name] = value
    duration = c.opt_int(f, "CallDuration", "CallDuration", maximum=c.MAX_DURATION_SECONDS)
    # Twilio's callbacks carry no start or end time of their own, only the event's
    # Timestamp: a terminal callback's Timestamp is the end, and the start is the end minus
    # CallDuration; an earlier status callback's Timestamp is a start (the gateway keeps the
    # earliest known one, so initiated/ringing win over the answer-based estimate).
    started_at = ended_at = None
    if occurred_at is not None and status is not None:
        if status in TERMINAL_STATUSES:
            ended_at = occurred_at
            if duration is not None:
                started_at = occurred_at - timedelta(seconds=duration)
        else:
            started_at = occurred_at
    return CallEvent(
        platform=NAME,
        dedupe_key=dedupe,
        platform_call_id=call_sid,
        status=status,
        direction=DIRECTION_MAP.get(raw_direction.lower()) if raw_direction else None,
        from_number=c.opt_party(f, "From", "From"),
        to_number=c.opt_party(f, "To", "To"),
        occurred_at=occurred_at,
        started_at=started_at,
        ended_at=ended_at,
        duration_seconds=duration,
        sequence=sequence,
        diagnostics=diagnostics,
    )


def _recording(f: Mapping[str, str], call_sid: str, occurred_at: datetime | None) -> list[Event]:
    recording_sid = c.req_id(f, "RecordingSid", "RecordingSid")
    status = c.opt_enum(f, "RecordingStatus", "RecordingStatus")
    if status is None or status.lower() != "completed":
        # in-progress / absent / failed: nothing to download yet or ever.
        return []
    url = c.https_url(
        c.req_str(f, "RecordingUrl", "RecordingUrl", max_len=c.MAX_URL_CHARS),
        "RecordingUrl",
    )
    return [
        RecordingAvailable(
            platform=NAME,
            dedupe_key=f"{recording_sid}:{status.lower()}",
            platform_call_id=call_sid,
            platform_recording_id=recording_sid,
            url=url,
            content_type=_MEDIA_EXTENSIONS[_extension(url) or DEFAULT_MEDIA_EXTENSION],
            duration_seconds=c.opt_int(
                f,
                "RecordingDuration",
                "RecordingDuration",
                maximum=c.MAX_DURATION_SECONDS,
            ),
            channels=c.opt_int(
                f, "RecordingChannels", "RecordingChannels", maximum=2
            ),
            occurred_at=occurred_at,
        )
    ]


def _extension(url: str) -> str | None:
    path = url.partition("?")[0]
    for ext in _MEDIA_EXTENSIONS:
        if path.lower().endswith(ext):
            return ext
    return None


# --- recording download -------------------------------------------------------------------


@c.contained
def recording_download(
    recording: RecordingAvailable, credentials: Mapping[str, Any], now: datetime
) -> tuple[str, dict[str, str]]:
    """GET RecordingUrl + ".wav" with HTTP Basic AccountSid:AuthToken. Refuses any host that
    is not Twilio's, so the account credentials can never be sent elsewhere."""
    creds = c.cred_mapping(credentials)
    account_sid = c.req_cred(creds, "account_sid", max_len=64)
    token = c.req_cred(creds, "auth_token", max_len=256)
    url = c.https_url(recording.url, "recording.url")
    if not c.host_matches(c.url_host(url), RECORDING_HOSTS):
        raise MalformedError("recording.url", "not a Twilio API URL")
    if _extension(url) is None:
        path, q, query = url.partition("?")
        url = path + DEFAULT_MEDIA_EXTENSION + q + query
    basic = base64.b64encode(f"{account_sid}:{token}".encode()).decode("ascii")
    return url, {"Authorization": f"Basic {basic}"}


PLATFORM = PlatformDescriptor(
    name=NAME,
    replay_window=MAX_EVENT_AGE + c.MAX_FUTURE_SKEW,
    validate_credentials=validate_credentials,
    verify_and_parse=verify_and_parse,
    verify=verify,
    recording_download=recording_download,
    required_credentials=("account_sid", "auth_token"),
    # Basic auth goes only to RECORDING_HOSTS; media redirects to Twilio's CDN.
    recording_hosts=(*RECORDING_HOSTS, ".twiliocdn.com"),
    diagnostic_fields={name: DIAG_TOKEN for name in DIAGNOSTIC_PARAMS},
    media_stream=MediaStream(
        # X-Twilio-Signature over the public wss:// URL, no parameters.
        upgrade_auth=UPGRADE_SIGNATURE, new_parser=media_twilio.parser_for,
        verify_upgrade=verify),
)
