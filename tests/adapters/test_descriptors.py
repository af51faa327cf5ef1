"""The platform descriptors: what each one promises is what its adapter does, and a bad
descriptor cannot be built."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from adapters import (
    EVENT_DIAGNOSTIC_FIELDS,
    MEDIA_STREAM_PLATFORMS,
    PLATFORMS,
    MalformedError,
    MediaStream,
    PlatformDescriptor,
    get_adapter,
)
from adapters.media import MediaProtocolError, StreamStart

from .test_garbage import credentials


@pytest.mark.parametrize("platform", sorted(PLATFORMS))
def test_credentials_are_the_declared_fields(platform):
    descriptor = get_adapter(platform)
    stored = descriptor.validate_credentials(credentials(platform))
    assert set(stored) <= set(descriptor.credential_fields)
    only_required = {k: v for k, v in credentials(platform).items()
                     if k in descriptor.required_credentials}
    assert set(descriptor.validate_credentials(only_required)) >= set(
        descriptor.required_credentials)


@pytest.mark.parametrize(("platform", "field"), [
    (name, field) for name in sorted(PLATFORMS) for field in PLATFORMS[name].required_credentials])
def test_each_required_credential_is_required(platform, field):
    creds = {k: v for k, v in credentials(platform).items() if k != field}
    with pytest.raises(MalformedError) as caught:
        get_adapter(platform).validate_credentials(creds)
    assert caught.value.field == field


def test_vonage_signature_secret_is_required_unless_signatures_are_off():
    vonage = get_adapter("vonage")
    creds = {k: v for k, v in credentials("vonage").items() if k != "signature_secret"}
    assert vonage.validate_credentials({**creds, "verify_signatures": False})


def test_media_streams_are_declared_by_the_streaming_platforms():
    assert MEDIA_STREAM_PLATFORMS == ("twilio", "telnyx", "vonage")
    assert get_adapter("twilio").media_stream.upgrade_auth == "signature"
    assert get_adapter("telnyx").media_stream.upgrade_auth == "token"
    assert get_adapter("vonage").media_stream.upgrade_auth == "signature_or_token"
    assert not get_adapter("vonage").media_stream.sequenced
    assert get_adapter("vonage").media_stream.ends_by_close


def _vonage_start(parser, **extra) -> StreamStart:
    return parser.receive_text(json.dumps({"event": "websocket:connected",
                                           "content-type": "audio/l16;rate=16000", **extra}))


def test_vonage_parser_takes_the_call_id_from_a_valid_query_uuid_only():
    new_parser = get_adapter("vonage").media_stream.new_parser
    start = _vonage_start(new_parser({}, {"uuid": "63f61863-4a51-4f6b-86e1-46edebcf9356"}))
    assert start.call_id == "63f61863-4a51-4f6b-86e1-46edebcf9356"
    for bad in ("has space", "x" * 257, ""):
        with pytest.raises(MediaProtocolError) as caught:
            _vonage_start(new_parser({}, {"uuid": bad}))
        assert caught.value.outcome == "no_call_id"
    # A uuid in the first frame wins over the query.
    start = _vonage_start(new_parser({}, {"uuid": "from-query"}), uuid="from-frame")
    assert start.call_id == "from-frame"


def test_twilio_parser_binds_the_integrations_account():
    parser = get_adapter("twilio").media_stream.new_parser(credentials("twilio"), {})
    parser.receive_text(json.dumps({"event": "connected"}))
    with pytest.raises(MediaProtocolError) as caught:
        parser.receive_text(json.dumps({
            "event": "start", "streamSid": "MZ1", "start": {
                "streamSid": "MZ1", "callSid": "CA1", "accountSid": "AC" + "f" * 32}}))
    assert caught.value.outcome == "wrong_account"


def test_event_diagnostics_are_every_platforms_declarations():
    for descriptor in PLATFORMS.values():
        for key, schema in descriptor.diagnostic_fields.items():
            assert EVENT_DIAGNOSTIC_FIELDS[key] == schema
    assert set(EVENT_DIAGNOSTIC_FIELDS) == {
        key for d in PLATFORMS.values() for key in d.diagnostic_fields}


def _descriptor(**overrides) -> PlatformDescriptor:
    twilio = get_adapter("twilio")
    values = dict(name="newco", replay_window=timedelta(minutes=10),
                  validate_credentials=twilio.validate_credentials,
                  verify_and_parse=twilio.verify_and_parse,
                  recording_download=twilio.recording_download,
                  required_credentials=("token",))
    values.update(overrides)
    return PlatformDescriptor(**values)


def test_a_well_formed_descriptor_builds():
    descriptor = _descriptor(recording_hosts=(".newco.example", "media.newco.example"),
                             diagnostic_fields={"q": {"in": "number"}, "codes": ["token"]})
    with pytest.raises(TypeError):
        descriptor.diagnostic_fields["x"] = "token"  # type: ignore[index]


@pytest.mark.parametrize(("overrides", "names"), [
    ({"name": "New Co"}, "name"),
    ({"name": "twilio/x"}, "name"),
    ({"replay_window": timedelta(0)}, "replay_window"),
    ({"verify_and_parse": None}, "verify_and_parse"),
    ({"required_credentials": ()}, "required_credentials"),
    ({"optional_credentials": ("token",)}, "required or optional"),
    ({"recording_hosts": ("https://media.newco.example",)}, "recording_hosts"),
    ({"recording_hosts": ("com",)}, "recording_hosts"),
    ({"diagnostic_fields": {"caller": "string"}}, "diagnostic_fields.caller"),
    ({"diagnostic_fields": {"codes": ["token", "number"]}}, "diagnostic_fields.codes"),
])
def test_a_bad_descriptor_fails_when_built_naming_the_field(overrides, names):
    with pytest.raises(ValueError, match=names):
        _descriptor(**overrides)


def test_a_signed_media_stream_needs_its_verifier():
    with pytest.raises(ValueError, match="verify_upgrade"):
        MediaStream(upgrade_auth="signature", new_parser=lambda creds, query: None)
    with pytest.raises(ValueError, match="upgrade_auth"):
        MediaStream(upgrade_auth="none", new_parser=lambda creds, query: None)
    assert MediaStream(upgrade_auth="token", new_parser=lambda creds, query: None)
