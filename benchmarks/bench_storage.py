"""Storage: small local files through ``file://`` (S3 is in ``bench_storage_s3.py``).

Files: read and write 1,000 files of 4 KiB, one at a time and 100 in flight, through
asyncify-kit's ``file://`` (one thread hop per operation; writes atomic by default, and also
measured with ``atomic=false``: in place, overwritten then cut to the new length), aiofiles
(the baseline: a hop for open, one per read/write, one for close),
``anyio.Path.read_bytes``/``write_bytes`` and ``asyncio.to_thread`` around
``open().read()``/``write()``. Two reference rows write one file at a time in the event loop's
own thread, with no hop: file://'s atomic write code and the peers' open/write/close, the file
system's cost of that work done at once (a floor for a thread pool doing the same work; file://
itself leaves part of an atomic write's work to after the reply, so it can go below its row).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from benchmarks._harness import Case, Runner, Scenario, Section, Target

FILES = 1_000
SIZE = 4 * 1024
IN_FLIGHT = 100

AIOFILES = "aiofiles"
ANYIO_PATH = "anyio.Path"
TO_THREAD = "asyncio.to_thread(open)"
KIT_FILE = "asyncify-kit file://"
KIT_FILE_FSYNC = "asyncify-kit file:// (fsync)"
KIT_FILE_IN_PLACE = "asyncify-kit file:// (atomic=false)"
# The file system's cost alone: the same writes in the event loop's thread, no hop (floors)
KIT_FILE_NO_HOP = "file:// atomic write, no hop (floor)"
REWRITE_NO_HOP = "open/write/close, no hop (floor)"
KIT_URL_QUERY = {
    KIT_FILE: "fsync=false",
    KIT_FILE_FSYNC: "fsync=true",
    KIT_FILE_IN_PLACE: "fsync=false&atomic=false",
}

PAYLOAD = os.urandom(SIZE)
NAMES = [f"f{i:04d}" for i in range(FILES)]

Op = Callable[[str], Awaitable[object]]


async def _spread(ops: int, op: Op, concurrency: int) -> float:
    """Run ``op`` over ``ops`` file names, *concurrency* at a time; the elapsed seconds."""
    loop = asyncio.get_running_loop()
    names = [NAMES[i % FILES] for i in range(ops)]
    if concurrency == 1:
        start = loop.time()
        for name in names:
            await op(name)
        return loop.time() - start

    async def worker(share: list[str]) -> None:
        for name in share:
            await op(name)

    shares = [names[i::concurrency] for i in range(concurrency)]
    start = loop.time()
    await asyncio.gather(*(worker(share) for share in shares))
    return loop.time() - start


@asynccontextmanager
async def _directory() -> AsyncIterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="asyncify-bench-storage-"))
    try:
        for name in NAMES:
            (root / name).write_bytes(PAYLOAD)
        yield root
    finally:
        await asyncio.to_thread(shutil.rmtree, root, True)


def _file_setup(kind: str, write: bool, concurrency: int) -> Callable[[], Any]:
    @asynccontextmanager
    async def setup() -> AsyncIterator[Runner]:
        async with _directory() as root:
            op: Op
            if kind in KIT_URL_QUERY:
                from asyncify_kit.storage import Storage

                async with Storage(f"file://{root}?{KIT_URL_QUERY[kind]}") as st:
                    if write:

                        async def op(name: str) -> object:
                            await st.write(name, PAYLOAD)
                            return None
                    else:
                        op = st.read

                    async def run(ops: int) -> float:
                        return await _spread(ops, op, concurrency)

                    yield run
                return
            if kind == KIT_FILE_NO_HOP:
                from asyncify_kit.storage._backends._file import _write_file

                root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
                try:

                    async def op(name: str) -> object:
                        _write_file(root_fd, [name], PAYLOAD, False, False, True)
                        return None

                    async def run(ops: int) -> float:
                        return await _spread(ops, op, concurrency)

                    yield run
                finally:
                    os.close(root_fd)
                return
            if kind == AIOFILES:
                import aiofiles

                if write:

                    async def op(name: str) -> object:
                        async with aiofiles.open(root / name, "wb") as f:
                            return await f.write(PAYLOAD)
                else:

                    async def op(name: str) -> object:
                        async with aiofiles.open(root / name, "rb") as f:
                            return await f.read()
            elif kind == ANYIO_PATH:
                import anyio

                paths = {name: anyio.Path(root / name) for name in NAMES}
                if write:

                    async def op(name: str) -> object:
                        return await paths[name].write_bytes(PAYLOAD)
                else:

                    async def op(name: str) -> object:
                        return await paths[name].read_bytes()
            else:

                def read(path: Path) -> bytes:
                    with open(path, "rb") as f:
                        return f.read()

                def write_(path: Path) -> int:
                    with open(path, "wb") as f:
                        return f.write(PAYLOAD)

                if kind == REWRITE_NO_HOP:

                    async def op(name: str) -> object:
                        return write_(root / name)
                elif write:

                    async def op(name: str) -> object:
                        return await asyncio.to_thread(write_, root / name)
                else:

                    async def op(name: str) -> object:
                        return await asyncio.to_thread(read, root / name)

            async def run(ops: int) -> float:
                return await _spread(ops, op, concurrency)

            yield run

    return setup


FILE_SCENARIOS = [
    ("read-1", "read 4 KiB files, one at a time", False, 1),
    ("read-100", "read 4 KiB files, 100 in flight", False, IN_FLIGHT),
    ("write-1", "write 4 KiB files, one at a time", True, 1),
    ("write-100", "write 4 KiB files, 100 in flight", True, IN_FLIGHT),
]


def _cases() -> list[Case]:
    cases: list[Case] = []
    for scenario, _, write, concurrency in FILE_SCENARIOS:
        for kind in (AIOFILES, ANYIO_PATH, TO_THREAD):
            cases.append(Case(scenario, kind, setup=_file_setup(kind, write, concurrency)))
        cases.append(
            Case(scenario, KIT_FILE, setup=_file_setup(KIT_FILE, write, concurrency), peer=False)
        )
        if write:
            cases.append(
                Case(
                    scenario,
                    KIT_FILE_IN_PLACE,
                    setup=_file_setup(KIT_FILE_IN_PLACE, write, concurrency),
                    peer=False,
                )
            )
            cases.append(
                Case(
                    scenario,
                    KIT_FILE_FSYNC,
                    peer=False,
                    reference=True,
                    setup=_file_setup(KIT_FILE_FSYNC, write, concurrency),
                )
            )
        if write and concurrency == 1:
            cases.extend(
                Case(scenario, kind, reference=True, setup=_file_setup(kind, write, concurrency))
                for kind in (KIT_FILE_NO_HOP, REWRITE_NO_HOP)
            )
    return cases


def describe_file_system(path: str) -> str:
    """The file system holding *path*, from /proc/self/mountinfo (Linux), e.g. "ext4 (no
    journal) on /dev/vda"; ext4's journal matters here (see the notes)."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return "unknown (no /proc/self/mountinfo)"
    real = os.path.realpath(path)
    best: list[str] = []
    for fields in mounts:
        point = fields[4].encode().decode("unicode_escape")  # mountinfo escapes spaces as \040
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[4] if best else ""):
            best = fields
    if not best:
        return "unknown"
    tail = best[best.index("-") + 1 :]
    fstype, source = tail[0], tail[1]
    if fstype == "ext4":
        journal = Path("/sys/fs/ext4", os.path.basename(source), "journal_task")
        with contextlib.suppress(OSError):
            has = journal.read_text().strip() != "<none>"
            fstype = "ext4 (journal)" if has else "ext4 (no journal)"
    return f"{fstype} on {source}"


