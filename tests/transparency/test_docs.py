"""docs/transparency.md's worked example must stay true: run its Python block, and check
that the gateway's own code produces exactly the data the page shows."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.transparency import (
    MemoryNodeStore,
    build_bundle,
    format_checkpoint,
    sign_note,
    verifier_key_string,
    verify_bundle,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "transparency.md"


def worked_example() -> tuple[str, dict]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("<!-- worked-example"):]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict = {"__name__": "worked_example"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code.group(1), str(DOC), "exec"), namespace)  # noqa: S102
    expected = re.search(r"It prints `(.*?)`", section)
    assert expected is not None
    assert out.getvalue().strip() == expected.group(1)
    return code.group(1), namespace


def test_worked_example_runs_and_prints_what_the_page_says() -> None:
    worked_example()


def test_worked_example_matches_the_gateway_code() -> None:
    _, ns = worked_example()
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # the page's example key
    pub = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    origin = ns["origin"]
    assert verifier_key_string(origin, pub) == ns["VKEY"]
    store = MemoryNodeStore()
    store.append_entries(ns["ENTRIES"])
    note = sign_note(format_checkpoint(origin, 3, store.root()), origin, key.sign, pub)
    assert note == ns["NOTE"]  # Ed25519 signatures are deterministic
    assert [p for p in store.inclusion_proof(2)] == ns["proof"]
    report = verify_bundle(build_bundle(origin, origin, pub, ns["ENTRIES"], [note]),
                           trusted_key=ns["VKEY"])
    assert report.ok, report.problems


def test_worked_example_fails_when_tampered() -> None:
    code, _ = worked_example()
    tampered = code.replace('"reference":"OPS-4711","scope":null', '"reference":"OPS-4712","scope":null')
    assert tampered != code
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(compile(tampered, "tampered", "exec"), {"__name__": "tampered"})  # noqa: S102
    except AssertionError as exc:
        assert "signed root" in str(exc)
    else:
        raise AssertionError("tampered example still verified")
