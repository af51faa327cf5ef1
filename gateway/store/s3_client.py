"""The S3 client both object-store backends share (the blob store in s3.py, the key store in
keystore.py): one lazily opened aiobotocore client per store, its error mapping and the
latency/error observer.

Invariants:
- Credentials come only from the standard AWS chain (environment variables, shared
  config/profile, instance or container role). Nothing here accepts a key, so none can be
  put in the TOML.
- A backend that cannot be reached raises StoreUnavailable (retry later: the web layer maps
  it to 503); any other refusal raises ObjectStoreError. Messages name the operation and
  the bucket, never credentials or object contents.
- The client is bound to the event loop that first used it: close() it at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore import exceptions as boto_errors

from gateway.store import database

log = logging.getLogger("gateway.store")

__all__ = ["ObjectStoreError", "Observer", "S3Client", "S3Settings", "StoreUnavailable",
           "is_not_found", "error_code"]

# A request path must fail fast when the store is down (the client gets 503 and retries),
# rather than hang for botocore's 60-second default connect timeout.
CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 60.0
MAX_ATTEMPTS = 3
# Bucket names: 3-63 characters of lowercase letters, digits, dots and hyphens, starting
# and ending with a letter or digit (AWS S3 user guide, "Bucket naming rules").
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# S3 error codes that mean "try again later" rather than "you asked for something wrong".
_TRANSIENT_CODES = frozenset({"SlowDown", "ServiceUnavailable", "InternalError",
                              "RequestTimeout", "RequestTimeTooSkewed", "Throttling",
                              "ThrottlingException", "503", "500", "502", "504"})
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchUpload"})


class ObjectStoreError(Exception):
    """The object store refused or failed an operation (bad bucket, denied, missing
    credentials...). The message names the operation and bucket, nothing secret."""


class StoreUnavailable(ObjectStoreError, database.StoreUnavailable):
    """The object store could not be reached or answered 'try later' (5xx, throttling, a
    timeout): nothing was half-done that a retry would not redo. It is the seam's
    StoreUnavailable too, so the web layer answers 503 with Retry-After naming only the
    component; str() (for logs) names the operation and bucket."""

    def __init__(self, component: str, message: str) -> None:
        database.StoreUnavailable.__init__(self, component)
        self.args = (message,)


# (operation, seconds, outcome) with outcome "ok" | "not_found" | "unavailable" | "error":
# the hook the metrics layer gives to count S3 latency and errors by operation.
Observer = Callable[[str, float, str], None]


class S3Settings(Protocol):
    """Where the S3 API is: `[storage.s3]` (gateway.config.S3Config). Credentials are
    deliberately not here."""
    endpoint_url: str               # empty: AWS; e.g. "http://127.0.0.1:8333" for SeaweedFS
    region: str


def error_code(exc: boto_errors.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_not_found(exc: BaseException) -> bool:
    if not isinstance(exc, boto_errors.ClientError):
        return False
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(exc) in _NOT_FOUND_CODES or status == 404


class S3Client:
    """One lazily opened aiobotocore client, its error mapping and its observer. Shared by
    the blob store and the key store (two instances, two buckets or prefixes). The client
    belongs to the event loop of its first use."""

    COMPONENT = "object store"      # named in 503 answers: "the blob store is not available"

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None,
                 region: str | None = None, observe: Observer | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
                 read_timeout: float = READ_TIMEOUT_SECONDS,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        if not _BUCKET_RE.match(bucket):
            raise ValueError("bucket must be 3-63 characters: a-z, 0-9, '.', '-'")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.component = self.COMPONENT
        self.endpoint_url = endpoint_url or None
        self.region = region or "us-east-1"
        self._observe = observe
        self._config = AioConfig(
            connect_timeout=connect_timeout, read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            # A custom endpoint (SeaweedFS, MinIO) serves buckets as paths, not subdomains.
            s3={"addressing_style": "path" if self.endpoint_url else "auto"},
            # Checksums only where S3 requires them (DeleteObjects): the content is AEAD
            # ciphertext whose every segment is authenticated on read, and a CRC over each
            # part would cost as much CPU as the encryption itself.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Up to PARTS_IN_FLIGHT per upload plus reads: a handful per replica.
            max_pool_connections=32)
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: Any = None
        self._lock = asyncio.Lock()

    def _base(self) -> str:
        return f"{self.prefix}/" if self.prefix else ""

    async def _get_client(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                # No credentials passed: botocore reads AWS_ACCESS_KEY_ID / _SECRET_ACCESS_KEY
                # / _SESSION_TOKEN, AWS_PROFILE and the shared files, or an instance role.
                self._client = await stack.enter_async_context(get_session().create_client(
                    "s3", endpoint_url=self.endpoint_url, region_name=self.region,
                    config=self._config))
                self._stack = stack
        return self._client

    async def close(self) -> None:
        stack, self._stack, self._client = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> S3Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _translate(self, operation: str, exc: BaseException) -> ObjectStoreError:
        where = f"{operation} on bucket {self.bucket}"
        if isinstance(exc, boto_errors.ClientError):
            code = error_code(exc)
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if code in _TRANSIENT_CODES or status >= 500:
                return StoreUnavailable(self.component,
                                        f"{where}: object store answered {code or status}")
            return ObjectStoreError(f"{where}: refused ({code or status})")
        if isinstance(exc, boto_errors.NoCredentialsError | boto_errors.PartialCredentialsError):
            return ObjectStoreError(f"{where}: no AWS credentials in the environment or profile")
        if isinstance(exc, boto_errors.ConnectionError | boto_errors.HTTPClientError
                      | aiohttp.ClientError | TimeoutError | OSError):
            return StoreUnavailable(self.component,
                                    f"{where}: object store unreachable ({type(exc).__name__})")
        return ObjectStoreError(f"{where}: {type(exc).__name__}")

    def _record(self, operation: str, started: float, outcome: str) -> None:
        if self._observe is not None:
            self._observe(operation, time.monotonic() - started, outcome)

    async def _call(self, operation: str, *, expected: frozenset[str] = _NOT_FOUND_CODES,
                    **kwargs: Any) -> dict[str, Any]:
        """One S3 call by its botocore name. A ClientError whose code is in `expected`
        (default: not found) passes through unchanged, since callers decide what absence
        means; every other failure is mapped to ObjectStoreError / StoreUnavailable."""
        started = time.monotonic()
        try:
            client = await self._get_client()
            result = await getattr(client, operation)(Bucket=self.bucket, **kwargs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_not_found(exc) or (isinstance(exc, boto_errors.ClientError)
                                      and error_code(exc) in expected):
                self._record(operation, started, "not_found")
                raise
            raise self._failed(operation, started, exc) from exc
        self._record(operation, started, "ok")
        return result

    def _failed(self, operation: str, started: float, exc: BaseException) -> ObjectStoreError:
        mapped = self._translate(operation, exc)
        self._record(operation, started,
                     "unavailable" if isinstance(mapped, StoreUnavailable) else "error")
        return mapped

    async def _pages(self, operation: str, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """The pages of a listing call, with the same error mapping as `_call`."""
        started = time.monotonic()
        try:
            client = await self._get_client()
            async for page in client.get_paginator(operation).paginate(
                    Bucket=self.bucket, **kwargs):
                yield page
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, ObjectStoreError):
                raise
            raise self._failed(operation, started, exc) from exc
        self._record(operation, started, "ok")

    async def _read_body(self, operation: str, response: dict[str, Any]) -> bytes:
        try:
            async with response["Body"] as body:
                return await body.read()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._translate(operation, exc) from exc

    async def ping(self) -> bool:
        """True when the bucket answers with these credentials (readiness)."""
        try:
            await self._call("head_bucket")
            return True
        except (ObjectStoreError, boto_errors.ClientError):
            return False


