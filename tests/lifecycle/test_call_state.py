"""A call's retention state, per data class, as a support engineer sees it in the staff
technical view (GET /v1/staff/diagnostics/calls/{id}, over HTTP under an approved grant):
the tenant's days, when the call's data of each class is due, and whether a legal hold or
a data-subject restriction keeps it."""

from __future__ import annotations

from tests.access.conftest import approve, request_access
from tests.lifecycle.helpers import make_env

CLASSES = ["call_metadata", "call_events", "recordings", "diagnostics"]


async def _view(env, staff, call_id: str) -> dict:
    code, view, _ = await env.gateway.request(
        "GET", f"/v1/staff/diagnostics/calls/{call_id}", headers=staff["auth"])
    assert code == 200, view
    return {r["data_class"]: r for r in view["retention"]}


async def test_staff_view_shows_days_due_dates_holds_and_restrictions(gateway):
    env = await make_env(gateway)
    with_audio = await env.call("a", from_number="+14155550100")
    await env.recording(with_audio)
    bare = await env.call("b", from_number="+14155550111")
    staff = await gateway.new_staff()
    request = await request_access(gateway, staff, env.tenant, calls=[with_audio, bare])
    await approve(gateway, env.tenant, request["id"])

    state = await _view(env, staff, with_audio)
    assert list(state) == CLASSES
    assert {c: state[c]["policy_days"] for c in CLASSES} == {
        "call_metadata": 365, "call_events": 90, "recordings": 30, "diagnostics": 30}
    assert {c: state[c]["state"] for c in CLASSES} == {
        "call_metadata": "retained", "call_events": "retained", "recordings": "retained",
        "diagnostics": "none"}   # an upload has no technical stats
    assert state["recordings"]["delete_after"] < state["call_events"]["delete_after"] \
        < state["call_metadata"]["delete_after"]
    assert state["diagnostics"]["delete_after"] is None
    bare_state = await _view(env, staff, bare)
    assert bare_state["recordings"]["state"] == "none"

    # The tenant shortens call metadata to 0 days: everything of the call is due now, the
    # children with it (a child never outlives its call).
    code, _, _ = await env.request("PUT", "/v1/retention", json={"call_metadata": 0})
    assert code == 200
    gateway.clock.advance(seconds=1)
    state = await _view(env, staff, with_audio)
    assert state["call_metadata"]["policy_days"] == 0
    assert {state[c]["state"] for c in ("call_metadata", "call_events", "recordings")} == {"due"}
    assert state["recordings"]["delete_after"] == state["call_metadata"]["delete_after"]

    # A hold on the caller's number keeps it; the other call is not held.
    code, hold, _ = await env.request("POST", "/v1/legal-holds", json={
        "scope": "phone_number", "phone_number": "+1 (415) 555-0100", "reason": "litigation"})
    assert code == 201, hold
    state = await _view(env, staff, with_audio)
    assert all(state[c]["legal_hold"] is True for c in CLASSES)
    assert state["call_metadata"]["state"] == "held"
    bare_state = await _view(env, staff, bare)
    assert bare_state["call_metadata"]["legal_hold"] is False
    assert bare_state["call_metadata"]["state"] == "due"

    # Released, then restricted by a data-subject request: kept as restricted.
    code, _, _ = await env.request("DELETE", f"/v1/legal-holds/{hold['id']}")
    assert code == 204
    code, _, _ = await env.request("POST", "/v1/subjects/restrict",
                                   json={"phone_number": "+14155550100"})
    assert code == 200
    state = await _view(env, staff, with_audio)
    assert state["call_metadata"]["state"] == "restricted"
    assert state["call_metadata"]["legal_hold"] is False

    # And what the view says is what the sweep does: only the bare call goes.
    report = await env.sweep()
    assert report.totals()["call_metadata"] == 1
    assert await env.count("calls") == 1
