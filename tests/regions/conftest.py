"""Two regions for the residency tests: `eu` (staff countries DE, FR, NL) and `us` (US),
each with its own blob and key store, beside the [storage] stores (tenants without a
region). `region_stores` says which: files under the test's directory, or (the `s3`
flavour) two buckets per region on the session's SeaweedFS."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import Config, RegionConfig
from gateway.services import init_storage
from tests.support.seaweedfs import BUCKETS
from tests.support.server import make_config

REGION_COUNTRIES = {"eu": ["DE", "FR", "NL"], "us": ["US"]}
LEGAL_BASIS = {"US": "standard contractual clauses"}


def file_regions(root: Path) -> dict[str, RegionConfig]:
    return {name: RegionConfig(blob_url=f"file://{root / name / 'blobs'}",
                               key_store_url=f"file://{root / name / 'keys'}",
                               countries=countries)
            for name, countries in REGION_COUNTRIES.items()}


def s3_regions(s3, prefix: str) -> dict[str, RegionConfig]:
    out = {}
    for name, countries in REGION_COUNTRIES.items():
        blobs = s3.create_bucket(f"gw-{name}-blobs")
        keys = s3.create_bucket(f"gw-{name}-keys")
        out[name] = RegionConfig(blob_url=f"s3://{blobs}/{prefix}",
                                 key_store_url=f"s3://{keys}/{prefix}", countries=countries)
    return out


def apply_regions(config: Config, regions: dict[str, RegionConfig]) -> Config:
    config.extra["regions"] = regions
    config.section("transfers").legal_basis = dict(LEGAL_BASIS)
    return config


@pytest.fixture(params=["files", "s3"])
def region_stores(request: pytest.FixtureRequest) -> str:
    return request.param   # "s3": the seaweedfs fixture skips where it is not installed


def every_store(config: Config, s3=None) -> dict[str, list[str]]:
    """Every object name in every store (the [storage] ones as region "default"), listed
    straight from the filesystem or the bucket, not through the gateway."""
    from gateway.store.urls import store_location
    places = {"default/blobs": config.storage.blob_url or f"file://{config.blob_dir}",
              "default/keys": config.storage.key_store_url or f"file://{config.tenant_key_dir}"}
    for name, region in config.regions.items():
        places[f"{name}/blobs"] = region.blob_url
        places[f"{name}/keys"] = region.key_store_url
    out = {}
    for label, url in places.items():
        kind, location = store_location(url, config.data_dir)
        if kind == "file":
            root = Path(location)
            out[label] = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                                if p.is_file()) if root.exists() else []
        else:
            bucket, _, prefix = location.partition("/")
            client = s3.client()
            names = []
            for page in client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=prefix + "/"):
                names.extend(item["Key"] for item in page.get("Contents", []))
            out[label] = sorted(names)
    return out


def stores_holding(listing: dict[str, list[str]], tenant_id: str) -> set[str]:
    return {label for label, names in listing.items() if any(tenant_id in n for n in names)}


@pytest.fixture
def config(tmp_path: Path, region_stores: str, request: pytest.FixtureRequest
           ) -> Iterator[Config]:
    config = make_config(tmp_path / "data")
    if region_stores == "s3":
        s3 = request.getfixturevalue("seaweedfs")
        prefix = f"t-{secrets.token_hex(6)}"
        config.storage.blob_url = f"s3://{BUCKETS[0]}/{prefix}"
        config.storage.key_store_url = f"s3://{BUCKETS[1]}/{prefix}"
        config.storage.s3.endpoint_url = s3.endpoint_url
        config.storage.s3.region = s3.region
        apply_regions(config, s3_regions(s3, prefix))
    else:
        apply_regions(config, file_regions(tmp_path / "regions"))
    init_storage(config)
    yield config
