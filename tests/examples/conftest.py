"""Fixtures of the example-app tests: real uvicorn servers in threads, scratch databases."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import uvicorn


@contextmanager
def serve_in_thread(app: Any, name: str) -> Iterator[str]:
    """Serve the ASGI *app* with uvicorn on a free 127.0.0.1 port, in a thread with its own loop.

    Yields the base URL once the lifespan startup has completed; stops the server (lifespan
    shutdown included) on exit. A startup that fails raises here with the thread's error.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False)
    server = uvicorn.Server(config)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # reported by the waiting test
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"uvicorn-{name}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError(f"the {name} server did not start (see the log): {errors}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {name} server did not start within 30 s")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
    if thread.is_alive():
        raise TimeoutError(f"the {name} server did not stop within 30 s")
    if errors:
        raise RuntimeError(f"the {name} server failed: {errors[0]!r}") from errors[0]


@contextmanager
def scratch_postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the test server; its URL; dropped afterwards."""
    import psycopg

    name = f"catalogue_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'create database "{name}"')
    parts = urlsplit(server_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'drop database if exists "{name}" with (force)')


@contextmanager
def scratch_bucket(endpoint: str) -> Iterator[str]:
    """A new, empty bucket on the moto S3 server; its name; emptied and removed afterwards."""
    import boto3

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = f"catalogue-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    try:
        yield bucket
    finally:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)
