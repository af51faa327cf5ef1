"""The console in a real browser (Debian's Chromium through Playwright) against a real
`gateway serve`: what a tenant admin and a support engineer do, end to end.

One story, in order, because each step needs the one before: sign in; a call created by a
signed webhook appears; its recording plays (streamed with Range requests); a staff request
is approved in the tenant console and the grant works in the staff console; it is revoked
and stops working; retention changes; a data subject is erased; the log verifies in the
browser; then an entry is rewritten in the SQLite file and the browser says
`Verification failed`. Every page is checked with axe-core and screenshotted."""

from __future__ import annotations

import io
import math
import os
import shutil
import sqlite3
import struct
import wave
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.console.conftest import ARTIFACTS, ServedGateway, check_page, new_page
from tests.support.signers import call_updated, new_whsec, standard_delivery

CALLER = "+14155550100"
DOCS_IMG = Path(__file__).parents[2] / "docs" / "img"


def stereo_wav(seconds: int = 3, rate: int = 8000) -> bytes:
    """A stereo tone: loud on the left, quiet on the right (so the envelope shows two lines)."""
    frames = bytearray()
    for i in range(seconds * rate):
        left = int(12000 * math.sin(2 * math.pi * 440 * i / rate))
        right = int(900 * math.sin(2 * math.pi * 300 * i / rate)) if i > rate else 0
        frames += struct.pack("<hh", left, right)
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return out.getvalue()


def deliver_call(api, served: ServedGateway) -> str:
    """A Standard Webhooks integration, one signed delivery, one uploaded recording."""
    from datetime import UTC, datetime

    secret = new_whsec()
    r = api.post("/v1/integrations", headers=served.tenant_auth,
                 data={"platform": "standard", "name": "Main line",
                       "credentials": {"secret": secret}})
    assert r.status == 201, r.text()
    integration = r.json()
    now = datetime.now(UTC).replace(microsecond=0)
    event = call_updated("pc-console-1", "completed", from_number=CALLER,
                         to_number="+442071838750", started_at=now.isoformat().replace("+00:00", "Z"),
                         ended_at=now.isoformat().replace("+00:00", "Z"), duration=42)
    raw, headers = standard_delivery(secret, event, now)
    r = api.post(f"/v1/hooks/standard/{integration['id']}", data=raw, headers=headers)
    assert r.status == 200, r.text()
    calls = api.get("/v1/calls", headers=served.tenant_auth).json()["items"]
    call_id = next(c["id"] for c in calls if c["platform_call_id"] == "pc-console-1")
    r = api.post(f"/v1/calls/{call_id}/recordings", data=stereo_wav(),
                 headers={**served.tenant_auth, "Content-Type": "audio/wav"})
    assert r.status == 201, r.text()
    return call_id