_NO_JOURNAL = (
    "Without a journal, ext4 does not reuse an inode freed in the last seconds (minutes while "
    "its inode table block is dirty) and scans the group's inode bitmap past every such inode "
    "on each file creation (find_inode_bit/recently_deleted in fs/ext4/ialloc.c): each atomic "
    "write frees one inode and creates one, so its cost grows with the churn of the last "
    "minutes. "
)


def file_system_note(path: str) -> str:
    """The note naming the file system the files are on, and what it does to atomic writes."""
    described = describe_file_system(path)
    why = _NO_JOURNAL if described.startswith("ext4 (no journal)") else ""
    return (
        f"Files in {path} (set TMPDIR to measure elsewhere): {described}. {why}"
        "docs/storage.md has figures on a journaled ext4 and on tmpfs."
    )


def _file_targets(write: bool) -> tuple[Target, ...]:
    targets = [Target(KIT_FILE, max_ratio=0.35, faster_than_peers=True)]
    if write:  # in place like the peers (overwrite + cut, not truncate + rewrite)
        targets.append(Target(KIT_FILE_IN_PLACE, max_ratio=0.35, faster_than_peers=True))
    return tuple(targets)


SECTION = Section(
    name="storage",
    title="Storage: 1,000 files of 4 KiB via file://",
    baseline=AIOFILES,
    scenarios=(
        *(
            Scenario(name, title, ops=FILES, quick_ops=FILES // 10, targets=_file_targets(write))
            for name, title, write, _ in FILE_SCENARIOS
        ),
    ),
    cases=_cases,
    packages=("aiofiles", "anyio"),
    notes=(
        "file:// writes run with ?fsync=false, like the peers (none of which fsyncs); they "
        "still write a temp file and rename it over the key (atomic). '(fsync)' is the "
        "default setting.",
        "The peers rewrite in place (open with O_TRUNC, write, close): not atomic, a reader "
        "or a crash can see an empty or partial file. An atomic write creates a new file "
        "(a new inode, its blocks written back as ext4 does for a rename over a file) and "
        "frees the replaced one, its directory updates serialized by the directory's lock "
        "(file:// runs them in turn on one worker per directory, and on Linux makes the "
        "next file and frees the replaced one after the reply: docs/storage.md, Spare "
        "files): hence the default row's ratios, set by the file system more than by the "
        "thread hop.",
        "'(atomic=false)' is file:// doing the peers' job without their truncation "
        "(?atomic=false&fsync=false): it overwrites the existing bytes, then cuts the file to "
        "the new length, so the file's blocks are reused (no freeing, no write-back forced "
        "at close); a reader may see a mix of old and new bytes. Still one hop, no symlink "
        "followed, hard-linked files refused.",
        "The '(floor)' rows do a write one at a time in the event loop's own thread, with no "
        "hop: the file system's cost of that work done at once, which a thread pool doing the "
        "same work cannot go below (and a way to block the loop, not to use the library). "
        "'file:// atomic write' is file://'s temp "
        "file + rename with all of its work in the write (file:// itself leaves part of it "
        "to after the reply, so it can go below this row); 'open/write/close' is the peers' "
        "rewrite.",
        "Default thread pools everywhere: asyncio's executor (aiofiles, to_thread), anyio's "
        "limiter of 40, asyncify-kit's default pool of 40.",
        file_system_note(tempfile.gettempdir()),
    ),
)
