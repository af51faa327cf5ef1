"""Helpers shared by every platform adapter: one way to do each thing.

Nothing here performs I/O or reads the clock. Every limit is a named constant with the
reason for its value. Errors raised here are always `SignatureError` or `MalformedError`
(both `AdapterError`); their messages name a field and a fixed reason and never echo the
offending value, a secret, a number or body bytes.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .events import AdapterError, MalformedError, SignatureError

# --- limits -------------------------------------------------------------------------------

# Largest webhook body an adapter will look at. Call-status callbacks are < 4 KiB; the
# largest legitimate payload is a WhatsApp batch carrying SDP offers (a few KiB each), and
# Meta documents 3 MB as its own ceiling for any webhook. 1 MiB is far above anything a
# call event needs and keeps a hostile body from costing more than one parse of 1 MiB.
MAX_BODY_BYTES = 1 << 20

# Longest single header value read. 8 KiB matches the per-line limits of nginx
# (large_client_header_buffers 8k) and Apache (LimitRequestFieldSize 8190); a JWT, a list of
# Standard Webhooks signatures or a base64 Ed25519 signature are all far shorter.
MAX_HEADER_CHARS = 8192

# Platform identifiers: Twilio SIDs are 34 chars, UUIDs 36, WhatsApp call ids ("wacid.")
# about 60-100. 256 leaves room without letting an id become a storage sink.
MAX_ID_CHARS = 256

# Party identifiers as the platform wrote them: E.164 is at most 16 chars, but platforms
# also send SIP URIs ("sip:alice@pbx.example.com") and client ids; RFC 3261 puts no limit
# on a URI, and 256 covers every realistic one.
MAX_PARTY_CHARS = 256

# Media URLs. 2048 is the long-standing practical URL ceiling (IE, many CDNs); S3
# pre-signed URLs such as Telnyx's recording_urls are about 1,000-1,500 chars.
MAX_URL_CHARS = 2048

# Enum-like technical values (statuses, hangup causes, event types): the longest one any
# platform documents is well under 40 chars.
MAX_TOKEN_CHARS = 64

# Timestamps in any textual form (RFC 3339 with microseconds is 32 chars; RFC 2822 ~31).
MAX_TIME_CHARS = 64

# Sanity bound on any duration: no platform keeps a call up for longer than a day by
# default (Twilio's hard limit is 24 h); a week rejects nonsense without rejecting outliers.
MAX_DURATION_SECONDS = 7 * 24 * 3600

# Upper bound for counters the platforms send (sequence numbers, packet counts, sizes).
# 2**53 - 1 is the largest integer every JSON implementation represents exactly.
MAX_COUNTER = 2**53 - 1

# Future skew tolerated on any platform timestamp (signed or not): the same 5 minutes the
# Standard Webhooks spec and Telnyx use for their signed timestamps, for clock drift.
MAX_FUTURE_SKEW = timedelta(minutes=5)

# Technical values copied into diagnostics must look like an enum member or a code: this
# keeps free text, names and numbers (which contain '+' or spaces) out of diagnostics.
_TOKEN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*\Z")
# Identifiers: printable ASCII without spaces (SIDs, UUIDs, base64-ish WhatsApp ids).
_ID_RE = re.compile(r"[\x21-\x7e]+\Z")
# Free-form strings we keep (party ids): no C0 control characters, no DEL.
_NO_CONTROL_RE = re.compile(r"[^\x00-\x1f\x7f]*\Z")
_DIGITS_RE = re.compile(r"[0-9]+\Z")
_DECIMAL_RE = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,15})?\Z")
_B64_RE = re.compile(r"[A-Za-z0-9+/]*={0,2}\Z")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]*={0,2}\Z")

T = TypeVar("T")


def contained(fn: Callable[..., T]) -> Callable[..., T]:
    """Last-resort guard for a public adapter function: any exception that is not an
    `AdapterError` becomes `MalformedError("request", ...)` chained to the original, so
    the gateway never turns adapter input into a 500. Adapter code converts every expected
    failure itself (with `from None`); a chained cause therefore marks a bug to fix, which
    the tests assert never happens."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except AdapterError:
            raise
        except Exception as exc:  # noqa: BLE001 - this is the documented safety net
            raise MalformedError("request", "could not be processed") from exc

    return wrapper