def tenant_sign_in(page, served: ServedGateway) -> None:
    page.goto("/console/")
    page.get_by_label("API key").fill(served.api_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation", name="Console")).to_be_visible()


def go(page, link: str, heading: str) -> None:
    page.get_by_role("navigation").get_by_role("link", name=link, exact=True).click()
    expect(page.get_by_role("heading", level=1, name=heading)).to_be_visible()


def test_tenant_and_staff_console_end_to_end(browser, served: ServedGateway):
    tenant_ctx, page, problems = new_page(browser, served.url)
    staff_ctx, staff, staff_problems = new_page(browser, served.url)
    api = tenant_ctx.request

    # -- sign in (the key is not kept by the browser) ---------------------------------------
    page.goto("/console/")
    expect(page.get_by_label("API key")).to_be_visible()
    check_page(page, "00-sign-in")
    page.get_by_label("API key").fill("vgw_wrong")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("That api key was not accepted.")).to_be_visible()
    tenant_sign_in(page, served)
    storage = page.evaluate("JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})"
                            " + document.cookie")
    assert served.api_key not in storage and "vgwc_" not in storage  # HttpOnly, not stored

    # -- a call that a signed webhook created, and its recording ----------------------------
    call_id = deliver_call(api, served)
    go(page, "Calls", "Calls")
    expect(page.get_by_role("cell", name=CALLER)).to_be_visible()
    expect(page.get_by_role("img", name="Calls per day")).to_be_visible()
    check_page(page, "01-calls")
    ranges: list[str] = []
    page.on("request", lambda r: ranges.append(r.headers.get("range", "")) if "/audio" in r.url else None)
    page.get_by_role("link", name=" UTC").first.click()
    expect(page.get_by_role("heading", name="Event timeline")).to_be_visible()
    player = page.get_by_label("Recording 1 player")
    player.evaluate("a => a.play()")
    page.wait_for_function("() => document.querySelector('audio').currentTime > 0.2", timeout=15000)
    assert any(r.startswith("bytes=") for r in ranges), ranges  # streamed, not downloaded first
    page.get_by_role("button", name="Plot level envelope of recording 1").click()
    expect(page.get_by_role("img", name="Level envelope")).to_be_visible()
    expect(page.get_by_text("channel 2 (right)").first).to_be_visible()
    check_page(page, "02-call")

    # -- staff: the other console, its own sign-in; neither reaches the other -------------
    staff.goto("/console/staff/")
    expect(staff.get_by_label("Staff token")).to_be_visible()
    check_page(staff, "10-staff-sign-in")
    page.goto("/console/staff/")  # the tenant's session is no staff session
    expect(page.get_by_label("Staff token")).to_be_visible()
    staff.get_by_label("Staff token").fill(served.staff["token"])
    staff.get_by_role("button", name="Sign in").click()
    expect(staff.get_by_role("heading", name="My requests")).to_be_visible()
    staff.goto("/console/")  # and the staff session is no tenant session
    expect(staff.get_by_label("API key")).to_be_visible()
    staff.goto("/console/staff/#/request")
    staff.get_by_label("Tenant id").fill(served.tenant_id)
    staff.get_by_label("Call ids").fill(call_id)
    staff.get_by_label("Purpose").select_option("fault_diagnostics")
    staff.get_by_label("Ticket reference").fill("OPS-4711")
    check_page(staff, "11-staff-request")
    staff.get_by_role("button", name="Send request").click()
    expect(staff.get_by_text("Request OPS-4711 is pending")).to_be_visible()

    # -- tenant approves; the grant works for staff -----------------------------------------
    page.goto("/console/#/calls")
    go(page, "Access", "Access")
    expect(page.get_by_role("cell", name="OPS-4711", exact=True).first).to_be_visible()
    check_page(page, "03-access")
    page.get_by_role("button", name="Approve OPS-4711").click()
    expect(page.get_by_text("Approved OPS-4711.")).to_be_visible()
    expect(page.get_by_role("button", name="Revoke OPS-4711")).to_be_visible()
    staff.goto("/console/staff/#/requests")
    expect(staff.get_by_role("cell", name="approved")).to_be_visible()
    check_page(staff, "12-staff-requests")
    staff.get_by_role("link", name="Technical view of").click()
    expect(staff.get_by_text("This read was logged")).to_be_visible()
    expect(staff.get_by_text("Status history")).to_be_visible()
    technical_url = staff.url
    check_page(staff, "13-staff-technical-view")

    # -- revoke: the same read is refused ---------------------------------------------------
    page.get_by_role("button", name="Revoke OPS-4711").click()
    expect(page.get_by_text("Revoked OPS-4711.")).to_be_visible()
    staff.goto("/console/staff/#/requests")
    staff.goto(technical_url)
    expect(staff.get_by_text("Refused")).to_be_visible()

    # -- retention --------------------------------------------------------------------------
    go(page, "Retention", "Retention")
    page.get_by_label("recordings (days)").fill("30")
    check_page(page, "04-retention")
    page.get_by_role("button", name="Save retention").click()
    expect(page.get_by_text("Retention saved.")).to_be_visible()
    policy = api.get("/v1/retention", headers=served.tenant_auth).json()
    assert policy["classes"]["recordings"]["days"] == 30

    # -- data subjects: erase, confirmed by typing the number again --------------------------
    go(page, "Data subjects", "Data subjects")
    page.get_by_label("Phone number").fill("+1 (415) 555-0100")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("heading", name="Found 1 call")).to_be_visible()
    check_page(page, "05-subjects")
    page.get_by_label("Type the number again to confirm erasure").fill("+1 415 555 0199")
    page.get_by_role("button", name="Erase").click()
    expect(page.get_by_text("The numbers differ: nothing was erased.")).to_be_visible()
    page.get_by_label("Type the number again to confirm erasure").fill("+1 (415) 555-0100")
    page.get_by_role("button", name="Erase").click()
    expect(page.get_by_text("Erased.")).to_be_visible()
    r = api.post("/v1/subjects/search", headers=served.tenant_auth,
                 data={"phone_number": CALLER})
    assert r.json()["calls"] == []

    # -- the other pages --------------------------------------------------------------------
    go(page, "Integrations", "Integrations")
    expect(page.get_by_text("/v1/hooks/standard/")).to_be_visible()
    page.get_by_role("button", name="Create ingest token for Main line").click()
    expect(page.get_by_text("shown once")).to_be_visible()
    check_page(page, "06-integrations")
    go(page, "Keys", "Keys")
    expect(page.get_by_text("Primary key version")).to_be_visible()
    check_page(page, "07-keys")

    # -- the log verifies in the browser ----------------------------------------------------
    go(page, "Transparency", "Transparency")
    expect(page.get_by_text("Verified: tree size")).to_be_visible(timeout=20000)
    expect(page.get_by_text("Pinned key fingerprint")).to_be_visible()
    page.get_by_role("button", name="Open entry 1", exact=True).click()
    expect(page.get_by_text("Verified: entry 1 is included")).to_be_visible()
    check_page(page, "08-transparency")
    pinned = page.evaluate("Object.keys(localStorage)")
    assert any(k.endswith(".pinned_key") for k in pinned)
    assert any(k.endswith(".last_verified") for k in pinned)
    page.reload()  # a second visit checks consistency from the checkpoint kept above
    expect(page.get_by_text("consistency with the last checkpoint this browser verified (size")
           ).to_be_visible(timeout=20000)

    # -- tamper with an entry in the database file: the browser notices ---------------------
    tampered_seq = rewrite_decision_entry(served)
    page.reload()
    expect(page.get_by_text("Verification failed").first).to_be_visible(timeout=20000)
    expect(page.get_by_text("an entry was rewritten")).to_be_visible()
    page.get_by_role("button", name=f"Open entry {tampered_seq}", exact=True).click()
    expect(page.get_by_text(f"entry {tampered_seq} is not in the signed tree").first).to_be_visible()
    check_page(page, "09-transparency-tampered")

    # -- sign out ends the session ----------------------------------------------------------
    page.goto("/console/#/calls")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API key")).to_be_visible()
    page.reload()
    expect(page.get_by_label("API key")).to_be_visible()

    assert problems.errors == [], problems.errors
    assert staff_problems.errors == [], staff_problems.errors
    tenant_ctx.close()
    staff_ctx.close()
    # README's screenshots are refreshed on request only, so a test run leaves the
    # working tree as it found it: GATEWAY_UPDATE_SCREENSHOTS=1 make test.
    if os.environ.get("GATEWAY_UPDATE_SCREENSHOTS") == "1":
        for name in ("02-call", "08-transparency"):
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ARTIFACTS / f"{name}.png", DOCS_IMG / f"console-{name[3:]}.png")


