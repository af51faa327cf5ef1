"""The console's transparency page in a real browser, against a real `gateway serve`, after
audit retention expired the oldest entries: the signed root still verifies in the
browser, an expired entry's inclusion proof verifies, and the page lists it as expired.

The server runs in its own process with the real clock, so the expiry is applied to the
SQLite file the way the retention job applies it (the one UPDATE the trigger allows);
tests/transparency/test_audit_retention.py covers the job itself under a moved clock."""

from __future__ import annotations

import sqlite3

from playwright.sync_api import expect

from tests.console.conftest import browser, new_page, served  # noqa: F401 - fixtures


def test_the_transparency_page_verifies_a_log_with_expired_entries(browser, served):  # noqa: F811
    import urllib.request

    for _ in range(3):   # a few entries (each read of the log is one)
        request = urllib.request.Request(f"{served.url}/v1/transparency/checkpoint",
                                         headers=served.tenant_auth)
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
    conn = sqlite3.connect(served.database_path, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        expired = conn.execute(
            "UPDATE audit_entries SET entry = ?, expired_at = '2026-01-01T00:00:00Z'"
            " WHERE tenant_id = ? AND seq < 2 AND expired_at IS NULL",
            (b"", served.tenant_id)).rowcount
    finally:
        conn.close()
    assert expired == 2

    context, page, problems = new_page(browser, served.url)
    page.goto("/console/")
    page.get_by_label("API key").fill(served.api_key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation").get_by_role("link", name="Transparency", exact=True).click()
    expect(page.get_by_text("Verified: tree size")).to_be_visible(timeout=20000)
    expect(page.get_by_text("expired (retention)").first).to_be_visible()
    page.get_by_role("button", name="Open entry 0", exact=True).click()
    expect(page.get_by_text("Verified: entry 0 is included")).to_be_visible()
    assert problems.errors == [], problems.errors
    context.close()
