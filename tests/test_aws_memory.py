"""Memory: the S3 transfer methods of ``aws.client("s3")`` (aioboto3, `_s3_transfer`) move a
200 MB file in memory bounded by their ``TransferConfig``, not by the file's size.

Measured in a fresh interpreter (`tests/aws_rss_probe.py`), so the numbers are this
library's and nothing else's.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.conftest import service_url
from tests.storage.rss_probe import run_probe

SIZE_MB = 200

# boto3's default TransferConfig (10 requests at once, parts of 8 MiB) allows 80 MiB of parts,
# above the storage test's 64 MB: the probe runs with 4 at once in parts of 8 MiB, 32 MiB of
# parts. A download holds each part it fetched until it is written: 32 MiB. An upload holds
# each part it sends once (its ``io.BytesIO`` alone: see `_s3_transfer._sole_owner`) and
# reads the next part meanwhile: 32 + 8 = 40 MiB. On top of either, 24 MiB for everything
# else (aiohttp's and the file's buffers, allocator slack): downloads < 56 MiB, uploads < 64
# MiB. Measured (2026-11-30): downloads 20-40 MB, uploads 27-34 MB; uploads 50-78 MB while
# each part was held twice (aiohttp's payload copied its ``io.BytesIO``, ``getbuffer()``);
# unbounded, any of them grows by ~200 MB.
CONCURRENCY = 4
CHUNK_MB = 8
PARTS_MB = CONCURRENCY * CHUNK_MB
OVERHEAD_MB = 24
DOWNLOAD_LIMIT_MB = PARTS_MB + OVERHEAD_MB
UPLOAD_LIMIT_MB = PARTS_MB + CHUNK_MB + OVERHEAD_MB
LIMITS_MB = {
    "upload_file": UPLOAD_LIMIT_MB,
    "download_file": DOWNLOAD_LIMIT_MB,
    "upload_fileobj": UPLOAD_LIMIT_MB,
    "download_fileobj": DOWNLOAD_LIMIT_MB,
}


def test_200_mb_transfers_in_memory_bounded_by_the_transfer_config(tmp_path: Path) -> None:
    endpoint = service_url("s3")
    env = {k: v for k, v in os.environ.items() if k != "AWS_PROFILE"}
    args = (endpoint, str(tmp_path), str(SIZE_MB), str(CONCURRENCY), str(CHUNK_MB))
    report = run_probe("tests.aws_rss_probe", *args, env=env)
    print(report)
    size = SIZE_MB * 1024 * 1024
    assert report["sizes"] == {
        "by name object": size,
        "by name file": size,
        "by object object": size,
        "by object file": size,
    }
    assert report["intact"] == {"by name": True, "by object": True}
    growths = {name: report[name]["growth_mb"] for name in LIMITS_MB}
    over = {name: mb for name, mb in growths.items() if mb >= LIMITS_MB[name]}
    assert over == {}, report