def rewrite_decision_entry(served: ServedGateway) -> int:
    """Change the outcome of the approval in the stored entry bytes, keeping the entry
    canonical JSON (so only the Merkle tree can tell): approved -> rejected."""
    conn = sqlite3.connect(served.database_path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        rows = conn.execute("SELECT seq, entry FROM audit_entries WHERE tenant_id = ?"
                            " ORDER BY seq", (served.tenant_id,)).fetchall()
        seq, entry = next((s, bytes(e)) for s, e in rows
                          if b'"kind":"decision"' in bytes(e) and b'"approved"' in bytes(e))
        # Whoever holds the file can drop the append-only trigger; only the tree remembers.
        [(trigger_sql,)] = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_entries'"
            " AND sql LIKE '%UPDATE%'").fetchall()
        name = trigger_sql.split()[2]
        conn.execute(f"DROP TRIGGER {name}")
        conn.execute("UPDATE audit_entries SET entry = ? WHERE tenant_id = ? AND seq = ?",
                     (entry.replace(b'"outcome":"approved"', b'"outcome":"rejected"'),
                      served.tenant_id, seq))
        conn.execute(trigger_sql)
    finally:
        conn.close()
    return seq


@pytest.fixture(autouse=True)
def _artifacts_dir():
    ARTIFACTS.mkdir(exist_ok=True)
