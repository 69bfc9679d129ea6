"""What an atomic file replace costs the file system, without any thread hop.

    python -m benchmarks.atomic_write_churn [--dir DIR] [--files 1000] [--rounds 10]

Round after round, it rewrites the same files synchronously, three ways (the first also on 40
threads), and prints the microseconds per write of each:

* ``atomic``: create a temp file, write, close, rename it over the file (what ``file://``
  does without fsync): a new inode per write, and the replaced one freed;
* ``in place``: open, overwrite, cut to the new length, close (``file://?atomic=false``);
* ``truncate``: open with ``O_TRUNC``, write, close (what aiofiles, ``anyio.Path`` and
  ``open(path, "wb")`` do);
* ``atomic x40``: the atomic writes again, spread over 40 threads (a pool's default size),
  for the time per write when they contend for the directory and the GIL.

On ext4 without a journal the ``atomic`` column grows from round to round: the inode
allocator skips inodes freed in the last seconds to minutes by scanning past each of them on
every create (``recently_deleted`` in ``fs/ext4/ialloc.c``). ``perf record -g`` on this
script shows it. The first line names the file system (``--dir``, default ``TMPDIR``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import repeat

from benchmarks.bench_storage import describe_file_system

SIZE = 4 * 1024


def _atomic(dfd: int, name: str, data: bytes) -> None:
    temp = f".{name}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666, dir_fd=dfd)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.rename(temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)


def _in_place(dfd: int, name: str, data: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o666, dir_fd=dfd)
    try:
        os.write(fd, data)
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


def _truncate(dfd: int, name: str, data: bytes) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666, dir_fd=dfd)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


WAYS: dict[str, Callable[[int, str, bytes], None]] = {
    "atomic": _atomic,
    "in place": _in_place,
    "truncate": _truncate,
    "atomic x40": _atomic,
}
THREADS = {"atomic x40": 40}


def run(directory: str, files: int, rounds: int) -> list[dict[str, float]]:
    """Per round, the microseconds per write of each way (also printed)."""
    root = tempfile.mkdtemp(prefix="asyncify-churn-", dir=directory)
    data = os.urandom(SIZE)
    names = [f"f{i:05d}" for i in range(files)]
    dfd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    table: list[dict[str, float]] = []
    try:
        for name in names:
            _truncate(dfd, name, data)
        print(f"{files} files of {SIZE} bytes in {root}: {describe_file_system(root)}")
        print("round  " + "".join(f"{way:>12}" for way in WAYS) + "   (µs per write)")
        for number in range(1, rounds + 1):
            row: dict[str, float] = {}
            for way, write in WAYS.items():
                threads = THREADS.get(way)
                start = time.perf_counter()
                if threads:
                    with ThreadPoolExecutor(threads) as pool:
                        list(pool.map(write, repeat(dfd), names, repeat(data)))
                else:
                    for name in names:
                        write(dfd, name, data)
                row[way] = (time.perf_counter() - start) / files * 1e6
            table.append(row)
            print(f"{number:>5}  " + "".join(f"{row[way]:>12.1f}" for way in WAYS), flush=True)
    finally:
        os.close(dfd)
        shutil.rmtree(root, ignore_errors=True)
    return table


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where (default TMPDIR)")
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args(argv)
    run(args.dir, args.files, args.rounds)


if __name__ == "__main__":
    main()
