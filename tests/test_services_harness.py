"""The services started by ``scripts/services.py`` are real and reachable with their URLs.

The fixtures come from ``tests/conftest.py``; these tests are what makes ``make test`` prove
that PostgreSQL, MariaDB and moto really ran: under ``CI=true`` a missing service fails here
instead of being skipped.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import boto3
import psycopg
import pymysql
import pytest


def test_postgres_answers_with_its_version(postgres_url: str) -> None:
    url = postgres_url
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute("select version(), current_database(), current_user").fetchone()
    assert row is not None
    version, database, user = row
    assert str(version).startswith("PostgreSQL ")
    parts = urlsplit(url)
    assert database == parts.path.lstrip("/")
    assert user == parts.username


def test_mariadb_answers_with_its_version(mysql_url: str) -> None:
    parts = urlsplit(mysql_url)
    assert parts.hostname == "127.0.0.1"
    assert parts.port is not None
    conn = pymysql.connect(
        host=parts.hostname,
        port=parts.port,
        user=parts.username or "",
        password=parts.password or "",
        database=parts.path.lstrip("/"),
        connect_timeout=10,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("select version(), database()")
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None
    version, database = row
    assert "MariaDB" in str(version)
    assert database == parts.path.lstrip("/")


def test_moto_s3_round_trips_an_object(s3_endpoint: str) -> None:
    endpoint = s3_endpoint
    assert endpoint.startswith("http://127.0.0.1:")
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
    )
    bucket = f"harness-{os.getpid()}"
    s3.create_bucket(Bucket=bucket)
    try:
        s3.put_object(Bucket=bucket, Key="hello.txt", Body=b"hello")
        body = s3.get_object(Bucket=bucket, Key="hello.txt")["Body"].read()
        assert body == b"hello"
    finally:
        s3.delete_object(Bucket=bucket, Key="hello.txt")
        s3.delete_bucket(Bucket=bucket)


@pytest.mark.parametrize("fixture", ["postgres_url", "mysql_url", "s3_endpoint"])
def test_urls_point_at_loopback(fixture: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(fixture)
    assert urlsplit(url).hostname == "127.0.0.1"
