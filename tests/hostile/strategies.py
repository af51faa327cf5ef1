"""Hypothesis strategies for hostile JSON: what an attacker (or a broken platform) sends.

`hostile_variants(doc)` takes a valid document and yields it with one field replaced by
something hostile: a lone surrogate, a NUL, a huge string, an edge-of-range RFC 3339 time,
an extreme number, a value of the wrong type, or nesting thousands of levels deep.
`dumps` writes any of these as JSON bytes, including nesting deeper than `json.dumps`
itself can recurse.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

_DEEP_MARK = "\x00deep-placeholder\x00"

HOSTILE_TEXT = [
    "\ud800", "+1415\ud800", "\udfff\ud800", "a\x00b", "\u202e+14155550100", "\ufeff",
    "x" * 70_000, "+" + "9" * 400, "NaN", "", " ", "\t\n", "💣" * 300,
    "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:60Z",
    "2026-02-30T00:00:00Z", "-1", "1e999", "../../etc/passwd", "%00", "sip:" + "a" * 5000,
]
HOSTILE_NUMBERS = [2 ** 63, -(2 ** 63) - 1, 2 ** 64, 10 ** 300, -1, 0, 1e308, -1e308,
                   5e-324, 1.5, 253402300800, -62135596800, 99_999_999_999_999]
HOSTILE_SHAPES = [None, True, [], {}, [None], {"": ""}, [[[[]]]]]


def deep(levels: int) -> str:
    """A marker `dumps` expands into `levels` nested arrays."""
    return f"{_DEEP_MARK}{levels}{_DEEP_MARK}"


def dumps(doc: Any) -> bytes:
    text = json.dumps(doc)
    marker = json.dumps(_DEEP_MARK)[1:-1]       # as json.dumps escapes it
    while marker in text:
        start = text.index(marker)
        end = text.index(marker, start + len(marker))
        levels = int(text[start + len(marker):end])
        # Replace the whole JSON string (with its quotes) by the nesting.
        text = text[:start - 1] + "[" * levels + "]" * levels + text[end + len(marker) + 1:]
    return text.encode()


def hostile_values() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(HOSTILE_TEXT), st.sampled_from(HOSTILE_NUMBERS),
        st.sampled_from(HOSTILE_SHAPES),
        st.integers(min_value=40, max_value=20_000).map(deep),
        st.text(max_size=40),
        st.integers(), st.floats(allow_nan=False, allow_infinity=False))


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for index, value in enumerate(doc):
            out += _paths(value, (*prefix, index))
    return out


def _replace(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {k: (_replace(v, rest, value) if k == head else v) for k, v in doc.items()}
    return [(_replace(v, rest, value) if i == head else v) for i, v in enumerate(doc)]


@st.composite
def hostile_variants(draw: st.DrawFn, doc: Any) -> Any:
    """`doc` with one to three fields (or the whole document) replaced by hostile values,
    or with a hostile extra field added to an object."""
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        target = doc
        for step in path:
            target = target[step]
        if isinstance(target, dict) and draw(st.booleans()):
            key = draw(st.sampled_from(["\ud800", "extra", "a" * 300, "__proto__"]))
            doc = _replace(doc, path, {**target, key: draw(hostile_values())})
        else:
            doc = _replace(doc, path, draw(hostile_values()))
    return doc
