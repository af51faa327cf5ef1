"""Retention policy over HTTP, and the sweep per data class under a controlled clock."""

from __future__ import annotations

from datetime import timedelta

from tests.lifecycle.helpers import iso, make_env

DAY = timedelta(days=1)


async def test_policy_defaults_bounds_and_put(gateway):
    env = await make_env(gateway)
    code, policy, _ = await env.request("GET", "/v1/retention")
    assert code == 200
    classes = policy["classes"]
    assert set(classes) == {"call_metadata", "call_events", "recordings", "diagnostics", "audit"}
    assert classes["recordings"]["days"] == classes["recordings"]["default_days"] == 30
    assert classes["recordings"]["source"] == "default"
    assert classes["audit"]["enforced"] is True   # by its own job (audit retention)

    code, policy, _ = await env.request("PUT", "/v1/retention",
                                        json={"recordings": 7, "call_metadata": 0})
    assert code == 200, policy
    assert policy["classes"]["recordings"] == {**policy["classes"]["recordings"], "days": 7,
                                               "source": "tenant"}
    assert policy["classes"]["call_events"]["source"] == "default"
    # A child never outlives its call.
    assert policy["classes"]["recordings"]["effective_days"] == 0

    # Out of bounds: 422 naming the bound.
    code, problem, headers = await env.request("PUT", "/v1/retention", json={"audit": 30})
    assert code == 422 and headers["Content-Type"].startswith("application/problem+json")
    assert problem["bound"] == "min_days" and problem["field"] == "audit"
    assert "min_days" in problem["detail"] and problem["limit"] == 365
    code, problem, _ = await env.request("PUT", "/v1/retention", json={"diagnostics": 400})
    assert code == 422 and problem["bound"] == "max_days" and problem["limit"] == 365
    code, problem, _ = await env.request("PUT", "/v1/retention", json={"nonsense": 1})
    assert code == 422 and problem["field"] == "nonsense"
    code, problem, _ = await env.request("PUT", "/v1/retention", json={"recordings": "7"})
    assert code == 422
    # The failed PUTs changed nothing; PUT of the GET shape round-trips.
    code, policy, _ = await env.request("GET", "/v1/retention")
    assert policy["classes"]["recordings"]["days"] == 7
    code, again, _ = await env.request("PUT", "/v1/retention", json=policy)
    assert code == 200 and again["classes"] == policy["classes"]
    # PUT replaces: what is left out goes back to the default.
    code, policy, _ = await env.request("PUT", "/v1/retention", json={"recordings": 10})
    assert policy["classes"]["call_metadata"]["source"] == "default"
    # Another tenant is unaffected; no token, no policy.
    other = await make_env(gateway, "other")
    code, policy, _ = await other.request("GET", "/v1/retention")
    assert policy["classes"]["recordings"]["days"] == 30
    code, _, _ = await gateway.request("GET", "/v1/retention")
    assert code == 401


async def test_call_metadata_expiry_takes_events_and_recordings_along(gateway):
    env = await make_env(gateway)
    await env.request("PUT", "/v1/retention", json={"call_metadata": 10})
    now = gateway.clock.now()
    old = await env.call("old", started_at=iso(now - 11 * DAY))
    await env.event("old", "in-progress")
    young = await env.call("young", started_at=iso(now - 9 * DAY))
    rec_old = await env.recording(old)
    rec_young = await env.recording(young)
    assert await env.blob_exists(rec_old)

    report = await env.sweep()
    assert report.totals() == {"call_metadata": 1, "call_events": 2, "recordings": 1,
                               "diagnostics": 0}
    assert await env.count("calls", "id = ?", (old,)) == 0
    assert await env.count("call_events", "call_id = ?", (old,)) == 0
    assert await env.count("recordings", "id = ?", (rec_old,)) == 0
    assert await env.count("blob_keys", "object_id = ?", (rec_old,)) == 0
    assert not await env.blob_exists(rec_old)
    assert await env.count("blob_tombstones") == 0
    # The young call and its recording are untouched.
    assert await env.blob_exists(rec_young)
    code, _, _ = await env.request("GET", f"/v1/recordings/{rec_young}/audio")
    assert code == 200
    code, _, _ = await env.request("GET", f"/v1/calls/{old}")
    assert code == 404

    # Two days later the young one expires too; a second sweep with nothing due is a no-op.
    gateway.clock.advance(days=2)
    assert (await env.sweep()).totals()["call_metadata"] == 1
    assert (await env.sweep()).totals() == dict.fromkeys(
        ("call_metadata", "call_events", "recordings", "diagnostics"), 0)


