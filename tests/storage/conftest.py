"""Fixtures for the storage suite: one `Storage` URL per backend, isolated per test.

File backends live under ``tmp_path``; the S3 backends use the moto server of
``ASYNCIFY_TEST_S3_ENDPOINT`` with one bucket per test module and one prefix per test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import service_url

S3_SCHEMES = ("s3", "s3+boto3")

_buckets: dict[str, str] = {}


def s3_client(endpoint: str) -> Any:
    """A plain boto3 client on the test moto server, to inspect what the backends did."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The moto credentials in the standard AWS environment, and nothing else from it."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def s3_bucket(request: pytest.FixtureRequest, aws_env: None) -> Iterator[tuple[str, str]]:
    """``(endpoint, bucket)``: a bucket created once per test module on the moto server."""
    endpoint = service_url("s3")
    module = request.module.__name__
    bucket = _buckets.get(module)
    if bucket is None:
        bucket = f"asyncify-{module.rsplit('.', 1)[-1].replace('_', '-')}-{uuid.uuid4().hex[:8]}"
        s3_client(endpoint).create_bucket(Bucket=bucket)
        _buckets[module] = bucket
    yield endpoint, bucket


def storage_url(scheme: str, request: pytest.FixtureRequest, tmp_path: Any) -> str:
    """A fresh, empty store of backend *scheme* for the running test."""
    if scheme in ("file", "file+aiofiles"):
        return f"{scheme}://{tmp_path / 'root'}"
    if scheme == "memory":
        return "memory://"
    endpoint, bucket = request.getfixturevalue("s3_bucket")
    return f"{scheme}://{bucket}/t-{uuid.uuid4().hex[:12]}?endpoint_url={endpoint}&region=us-east-1"
