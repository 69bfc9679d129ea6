"""A 500 MB streamed download keeps the peak RSS growth under 64 MB on every backend."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ServerInfo

SCRIPT = Path(__file__).with_name("rss_download.py")
SIZE = 500 * 1000 * 1000
LIMIT = 64 * 1024 * 1024


@pytest.mark.parametrize("backend", ["httpx", "aiohttp", "requests"])
def test_streamed_download_memory(http_server: ServerInfo, backend: str) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), backend, http_server.url, str(SIZE)],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["received"] == SIZE
    assert report["growth"] < LIMIT, f"{backend}: RSS grew by {report['growth'] / 2**20:.1f} MiB"
