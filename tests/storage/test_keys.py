"""Hostile keys: every one is refused with `InvalidPath` before any I/O, and nothing outside
ROOT is ever created, changed or read, symbolic links included."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from asyncify_kit.storage import InvalidPath, Storage, validate_key, validate_prefix

HOSTILE_KEYS: list[Any] = [
    "",
    "/",
    "/etc/passwd",
    "//server/share",
    "..",
    "../",
    "../outside/secret.txt",
    "a/../../outside/secret.txt",
    "a/..",
    "a/../b",
    ".",
    "./a",
    "a/./b",
    "a//b",
    "a/",
    "a/b/",
    "a\\b",
    "..\\outside\\secret.txt",
    "C:\\Windows\\win.ini",
    "C:secret",
    "c:/secret",
    "nul\x00byte",
    "\x00",
    "a/\x00/b",
    "line\nbreak",
    "carriage\rreturn",
    "tab\tkey",
    "escape\x1b[31m",
    "delete\x7f",
    "x" * 256,
    "a/" * 600 + "b",
    "lone\udc80surrogate",
    ".~asyncify-0123456789abcdef.tmp",
    "dir/.~asyncify-temp.tmp",
    b"bytes/key",
    None,
    42,
    Path("a/b"),
]


def test_at_least_thirty_hostile_keys() -> None:
    assert len(HOSTILE_KEYS) >= 30


@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=range(len(HOSTILE_KEYS)))
def test_validate_key_refuses(key: Any) -> None:
    with pytest.raises(InvalidPath) as info:
        validate_key(key)
    assert isinstance(info.value, ValueError)
    assert "\x00" not in str(info.value) and len(str(info.value)) < 200


@pytest.mark.parametrize(
    "key",
    [
        "a",
        "a/b/c.txt",
        "é/ü/日本.txt",
        "with space",
        "a.b.c",
        "...",
        "..a",
        "a..",
        "~/x",
        "x" * 255,
        "-dash",
        ".hidden",
        "colon:ok",
        "%2e%2e/encoded",
    ],
)
def test_validate_key_accepts(key: str) -> None:
    assert validate_key(key) == key


def test_validate_prefix() -> None:
    assert validate_prefix("") == ""
    assert validate_prefix("a/") == "a/"
    assert validate_prefix("a/b") == "a/b"
    assert validate_prefix("a/..") == "a/.."  # a string prefix (of `a/..x`), not a segment
    for bad in ("/", "/a", "../", "a//", "a\\", "a/../"):
        with pytest.raises(InvalidPath):
            validate_prefix(bad)


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path]:
    """ROOT with symlinks pointing outside it, and an outside directory holding a secret."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"TOP SECRET")
    (root / "inside.txt").write_bytes(b"fine")
    (root / "sub").mkdir()
    os.symlink(outside, root / "link_dir")
    os.symlink(outside / "secret.txt", root / "link_file")
    os.symlink(outside / "missing.txt", root / "dangling")
    os.symlink(root / "inside.txt", root / "sub" / "internal_link")
    os.symlink("../../outside", root / "sub" / "relative_up")
    return root, outside


def snapshot(path: Path) -> dict[str, bytes | str]:
    state: dict[str, bytes | str] = {}
    for item in sorted(path.rglob("*")):
        rel = str(item.relative_to(path))
        if item.is_symlink():
            state[rel] = "-> " + os.readlink(item)
        elif item.is_file():
            state[rel] = item.read_bytes()
        else:
            state[rel] = "dir"
    return state


async def snap(path: Path) -> dict[str, bytes | str]:
    return await anyio.to_thread.run_sync(snapshot, path)


SYMLINK_KEYS = [
    "link_dir/secret.txt",
    "link_dir/new.txt",
    "link_file",
    "dangling",
    "sub/internal_link",
    "sub/relative_up/secret.txt",
    "sub/relative_up/new.txt",
    "link_dir/deeper/new.txt",
]


