"""Audit entry encoding: canonical bytes, schema, and the phone-number tripwire."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.transparency.entries import (
    EntryError,
    decode_entry,
    encode_entry,
    find_phone_like,
    format_time,
)


def entry(**overrides: object) -> dict:
    base = {
        "seq": 17,
        "time": "2026-01-01T12:00:00.000000Z",
        "kind": "diagnostic_read",
        "actor": {"type": "staff", "id": "staff-3fa9c2d81b04", "employer": "Example Ops GmbH",
                  "country": "DE"},
        "purpose": "fault_diagnostics",
        "reference": "OPS-4711",
        "scope": {"calls": ["6f1c1f3e-6a55-4a4b-9d0e-3b8f6d2b1a10"]},
        "grant_id": "0b7e0c2c-1f1c-4a9e-8d43-3c2b9f1a7e55",
        "outcome": "served",
        "details": {"view": "technical", "fields": 12},
    }
    base.update(overrides)
    return base


def test_canonical_bytes_are_pinned() -> None:
    # Pinned so that any change to the encoding is a deliberate, reviewed format change.
    assert encode_entry(entry()) == (
        b'{"actor":{"country":"DE","employer":"Example Ops GmbH","id":"staff-3fa9c2d81b04",'
        b'"type":"staff"},"details":{"fields":12,"view":"technical"},'
        b'"grant_id":"0b7e0c2c-1f1c-4a9e-8d43-3c2b9f1a7e55","kind":"diagnostic_read",'
        b'"outcome":"served","purpose":"fault_diagnostics","reference":"OPS-4711",'
        b'"scope":{"calls":["6f1c1f3e-6a55-4a4b-9d0e-3b8f6d2b1a10"]},"seq":17,'
        b'"time":"2026-01-01T12:00:00.000000Z"}')


def test_encoding_is_independent_of_insertion_order_and_matches_json() -> None:
    e = entry()
    reversed_e = dict(reversed(list(e.items())))
    data = encode_entry(e)
    assert encode_entry(reversed_e) == data
    assert data == json.dumps(e, sort_keys=True, separators=(",", ":"),
                              ensure_ascii=False).encode()
    assert decode_entry(data) == e
    assert encode_entry(decode_entry(data)) == data


def test_non_ascii_is_written_as_utf8() -> None:
    data = encode_entry(entry(details={"note": "Zürich"}))
    assert "Zürich".encode() in data
    assert decode_entry(data)["details"]["note"] == "Zürich"


def test_optional_fields_default_to_null() -> None:
    minimal = {"seq": 0, "time": "2026-01-01T00:00:00Z", "kind": "key_event",
               "actor": {"type": "system", "id": "retention"}}
    decoded = decode_entry(encode_entry(minimal))
    assert decoded == {**minimal, "purpose": None, "reference": None, "scope": None,
                       "grant_id": None, "outcome": None, "details": {}}


@pytest.mark.parametrize("value", [
    "+1 (555) 123-4567", "555.123.4567", "+44 20 7946 0958", "tel:+15551234567",
    "call me on 555 1234", "0049 30 1234567", "+4915112345678", "5551234567",
    "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668",  # Arabic-Indic digits
    "#1234567", "+49 (0)30 / 1234-567", "555\u2013123\u20134567", "192.168.100.200",
])
def test_phone_like_values_are_rejected_anywhere(value: str) -> None:
    assert find_phone_like(value) is not None
    for where in [{"reference": value}, {"purpose": value}, {"outcome": value},
                  {"grant_id": value}, {"scope": {"window": [value]}},
                  {"details": {"a": {"b": value}}}, {"details": {"list": ["x", value]}},
                  {"actor": {"type": "staff", "id": value}}]:
        with pytest.raises(EntryError) as info:
            encode_entry(entry(**where))
        assert value not in str(info.value)  # the error must not carry the number either


def test_phone_like_dict_key_is_rejected() -> None:
    with pytest.raises(EntryError):
        encode_entry(entry(details={"15551234567": 1}))


@pytest.mark.parametrize("value", [
    "123e4567-e89b-12d3-a456-426614174000", "staff-123456789012", "ZD-1234567",
    "INC0012345", "2026-01-01T00:00:00.000000Z", "2026-01-01", "PT1234567S",
    "sha256:" + "1234567890abcdef" * 4, "v1.2.3", "123456", "12:30:45",
    "0123456789abcdef0123", "x" + "9" * 30, "9" * 25,
])
def test_identifiers_are_not_phone_numbers(value: str) -> None:
    assert find_phone_like(value) is None
    encode_entry(entry(reference=value))


@settings(max_examples=300, deadline=None)
@given(st.uuids())
def test_uuids_never_trip_the_rule(u: uuid.UUID) -> None:
    assert find_phone_like(str(u)) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=16, max_size=32))
def test_hex_digests_never_trip_the_rule(raw: bytes) -> None:
    text = raw.hex()
    if any(c in "abcdef" for c in text):  # an all-decimal 32+ digit string is masked too
        assert find_phone_like(text) is None
    assert find_phone_like("sha256:" + raw.hex() * 2) is None


def test_integers_are_not_scanned() -> None:
    # Counts in deletion receipts may exceed a million; phone numbers are strings (E.164).
    encode_entry(entry(kind="deletion_receipt", details={"rows": 12_345_678}))


@pytest.mark.parametrize("bad", [
    {"seq": -1}, {"seq": "1"}, {"seq": True}, {"seq": 1.0},
    {"time": "2026-01-01T00:00:00+00:00"}, {"time": "2026-01-01 00:00:00Z"},
    {"time": "2026-13-01T00:00:00Z"}, {"time": "2026-02-30T00:00:00Z"}, {"time": 0},
    {"kind": "coffee_break"}, {"kind": "Decision"},
    {"actor": {"type": "robot", "id": "r"}}, {"actor": {"type": "staff"}},
    {"actor": {"type": "staff", "id": ""}}, {"actor": {"type": "staff", "id": "s", "name": "x"}},
    {"actor": {"type": "staff", "id": "s", "country": "Germany"}},
    {"purpose": 3}, {"details": []}, {"details": {"ratio": 0.5}},
    {"details": {"big": 2**53}}, {"details": {"bad key": 1}}, {"details": {1: 1}},
    {"details": {"bytes": b"x"}}, {"details": {"nan": float("nan")}},
    {"details": {"s": "\ud800"}}, {"extra_field": 1},
])
def test_schema_violations(bad: dict) -> None:
    with pytest.raises(EntryError):
        encode_entry(entry(**bad))


def test_depth_and_size_limits() -> None:
    deep: dict = {}
    cur = deep
    for _ in range(20):
        cur["a"] = {}
        cur = cur["a"]
    with pytest.raises(EntryError):
        encode_entry(entry(details=deep))
    with pytest.raises(EntryError):
        encode_entry(entry(details={"blob": "x" * (256 * 1024)}))


def test_entry_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        encode_entry(entry(reference="+1 555 123 4567"))


@pytest.mark.parametrize("data", [
    b'{"seq":1}',
    b"not json",
    b"\xff",
    b"[]",
])
def test_decode_rejects_garbage(data: bytes) -> None:
    with pytest.raises(EntryError):
        decode_entry(data)


def test_decode_requires_canonical_form() -> None:
    good = encode_entry(entry())
    obj = json.loads(good)
    for variant in [
        json.dumps(obj, sort_keys=True).encode(),  # whitespace
        json.dumps(dict(reversed(list(obj.items()))), separators=(",", ":")).encode(),
        json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True
                   ).replace("Ops", "\\u004fps").encode(),  # needless escape
        good.replace(b'"seq":17', b'"seq":17.0'),
        good.replace(b'"seq":17', b'"seq":17,"seq":17'),  # duplicate key
        good + b"\n",
    ]:
        with pytest.raises(EntryError):
            decode_entry(variant)
    missing = dict(obj)
    del missing["outcome"]
    with pytest.raises(EntryError):
        decode_entry(json.dumps(missing, sort_keys=True, separators=(",", ":")).encode())


def test_decode_is_lenient_on_content_only() -> None:
    # Readers accept kinds added later and do not rescan content, so an old verifier
    # can read every entry a newer gateway wrote.
    obj = json.loads(encode_entry(entry()))
    obj["kind"] = "future_kind"
    data = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    assert decode_entry(data)["kind"] == "future_kind"


def test_format_time() -> None:
    when = datetime(2026, 3, 4, 5, 6, 7, 89, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(when) == "2026-03-04T03:06:07.000089Z"
    encode_entry(entry(time=format_time(datetime.now(UTC))))
    with pytest.raises(EntryError):
        format_time(datetime(2026, 1, 1))  # naive
