"""The gateway lists platforms only by reading the adapters registry: what the registry says
is what a tenant, a platform and an operator see, and no gateway module keeps its own list."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
import textwrap

import pytest

import adapters
import gateway
from adapters import MEDIA_STREAM_PLATFORMS, PLATFORMS, RecordingAvailable, get_adapter
from gateway.ingest.fetch_policy import host_allowed
from gateway.ingest.settings import DEFAULT_ALLOWED_HOSTS
from tests.adapters.test_garbage import NOW, credentials

GATEWAY = pathlib.Path(gateway.__file__).parent
ROOT = GATEWAY.parent


async def test_openapi_and_integration_create_follow_the_registry(gateway):
    status, doc, _ = await gateway.request("GET", "/v1/openapi.json")
    assert status == 200
    schema = doc["components"]["schemas"]["IntegrationCreate"]["properties"]["platform"]
    assert schema["enum"] == list(PLATFORMS)
    media_path = doc["paths"]["/v1/media/{platform}/{integration_id}"]["get"]
    assert "|".join(MEDIA_STREAM_PLATFORMS) in media_path["summary"]

    tenant = await gateway.new_tenant("acme")
    status, problem, headers = await gateway.request(
        "POST", "/v1/integrations", headers=tenant.auth,
        json={"platform": "skype", "credentials": {}})
    assert status == 422 and headers["Content-Type"].startswith("application/problem+json")
    assert all(name in problem["detail"] for name in PLATFORMS)


async def test_media_routes_and_urls_follow_the_descriptors(gateway):
    tenant = await gateway.new_tenant("acme")
    by_platform = {}
    for platform in ("standard", "twilio"):
        integration = await gateway.integration(tenant, platform, credentials(platform))
        status, token, _ = await gateway.request(
            "POST", f"/v1/integrations/{integration['id']}/ingest-tokens", headers=tenant.auth)
        assert status == 201
        by_platform[platform] = (integration, token)
    # A platform without a media stream gets WHIP only; one with a stream gets its URL.
    standard, standard_token = by_platform["standard"]
    twilio, twilio_token = by_platform["twilio"]
    assert "media_url" not in standard_token and standard_token["whip_url"]
    assert twilio_token["media_url"].endswith(f"/v1/media/twilio/{twilio['id']}")
    assert twilio_token["media_url"].startswith("ws")
    # The media route serves exactly the streaming platforms.
    status, problem, headers = await gateway.request(
        "GET", f"/v1/media/standard/{standard['id']}")
    assert status == 404 and headers["Content-Type"].startswith("application/problem+json")
    status, problem, _ = await gateway.request("GET", f"/v1/media/twilio/{twilio['id']}")
    assert status == 426 and problem["type"] == "urn:vgw:problem:upgrade-required"


@pytest.mark.parametrize(("platform", "url"), [
    ("twilio", "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"),
    ("telnyx", "https://api.telnyx.com/v2/recordings/1/download.wav"),
    ("vonage", "https://api.nexmo.com/v1/files/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"),
    ("vonage", "https://api-us.vonage.com/v1/files/aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"),
])
def test_where_an_adapter_sends_credentials_the_fetcher_goes_by_default(platform, url):
    recording = RecordingAvailable(platform=platform, dedupe_key="k", platform_call_id="c",
                                   platform_recording_id="r", url=url)
    out_url, headers = get_adapter(platform).recording_download(
        recording, credentials(platform), NOW)
    assert "Authorization" in headers or "authorization" in headers
    host = out_url.split("/")[2]
    assert host_allowed(host, DEFAULT_ALLOWED_HOSTS[platform])


def _platform_lists(tree: ast.AST) -> list[int]:
    """Lines where code compares with a platform name, keys a mapping by one, or holds two
    or more in one collection."""
    names = set(PLATFORMS)

    def is_name(node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) and node.value in names

    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
                is_name(n) for n in (node.left, *node.comparators)):
            lines.append(node.lineno)
        elif isinstance(node, ast.Dict) and any(is_name(k) for k in node.keys if k):
            lines.append(node.lineno)
        elif isinstance(node, ast.Tuple | ast.List | ast.Set) and \
                sum(is_name(e) for e in node.elts) >= 2:
            lines.append(node.lineno)
    return lines


def test_gateway_code_keeps_no_platform_list():
    """Adding a platform must not need a gateway edit. A module named after a platform
    (gateway/media/whatsapp.py: its Graph API calls) is that platform's own code."""
    found = {}
    for path in sorted(GATEWAY.rglob("*.py")):
        if path.stem in PLATFORMS or path.parent.name == "dev":
            # gateway/dev/ plays the platforms (`gateway dev send-webhook`): a platform it
            # has no sample for is refused there with a message, nothing else breaks.
            continue
        lines = _platform_lists(ast.parse(path.read_text()))
        if lines:
            found[str(path.relative_to(ROOT))] = lines
    assert found == {}


LEAVES = ("gateway/ingest/settings.py", "gateway/media/settings.py")


@pytest.mark.parametrize("leaf", LEAVES)
def test_settings_modules_are_leaves(leaf):
    tree = ast.parse((ROOT / leaf).read_text())
    for node in ast.walk(tree):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        for module in modules:
            top = module.split(".")[0]
            assert top in sys.stdlib_module_names or module in (
                "gateway.errors", "adapters"), f"{leaf} imports {module}"


def test_load_config_knows_media_and_recording_fetch_without_their_areas(tmp_path):
    path = tmp_path / "gateway.toml"
    path.write_text('[media]\nidle_timeout_seconds = 7.5\n'
                    '[recording_fetch]\nconcurrency = 2\n'
                    'allowed_hosts = { standard = ["media.example.com"] }\n')
    script = textwrap.dedent(f"""
        import sys
        from gateway.config import load_config
        config = load_config({str(path)!r})
        assert config.section("media").idle_timeout_seconds == 7.5
        assert config.section("recording_fetch").concurrency == 2
        loaded = [m for m in ("gateway.media.feature", "gateway.media.live",
                              "gateway.ingest.recording_fetch") if m in sys.modules]
        assert loaded == [], loaded
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


def test_registry_is_what_the_adapters_package_exports():
    assert adapters.get_adapter is get_adapter
    assert set(MEDIA_STREAM_PLATFORMS) <= set(PLATFORMS)
