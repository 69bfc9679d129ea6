"""A storm of concurrent operations cancelled at random points, on every storage backend.

A busy server runs many operations at once and some are cancelled anywhere: a client
disconnects (its task group is cancelled), ``anyio.fail_after`` bounds one call, a sibling
task fails, ``asyncio.wait_for`` cancels natively. Afterwards the `Storage` must still work
and its data be consistent: every key holds exactly one complete version that some write
wrote (never a mix, never truncated), no temp file or unfinished multipart upload is left,
no source generator is left suspended, the library's pools are idle, and no descriptor
outlives the closed `Storage`. The plan (operations, keys, sizes, deadlines) is seeded;
where a deadline falls still varies from run to run, so each run cancels at other points.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest

import asyncify_kit
from asyncify_kit.storage import AlreadyExists, NotFound, Storage, StorageError
from asyncify_kit.storage._backends import _s3
from asyncify_kit.storage._keys import TEMP_PREFIX

from .conftest import s3_client, storage_url

pytestmark = pytest.mark.anyio

FD_DIR = Path("/proc/self/fd")
MiB = 1024 * 1024
SEED = 20261130
OPERATIONS = 200
IN_FLIGHT = 50
MAX_DELAY = 0.015  # the longest random deadline, in seconds: most calls are cut short

# (scheme, query added to the URL, event loop); file:// both with fsync (writes in parallel)
# and without (small writes take turns on a directory's queue, into spare files)
CASES = [
    ("file", "", "asyncio"),
    ("file", "?fsync=false", "asyncio"),
    ("file", "?fsync=false", "trio"),
    ("file+aiofiles", "", "asyncio"),
    ("s3", "", "asyncio"),
    ("s3+boto3", "", "asyncio"),
    ("s3+boto3", "", "trio"),
    ("memory", "", "asyncio"),
    ("memory", "", "trio"),
]

# 20 keys: some share a directory, some have two of their own (a delete prunes them while
# writes make them again), some lie at the top
KEYS = (
    [f"shared/k{i:02d}.txt" for i in range(8)]
    + [f"own{i:02d}/sub/k.txt" for i in range(8)]
    + [f"top{i:02d}" for i in range(4)]
)
PREFIXES = ["", "shared/", "own0", "own03/", "top", "nothing/"]


@pytest.fixture(params=CASES, ids=[f"{s}{q and '-nofsync'}-{loop}" for s, q, loop in CASES])
def case(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def anyio_backend(case: tuple[str, str, str]) -> str:
    return case[2]


@pytest.fixture
def url(case: tuple[str, str, str], request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The store of *case*; on S3 with 5 MiB parts, so that the largest writes are multipart
    uploads (made here, not in the async test: the S3 bucket's fixture blocks)."""
    scheme, query, _ = case
    url = storage_url(scheme, request, tmp_path)
    if scheme.startswith("s3"):
        return f"{url}&multipart_threshold={5 * MiB}&multipart_chunksize={5 * MiB}"
    return url + query


# -- payloads: each names its version and size, so a mix or a cut is seen ------------------

_HEAD = re.compile(rb"v(\d{6}) (\d{9})\n")
HEAD_SIZE = len(b"v000000 000000000\n")


