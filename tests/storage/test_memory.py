"""A 200 MB streamed upload and a 200 MB streamed read each grow peak RSS by < 64 MB.

Each backend is measured in a fresh interpreter (`tests/storage/rss_probe.py`), so the
numbers are this library's and nothing else's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import storage_url

SIZE_MB = 200
LIMIT_MB = 64
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("scheme", ["file", "s3"])
def test_200_mb_streams_in_bounded_memory(
    scheme: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = storage_url(scheme, request, tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "tests.storage.rss_probe", url, str(SIZE_MB)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"{scheme}: {report}")
    assert report["bytes"] == SIZE_MB * 1024 * 1024
    assert report["intact"]
    assert report["write"]["growth_mb"] < LIMIT_MB, report
    assert report["read"]["growth_mb"] < LIMIT_MB, report
