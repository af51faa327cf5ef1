"""The [recording_fetch] section and the fetcher's transport guards, without HTTP."""

from __future__ import annotations

import socket

import pytest

from gateway.config import ConfigError, load_config
from gateway.ingest.fetch_policy import (
    AddressRefused,
    PublicAddressResolver,
    host_allowed,
    outcome_label,
)
from gateway.ingest.settings import DEFAULT_ALLOWED_HOSTS, RecordingFetchConfig, validate

from .fakes import FakeResolver


def test_defaults_match_the_adapters_and_standard_must_be_listed():
    allowed = validate(RecordingFetchConfig())
    assert allowed == DEFAULT_ALLOWED_HOSTS
    assert allowed["standard"] == [] and allowed["whatsapp"] == []
    assert not hasattr(RecordingFetchConfig(), "allow_insecure_http")


def test_toml_overrides_one_platform_and_keeps_the_others(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text('[recording_fetch]\nallowed_hosts = { standard = ["Media.Example.com",'
                    ' ".cdn.example.org"] }\n')
    allowed = validate(load_config(path).section("recording_fetch"))
    assert allowed["standard"] == ["media.example.com", ".cdn.example.org"]
    assert allowed["twilio"] == DEFAULT_ALLOWED_HOSTS["twilio"]


@pytest.mark.parametrize("hosts", [["*"], ["."], ["com"], ["https://x.example.com"],
                                   ["x.example.com:443"], ["a b.example.com"], "x.example.com",
                                   [5]])
def test_bad_host_entries_are_config_errors(hosts):
    with pytest.raises(ConfigError, match="allowed_hosts"):
        validate(RecordingFetchConfig(allowed_hosts={"standard": hosts}))


def test_other_config_errors():
    with pytest.raises(ConfigError, match="unknown platform"):
        validate(RecordingFetchConfig(allowed_hosts={"skype": []}))
    with pytest.raises(ConfigError, match="lease_seconds"):
        validate(RecordingFetchConfig(lease_seconds=60, timeout_seconds=600))
    with pytest.raises(ConfigError, match="max_attempts"):
        validate(RecordingFetchConfig(max_attempts=0))


@pytest.mark.parametrize(("host", "allowed"), [
    ("api.twilio.com", True), ("twilio.com", True), ("API.Twilio.COM.", True),
    ("eviltwilio.com", False), ("api.twilio.com.evil.net", False), ("twilio.co", False),
])
def test_host_matching(host, allowed):
    assert host_allowed(host, [".twilio.com"]) is allowed


def test_metric_labels_are_bounded():
    assert outcome_label("http_503") == outcome_label("http_599") == "http_5xx"
    assert outcome_label("http_418") == outcome_label("http_999") == "http_other"
    assert outcome_label("http_401") == "http_401"
    assert outcome_label("timeout") == "timeout"


@pytest.mark.parametrize(("address", "refused"), [
    ("127.0.0.1", True), ("10.1.2.3", True), ("169.254.169.254", True), ("192.168.0.1", True),
    ("100.64.0.1", True), ("::1", True), ("fd00::1", True), ("52.216.0.1", False),
    ("2600:1f18::1", False)])
async def test_public_address_resolver(address, refused):
    resolver = PublicAddressResolver(FakeResolver(443, address))
    if refused:
        with pytest.raises(AddressRefused):
            await resolver.resolve("s3.amazonaws.com", 443, socket.AF_INET)
    else:
        [result] = await resolver.resolve("s3.amazonaws.com", 443, socket.AF_INET)
        assert result["host"] == address