async def test_events_recordings_and_diagnostics_expire_on_their_own_clocks(gateway):
    env = await make_env(gateway)
    await env.request("PUT", "/v1/retention", json={"call_events": 5, "recordings": 3,
                                                    "diagnostics": 1})
    call = await env.call("c1")
    rec = await env.recording(call)
    await gateway.services.db.write(lambda tx: tx.execute(
        "UPDATE recordings SET stats = ? WHERE id = ?", ('{"codec": "pcm"}', rec)))

    gateway.clock.advance(days=1, seconds=1)           # diagnostics (1 day) due
    report = await env.sweep()
    assert report.totals()["diagnostics"] == 1 and report.totals()["recordings"] == 0
    row = await gateway.services.db.fetchone("SELECT stats FROM recordings WHERE id = ?", (rec,))
    assert row["stats"] is None

    gateway.clock.advance(days=2)                      # recordings (3 days) due
    report = await env.sweep()
    assert report.totals() == {"call_metadata": 0, "call_events": 0, "recordings": 1,
                               "diagnostics": 0}
    assert not await env.blob_exists(rec)
    assert await env.count("calls") == 1

    gateway.clock.advance(days=2)                      # call events (5 days) due
    report = await env.sweep()
    assert report.totals()["call_events"] == 1
    assert await env.count("calls") == 1 and await env.count("call_events") == 0
    code, call_view, _ = await env.request("GET", f"/v1/calls/{call}")
    assert code == 200 and call_view["events"] == [] and call_view["recordings"] == []


async def test_zero_days_deletes_at_the_next_sweep(gateway):
    env = await make_env(gateway)
    await env.request("PUT", "/v1/retention", json={"call_metadata": 0})
    call = await env.call()
    gateway.clock.advance(seconds=1)
    assert (await env.sweep()).totals()["call_metadata"] == 1
    assert await env.count("calls", "id = ?", (call,)) == 0


async def test_tenant_call_and_number_holds_keep_data_until_released(gateway):
    env = await make_env(gateway)
    await env.request("PUT", "/v1/retention", json={"call_metadata": 1})
    held_number = await env.call("n1", from_number="+44 20 7183 8750")
    held_call = await env.call("c1")
    free = await env.call("f1")
    # Same blind-index bucket is not enough: a number hold compares exactly.
    code, hold_n, _ = await env.request("POST", "/v1/legal-holds", json={
        "scope": "phone_number", "phone_number": "+44 (0)20 7183-8750", "reason": "case 17"})
    assert code == 201, hold_n
    assert hold_n["phone_number"] == "+442071838750" and hold_n["active"]
    code, hold_c, _ = await env.request("POST", "/v1/legal-holds", json={
        "scope": "call", "call_id": held_call, "reason": "dispute"})
    assert code == 201
    gateway.clock.advance(days=2)

    report = await env.sweep()
    assert report.totals()["call_metadata"] == 1
    assert report.tenants[0].kept["call_metadata"] == {"held": 2}
    assert await env.count("calls", "id = ?", (free,)) == 0
    assert await env.count("calls", "id IN (?, ?)", (held_number, held_call)) == 2
    code, preview, _ = await env.request("GET", "/v1/retention/preview")
    assert preview["classes"]["call_metadata"]["would_delete"] == 0
    assert preview["classes"]["call_metadata"]["held"] == 2

    # A tenant hold stops everything.
    code, hold_t, _ = await env.request("POST", "/v1/legal-holds", json={
        "scope": "tenant", "reason": "regulator", "ends_at": iso(gateway.clock.now() + DAY)})
    assert code == 201
    code, _, _ = await env.request("DELETE", f"/v1/legal-holds/{hold_n['id']}")
    assert code == 204
    report = await env.sweep()
    assert report.totals()["call_metadata"] == 0 and report.tenants[0].held
    code, preview, _ = await env.request("GET", "/v1/retention/preview")
    assert preview["tenant_held"] is True

    # The tenant hold ends by its own clock; the released number hold no longer protects.
    gateway.clock.advance(days=1, seconds=1)
    report = await env.sweep()
    assert report.totals()["call_metadata"] == 1
    assert await env.count("calls", "id = ?", (held_number,)) == 0
    assert await env.count("calls", "id = ?", (held_call,)) == 1
    code, _, _ = await env.request("DELETE", f"/v1/legal-holds/{hold_c['id']}")
    assert (await env.sweep()).totals()["call_metadata"] == 1
    code, holds, _ = await env.request("GET", "/v1/legal-holds")
    assert [h["active"] for h in holds["items"]] == [False, False, False]
    # Holds at rest: the number is sealed, never in the clear.
    rows = await gateway.services.db.fetchall("SELECT * FROM legal_holds")
    assert all(b"442071838750" not in bytes(r["number_sealed"] or b"") for r in rows)
    assert all(b"case 17" not in bytes(r["reason"]) for r in rows)


