"""Stream a large body through `HttpClient` and report the peak RSS growth, as JSON.

Run in its own process by ``test_memory.py``: ``python rss_download.py BACKEND URL SIZE``.
The baseline is the peak RSS (``ru_maxrss``) after the client is open and has streamed a
small body once, so imports and first-use allocations are not counted.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

from asyncify_kit.http import HttpClient


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


async def main(backend: str, url: str, size: int) -> None:
    async with HttpClient(url, backend=backend, retries=0) as http:
        async with http.stream("GET", f"/stream/{1 << 20}") as r:
            async for _ in r.aiter_bytes():
                pass
        baseline = peak_rss()
        started = time.perf_counter()
        received = 0
        async with http.stream("GET", f"/stream/{size}") as r:
            async for chunk in r.aiter_bytes():
                received += len(chunk)
        seconds = time.perf_counter() - started
    print(json.dumps({"received": received, "growth": peak_rss() - baseline, "seconds": seconds}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
