"""A ``file://`` (and ``file+aiofiles://``) ROOT that cannot be opened is an error about ROOT:
a missing one with ``create=false`` is `NotFound` saying the root directory does not exist, a
file (or a file on the way to it) a plain `StorageError` saying it is not a directory, one
refused by permissions `PermissionDenied` naming it; never an error about an object ``'.'``
(a missing root was "no object '.'", a file "object '.' already exists", `AlreadyExists`).

Root bypasses permission bits, and the tests run as root in CI: the permission cases open
the store in a fresh interpreter that cannot (the capabilities that bypass them dropped from
its bounding set, as ``tests/storage/unprivileged.py`` does)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from asyncify_kit.storage import NotFound, PermissionDenied, Storage, StorageError
from tests.storage.rss_probe import run_json

LOCAL = [("file", "asyncio"), ("file", "trio"), ("file+aiofiles", "asyncio")]
local_cases = pytest.mark.parametrize(
    ("scheme", "anyio_backend"), LOCAL, ids=[f"{s}-{b}" for s, b in LOCAL]
)


async def open_error(url: str) -> StorageError:
    with pytest.raises(StorageError) as caught:
        async with Storage(url):
            pass
    assert "'.'" not in str(caught.value), caught.value
    return caught.value


@pytest.mark.anyio
@local_cases
async def test_a_missing_root_with_create_false_is_not_found(scheme: str, tmp_path: Path) -> None:
    url = f"{scheme}://{tmp_path / 'absent'}?create=false"
    exc = await open_error(url)
    assert type(exc) is NotFound and isinstance(exc, FileNotFoundError)
    assert str(exc) == (
        f"the root directory of {url} does not exist (create=false: it is not created)"
    )
    assert isinstance(exc.__cause__, FileNotFoundError)
    assert not await anyio.Path(tmp_path / "absent").exists()


@pytest.mark.anyio
@local_cases
@pytest.mark.parametrize("create", ["", "?create=false"])
@pytest.mark.parametrize(
    ("below", "message"),
    [
        # a plain StorageError: not AlreadyExists (a FileExistsError), which it was
        ("", "is not a directory"),
        # not NotFound, which it was
        ("root", "cannot be a directory: an entry on its path is not one"),
    ],
)
async def test_a_root_that_is_or_is_below_a_file_is_not_a_directory(
    scheme: str, create: str, below: str, message: str, tmp_path: Path
) -> None:
    await anyio.Path(tmp_path / "file").write_bytes(b"not a directory")
    url = f"{scheme}://{tmp_path / 'file' / below if below else tmp_path / 'file'}{create}"
    exc = await open_error(url)
    assert type(exc) is StorageError, repr(exc)
    assert str(exc) == f"the root of {url} {message}"
    assert await anyio.Path(tmp_path / "file").read_bytes() == b"not a directory"


@pytest.mark.anyio
@local_cases
async def test_a_root_that_is_a_link_to_a_file_is_not_a_directory(
    scheme: str, tmp_path: Path
) -> None:
    await anyio.Path(tmp_path / "file").write_bytes(b"")
    await anyio.Path(tmp_path / "link").symlink_to(tmp_path / "file")
    exc = await open_error(f"{scheme}://{tmp_path / 'link'}")
    assert type(exc) is StorageError and "is not a directory" in str(exc), repr(exc)


# -- permissions, in an interpreter they apply to ------------------------------------------

_OPEN = """
import asyncio, ctypes, json, os, sys

if os.geteuid() == 0 and not os.environ.get("DAC_DROPPED"):
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            sys.exit(f"cannot drop capability {cap}: {os.strerror(ctypes.get_errno())}")
    os.environ["DAC_DROPPED"] = "1"
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])

with open("/proc/self/status") as status:
    caps = next(int(line.split()[1], 16) for line in status if line.startswith("CapEff:"))
if caps & 0b110:
    sys.exit("still able to bypass file permissions: nothing would be tested")

from asyncify_kit.storage import Storage, StorageError

async def main():
    try:
        async with Storage(sys.argv[1]):
            return {"opened": True}
    except StorageError as exc:
        return {"error": type(exc).__name__, "message": str(exc),
                "permission_error": isinstance(exc, PermissionError)}

print(json.dumps(asyncio.run(main())))
"""


def open_unprivileged(url: str) -> dict[str, object]:
    """What opening ``Storage(url)`` gives in a process that file permissions apply to (as
    root, the script drops the capabilities that bypass them from its bounding set, then
    executes itself again: the new image has none of them)."""
    result: dict[str, object] = run_json(["-c", _OPEN, url])
    return result


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[Path]:
    """A directory holding ``inside/``, that can be neither searched nor written (mode 0);
    its mode is given back at the end, so that pytest can remove it."""
    path = tmp_path / "locked"
    (path / "inside").mkdir(parents=True)
    path.chmod(0)
    yield path
    path.chmod(0o755)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="drops Linux capabilities")
@pytest.mark.parametrize("scheme", ["file", "file+aiofiles"])
@pytest.mark.parametrize(("below", "create"), [("inside", "?create=false"), ("new", "")])
def test_a_root_refused_by_permissions_is_permission_denied(
    scheme: str, below: str, create: str, locked: Path
) -> None:
    """``inside`` exists but cannot be reached (opening it is refused); ``new`` cannot be
    created (making it is refused)."""
    url = f"{scheme}://{locked / below}{create}"
    doing = "open" if create else "open or create"
    assert open_unprivileged(url) == {
        "error": PermissionDenied.__name__,
        "message": f"permission denied for the root directory of {url}: "
        f"cannot {doing} {str(locked / below)!r}",
        "permission_error": True,
    }