async def _attack(st: Storage, key: Any) -> None:
    """Every operation on *key* must raise InvalidPath; nothing may succeed."""
    attempts: list[Any] = [
        lambda: st.read(key),
        lambda: st.read_text(key),
        lambda: st.write(key, b"pwned"),
        lambda: st.write(key, b"pwned", if_not_exists=True),
        lambda: st.stat(key),
        lambda: st.exists(key),
        lambda: st.delete(key),
        lambda: st.delete(key, missing_ok=True),
        lambda: st.copy("inside.txt", key),
        lambda: st.copy(key, "stolen.txt"),
        lambda: st.move(key, "stolen.txt"),
        lambda: st.move("inside.txt", key),
    ]
    for number, attempt in enumerate(attempts):
        with pytest.raises(InvalidPath):
            await attempt()
            pytest.fail(f"attempt {number} on {key!r} did not raise")
    with pytest.raises(InvalidPath):
        async with st.open(key, "rb") as f:
            await f.read()
    with pytest.raises(InvalidPath):
        async with st.open(key, "wb") as f:
            await f.write(b"pwned")
    with pytest.raises(InvalidPath):
        async with st.stream(key) as chunks:
            async for _ in chunks:
                pass


@pytest.mark.anyio
async def test_hostile_keys_touch_nothing(layout: tuple[Path, Path]) -> None:
    root, outside = layout
    before_root, before_outside = await snap(root), await snap(outside)
    async with Storage(f"file://{root}") as st:
        for key in HOSTILE_KEYS:
            await _attack(st, key)
        for prefix in ("../", "/", "a//", "..\\"):
            with pytest.raises(InvalidPath):
                st.list(prefix)
    assert await snap(outside) == before_outside
    assert await snap(root) == before_root


FILE_CASES = [("file", "asyncio"), ("file", "trio"), ("file+aiofiles", "asyncio")]


@pytest.mark.parametrize(
    ("scheme", "anyio_backend"), FILE_CASES, ids=[f"{s}-{b}" for s, b in FILE_CASES]
)
@pytest.mark.anyio
async def test_symlinks_are_never_followed(
    layout: tuple[Path, Path], scheme: str, anyio_backend: str
) -> None:
    root, outside = layout
    before_outside = await snap(outside)
    async with Storage(f"{scheme}://{root}") as st:
        for key in SYMLINK_KEYS:
            await _attack(st, key)
        listed = [info.key async for info in st.list()]
        assert listed == ["inside.txt"]  # symlinks are neither listed nor followed
        assert [i.key async for i in st.list("link_dir/")] == []
        assert await st.read("inside.txt") == b"fine"
    assert await snap(outside) == before_outside
    assert not await anyio.Path(outside / "new.txt").exists()


@pytest.mark.anyio
async def test_root_swapped_for_symlink_after_open(tmp_path: Path) -> None:
    """ROOT is held open by descriptor: replacing it by a symlink later changes nothing."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    await anyio.Path(outside).mkdir()
    await anyio.Path(outside / "secret.txt").write_bytes(b"TOP SECRET")
    async with Storage(f"file://{root}") as st:
        await st.write("mine.txt", b"mine")
        await anyio.Path(root).rename(tmp_path / "moved")
        await anyio.to_thread.run_sync(os.symlink, outside, root)
        with pytest.raises(FileNotFoundError):
            await st.read("secret.txt")
        assert await st.read("mine.txt") == b"mine"


@pytest.mark.parametrize(
    ("name", "first", "expected"),
    [
        ("C:foo", True, False),  # a key may not start with a drive
        ("C:foo", False, True),  # a later segment may look like one
        ("plain", True, True),
        ("a/b", False, False),
        ("..", False, False),
        (".~asyncify-x.tmp", False, False),
        ("nul\x00", False, False),
        ("x" * 256, False, False),
    ],
)
def test_a_directory_entry_is_a_key_segment_where_a_key_could_hold_it(
    name: str, first: bool, expected: bool
) -> None:
    from asyncify_kit.storage._keys import is_key_segment

    assert is_key_segment(name, first=first) is expected
    if expected:
        validate_key(name if first else f"a/{name}")