async def test_hold_validation(gateway):
    env = await make_env(gateway)
    other = await make_env(gateway, "other")
    foreign_call = await other.call()
    cases = [({"scope": "call", "call_id": foreign_call, "reason": "x"}, 404),
             ({"scope": "phone_number", "phone_number": "not a number!", "reason": "x"}, 422),
             ({"scope": "tenant"}, 422),
             ({"scope": "planet", "reason": "x"}, 422),
             ({"scope": "tenant", "reason": "x", "ends_at": "2000-01-01T00:00:00Z"}, 422)]
    for body, expected in cases:
        code, problem, _ = await env.request("POST", "/v1/legal-holds", json=body)
        assert code == expected, (body, problem)
        assert "not a number" not in str(problem)
    code, hold, _ = await other.request("POST", "/v1/legal-holds",
                                        json={"scope": "tenant", "reason": "x"})
    code, _, _ = await env.request("GET", f"/v1/legal-holds/{hold['id']}")
    assert code == 404
    code, _, _ = await env.request("DELETE", f"/v1/legal-holds/{hold['id']}")
    assert code == 404


async def test_restricted_calls_and_live_recordings_are_kept(gateway):
    env = await make_env(gateway)
    await env.request("PUT", "/v1/retention", json={"call_metadata": 1})
    await env.call("r1", from_number="+14155550111")
    writing = await env.call("w1")
    code, result, _ = await env.request("POST", "/v1/subjects/restrict",
                                        json={"phone_number": "+1 (415) 555-0111"})
    assert code == 200 and result["receipt"]["restricted"] == 1, result
    writer = await gateway.services.recordings.begin(env.tenant.id, writing, "stream")
    gateway.clock.advance(days=2)
    await gateway.services.recordings._renew_lease(writer.id)  # a live writer renews
    report = await env.sweep()
    assert report.tenants[0].kept["call_metadata"] == {"restricted": 1, "busy": 1}
    assert await env.count("calls") == 2
    await writer.abort()
    # Lifting the restriction makes the call eligible again.
    code, result, _ = await env.request("POST", "/v1/subjects/restrict",
                                        json={"phone_number": "+14155550111", "lift": True})
    assert result["receipt"]["lifted"] == 1
    assert (await env.sweep()).totals()["call_metadata"] == 2


async def test_preview_matches_the_sweep_and_dry_run_changes_nothing(gateway):
    env = await make_env(gateway)
    await env.request("PUT", "/v1/retention", json={"call_metadata": 10, "call_events": 5,
                                                    "recordings": 2})
    now = gateway.clock.now()
    for i in range(6):
        call = await env.call(f"p{i}", started_at=iso(now - (4 + 2 * i) * DAY))
        await env.recording(call)
    await env.call("held", started_at=iso(now - 30 * DAY))
    await env.request("POST", "/v1/legal-holds", json={
        "scope": "call", "call_id": env.calls["held"], "reason": "x"})
    gateway.clock.advance(days=3)   # calls p2..p5 (11-17 days) expire; all recordings too
    code, preview, _ = await env.request("GET", "/v1/retention/preview")
    assert code == 200
    expected = {k: v["would_delete"] for k, v in preview["classes"].items() if k != "audit"}
    assert expected == {"call_metadata": 4, "call_events": 4, "recordings": 6,
                        "diagnostics": 0}, preview
    assert preview["classes"]["call_metadata"]["held"] == 1
    dry = await env.sweep(dry_run=True)
    assert dry.totals() == expected
    assert await env.count("calls") == 7
    report = await env.sweep()
    assert report.totals() == expected


