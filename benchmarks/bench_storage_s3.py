"""Storage on S3: get and put of 4 KiB and 8 MiB objects, ``s3://`` versus raw aioboto3.

asyncify-kit's ``s3://`` (aioboto3 underneath) and ``s3+boto3://`` (boto3 in threads)
against raw aioboto3 calls (the baseline), all on the same moto server on loopback, one
operation at a time. The difference is the facade's own cost: key validation, the prefix,
error translation, content type.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from benchmarks._harness import Case, Runner, Scenario, Section, Target, timed

S3_ENV = "ASYNCIFY_TEST_S3_ENDPOINT"
RAW_AIOBOTO3 = "aioboto3 (raw)"
KIT_S3 = "asyncify-kit s3://"
KIT_S3_BOTO3 = "asyncify-kit s3+boto3://"
RAW_UNCHECKED = "aioboto3 (raw, async with Body: no CRC check)"


def _s3_kwargs() -> dict[str, Any]:
    return {
        "endpoint_url": os.environ[S3_ENV],
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }


_bucket: list[str] = []


async def _ensure_bucket() -> str:
    if not _bucket:
        import boto3

        name = f"asyncify-bench-{uuid.uuid4().hex[:8]}"
        client = await asyncio.to_thread(boto3.client, "s3", **_s3_kwargs())
        await asyncio.to_thread(client.create_bucket, Bucket=name)
        _bucket.append(name)
    return _bucket[0]


def _s3_setup(kind: str, size: int, put: bool) -> Callable[[], Any]:
    data = os.urandom(size)
    key = f"obj-{size}"

    @asynccontextmanager
    async def setup() -> AsyncIterator[Runner]:
        bucket = await _ensure_bucket()
        if kind in (RAW_AIOBOTO3, RAW_UNCHECKED):
            import aioboto3
            from botocore.config import Config

            session = aioboto3.Session()
            config = Config(
                retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=10
            )
            async with session.client("s3", config=config, **_s3_kwargs()) as s3:
                await s3.put_object(Bucket=bucket, Key=f"raw/{key}", Body=data)

                async def raw_get() -> object:
                    resp = await s3.get_object(Bucket=bucket, Key=f"raw/{key}")
                    body = resp["Body"]
                    if kind == RAW_UNCHECKED:  # the aiohttp response itself: no CRC check
                        async with body as stream:
                            return await stream.read()
                    data = await body.read()  # botocore's wrapper checks the CRC32
                    body.close()
                    return data

                async def raw_put() -> object:
                    return await s3.put_object(Bucket=bucket, Key=f"raw/{key}", Body=data)

                work = raw_put if put else raw_get

                async def run(ops: int) -> float:
                    return await timed(ops, work)

                yield run
            return
        from asyncify_kit.storage import Storage

        scheme = "s3" if kind == KIT_S3 else "s3+boto3"
        url = f"{scheme}://{bucket}/{scheme}?endpoint_url={os.environ[S3_ENV]}&region=us-east-1"
        async with Storage(url) as st:
            await st.write(key, data, content_type="application/octet-stream")

            async def kit_get() -> object:
                return await st.read(key)

            async def kit_put() -> object:
                await st.write(key, data, content_type="application/octet-stream")
                return None

            work = kit_put if put else kit_get

            async def run(ops: int) -> float:
                return await timed(ops, work)

            yield run

    return setup


S3_SCENARIOS = [
    ("s3-get-4k", "S3 get 4 KiB", 4 * 1024, False, 70),
    ("s3-put-4k", "S3 put 4 KiB", 4 * 1024, True, 70),
    ("s3-get-8m", "S3 get 8 MiB", 8 * 1024 * 1024, False, 2),
    ("s3-put-8m", "S3 put 8 MiB", 8 * 1024 * 1024, True, 2),
]


def _cases() -> list[Case]:
    cases: list[Case] = []
    for scenario, _, size, put, _ in S3_SCENARIOS:
        cases.append(Case(scenario, RAW_AIOBOTO3, setup=_s3_setup(RAW_AIOBOTO3, size, put)))
        if not put:
            cases.append(
                Case(
                    scenario,
                    RAW_UNCHECKED,
                    setup=_s3_setup(RAW_UNCHECKED, size, put),
                    reference=True,
                )
            )
        cases.append(Case(scenario, KIT_S3, setup=_s3_setup(KIT_S3, size, put), peer=False))
        cases.append(
            Case(
                scenario,
                KIT_S3_BOTO3,
                setup=_s3_setup(KIT_S3_BOTO3, size, put),
                peer=False,
                reference=True,
            )
        )
    return cases


SECTION = Section(
    name="storage-s3",
    title="Storage: S3 get/put via s3:// (moto on loopback)",
    baseline=RAW_AIOBOTO3,
    scenarios=tuple(
        Scenario(
            name,
            title,
            ops=ops,
            quick_ops=max(2, ops // 10),
            targets=(Target(KIT_S3, max_ratio=1.10),),
        )
        for name, title, _, _, ops in S3_SCENARIOS
    ),
    cases=_cases,
    # 3x the rounds of a third of the ops: moto_server shares the two cores, and one round's
    # ratio swung from 0.91x to 1.30x for the same code
    repeat_factor=3,
    requires=(S3_ENV,),
    packages=("aioboto3", "boto3", "moto"),
    notes=(
        "Every client: retries in standard mode (3 attempts), 10 connections, botocore's "
        "default checksums (CRC32 computed on PUT, checked on GET).",
        "Reading a body inside `async with resp['Body']` gets aiohttp's response itself and "
        "skips botocore's CRC32 check; it is shown as a reference, not as the baseline, "
        "since asyncify-kit checks the CRC (`?checksums=when_required` turns that off).",
        "Objects of 8 MiB are single PUTs everywhere (asyncify-kit's multipart threshold is "
        "8 MiB, inclusive).",
        "asyncify-kit's `s3://` sends a PUT without `Expect: 100-continue`, which botocore "
        "adds and aiohttp waits for with no timeout (see docs/storage.md): one round trip "
        "fewer than raw aioboto3 per PUT.",
    ),
)