def payload(version: int, size: int) -> bytes:
    """*size* bytes of lines that all carry *version*, after a header naming both."""
    head = b"v%06d %09d\n" % (version, size)
    line = b"v%06d-%s\n" % (version, b"x" * (version % 23))
    return head + (line * ((size - len(head)) // len(line) + 1))[: size - len(head)]


def problem_in(data: bytes, versions: set[int]) -> str | None:
    """Why *data* is not one complete version of those written, if it is not."""
    head = _HEAD.match(data)
    if head is None:
        return f"no payload header: {data[:40]!r}"
    version, size = int(head[1]), int(head[2])
    if version not in versions:
        return f"version {version} was never written"
    if len(data) != size:
        return f"version {version} has {len(data)} bytes of {size}"
    if data != payload(version, size):
        return f"version {version} holds bytes of another version"
    return None


class Source:
    """The chunks of a streamed write, and whether the generator was left suspended."""

    def __init__(self, data: bytes, rng: random.Random) -> None:
        self.data = data
        self.rng = rng
        self.started = False
        self.finished = False

    async def chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        try:
            pos = 0
            while pos < len(self.data):
                size = self.rng.randint(1, max(1, len(self.data) // 3))
                yield self.data[pos : pos + size]
                pos += size
                await anyio.sleep(0 if self.rng.random() < 0.7 else 0.001)
        finally:
            self.finished = True


def leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions in *exc*, an exception group or not."""
    inner = getattr(exc, "exceptions", None)
    if inner is None:
        yield exc
        return
    for sub in inner:
        yield from leaves(sub)


class _Disconnect(Exception):
    """A sibling task fails (a client went away): the task group cancels the operation."""


# -- the storm ----------------------------------------------------------------------------


class Storm:
    """The operations of one storm on one `Storage`, and what they found wrong."""

    def __init__(self, st: Storage, loop: str, large: int) -> None:
        self.st = st
        self.loop = loop
        self.large = large  # the size of the largest writes (S3: a multipart upload)
        self.versions: set[int] = set()
        self.next_version = 1
        self.problems: list[str] = []
        self.outcomes: Counter[str] = Counter()
        self.sources: list[Source] = []

    def new_payload(self, rng: random.Random) -> bytes:
        version = self.next_version
        self.next_version += 1
        self.versions.add(version)
        draw = rng.random()
        if draw < 0.05:
            size = self.large
        elif draw < 0.15:
            size = rng.randint(64 * 1024, 300 * 1024)
        else:
            size = rng.randint(HEAD_SIZE, 4000)
        return payload(version, size)

    def check(self, what: str, key: str, data: bytes) -> None:
        why = problem_in(data, self.versions)
        if why is not None:
            self.problems.append(f"{what} {key!r}: {why}")

    def source(self, data: bytes, rng: random.Random) -> AsyncIterator[bytes]:
        source = Source(data, rng)
        self.sources.append(source)
        return source.chunks()

    async def run(self, index: int, seed: int) -> None:
        """Operation *index*: what it does, on which key, and how it is cancelled, drawn
        from *seed* (the plan); where its deadline falls is up to the run."""
        rng = random.Random(seed)
        name = rng.choices(list(OPS), weights=[weight for weight, _ in OPS.values()])[0]
        mode = rng.choices(list(MODES), weights=list(MODES.values()))[0]
        if mode == "native" and self.loop != "asyncio":
            mode = "scope"
        delay = rng.uniform(0, MAX_DELAY)
        op = OPS[name][1]
        try:
            cut = await self.cancelled_by(mode, delay, lambda: op(self, rng))
        except Exception as exc:  # what no operation may raise, cancelled or not
            self.problems.append(f"operation {index} {name} ({mode}): {exc!r}")
            return
        self.outcomes["cut short" if cut else "completed"] += 1

    async def cancelled_by(
        self, mode: str, delay: float, op: Callable[[], Awaitable[None]]
    ) -> bool:
        """Run *op*, cancelled after *delay* as *mode* says; whether it was cut short."""
        if mode == "none":
            await op()
            return False
        if mode == "scope":  # anyio.move_on_after, as a server's timeout
            with anyio.move_on_after(delay) as scope:
                await op()
            return scope.cancelled_caught
        if mode == "fail_after":
            try:
                with anyio.fail_after(delay):
                    await op()
            except TimeoutError:
                return True
            return False
        if mode == "native":  # asyncio's own cancellation, past anyio's shields
            try:
                await asyncio.wait_for(op(), delay)
            except asyncio.TimeoutError:
                return True
            return False
        return await self.in_failing_group(delay, op)

    @staticmethod
    async def in_failing_group(delay: float, op: Callable[[], Awaitable[None]]) -> bool:
        """Run *op* in a task group where a sibling fails after *delay*."""

        async def op_then_stop() -> None:
            await op()
            tg.cancel_scope.cancel()

        async def disconnect() -> None:
            await anyio.sleep(delay)
            raise _Disconnect

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(op_then_stop)
                tg.start_soon(disconnect)
        except BaseException as exc:
            others = [e for e in leaves(exc) if not isinstance(e, _Disconnect)]
            if others:
                raise others[0] from exc
            return True
        return False


def _key(rng: random.Random) -> str:
    return rng.choice(KEYS)


async def op_write(storm: Storm, rng: random.Random) -> None:
    await storm.st.write(_key(rng), storm.new_payload(rng))


async def op_write_stream(storm: Storm, rng: random.Random) -> None:
    await storm.st.write(_key(rng), storm.source(storm.new_payload(rng), rng))


async def op_write_new(storm: Storm, rng: random.Random) -> None:
    data = storm.new_payload(rng)
    source = storm.source(data, rng) if rng.random() < 0.5 else data
    try:
        await storm.st.write(_key(rng), source, if_not_exists=True)
    except AlreadyExists:
        storm.outcomes["already exists"] += 1


def pieces(data: bytes, rng: random.Random) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(rng.randint(1, 6), len(data) - 1)))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


async def op_open_write(storm: Storm, rng: random.Random) -> None:
    key, data = _key(rng), storm.new_payload(rng)
    chunk_size = rng.choice([512, 64 * 1024, 256 * 1024])
    new = rng.random() < 0.1
    try:
        async with storm.st.open(key, "wb", if_not_exists=new, chunk_size=chunk_size) as f:
            for piece in pieces(data, rng):
                await f.write(piece)
                if rng.random() < 0.2:
                    await f.flush()
                await anyio.sleep(0)
    except AlreadyExists:
        storm.outcomes["already exists"] += 1


async def op_open_write_per_call_timeouts(storm: Storm, rng: random.Random) -> None:
    """A timeout around each ``write`` call, caught, and the code goes on (documented: a
    file whose write was interrupted refuses the rest and publishes nothing)."""
    key, data = _key(rng), storm.new_payload(rng)
    interrupted = False
    try:
        async with storm.st.open(key, "wb", chunk_size=rng.choice([512, 64 * 1024])) as f:
            for piece in pieces(data, rng):
                with anyio.move_on_after(rng.uniform(0, 0.003)) as scope:
                    await f.write(piece)
                interrupted = interrupted or scope.cancelled_caught
    except StorageError as exc:
        if not interrupted or "failed or was interrupted" not in str(exc):
            raise
        storm.outcomes["write refused after an interruption"] += 1


async def op_read(storm: Storm, rng: random.Random) -> None:
    key = _key(rng)
    try:
        if rng.random() < 0.3:
            head = await storm.st.read(key, length=HEAD_SIZE)
            if len(head) == HEAD_SIZE and not _HEAD.match(head):
                storm.problems.append(f"read of {key!r}'s first bytes: {head!r}")
            return
        storm.check("read", key, await storm.st.read(key))
    except NotFound:
        storm.outcomes["not found"] += 1


async def op_open_read(storm: Storm, rng: random.Random) -> None:
    key = _key(rng)
    try:
        async with storm.st.open(key, "rb", chunk_size=rng.choice([7, 1024, 256 * 1024])) as f:
            parts = [await f.readline()]
            head = _HEAD.fullmatch(parts[0])
            if head is not None and int(head[2]) > 64 * 1024:
                while chunk := await f.read(rng.choice([1000, 64 * 1024])):
                    parts.append(chunk)
            else:
                async for line in f:
                    parts.append(line)
    except NotFound:
        storm.outcomes["not found"] += 1
        return
    storm.check("open(rb)", key, b"".join(parts))


async def op_open_read_per_call_timeouts(storm: Storm, rng: random.Random) -> None:
    """A timeout around each ``read`` call, caught, and the code goes on (documented: every
    read after an interrupted one raises)."""
    key = _key(rng)
    try:
        f = await storm.st.open(key, "rb", chunk_size=rng.choice([7, 1024]))
    except NotFound:
        return
    async with f:
        parts: list[bytes] = []
        while True:
            with anyio.move_on_after(rng.uniform(0, 0.003)) as scope:
                chunk = await f.read(rng.choice([10, 1000, 100_000]))
            if scope.cancelled_caught:
                try:
                    await f.read(10)
                except StorageError as exc:
                    if "earlier read failed or was interrupted" not in str(exc):
                        raise
                    storm.outcomes["read refused after an interruption"] += 1
                    return
                storm.problems.append(f"a read of {key!r} went on after an interrupted one")
                return
            if not chunk:
                break
            parts.append(chunk)
    storm.check("open(rb) with timeouts", key, b"".join(parts))


async def op_stream(storm: Storm, rng: random.Random) -> None:
    key = _key(rng)
    try:
        async with storm.st.stream(key, chunk_size=rng.choice([100, 4096, 1 << 20])) as chunks:
            data = b"".join([chunk async for chunk in chunks])
    except NotFound:
        storm.outcomes["not found"] += 1
        return
    storm.check("stream", key, data)


async def op_copy(storm: Storm, rng: random.Random) -> None:
    src, dst = rng.sample(KEYS, 2)
    try:
        await (storm.st.copy if rng.random() < 0.5 else storm.st.move)(src, dst)
    except NotFound:
        storm.outcomes["not found"] += 1


async def op_delete(storm: Storm, rng: random.Random) -> None:
    try:
        await storm.st.delete(_key(rng), missing_ok=rng.random() < 0.5)
    except NotFound:
        storm.outcomes["not found"] += 1


async def op_list(storm: Storm, rng: random.Random) -> None:
    prefix = rng.choice(PREFIXES)
    async for info in storm.st.list(prefix, recursive=rng.random() < 0.6):
        if not info.key.startswith(prefix) or not (
            info.key in KEYS or (info.is_dir and any(k.startswith(info.key) for k in KEYS))
        ):
            storm.problems.append(f"list({prefix!r}) gave {info.key!r}")


async def op_stat(storm: Storm, rng: random.Random) -> None:
    key = _key(rng)
    try:
        info = await storm.st.stat(key)
    except NotFound:
        await storm.st.exists(key)
        return
    if info.size < HEAD_SIZE:
        storm.problems.append(f"stat of {key!r}: {info.size} bytes")


OPS: dict[str, tuple[int, Callable[[Storm, random.Random], Awaitable[None]]]] = {
    "write": (14, op_write),
    "write stream": (10, op_write_stream),
    "write if_not_exists": (6, op_write_new),
    "open wb": (10, op_open_write),
    "open wb, a timeout per call": (4, op_open_write_per_call_timeouts),
    "read": (8, op_read),
    "open rb": (8, op_open_read),
    "open rb, a timeout per call": (4, op_open_read_per_call_timeouts),
    "stream": (8, op_stream),
    "copy or move": (10, op_copy),
    "delete": (7, op_delete),
    "list": (5, op_list),
    "stat": (3, op_stat),
}
# how an operation is cancelled: not at all, by a deadline (anyio scope, fail_after, asyncio's
# native wait_for), or by a sibling task failing in its task group
MODES = {"none": 30, "scope": 30, "fail_after": 10, "native": 10, "group": 20}


# -- what must hold afterwards ------------------------------------------------------------


def open_fds() -> dict[int, str]:
    """This process's descriptors and what they point at (blocking: off the loop)."""
    fds = {}
    for name in FD_DIR.iterdir():
        try:
            fds[int(name.name)] = str(name.readlink())
        except FileNotFoundError:  # the directory listing's own descriptor
            continue
    return fds


def file_leftovers(root: Path) -> list[str]:
    """Temp files under ROOT, and directories that hold no object (blocking)."""
    found = [str(p.relative_to(root)) for p in root.rglob(f"{TEMP_PREFIX}*")]
    for path in root.rglob("*"):
        if path.is_dir() and not any(p.is_file() for p in path.rglob("*")):
            found.append(f"{path.relative_to(root)}/ (empty)")
    return found


def unfinished_uploads(st: Storage) -> list[str]:
    """The multipart uploads left under the store's prefix (blocking)."""
    backend = st.backend
    assert isinstance(backend, _s3.S3Backend)
    client = s3_client(st.url.options["endpoint_url"])
    try:
        uploads = client.list_multipart_uploads(Bucket=backend.bucket, Prefix=backend.prefix)
    finally:
        client.close()
    return [u["Key"] for u in uploads.get("Uploads", [])]


async def leftovers(st: Storage, root: Path) -> list[str]:
    if st.url.dialect == "file":
        return await anyio.to_thread.run_sync(file_leftovers, root)
    if st.url.dialect == "s3":
        return await anyio.to_thread.run_sync(unfinished_uploads, st)
    return []


async def contents(st: Storage) -> dict[str, bytes]:
    found = {}
    for key in KEYS:
        try:
            found[key] = await st.read(key)
        except NotFound:
            continue
    return found


async def use_every_way(st: Storage, versions: set[int], version: int) -> None:
    """Every operation works after the storm, on every key."""
    for i, key in enumerate(KEYS):
        data = payload(version + i, 3000 + i)
        versions.add(version + i)
        if i % 3 == 0:
            await st.write(key, data)
        elif i % 3 == 1:
            await st.write(key, Source(data, random.Random(i)).chunks())
        else:
            async with st.open(key, "wb") as f:
                await f.write(data[:100])
                await f.write(data[100:])
        assert await st.read(key) == data
        async with st.stream(key, chunk_size=1000) as chunks:
            assert b"".join([chunk async for chunk in chunks]) == data
        async with st.open(key, "rb") as rb:
            assert b"".join([line async for line in rb]) == data
    assert [info.key async for info in st.list()] == sorted(KEYS)
    await st.copy(KEYS[0], "copied/k")
    await st.move("copied/k", "moved/k")
    assert await st.read("moved/k") == await st.read(KEYS[0])
    for key in [*KEYS, "moved/k"]:
        await st.delete(key)
    assert [info.key async for info in st.list()] == []


async def test_cancellation_storm(case: tuple[str, str, str], url: str, tmp_path: Path) -> None:
    """200 operations on 20 keys, 50 at a time, most cut short at a random point; then every
    key holds one whole version, nothing is left behind, and every operation works."""
    scheme, query, loop = case
    # the largest writes: on S3 a multipart upload of two parts, on file:// a parallel write
    large = 5 * MiB + 1000 if scheme.startswith("s3") else 300 * 1024
    root = tmp_path / "root"
    rng = random.Random(f"{SEED}-{scheme}{query}-{loop}")

    async with Storage(url) as st:  # warm up: lazy imports, the loop's wake-up, clients
        await st.write("warm/up", b"x")
        await st.read("warm/up")
        await st.delete("warm/up")
    fds_before = await anyio.to_thread.run_sync(open_fds)

    started = time.monotonic()
    async with Storage(url) as st:
        storm = Storm(st, loop, large)
        for key in KEYS:
            await st.write(key, storm.new_payload(rng))
        limiter = anyio.CapacityLimiter(IN_FLIGHT)

        async def one(index: int, seed: int) -> None:
            async with limiter:
                await storm.run(index, seed)

        async with anyio.create_task_group() as tg:
            for index in range(OPERATIONS):
                tg.start_soon(one, index, rng.getrandbits(64))

        assert storm.problems == []
        assert storm.outcomes["cut short"] >= OPERATIONS // 20, storm.outcomes
        suspended = [s for s in storm.sources if s.started and not s.finished]
        assert suspended == [], f"{len(suspended)} source generators left suspended"

        for key, data in (await contents(st)).items():
            storm.check("after the storm, read", key, data)
        assert storm.problems == []
        listed = sorted([info.key async for info in st.list()])
        assert listed == sorted(await contents(st))
        assert await leftovers(st, root) == []
        await use_every_way(st, storm.versions, storm.next_version)
        assert await leftovers(st, root) == []

    # closed: the pool runs nothing of the storm's any more (a directory's turn counts itself
    # out of the pool just after handing the close its outcome)
    with anyio.move_on_after(5):
        while (stats := asyncify_kit.stats()).running or stats.waiting:
            await anyio.sleep(0.001)
    assert (stats.running, stats.waiting) == (0, 0), stats.running_calls
    fds_after = await anyio.to_thread.run_sync(open_fds)
    leaked = {fd: t for fd, t in fds_after.items() if fds_before.get(fd) != t}
    assert leaked == {}
    if st.url.dialect == "file":
        assert await anyio.to_thread.run_sync(file_leftovers, root) == []
    assert time.monotonic() - started < 20
