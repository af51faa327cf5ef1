"""Shared helpers: lenient base64, time parsing, header lookup, bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from adapters import MalformedError, SignatureError
from adapters import _common as c


@pytest.mark.parametrize(("text", "expected"), [
    ("aGVsbG8=", b"hello"), ("aGVsbG8", b"hello"), ("", b""), ("YQ", b"a"), ("YQ==", b"a"),
])
def test_b64_lenient(text, expected):
    assert c.b64decode_lenient(text) == expected


@pytest.mark.parametrize("text", ["aGVsb G8=", "aGVs\nbG8=", "a", "YQ===", "*", "ü", "YQ=a", 5])
def test_b64_rejects(text):
    assert c.b64decode_lenient(text) is None


def test_b64url():
    assert c.b64decode_lenient("-_8", urlsafe=True) == b"\xfb\xff"
    assert c.b64decode_lenient("+/8", urlsafe=True) is None


def test_header_lookup():
    assert c.header({"x-a": " v "}, "x-a") == "v"
    assert c.header({"X-A": "v"}, "x-a") == "v"
    assert c.header({}, "x-a") is None
    with pytest.raises(MalformedError):
        c.header({"x-a": "v" * (c.MAX_HEADER_CHARS + 1)}, "x-a")
    with pytest.raises(MalformedError):
        c.header({"x-a": b"v"}, "x-a")  # type: ignore[dict-item]


def test_times():
    assert c.parse_iso8601("2023-01-01T00:00:00Z", "t") == datetime(2023, 1, 1, tzinfo=UTC)
    assert c.parse_iso8601("2023-01-01T02:00:00+02:00", "t") == datetime(2023, 1, 1, tzinfo=UTC)
    assert c.parse_iso8601("2023-01-01T00:00:00", "t") == datetime(2023, 1, 1, tzinfo=UTC)
    assert c.parse_rfc2822("Sun, 01 Jan 2023 00:00:00 +0000", "t") == datetime(2023, 1, 1, tzinfo=UTC)
    assert c.parse_unix("1672531200", "t") == datetime(2023, 1, 1, tzinfo=UTC)
    assert c.parse_unix(1672531200000, "t", allow_millis=True) == datetime(2023, 1, 1, tzinfo=UTC)
    for bad in ("", "x", "0001-01-01T00:00:00+01:00", "2023-13-01T00:00:00Z", "٢٠٢٣-01-01"):
        with pytest.raises(MalformedError) as err:
            c.parse_iso8601(bad, "t")
        assert err.value.field == "t"
    for bad in ("-1", "1.5", True, 10**20, "9" * 17):
        with pytest.raises(MalformedError):
            c.parse_unix(bad, "t")
    for bad in ("", "Mon", "Sun, 99 Jan 2023 00:00:00 +0000", 5):
        with pytest.raises(MalformedError):
            c.parse_rfc2822(bad, "t")


def test_window():
    now = datetime(2023, 1, 1, tzinfo=UTC)
    c.check_window(now - timedelta(hours=1), now, max_age=timedelta(hours=1))
    c.check_window(now + timedelta(minutes=5), now, max_age=timedelta(hours=1))
    for moment in (now - timedelta(hours=1, seconds=1), now + timedelta(minutes=5, seconds=1)):
        with pytest.raises(SignatureError) as err:
            c.check_window(moment, now, max_age=timedelta(hours=1))
        assert err.value.outcome == "stale"


def test_naive_now_is_utc():
    assert c.utc(datetime(2023, 1, 1)) == datetime(2023, 1, 1, tzinfo=UTC)
    with pytest.raises(MalformedError):
        c.utc("now")  # type: ignore[arg-type]


def test_opt_int():
    assert c.opt_int({"a": "42"}, "a", "a") == 42
    assert c.opt_int({"a": 42.0}, "a", "a") == 42
    assert c.opt_int({"a": ""}, "a", "a") is None
    for bad in ("4 2", "-1", -1, True, 1.5, "1e3", [1], "٤٢"):
        with pytest.raises(MalformedError):
            c.opt_int({"a": bad}, "a", "a")


def test_token_and_number_filters():
    assert c.token_or_none("normal_clearing") == "normal_clearing"
    assert c.token_or_none(486) == "486"
    for bad in ("+14155550100", "two words", "", True, None, "x" * 65, {"a": 1}):
        assert c.token_or_none(bad) is None
    assert c.number_or_none("4.50") == 4.5
    assert c.number_or_none("12") == 12
    for bad in ("1e9", "nan", True, "4,5", float("inf")):
        assert c.number_or_none(bad) is None


def test_json_strictness():
    assert c.load_json(b'{"a": [1, 2.5, "x", null]}') == {"a": [1, 2.5, "x", None]}
    for bad in (b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1, "a": 2}', b"\xff",
                b"[" * 5000 + b"]" * 5000, b"1" * 5000):
        with pytest.raises(MalformedError) as err:
            c.load_json(bad)
        assert err.value.field == "body"
        assert err.value.__cause__ is None


def test_https_url():
    assert c.https_url("https://a.example/x?y=1", "u") == "https://a.example/x?y=1"
    for bad in ("http://a.example", "https://", "https://u:p@a.example/", "https://a.example:x/",
                "https://a.example/\u00e9", "javascript:alert(1)", "https://a.example/\r\nX: y"):
        with pytest.raises(MalformedError):
            c.https_url(bad, "u")


def test_host_matches():
    assert c.host_matches("api.twilio.com", (".twilio.com",))
    assert c.host_matches("twilio.com", (".twilio.com",))
    assert not c.host_matches("eviltwilio.com", (".twilio.com",))
    assert not c.host_matches("api.twilio.com.evil", (".twilio.com",))


def test_contained_guard_chains_unexpected_errors():
    @c.contained
    def broken():
        raise ZeroDivisionError

    with pytest.raises(MalformedError) as err:
        broken()
    assert isinstance(err.value.__cause__, ZeroDivisionError)