# --- primitives ---------------------------------------------------------------------------


def constant_time_equal(a: bytes | str, b: bytes | str) -> bool:
    """Compare two secrets-derived values without a timing side channel."""
    if isinstance(a, str):
        a = a.encode("utf-8", "surrogatepass")
    if isinstance(b, str):
        b = b.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(a, b)


def b64decode_lenient(value: str, *, urlsafe: bool = False) -> bytes | None:
    """Decode base64 (or base64url) that may lack its padding. Returns None when the text is
    not base64 at all; callers choose the error. Characters outside the alphabet are never
    silently skipped (binascii's default), so two different strings never decode alike."""
    if not isinstance(value, str) or not value.isascii():
        return None
    if not (_B64URL_RE if urlsafe else _B64_RE).match(value):
        return None
    stripped = value.rstrip("=")
    if len(stripped) % 4 == 1:
        return None
    padded = stripped + "=" * (-len(stripped) % 4)
    try:
        if urlsafe:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hmac_digest(key: bytes, data: bytes, algorithm: str) -> bytes:
    return hmac.new(key, data, algorithm).digest()


# --- clock --------------------------------------------------------------------------------


def utc(now: datetime) -> datetime:
    """The caller's `now` as an aware UTC datetime (a naive value is taken to be UTC)."""
    if not isinstance(now, datetime):
        raise MalformedError("now", "must be a datetime")
    if now.tzinfo is None:
        return now.replace(tzinfo=UTC)
    return now.astimezone(UTC)


def check_window(
    moment: datetime, now: datetime, *, max_age: timedelta, max_future: timedelta = MAX_FUTURE_SKEW
) -> None:
    """Raise SignatureError("stale") when `moment` is older than `max_age` or further in the
    future than `max_future` relative to `now` (both ends inclusive of the bound)."""
    if moment < now - max_age or moment > now + max_future:
        raise SignatureError("stale")


# --- request parts ------------------------------------------------------------------------


def header(headers: Mapping[str, str], name: str) -> str | None:
    """One header value by lower-case name (the request contract), falling back to a
    case-insensitive scan so a framework's original casing still works."""
    if not isinstance(headers, Mapping):
        raise MalformedError("headers", "must be a mapping")
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if isinstance(key, str) and key.lower() == name:
                value = candidate
                break
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedError(name, "must be text")
    if len(value) > MAX_HEADER_CHARS:
        raise MalformedError(name, "too long")
    return value.strip()


def method(request: Any) -> str:
    """The request method, upper-cased."""
    value = getattr(request, "method", None)
    if not isinstance(value, str) or len(value) > MAX_TOKEN_CHARS:
        raise MalformedError("method", "must be an HTTP method")
    return value.upper()


def request_url(request: Any) -> str:
    value = getattr(request, "url", None)
    if not isinstance(value, str) or len(value) > MAX_HEADER_CHARS:
        raise MalformedError("url", "must be a URL")
    return value


def body_bytes(body: Any) -> bytes:
    if isinstance(body, bytearray | memoryview):
        body = bytes(body)
    if not isinstance(body, bytes):
        raise MalformedError("body", "must be bytes")
    if len(body) > MAX_BODY_BYTES:
        raise MalformedError("body", "too large")
    return body


