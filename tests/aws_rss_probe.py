"""Measure how much the S3 transfer methods of ``aws.client("s3")`` (the aioboto3 backend) grow
this process's memory.

Run as a script (the memory test starts it in a fresh interpreter)::

    python -m tests.aws_rss_probe ENDPOINT DIRECTORY SIZE_MB CONCURRENCY CHUNK_MB

It writes SIZE_MB of random bytes to a file in DIRECTORY (1 MiB at a time), then runs, with a
``TransferConfig`` of CONCURRENCY requests at once in parts of CHUNK_MB: ``upload_file``,
``download_file``, ``upload_fileobj`` (an open binary file) and ``download_fileobj`` (into
one), and prints one JSON line: ``{"upload_file": {"growth_mb", "seconds"}, ..., "bytes",
"sizes": {...}, "intact": {...}}``: the size of each object and downloaded file, and whether
each download has the source's SHA-256. A growth is measured as in `tests.storage.rss_probe`
(`PeakRSS`), objects are deleted at the end, even after a failure (moto keeps them in memory).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from boto3.s3.transfer import TransferConfig

from asyncify_kit import aws
from tests.storage.rss_probe import CHUNK, PeakRSS


def write_random(path: Path, size: int) -> str:
    """Write *size* random bytes to *path*, 1 MiB at a time; their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        for start in range(0, size, CHUNK):
            block = os.urandom(min(CHUNK, size - start))
            digest.update(block)
            f.write(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


async def measured(report: dict[str, Any], name: str, call: Callable[[], Awaitable[None]]) -> None:
    """Run *call* under `PeakRSS`; its growth and time in ``report[name]``."""
    start = time.perf_counter()
    with PeakRSS() as rss:
        await call()
    report[name] = {"growth_mb": rss.growth_mb, "seconds": round(time.perf_counter() - start, 2)}


async def transfers(
    s3: Any, bucket: str, directory: Path, config: TransferConfig, report: dict[str, Any]
) -> None:
    source = directory / "source.bin"
    small = directory / "small.bin"
    expected = await asyncio.to_thread(write_random, source, int(report["bytes"]))
    await asyncio.to_thread(write_random, small, CHUNK)
    # imports, the connection pool and the worker threads first
    await s3.upload_file(str(small), bucket, "warm-up.bin", Config=config)
    await s3.download_file(bucket, "warm-up.bin", str(directory / "warm-up.bin"))

    async def check(name: str, key: str, path: Path) -> None:
        head = await s3.head_object(Bucket=bucket, Key=key)
        report["sizes"][f"{name} object"] = head["ContentLength"]
        report["sizes"][f"{name} file"] = (await asyncio.to_thread(path.stat)).st_size
        report["intact"][name] = await asyncio.to_thread(sha256_of, path) == expected
        await s3.delete_object(Bucket=bucket, Key=key)

    by_name = directory / "by-name.bin"
    await measured(
        report,
        "upload_file",
        lambda: s3.upload_file(str(source), bucket, "by-name.bin", Config=config),
    )
    await measured(
        report,
        "download_file",
        lambda: s3.download_file(bucket, "by-name.bin", str(by_name), Config=config),
    )
    await check("by name", "by-name.bin", by_name)

    by_object = directory / "by-object.bin"
    with await asyncio.to_thread(source.open, "rb") as reading:
        await measured(
            report,
            "upload_fileobj",
            lambda: s3.upload_fileobj(reading, bucket, "by-object.bin", Config=config),
        )
    with await asyncio.to_thread(by_object.open, "wb") as writing:
        await measured(
            report,
            "download_fileobj",
            lambda: s3.download_fileobj(bucket, "by-object.bin", writing, Config=config),
        )
    await check("by object", "by-object.bin", by_object)


async def main(endpoint: str, directory: Path, size_mb: int, config: TransferConfig) -> None:
    report: dict[str, Any] = {"bytes": size_mb * CHUNK, "sizes": {}, "intact": {}}
    async with aws.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ) as s3:
        bucket = f"aws-rss-{uuid.uuid4().hex[:10]}"
        await s3.create_bucket(Bucket=bucket)
        try:
            await transfers(s3, bucket, directory, config, report)
        finally:
            for key in ("warm-up.bin", "by-name.bin", "by-object.bin"):
                await s3.delete_object(Bucket=bucket, Key=key)
            await s3.delete_bucket(Bucket=bucket)
    print(json.dumps(report))


if __name__ == "__main__":
    endpoint, directory, size_mb, concurrency, chunk_mb = sys.argv[1:]
    config = TransferConfig(
        max_concurrency=int(concurrency), multipart_chunksize=int(chunk_mb) * CHUNK
    )
    asyncio.run(main(endpoint, Path(directory), int(size_mb), config))
