"""Recording fetch, end to end: a platform announces a recording, the durable job
downloads it over real HTTPS (certificate verified, host allow-listed) from a fake
platform server, straight into the encrypted blob format."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from gateway.core.clock import isoformat
from tests.support.forensics import scan_tree_for
from tests.support.signers import new_whsec, standard_delivery

from .fakes import FakePlatform
from .helpers import (
    advance_past_next_attempt,
    assert_invisible_to_other_tenant,
    at,
    audio_bytes,
    download,
    fetcher,
    get_call,
    needles,
    only_call,
    sample,
    settle,
)
from .senders import TwilioSender


async def twilio_call_with_recording(gateway, fake: FakePlatform, *actions, tenant=None,
                                     call_sid="CA" + "1" * 32, recording_sid="RE" + "1" * 32,
                                     **integration_extra):
    """A Twilio integration, one completed call, and its recording callback; the fake
    serves the media path with `actions` (a callable action factory gets the sender, for
    actions that check its credentials). Returns (sender, call)."""
    tenant = tenant or await gateway.new_tenant("acme")
    twilio = await TwilioSender.create(gateway, tenant, **integration_extra)
    if len(actions) == 1 and getattr(actions[0], "wants_sender", False):
        actions = (actions[0](twilio),)
    fake.route("api.twilio.com", twilio.media_path(recording_sid), *actions)
    now = gateway.clock.now()
    status, body, _ = await twilio.post(twilio.status(call_sid, "completed", 3, now,
                                                      CallDuration="42"))
    assert status == 200, body
    status, body, _ = await twilio.post(twilio.recording(call_sid, recording_sid))
    assert status == 200 and body == {"accepted": 1, "duplicates": 0}, body
    return twilio, await only_call(gateway, tenant, call_sid)


def basic_auth_check(twilio: TwilioSender):
    def check(request):
        return None if request.headers.get("Authorization") == twilio.basic_auth() else 401
    return check


async def test_download_streams_into_the_encrypted_blob(gateway, fake_platform):
    audio = audio_bytes()

    def serve_to_account(twilio):
        return FakePlatform.audio(audio, check=basic_auth_check(twilio))
    serve_to_account.wants_sender = True
    twilio, call = await twilio_call_with_recording(gateway, fake_platform, serve_to_account)
    await settle(gateway)
    call = await get_call(gateway, twilio.tenant, call["id"])
    [job] = call["recording_fetches"]
    assert (job["state"], job["attempts"], job["last_error"]) == ("done", 1, None)
    [recording] = call["recordings"]
    assert recording["source"] == "fetch" and job["recording_id"] == recording["id"]
    assert await download(gateway, twilio.tenant, recording["id"]) == audio
    status, meta, _ = await gateway.request("GET", f"/v1/recordings/{recording['id']}",
                                            headers=twilio.tenant.auth)
    assert meta["content_type"] == "audio/wav" and meta["length"] == len(audio)
    # The media came from Twilio's API host over verified TLS, with Basic auth.
    [seen] = fake_platform.requests
    assert seen.host == "api.twilio.com" and seen.headers["Authorization"].startswith("Basic ")
    # Ciphertext only at rest: no 64-byte run of the audio anywhere under the data dir.
    assert scan_tree_for(gateway.config.data_dir, needles(audio)) == []
    assert sample(gateway, "gateway_recording_fetch_attempts_total", platform="twilio",
                  outcome="stored") == 1
    assert sample(gateway, "gateway_recording_fetch_queue_depth") == 0
    await assert_invisible_to_other_tenant(gateway, call)


async def test_no_plaintext_on_disk_while_a_download_is_in_flight(launcher, reconfigure,
                                                                  fake_platform):
    reconfigure(read_timeout_seconds=30.0)
    gateway = await launcher.start()
    audio = audio_bytes(2_500_000)
    first = audio[:1_500_000]          # more than the blob sink buffers: part hits the disk
    twilio, call = await twilio_call_with_recording(
        gateway, fake_platform, fake_platform.stall(first), FakePlatform.audio(audio))
    for _ in range(200):
        if sample(gateway, "gateway_bytes_encrypted_total") >= len(first):
            break
        await asyncio.sleep(0.02)
    assert sample(gateway, "gateway_bytes_encrypted_total") >= len(first)
    parts = list(gateway.services.blobs.tmp_dir.glob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size >= 1024 * 1024
    assert scan_tree_for(gateway.config.data_dir, needles(first)) == []
    # Stopping mid-download hands the job back; the partial blob is gone.
    await launcher.stop(gateway)
    assert list(gateway.services.blobs.tmp_dir.glob("*.part")) == []
    gateway = await launcher.start()
    await settle(gateway)
    call = await get_call(gateway, twilio.tenant, call["id"])
    assert call["recording_fetches"][0]["state"] == "done"
    assert await download(gateway, twilio.tenant, call["recordings"][0]["id"]) == audio


async def test_retries_with_backoff_on_503_and_timeout_then_succeeds(gateway, fake_platform):
    audio = audio_bytes(100_000)
    twilio, call = await twilio_call_with_recording(
        gateway, fake_platform, FakePlatform.status(503), fake_platform.stall(),
        FakePlatform.audio(audio))
    fetcher(gateway).rng.seed(7)
    await settle(gateway)
    [job] = (await get_call(gateway, twilio.tenant, call["id"]))["recording_fetches"]
    assert (job["state"], job["attempts"], job["last_error"]) == ("pending", 1, "http_503")
    # Full jitter: the next attempt is somewhere in (now, now + base * 2**attempts].
    delay = at(job["next_attempt_at"]) - gateway.clock.now()
    assert timedelta(0) < delay <= timedelta(seconds=2.0 * 2)
    assert sample(gateway, "gateway_recording_fetch_queue_depth") == 1
    # Nothing happens before it is due.
    await settle(gateway)
    assert len(fake_platform.requests) == 1

    await advance_past_next_attempt(gateway, call["id"], twilio.tenant)
    [job] = (await get_call(gateway, twilio.tenant, call["id"]))["recording_fetches"]
    assert (job["state"], job["attempts"], job["last_error"]) == ("pending", 2, "timeout")
    assert at(job["next_attempt_at"]) - gateway.clock.now() <= timedelta(seconds=2.0 * 4)

    await advance_past_next_attempt(gateway, call["id"], twilio.tenant)
    call = await get_call(gateway, twilio.tenant, call["id"])
    [job] = call["recording_fetches"]
    assert (job["state"], job["attempts"]) == ("done", 3)
    assert await download(gateway, twilio.tenant, call["recordings"][0]["id"]) == audio
    assert len(fake_platform.requests) == 3
    for outcome in ("http_5xx", "timeout", "stored"):
        assert sample(gateway, "gateway_recording_fetch_attempts_total", platform="twilio",
                      outcome=outcome) == 1, outcome
    assert sample(gateway, "gateway_recording_fetch_queue_depth") == 0


async def test_gives_up_after_max_attempts_and_shows_it_on_the_call(gateway, fake_platform):
    twilio, call = await twilio_call_with_recording(gateway, fake_platform,
                                                    FakePlatform.status(503))
    await settle(gateway)
    for _ in range(3):
        await advance_past_next_attempt(gateway, call["id"], twilio.tenant)
    call = await get_call(gateway, twilio.tenant, call["id"])
    [job] = call["recording_fetches"]
    assert (job["state"], job["attempts"], job["last_error"]) == ("failed", 4, "http_503")
    assert call["recordings"] == []
    # Failed is final: the clock moving on changes nothing.
    gateway.clock.advance(hours=1)
    await settle(gateway)
    assert len(fake_platform.requests) == 4
    assert sample(gateway, "gateway_recording_fetch_failures_total", platform="twilio",
                  reason="http_5xx") == 1
    assert sample(gateway, "gateway_recording_fetch_attempts_total", platform="twilio",
                  outcome="http_5xx") == 4
    assert sample(gateway, "gateway_recording_fetch_queue_depth") == 0
    text = (await gateway.services.db.fetchone(
        "SELECT last_error FROM recording_fetch_jobs"))["last_error"]
    assert text == "http_503"


async def test_401_fails_at_once(gateway, fake_platform):
    twilio, call = await twilio_call_with_recording(gateway, fake_platform,
                                                    FakePlatform.status(401))
    await settle(gateway)
    gateway.clock.advance(hours=1)
    await settle(gateway)
    [job] = (await get_call(gateway, twilio.tenant, call["id"]))["recording_fetches"]
    assert (job["state"], job["attempts"], job["last_error"]) == ("failed", 1, "http_401")
    assert len(fake_platform.requests) == 1


async def test_a_host_not_allowed_is_never_contacted(gateway, fake_platform, resolver):
    tenant = await gateway.new_tenant("generic")
    secret = new_whsec()
    integration = await gateway.integration(tenant, "standard", {"secret": secret})
    path = f"/v1/hooks/standard/{integration['id']}"
    audio = audio_bytes(50_000)
    fake_platform.route("media.example.com", "/rec/ok.wav", FakePlatform.audio(audio))
    fake_platform.route("evil.example.net", "/rec/x.wav", FakePlatform.audio(audio))
    for call_id, url in (("c-evil", "https://evil.example.net/rec/x.wav"),
                         ("c-ok", "https://media.example.com/rec/ok.wav")):
        body = {"type": "recording.available",
                "data": {"call_id": call_id, "url": url, "content_type": "audio/wav"}}
        raw, headers = standard_delivery(secret, body, gateway.clock.now())
        status, reply, _ = await gateway.request("POST", path, data=raw, headers=headers)
        assert status == 200, reply
    await settle(gateway)
    evil = await only_call(gateway, tenant, "c-evil")
    [job] = evil["recording_fetches"]
    assert (job["state"], job["attempts"], job["last_error"]) == \
        ("failed", 1, "host_not_allowed")
    # Not connected to, not even looked up.
    assert fake_platform.seen("evil.example.net") == []
    assert "evil.example.net" not in resolver.lookups
    # The listed host works, and a generic sender's media is fetched without credentials.
    ok = await only_call(gateway, tenant, "c-ok")
    assert ok["recording_fetches"][0]["state"] == "done"
    assert await download(gateway, tenant, ok["recordings"][0]["id"]) == audio
    [seen] = fake_platform.requests
    assert seen.host == "media.example.com" and "Authorization" not in seen.headers

    # A Twilio RecordingUrl on a foreign host: the adapter never issues credentials for it.
    twilio = await TwilioSender.create(gateway, tenant)
    params = twilio.recording("CA" + "2" * 32, "RE" + "2" * 32,
                              RecordingUrl="https://evil.example.net/rec/x")
    status, _, _ = await twilio.post(params)
    assert status == 200
    await settle(gateway)
    call = await only_call(gateway, tenant, "CA" + "2" * 32)
    assert call["recording_fetches"][0]["last_error"] == "url_refused"
    assert fake_platform.seen("evil.example.net") == []


async def test_redirects_are_checked_per_hop_and_credentials_never_cross_hosts(
        gateway, fake_platform):
    tenant = await gateway.new_tenant("acme")
    audio = audio_bytes(80_000)
    fake_platform.route("media.twiliocdn.com", "/AC/rec", FakePlatform.audio(audio))
    fake_platform.route("api.twilio.com", "/loop.wav", FakePlatform.redirect("/loop.wav"))
    cases = {
        "3": (FakePlatform.redirect("https://evil.example.net/steal"), "failed",
              "host_not_allowed"),
        "4": (FakePlatform.redirect("http://media.twiliocdn.com/AC/rec"), "failed",
              "scheme_not_allowed"),
        "5": (FakePlatform.redirect("https://media.twiliocdn.com/AC/rec?sig=abc", 307), "done",
              None),
        "6": (FakePlatform.redirect("/loop.wav"), "failed", "too_many_redirects"),
    }
    calls = {}
    for digit, (action, _, _) in cases.items():
        _, calls[digit] = await twilio_call_with_recording(
            gateway, fake_platform, action, tenant=tenant, call_sid="CA" + digit * 32,
            recording_sid="RE" + digit * 32)
    await settle(gateway)
    for digit, (_, state, error) in cases.items():
        [job] = (await get_call(gateway, tenant, calls[digit]["id"]))["recording_fetches"]
        assert (job["state"], job["last_error"]) == (state, error), digit
    assert fake_platform.seen("evil.example.net") == []
    # Twilio's API got the Basic credentials; the CDN it redirected to never did.
    assert all(s.headers.get("Authorization", "").startswith("Basic ")
               for s in fake_platform.seen("api.twilio.com"))
    [cdn] = fake_platform.seen("media.twiliocdn.com")
    assert "Authorization" not in cdn.headers and cdn.path_qs == "/AC/rec?sig=abc"
    done = await get_call(gateway, tenant, calls["5"]["id"])
    assert await download(gateway, tenant, done["recordings"][0]["id"]) == audio


async def test_private_addresses_are_refused_unless_allowed(launcher, reconfigure,
                                                            fake_platform, resolver):
    reconfigure(allow_private_addresses=False)
    gateway = await launcher.start()
    twilio, call = await twilio_call_with_recording(gateway, fake_platform,
                                                    FakePlatform.audio(b"x" * 100))
    await settle(gateway)
    [job] = (await get_call(gateway, twilio.tenant, call["id"]))["recording_fetches"]
    assert (job["state"], job["last_error"]) == ("failed", "address_not_allowed")
    assert "api.twilio.com" in resolver.lookups      # resolved to 127.0.0.1, then refused
    assert fake_platform.requests == []


async def test_recording_over_the_size_limit_is_refused(launcher, config, fake_platform):
    config.limits.max_recording_bytes = 10_000
    gateway = await launcher.start()
    twilio, call = await twilio_call_with_recording(gateway, fake_platform,
                                                    FakePlatform.audio(audio_bytes(50_000)))
    await settle(gateway)
    call = await get_call(gateway, twilio.tenant, call["id"])
    assert call["recording_fetches"][0]["last_error"] == "too_large"
    assert call["recordings"] == []


async def test_restart_with_a_pending_job(launcher, fake_platform):
    gateway = await launcher.start()
    audio = audio_bytes(60_000)
    twilio, call = await twilio_call_with_recording(
        gateway, fake_platform, FakePlatform.status(503), FakePlatform.audio(audio))
    await settle(gateway)
    assert (await get_call(gateway, twilio.tenant, call["id"]))["recording_fetches"][0][
        "state"] == "pending"
    await launcher.stop(gateway)
    gateway = await launcher.start()
    await advance_past_next_attempt(gateway, call["id"], twilio.tenant)
    call = await get_call(gateway, twilio.tenant, call["id"])
    assert call["recording_fetches"][0]["state"] == "done"
    assert await download(gateway, twilio.tenant, call["recordings"][0]["id"]) == audio


async def test_restart_after_a_crash_with_a_claimed_job_waits_for_the_lease(launcher,
                                                                            fake_platform):
    gateway = await launcher.start()
    audio = audio_bytes(60_000)
    twilio, call = await twilio_call_with_recording(
        gateway, fake_platform, fake_platform.stall(), FakePlatform.audio(audio))
    for _ in range(100):
        if fake_platform.requests:
            break
        await asyncio.sleep(0.02)
    assert (await get_call(gateway, twilio.tenant, call["id"]))["recording_fetches"][0][
        "state"] == "running"
    await launcher.stop(gateway)
    # What a crashed process leaves behind: the job still claimed, its lease running.
    lease = isoformat(gateway.clock.now() + timedelta(seconds=900))
    db_path = gateway.config.database_path
    import sqlite3
    with sqlite3.connect(db_path) as conn:
        conn.execute("UPDATE recording_fetch_jobs SET state = 'running', lease_until = ?",
                     (lease,))
    gateway = await launcher.start()
    await settle(gateway)
    [job] = (await get_call(gateway, twilio.tenant, call["id"]))["recording_fetches"]
    assert job["state"] == "running"          # another process may still be on it
    assert len(fake_platform.requests) == 1
    gateway.clock.advance(seconds=901)
    await settle(gateway)
    call = await get_call(gateway, twilio.tenant, call["id"])
    [job] = call["recording_fetches"]
    # The lost attempt counts (so a recording that kills the process cannot loop forever).
    assert (job["state"], job["attempts"]) == ("done", 2)
    assert await download(gateway, twilio.tenant, call["recordings"][0]["id"]) == audio


async def test_store_audio_false_creates_no_job(gateway, fake_platform):
    twilio, call = await twilio_call_with_recording(
        gateway, fake_platform, FakePlatform.audio(b"x"), options={"store_audio": False})
    await settle(gateway)
    call = await get_call(gateway, twilio.tenant, call["id"])
    assert call["recording_fetches"] == [] and call["recordings"] == []
    assert sorted(e["kind"] for e in call["events"]) == ["call", "recording"]
    assert fake_platform.requests == []
    assert (await gateway.services.db.fetchone(
        "SELECT COUNT(*) AS n FROM recording_fetch_jobs"))["n"] == 0


async def test_a_redelivered_announcement_creates_a_job_lost_in_a_crash(gateway,
                                                                        fake_platform):
    """The announcing event committed but the process died before the job's commit: the
    platform's redelivery (a duplicate) still gets the recording fetched."""
    import adapters
    from adapters.events import WebhookRequest

    tenant = await gateway.new_tenant("acme")
    twilio = await TwilioSender.create(gateway, tenant)
    audio = audio_bytes(40_000)
    sid, rsid = "CA" + "7" * 32, "RE" + "7" * 32
    fake_platform.route("api.twilio.com", twilio.media_path(rsid), FakePlatform.audio(audio))
    params = twilio.recording(sid, rsid)
    # Ingest without the subscribers, as if the process died right after the commit.
    from urllib.parse import urlencode
    request = WebhookRequest("POST", twilio.url, {
        "x-twilio-signature": twilio.validator.compute_signature(twilio.url, params)},
        urlencode(params).encode())
    integration = await gateway.services.integrations.load_for_delivery(
        "twilio", twilio.integration["id"])
    events = adapters.get_adapter("twilio").verify_and_parse(request, integration.credentials,
                                                             gateway.clock.now())
    await gateway.services.ingest.ingest_events(integration, events)
    call = await only_call(gateway, tenant)
    assert call["recording_fetches"] == []
    status, body, _ = await twilio.post(params)
    assert status == 200 and body == {"accepted": 0, "duplicates": 1}
    await settle(gateway)
    call = await get_call(gateway, tenant, call["id"])
    assert call["recording_fetches"][0]["state"] == "done"
    assert await download(gateway, tenant, call["recordings"][0]["id"]) == audio
    # Further redeliveries change nothing.
    status, body, _ = await twilio.post(params)
    await settle(gateway)
    call = await get_call(gateway, tenant, call["id"])
    assert len(call["recording_fetches"]) == 1 and len(call["recordings"]) == 1
    assert json.dumps(call).count(rsid) == 0     # the API never echoes platform media ids