def decode_utf8(data: bytes, field: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedError(field, "not valid UTF-8") from None


def _reject_constant(_name: str) -> Any:
    raise ValueError("non-finite number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key")
    return result


def load_json(data: bytes, field: str = "body") -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys (two parsers must never
    disagree about a signed document), bounded by MAX_BODY_BYTES and the interpreter's
    recursion limit and integer-digit limit."""
    text = decode_utf8(data, field)
    try:
        return json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates
        )
    except (ValueError, RecursionError):
        raise MalformedError(field, "not valid JSON") from None


# --- typed field access -------------------------------------------------------------------


def obj(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise MalformedError(path, "must be an object")
    return value


def opt_obj(container: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    value = container.get(key)
    if value is None:
        return None
    return obj(value, path)


def req_obj(container: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = opt_obj(container, key, path)
    if value is None:
        raise MalformedError(path, "required")
    return value


def opt_list(container: Mapping[str, Any], key: str, path: str, *, max_items: int) -> list[Any]:
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedError(path, "must be a list")
    if len(value) > max_items:
        raise MalformedError(path, "too many items")
    return value


def opt_str(
    container: Mapping[str, Any],
    key: str,
    path: str,
    *,
    max_len: int,
    pattern: re.Pattern[str] = _NO_CONTROL_RE,
) -> str | None:
    """A string field, or None when absent/null/empty. Wrong type, over-long or disallowed
    characters raise MalformedError naming `path` (never the value)."""
    value = container.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedError(path, "must be a string")
    if len(value) > max_len:
        raise MalformedError(path, "too long")
    if value == "":
        return None
    if not pattern.match(value):
        raise MalformedError(path, "contains disallowed characters")
    return value


def req_str(container: Mapping[str, Any], key: str, path: str, *, max_len: int,
            pattern: re.Pattern[str] = _NO_CONTROL_RE) -> str:
    value = opt_str(container, key, path, max_len=max_len, pattern=pattern)
    if value is None:
        raise MalformedError(path, "required")
    return value


def opt_id(container: Mapping[str, Any], key: str, path: str) -> str | None:
    return opt_str(container, key, path, max_len=MAX_ID_CHARS, pattern=_ID_RE)


def req_id(container: Mapping[str, Any], key: str, path: str) -> str:
    return req_str(container, key, path, max_len=MAX_ID_CHARS, pattern=_ID_RE)


def opt_party(container: Mapping[str, Any], key: str, path: str) -> str | None:
    return opt_str(container, key, path, max_len=MAX_PARTY_CHARS)


def opt_enum(container: Mapping[str, Any], key: str, path: str) -> str | None:
    """An enum-like value (status, event type) as given; shape-checked, not membership-checked."""
    return opt_str(container, key, path, max_len=MAX_TOKEN_CHARS, pattern=_TOKEN_RE)


def token_or_none(value: Any) -> str | None:
    """For diagnostics: the value if it looks like a technical code, else dropped silently
    (minimisation: an unexpected shape is not worth failing a delivery for)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 <= value <= MAX_COUNTER:
        value = str(value)
    if isinstance(value, str) and len(value) <= MAX_TOKEN_CHARS and _TOKEN_RE.match(value):
        return value
    return None


def opt_int(
    container: Mapping[str, Any], key: str, path: str, *, maximum: int = MAX_COUNTER
) -> int | None:
    """A non-negative integer given as a JSON number or a string of digits (platforms send
    both, e.g. Vonage's duration "42")."""
    value = container.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MalformedError(path, "must be an integer")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        if len(value) > 18 or not _DIGITS_RE.match(value):
            raise MalformedError(path, "must be an integer")
        value = int(value)
    if not isinstance(value, int):
        raise MalformedError(path, "must be an integer")
    if value < 0 or value > maximum:
        raise MalformedError(path, "out of range")
    return value


def number_or_none(value: Any) -> int | float | None:
    """For diagnostics: a finite number given as a JSON number or decimal string; anything
    else is dropped. Telnyx sends its quality statistics as strings ("4.50")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) <= MAX_COUNTER else None
    if isinstance(value, float):
        return value if value == value and abs(value) <= MAX_COUNTER else None
    if isinstance(value, str) and _DECIMAL_RE.match(value):
        return float(value) if "." in value else int(value)
    return None


# --- time parsing -------------------------------------------------------------------------

# Unix times above this are taken as milliseconds (only where a platform is known to mix
# units): 10**11 seconds is the year 5138, 10**11 ms is 1973.
_MILLIS_THRESHOLD = 10**11
# Largest Unix second Python's datetime represents (9999-12-31).
_MAX_UNIX_SECONDS = 253402300799


def parse_unix(value: Any, path: str, *, allow_millis: bool = False) -> datetime:
    """Unix seconds as an integer or a string of digits -> aware UTC datetime."""
    if isinstance(value, bool):
        raise MalformedError(path, "must be a Unix time")
    if isinstance(value, str):
        if len(value) > 16 or not _DIGITS_RE.match(value):
            raise MalformedError(path, "must be a Unix time")
        value = int(value)
    if not isinstance(value, int):
        raise MalformedError(path, "must be a Unix time")
    if allow_millis and value >= _MILLIS_THRESHOLD:
        value //= 1000
    if value < 0 or value > _MAX_UNIX_SECONDS:
        raise MalformedError(path, "out of range")
    return datetime.fromtimestamp(value, tz=UTC)


def parse_iso8601(value: Any, path: str) -> datetime:
    """RFC 3339 / ISO 8601 date-time ("Z" or an offset; a missing offset is taken as UTC,
    leniently, since not every platform documents one)."""
    if not isinstance(value, str) or len(value) > MAX_TIME_CHARS or not value.isascii():
        raise MalformedError(path, "must be an RFC 3339 date-time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedError(path, "must be an RFC 3339 date-time") from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise MalformedError(path, "out of range") from None


def parse_rfc2822(value: Any, path: str) -> datetime:
    """RFC 2822 date-time, as in Twilio's `Timestamp` ("Tue, 07 Jan 2025 19:01:39 +0000")."""
    if not isinstance(value, str) or len(value) > MAX_TIME_CHARS or not value.isascii():
        raise MalformedError(path, "must be an RFC 2822 date-time")
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise MalformedError(path, "must be an RFC 2822 date-time") from None
    if parsed is None:
        raise MalformedError(path, "must be an RFC 2822 date-time")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise MalformedError(path, "out of range") from None


def opt_time(
    container: Mapping[str, Any], key: str, path: str, parser: Callable[[Any, str], datetime]
) -> datetime | None:
    value = container.get(key)
    if value is None or value == "":
        return None
    return parser(value, path)


# --- URLs ---------------------------------------------------------------------------------


def https_url(value: str, path: str) -> str:
    """An absolute https URL with a host and no credentials inside it. Recording URLs are
    fetched by the gateway, so nothing else (file:, http:, user:pass@) is accepted."""
    if len(value) > MAX_URL_CHARS or not value.isascii() or any(c <= " " or c == "\x7f" for c in value):
        raise MalformedError(path, "must be an https URL")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a malformed port
    except ValueError:
        raise MalformedError(path, "must be an https URL") from None
    del port
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
        raise MalformedError(path, "must be an https URL")
    return value


def url_host(url: str) -> str:
    """Lower-case host of an already validated URL."""
    return (urlsplit(url).hostname or "").lower()


def host_matches(host: str, suffixes: tuple[str, ...]) -> bool:
    """True when `host` is one of `suffixes` or a subdomain of one (suffixes start with '.'
    for 'any subdomain of', or are exact host names)."""
    return any(host == s.lstrip(".") or (s.startswith(".") and host.endswith(s)) for s in suffixes)


# --- credentials --------------------------------------------------------------------------


def cred_mapping(credentials: Any) -> Mapping[str, Any]:
    if not isinstance(credentials, Mapping):
        raise MalformedError("credentials", "must be an object")
    return credentials


def cred_str(
    credentials: Mapping[str, Any],
    name: str,
    *,
    required: bool = True,
    max_len: int = 4096,
    pattern: re.Pattern[str] | None = None,
) -> str | None:
    """A credential string: MalformedError names the field and never echoes the value."""
    value = credentials.get(name)
    if value is None or value == "":
        if required:
            raise MalformedError(name, "required")
        return None
    if not isinstance(value, str):
        raise MalformedError(name, "must be a string")
    if len(value) > max_len:
        raise MalformedError(name, "too long")
    if pattern is not None and not pattern.match(value):
        raise MalformedError(name, "invalid format")
    return value


def req_cred(credentials: Mapping[str, Any], name: str, **kwargs: Any) -> str:
    value = cred_str(credentials, name, required=True, **kwargs)
    if value is None:  # pragma: no cover - cred_str raised already
        raise MalformedError(name, "required")
    return value
