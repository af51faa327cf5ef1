"""Hypothesis throws garbage at the gateway's own parsers: each either answers or raises
its one documented error, never anything else."""

from __future__ import annotations

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.calls.service import decode_cursor, encode_cursor, parse_time_param
from gateway.core.phone import (
    PartyError,
    normalise_party,
    try_normalise_party,
    unreadable_number_message,
)
from gateway.errors import DomainError
from gateway.web.tenant_api import parse_range


@settings(max_examples=300)
@given(header=st.one_of(st.none(), st.text(max_size=40),
                        st.from_regex(r"bytes=\d{0,8}-\d{0,8}", fullmatch=True)),
       length=st.integers(min_value=0, max_value=10**7))
def test_range_header_parser(header, length):
    try:
        result = parse_range(header, length)
    except DomainError as problem:
        assert problem.status_hint == 416
        assert problem.hints["Content-Range"] == f"bytes */{length}"
        return
    if result is not None:
        start, end = result
        assert 0 <= start < end <= length


@given(st.text(max_size=80))
def test_cursor_decoder_rejects_garbage_with_422(text):
    try:
        decode_cursor(text)
    except DomainError as problem:
        assert problem.status_hint == 422 and problem.extra["field"] == "cursor"


@given(st.text(alphabet=string.printable, max_size=30), st.text(max_size=36))
def test_cursor_round_trip(sort_time, call_id):
    assert decode_cursor(encode_cursor(sort_time, call_id)) == (sort_time, call_id)


@given(st.text(max_size=40))
def test_time_param(text):
    try:
        parse_time_param("since", text)
    except DomainError as problem:
        assert problem.status_hint == 422 and problem.extra["field"] == "since"


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_party_normalisation_never_raises_anything_else(text):
    try:
        normalised = normalise_party(text)
    except PartyError as error:
        # A fixed message: the input (maybe a number) is never echoed.
        assert str(error) == "party must be 1-256 characters" or \
            str(error) == unreadable_number_message(text.strip())
        return
    assert normalised.startswith(("+", "sip:", "sips:", "client:"))
    assert try_normalise_party(text) == normalised


def test_party_formats_normalise_to_e164():
    for written in ("+1 (415) 555-0100", "+14155550100", "tel:+1-415-555-0100",
                    "14155550100"):
        assert normalise_party(written) == "+14155550100"
    assert normalise_party("(415) 555-0100", "US") == "+14155550100"
    assert normalise_party("sip:Alice@Example.com") == "sip:alice@example.com"
