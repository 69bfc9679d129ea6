"""Run in a fresh interpreter by ``tests/test_aws_loop.py``: open an S3 Storage and an
``aws.client("s3")`` of the backend named (``aioboto3``: ``s3://``; ``boto3``: ``s3+boto3://``)
for the first time in this process, each with one request,
and print (JSON) the modules imported meanwhile, split by whether the importing thread was
running the event loop. Run it with ``python -I``: with this directory on ``sys.path``,
its ``http`` package would shadow the standard library's."""

from __future__ import annotations

import asyncio
import importlib.abc
import json
import sys
import threading
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from asyncify_kit import aws
from asyncify_kit.storage import Storage

imported: dict[str, list[str]] = {"loop": [], "elsewhere": []}
guard = threading.local()


class _Recorder(importlib.abc.MetaPathFinder):
    """Records each module imported (found for the first time), then lets the usual
    finders find it."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> None:
        if getattr(guard, "busy", False):
            return None
        guard.busy = True
        try:
            try:
                asyncio.get_running_loop()
                where = "loop"
            except RuntimeError:
                where = "elsewhere"
            imported[where].append(fullname)
        finally:
            guard.busy = False
        return None


async def main(endpoint: str, backend: str) -> None:
    options: dict[str, Any] = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    scheme = "s3" if backend == "aioboto3" else "s3+boto3"
    url = f"{scheme}://probe-bucket/p?endpoint_url={endpoint}&region=us-east-1"
    async with Storage(url) as st:
        await st.exists("k")
    async with aws.client("s3", backend=backend, **options) as client:  # type: ignore[arg-type]
        await client.list_buckets()


if __name__ == "__main__":
    sys.meta_path.insert(0, _Recorder())
    asyncio.run(main(sys.argv[1], sys.argv[2]))
    print(json.dumps(imported))