async def test_receipts_in_the_audit_log_and_metrics(gateway):
    env = await make_env(gateway)
    await env.request("PUT", "/v1/retention", json={"call_metadata": 1})
    ids = [await env.call(f"m{i}") for i in range(3)]
    for call in ids:
        await env.recording(call)
    gateway.clock.advance(days=1, hours=6)
    report = await env.sweep()
    entries = await env.audit_entries()
    receipts = [e for e in entries if e["kind"] == "deletion_receipt"]
    batch = [e for e in receipts if e["outcome"] == "deleted"]
    run = [e for e in receipts if e["outcome"] == "run_completed"]
    assert len(run) == 1 and run[0]["details"]["run_id"] == report.run_id
    assert run[0]["details"]["deleted"]["call_metadata"] == 3
    assert run[0]["actor"] == {"type": "system", "id": "retention"}
    import hashlib
    listed = {h for e in batch for h in e["details"]["ids_sha256"]}
    assert listed == {hashlib.sha256(i.encode()).hexdigest() for i in ids}
    assert all(i not in str(entries) for i in ids)

    scraped = await gateway.scrape_metrics()
    assert 'gateway_retention_deleted_items_total{data_class="call_metadata"} 3.0' in scraped
    assert 'gateway_retention_deleted_items_total{data_class="recordings"} 3.0' in scraped
    assert "gateway_retention_sweep_duration_seconds_count 1.0" in scraped
    # The calls were due 6 hours before this sweep.
    lag = [line for line in scraped.splitlines()
           if line.startswith('gateway_retention_lag_seconds{data_class="call_metadata"}')]
    assert 6 * 3600 - 5 <= float(lag[0].split()[-1]) <= 6 * 3600 + 5
    # Nothing due: lag back to 0 on the next sweep.
    await env.sweep()
    assert get_lag(gateway) == 0


def get_lag(gateway) -> float:
    from gateway.lifecycle.retention import get_retention
    return get_retention(gateway.services).sweeper.metrics.lag.labels("call_metadata")._value.get()


async def test_number_hold_check_keeps_the_keys_it_loaded_for_a_batch_on_many_segments(
        monkeypatch, gateway):
    # A segment cache of two and segments of two keys: the batch's parties span more
    # segments than the cache holds, so the hold check must use the keys it loaded.
    from gateway.lifecycle import unit_keys
    monkeypatch.setattr(unit_keys, "SEGMENT_CACHE", 2)
    units = gateway.services.keyring.units
    monkeypatch.setattr(units, "_ahead", 2)
    env = await make_env(gateway)
    await env.request("PUT", "/v1/retention", json={"call_metadata": 1})
    held = "+14155550170"
    ring = await gateway.services.keyring.for_tenant(env.tenant.id)
    # Another number in the held number's blind-index bucket: its calls are decrypted
    # and compared, and are not held.
    neighbour = next(n for n in (f"+1415{i:07d}" for i in range(1, 10**7))
                     if n != held and ring.blind_index(n) == ring.blind_index(held))
    kept = [await env.call(f"h{i}", from_number=held) for i in range(2)]
    gone = [await env.call(f"n{i}", from_number=neighbour) for i in range(6)]
    code, hold, _ = await env.request("POST", "/v1/legal-holds", json={
        "scope": "phone_number", "phone_number": held, "reason": "case 18"})
    assert code == 201, hold
    gateway.clock.advance(days=2)
    units._cache.clear()
    code, preview, _ = await env.request("GET", "/v1/retention/preview")
    assert preview["classes"]["call_metadata"]["would_delete"] == len(gone)
    report = await env.sweep()
    assert report.tenants[0].kept["call_metadata"] == {"held": len(kept)}
    assert report.totals()["call_metadata"] == len(gone)
    assert await env.count("calls", f"id IN ({','.join('?' * len(gone))})", tuple(gone)) == 0
    assert await env.count("calls", "id IN (?, ?)", tuple(kept)) == 2
