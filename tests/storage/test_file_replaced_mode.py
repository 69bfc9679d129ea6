"""What docs/storage.md and docs/migrate/open.md say a `file://` write does to the file it
replaces, and what `read_text` does with line ends: an atomic write makes a new file, with
the mode new files get (not the old file's); `?atomic=false` writes in place and keeps it;
`read_text` gives the text as stored, ``\\r\\n`` included."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asyncify_kit import run_sync
from asyncify_kit.storage import Storage

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # (file+aiofiles runs on asyncio only; file:// is the same on trio)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.fixture
def new_file_mode() -> int:
    return 0o666 & ~_umask()


@pytest.mark.parametrize("scheme", ["file", "file+aiofiles"])
async def test_an_atomic_write_gives_the_new_file_the_mode_new_files_get(
    tmp_path: Path, scheme: str, new_file_mode: int
) -> None:
    async with Storage(f"{scheme}://{tmp_path}") as st:
        await st.write("a.txt", b"old")
        await run_sync(os.chmod, tmp_path / "a.txt", 0o600)
        await st.write("a.txt", b"new")
    assert (await run_sync(os.stat, tmp_path / "a.txt")).st_mode & 0o777 == new_file_mode


async def test_an_in_place_write_keeps_the_mode(tmp_path: Path) -> None:
    async with Storage(f"file://{tmp_path}?atomic=false") as st:
        await st.write("a.txt", b"old")
        await run_sync(os.chmod, tmp_path / "a.txt", 0o600)
        await st.write("a.txt", b"new, longer")
        assert await st.read("a.txt") == b"new, longer"
    assert (await run_sync(os.stat, tmp_path / "a.txt")).st_mode & 0o777 == 0o600


@pytest.mark.parametrize("scheme", ["file", "file+aiofiles", "memory"])
async def test_read_text_keeps_line_ends_as_stored(tmp_path: Path, scheme: str) -> None:
    url = "memory://" if scheme == "memory" else f"{scheme}://{tmp_path}"
    async with Storage(url) as st:
        await st.write("upload.csv", b"sku,qty\r\nA1,3\rB2,4\n")
        assert await st.read_text("upload.csv") == "sku,qty\r\nA1,3\rB2,4\n"
