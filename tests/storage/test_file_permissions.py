"""file:// and file+aiofiles:// listings never hide what they cannot read: a directory that
cannot be read (mode 0o311, 0o000) or entered (0o644) is a `PermissionDenied` naming it, in
a recursive listing and in a non-recursive one that needs to look into it; S3 too refuses a
listing as a whole (AccessDenied) rather than leave keys out.

Root bypasses permission bits, and the tests run as root in CI: each listing runs in a fresh
interpreter that cannot (`tests/storage/unprivileged.py`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_file_system
from tests.storage.rss_probe import run_probe

ROOT = Path(__file__).resolve().parents[2]

SCHEMES = ["file", "file+aiofiles"]


def list_unprivileged(url: str, prefix: str = "", *, recursive: bool = True) -> dict[str, object]:
    """What ``Storage(url).list(prefix, recursive=...)`` gives in a process that file
    permissions apply to."""
    result: dict[str, object] = run_probe(
        "tests.storage.unprivileged", url, prefix, str(int(recursive))
    )
    return result


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    """ROOT holding ``a/x``, ``b/z``, ``b/d/y`` and ``c``; permissions are given back at the
    end, so that pytest can remove it."""
    root = tmp_path / "root"
    for key in ("a/x", "b/z", "b/d/y", "c"):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(key.encode())
    yield root
    for path in (root / "b", root / "b" / "d"):
        if path.exists():
            path.chmod(0o755)


def denied(result: dict[str, object], dir_key: str) -> bool:
    message = str(result.get("message", ""))
    return result.get("error") == "PermissionDenied" and f"directory {dir_key!r}" in message


def test_the_unprivileged_process_is_refused_what_permissions_refuse(store: Path) -> None:
    """The check of the check: without this, every test below could pass as root."""
    (store / "b").chmod(0o000)
    result = list_unprivileged(f"file://{store}", "b/")
    assert result["error"] == "PermissionDenied", result
    (store / "b").chmod(0o755)
    assert list_unprivileged(f"file://{store}") == {"keys": ["a/x", "b/d/y", "b/z", "c"]}


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("recursive", [True, False], ids=["recursive", "flat"])
@pytest.mark.parametrize("mode", [0o311, 0o000, 0o644], ids=oct)
def test_a_directory_that_cannot_be_read_or_entered_is_named(
    scheme: str, recursive: bool, mode: int, store: Path
) -> None:
    """Recursively, ``b/`` (0o311: entered, not read; 0o000; 0o644: read, not entered) used
    to be skipped silently, or to fail without naming it (0o644 with a file in it, when its
    file could not be stat'ed): now both are `PermissionDenied` naming ``b/``. Flat, ``b/``
    is listed when an object can be seen in it (0o644: its names can be read), and is an
    error naming it when nothing can be seen (it used to be left out)."""
    (store / "b").chmod(mode)
    result = list_unprivileged(f"{scheme}://{store}", recursive=recursive)
    if not recursive and mode == 0o644:
        assert result == {"keys": ["a/", "b/", "c"]}
    else:
        assert denied(result, "b/"), result


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("recursive", [True, False], ids=["recursive", "flat"])
def test_a_sub_directory_that_cannot_be_read_is_named(
    scheme: str, recursive: bool, store: Path
) -> None:
    """One level down: ``b/d/`` unreadable. Recursively, the error names ``b/d/``. Flat,
    ``b/`` is listed once it holds an object that can be seen (``b/z``); while ``b/d/`` is
    all it holds, whether it is a prefix cannot be known: the error names ``b/d/``."""
    (store / "b" / "z").unlink()
    (store / "b" / "d").chmod(0o311)
    result = list_unprivileged(f"{scheme}://{store}", recursive=recursive)
    assert denied(result, "b/d/"), result  # flat: nothing else in b/ tells it is a prefix
    (store / "b" / "z").write_bytes(b"z")
    result = list_unprivileged(f"{scheme}://{store}", recursive=recursive)
    if recursive:
        assert denied(result, "b/d/"), result
    else:
        assert result == {"keys": ["a/", "b/", "c"]}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_listing_only_readable_parts_works(scheme: str, store: Path) -> None:
    """An unreadable directory that the listing's prefix leaves out does not matter."""
    (store / "b").chmod(0o000)
    assert list_unprivileged(f"{scheme}://{store}", "a") == {"keys": ["a/x"]}
    assert list_unprivileged(f"{scheme}://{store}", "c") == {"keys": ["c"]}


def _mounted_ext4(tmp_path: Path) -> contextlib.AbstractContextManager[Path]:
    """A fresh ext4 file system (with its ``lost+found``) mounted under *tmp_path*."""
    from benchmarks import fs_matrix

    require_file_system("ext4")
    return fs_matrix.fresh_file_system(fs_matrix.KINDS["ext4"], tmp_path, 64)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_the_lost_and_found_of_a_volume_is_left_out_only_at_its_top(
    scheme: str, tmp_path: Path
) -> None:
    """ROOT at the top of a mounted ext4 volume, or above it: its ``lost+found`` (readable by
    root only) holds no objects, and failing on it would make every listing of such a ROOT
    fail. A directory of that name elsewhere is an ordinary one: refused when unreadable."""
    with _mounted_ext4(tmp_path) as top:  # tmp_path holds the image and the mount point
        (top / "a").mkdir()
        (top / "a" / "x").write_bytes(b"x")
        (top / "a" / "lost+found").mkdir()
        (top / "a" / "lost+found" / "y").write_bytes(b"y")
        try:
            (top / "lost+found").chmod(0o000)  # as for a process that is not its owner
            for recursive, keys in ((True, ["a/x", "a/lost+found/y"]), (False, ["a/"])):
                result = list_unprivileged(f"{scheme}://{top}", recursive=recursive)
                assert result == {"keys": sorted(keys)}, result
            # ROOT above the mount point: the volume's lost+found is left out there too
            result = list_unprivileged(f"{scheme}://{tmp_path}")
            mounted = [f"{top.name}/a/lost+found/y", f"{top.name}/a/x"]
            assert result == {"keys": sorted(["ext4.img", *mounted])}, result
            (top / "a" / "lost+found").chmod(0o000)
            result = list_unprivileged(f"{scheme}://{top}")
            assert denied(result, "a/lost+found/"), result
        finally:
            (top / "lost+found").chmod(0o700)
            (top / "a" / "lost+found").chmod(0o755)
