"""``file://ROOT``: local files, one thread hop per operation, atomic writes.

Every operation is one sync function run through the core thread engine (`run_sync`): the whole
open + read + close of `read` is a single hop, where aiofiles pays three. Small atomic writes
without fsync into one directory take turns on one worker (a `SerialQueue` per directory): their
creates and renames are serialized by the directory's lock in the kernel anyway, and one worker
doing them in turn beats 40 workers queued on that lock and on the GIL. Paths are opened
component by component relative to a directory descriptor of ROOT with ``O_NOFOLLOW``, so a
symbolic link, wherever it points, is never followed: it is refused with `InvalidPath`. Writes
go to a temporary file in the target directory, are fsynced (option ``fsync``, on by default),
then renamed over the key: readers see the old or the new content, never a mix, and an exception
or a cancellation leaves the old content, no temp file and no directory made for the key. As on
S3, where a prefix exists only while an object has it, a delete removes the directories it
empties, a write racing such a delete makes them again, a listing shows no directory that
holds no object, and a write to a key where an empty directory sits removes it (`_free_dir`,
only once the rename has failed on it). A listing that meets a directory it cannot read or
enter raises `PermissionDenied` naming it, rather than hide what it holds. On Linux, a small
write without fsync goes into a file prepared ahead for its directory (``O_TMPFILE``, see
`SpareFile`), and the file it replaces is freed after the caller has its answer. With
``atomic=false`` a write overwrites the file in place and cuts it to the new length instead
(cheaper, but a reader may see a mix of old and new bytes, and an interrupted write leaves
only the bytes written so far); symbolic links are refused the same way. A step that opens
something (a descriptor, a temp file) runs through `run_owned`: if its caller is cancelled
meanwhile, what it opened is closed (and removed) for it.

Needs ``dir_fd`` support in `os` (Linux, macOS, the BSDs).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import inspect
import itertools
import mimetypes
import os
import secrets
import stat as stat_mod
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Generator, Iterator
from datetime import datetime, timezone
from typing import IO, Any, NamedTuple, TypeVar, cast

from ..._config import BackendURL
from ..._executor import (
    DEFAULT_POOL,
    Job,
    SerialQueue,
    check_cancelled,
    get_pool,
    quiet_late_errors,
)
from ..._offload import asyncify, run_owned, run_serial, run_sync
from ...exceptions import (
    AlreadyExists,
    ConfigError,
    InvalidPath,
    NotFound,
    PermissionDenied,
    StorageError,
    Unsupported,
)
from .._keys import (
    MAX_KEY_BYTES,
    TEMP_PREFIX,
    is_key_segment,
    split_key,
    type_from_key,
)
from .base import ByteReader, ByteWriter, ObjectInfo, StorageBackend, broken_write, finish

__all__ = ["FileBackend", "InPlaceFile", "TempFile", "discard_if_dropped", "open_beneath"]

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW | _CLOEXEC
_READ_FLAGS = os.O_RDONLY | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
# in place: O_NONBLOCK so that a FIFO at the key fails (ENXIO) or is refused, never blocks
_IN_PLACE_FLAGS = os.O_WRONLY | os.O_CREAT | _NOFOLLOW | _CLOEXEC | getattr(os, "O_NONBLOCK", 0)
_COPY_CHUNK = 1024 * 1024
_LIST_PAGE = 1000
# Walks that make a write's directories, before a delete pruning them meanwhile wins: each
# lost race means a concurrent delete emptied and removed one of them within microseconds.
_DIR_WALKS = 5
# Atomic writes without fsync up to this size into one directory take turns on one worker (a
# SerialQueue): creating and renaming files there is serialized by the kernel anyway. Larger
# ones run in parallel, their data copy being most of their cost, and so do writes with
# fsync: each waits for the disk, and parallel ones share the journal's commits (queued, the
# benchmark's "(fsync)" row with 100 in flight took 1.66x aiofiles' time, in parallel
# 0.95x-1.06x).
_SERIAL_WRITE_MAX = 256 * 1024
_SERIAL_QUEUES_KEPT = 256  # per backend; idle ones are dropped beyond this
#: how long closing the backend waits for the discards of writers dropped open
_DROPPED_WAIT = 10.0

T = TypeVar("T")
Runner = Callable[..., Coroutine[Any, Any, Any]]


class _SymlinkRefused(OSError):
    """A path component is a symbolic link; translated to `InvalidPath`."""


class _HardLinkRefused(OSError):
    """An in-place write met a file with other hard links; translated to `InvalidPath`."""


class _RootNotADirectory(OSError):
    """ROOT (`itself`), or an entry on the way to it, exists and is not a directory;
    translated by `translate_root`."""

    itself = False


def _lstat_mode(name: str, dir_fd: int) -> int:
    """The ``st_mode`` of *name* in *dir_fd*, not following a link (0 if it cannot be had)."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except OSError:
        return 0


def _is_symlink(name: str, dir_fd: int) -> bool:
    try:
        return stat_mod.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _free_dir(name: str, dir_fd: int) -> bool:
    """Remove *name* of *dir_fd* if it is an empty directory, so that a write can put its file
    there: an empty directory holds no object (on S3 a prefix exists only while an object has
    it; a delete prunes such directories too). Only called once a rename, link or open at the
    key has failed because of a directory there, never on the common path.

    ``rmdir`` is the test: it removes a directory only while it is empty (not even a temp
    file in it), never a file or a symbolic link, and not a mount point. True: the name is
    free now (also when it was removed meanwhile); False: no directory is there (a file or
    a link, so the caller's error stands); a directory that stays raises `IsADirectoryError`.
    """
    try:
        os.rmdir(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return True
    except NotADirectoryError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.EBUSY):
            raise IsADirectoryError(errno.EISDIR, "a directory that is not empty", name) from exc
        raise
    return True


def _empty_dir(name: str, dir_fd: int) -> bool:
    """Whether *name* of *dir_fd* is a directory holding no entry (not following links)."""
    try:
        fd = _open_dir(name, dir_fd)
    except OSError:
        return False
    try:
        with os.scandir(fd) as it:
            return next(it, None) is None
    finally:
        os.close(fd)


def _open_dir(name: str, dir_fd: int) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP) and _is_symlink(name, dir_fd):
            raise _SymlinkRefused(errno.ELOOP, "symbolic link", name) from exc
        raise


def parent_fd(
    root_fd: int, parts: list[str], *, create: bool, made: list[int] | None = None
) -> int:
    """A descriptor of the directory holding ``parts[-1]`` (maybe *root_fd* itself).

    Walks from ROOT without following any symbolic link; with *create*, missing
    directories are made, and the depth (index in *parts*) of each one made is appended to
    *made*. A delete of another key prunes the directories it empties (`_prune`), maybe
    one this walk is in or has just made: the walk then starts over, a few times
    (`_DIR_WALKS`). The caller closes the result unless it is *root_fd*.
    """
    if not create:
        return _walk_parents(root_fd, parts, None)
    for _ in range(_DIR_WALKS - 1):
        try:
            return _walk_parents(root_fd, parts, made if made is not None else [])
        except FileNotFoundError:
            continue  # pruned meanwhile: make it again
    return _walk_parents(root_fd, parts, made if made is not None else [])


def _walk_parents(root_fd: int, parts: list[str], made: list[int] | None) -> int:
    """`parent_fd`, one walk: a missing directory is made when *made* is a list (and its
    depth appended to it), else it is `FileNotFoundError`."""
    dfd = root_fd
    try:
        for depth, name in enumerate(parts[:-1]):
            try:
                nfd = _open_dir(name, dfd)
            except FileNotFoundError:
                if made is None:
                    raise
                try:
                    os.mkdir(name, 0o777, dir_fd=dfd)
                except FileExistsError:
                    pass
                else:
                    made.append(depth)
                nfd = _open_dir(name, dfd)
            if dfd != root_fd:
                os.close(dfd)
            dfd = nfd
    except BaseException:
        if dfd != root_fd:
            os.close(dfd)
        raise
    return dfd


def _close_dir(dfd: int, root_fd: int) -> None:
    if dfd != root_fd:
        os.close(dfd)


def _open_regular(root_fd: int, parts: list[str]) -> tuple[int, int]:
    """``(fd, size)`` of the regular file ``parts`` under ROOT, opened for reading."""
    dfd = parent_fd(root_fd, parts, create=False)
    try:
        try:
            fd = os.open(parts[-1], _READ_FLAGS, dir_fd=dfd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _SymlinkRefused(errno.ELOOP, "symbolic link", parts[-1]) from exc
            raise
    finally:
        _close_dir(dfd, root_fd)
    try:
        st = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat_mod.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileNotFoundError(errno.ENOENT, "not a regular file", parts[-1])
    return fd, st.st_size


def open_beneath(root_fd: int, parts: list[str]) -> int:
    """Open the regular file ``parts`` under ROOT for reading, refusing symlinks.

    A directory (or anything but a regular file) at that path is `FileNotFoundError`.
    """
    return _open_regular(root_fd, parts)[0]


def _read_range(fd: int, size: int, offset: int, length: int | None) -> bytes:
    """At most *length* bytes (all with None) from *offset* of the regular file *fd*.

    Asks for one byte more than the size seen by ``fstat`` (or *length*, if less), so a file
    that did not grow is read in one ``pread``: a short read that reaches that size is the
    end of a regular file (POSIX), a full one means that it grew, and the loop goes on to the
    end. A short read before that size is Linux's cap on one read (2 GiB - 4 KiB): the loop
    goes on too. A *length* far past the end allocates nothing for bytes that are not there,
    and an *offset* past it reads nothing (``pread`` would refuse one near 2**63).
    """
    if offset > size:
        return b""
    want = size - offset + 1
    if length is not None and length < want:
        want = length
    chunks = []
    while want > 0:
        chunk = os.pread(fd, want, offset)
        if not chunk:
            break
        chunks.append(chunk)
        got = len(chunk)
        offset += got
        if got < want and offset >= size:
            break
        if length is not None:
            length -= got
            if length < want:
                want = length
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _read_file(root_fd: int, parts: list[str], offset: int, length: int | None) -> bytes:
    fd, size = _open_regular(root_fd, parts)
    try:
        return _read_range(fd, size, offset, length)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class _TempNames:
    """Unique temp-file names: a random per-process token and a counter (no syscall per name).

    ``O_EXCL`` still guards every create; a name taken by someone else (a leftover, or one
    planted by another user of the directory) makes `TempFile` draw a fully random one.
    """

    def __init__(self) -> None:
        self.reseed()

    def reseed(self) -> None:
        self.token = secrets.token_hex(6)
        self.counter = itertools.count()

    def next(self) -> str:
        return f"{TEMP_PREFIX}{self.token}-{next(self.counter):x}.tmp"


_temp_names = _TempNames()

# Creating a temp file in a directory and renaming it over a key take turns in this process,
# per directory. The kernel serializes them anyway (the directory's lock; ext4 also starts
# writing the file's data back under it when it replaces a file): 40 threads queued there (and
# for the GIL between) make each write 1.3-2.8x slower than one at a time (the 'atomic x40'
# column of python -m benchmarks.atomic_write_churn), while here they sleep until their turn.
# Striped by directory so writes elsewhere do not wait; the data itself is written outside the
# lock. (Small whole writes go further: they take turns on one worker per directory, see
# FileBackend.write; this lock orders them with streamed writes, copies and large writes.)
_DIR_LOCKS = [threading.Lock() for _ in range(64)]


def _dir_lock(root_fd: int, parts: list[str]) -> threading.Lock:
    return _DIR_LOCKS[hash((root_fd, *parts[:-1])) % len(_DIR_LOCKS)]


def _after_fork_in_child() -> None:
    global _fork_generation
    _fork_generation += 1  # the spare files made before belong to the parent
    _temp_names.reseed()
    _DIR_LOCKS[:] = [threading.Lock() for _ in _DIR_LOCKS]  # none held by a lost thread


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _OpenFile:
    """What `TempFile` and `InPlaceFile` share: a file descriptor under an open directory."""

    root_fd: int
    dir_fd: int
    fd: int
    parts: list[str]
    made: list[int]  # depths in parts of the directories this write made (`parent_fd`)
    owns_root = False  # root_fd is a descriptor of ROOT of its own (`begin_stream`)

    def discard(self) -> None:
        raise NotImplementedError

    def write(self, data: bytes | memoryview) -> None:
        try:
            _write_all(self.fd, data)
        except BaseException:
            self.discard()
            raise

    def _release_dir(self) -> None:
        if self.dir_fd != -1:
            dfd, self.dir_fd = self.dir_fd, -1
            _close_dir(dfd, self.root_fd)

    def _unmake(self, *, emptied: bool = False) -> None:
        """Remove the directories this write made while they are empty, deepest first, as
        `_delete_file` prunes: a failed write leaves no directory behind (S3 has none).

        Every directory of the key still empty goes, whoever made it, once this write made
        one or removed a temp file of its own (*emptied*): either may be what kept another
        operation from removing the ones above (a delete of their last object, a failed
        write that made them: its ``rmdir`` found this write's directory or file there). A
        cancellation storm left such an empty parent once (``own04/``, its ``sub/`` made and
        removed by a write cut short before its temp file).
        """
        made, self.made = self.made, []
        if emptied or made:
            _prune(self.root_fd, self.parts)

    def _drop_root(self) -> None:
        """Close the descriptor of ROOT this write owns, once it is over (`begin_stream`)."""
        if self.owns_root:
            self.owns_root = False
            os.close(self.root_fd)


class TempFile(_OpenFile):
    """A temporary file next to its key; `commit` renames it over the key, `discard` removes it.

    Every method runs in a worker thread; `commit` and `discard` are idempotent and leave
    nothing behind on failure: no temp file, and no directory made for it (if still empty).
    """

    def __init__(self, root_fd: int, parts: list[str], fsync: bool) -> None:
        self.root_fd = root_fd
        self.parts = parts
        self.fsync = fsync
        self.dir_fd = -1
        self.fd = -1
        self.name = ""
        self.made = []
        try:
            for attempt in range(3):
                self.dir_fd = parent_fd(root_fd, parts, create=True, made=self.made)
                if _is_symlink(parts[-1], self.dir_fd):
                    _close_dir(self.dir_fd, root_fd)
                    self.dir_fd = -1
                    raise _SymlinkRefused(errno.ELOOP, "symbolic link", parts[-1])
                self.name = _temp_names.next()
                try:
                    with _dir_lock(root_fd, parts):
                        try:
                            self.fd = os.open(self.name, _TEMP_FLAGS, 0o666, dir_fd=self.dir_fd)
                        except FileExistsError:
                            self.name = f"{TEMP_PREFIX}{secrets.token_hex(12)}.tmp"
                            self.fd = os.open(self.name, _TEMP_FLAGS, 0o666, dir_fd=self.dir_fd)
                    break
                except FileNotFoundError:
                    # the directory was pruned by a concurrent delete between walk and create
                    _close_dir(self.dir_fd, root_fd)
                    self.dir_fd = -1
                    if attempt == 2:
                        raise
                except BaseException:
                    _close_dir(self.dir_fd, root_fd)
                    self.dir_fd = -1
                    raise
        except BaseException:
            self._unmake()  # the directories made for it, if still empty
            raise

    def commit(self, *, if_not_exists: bool) -> None:
        try:
            if self.fsync:
                os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
            check_cancelled()
            target = self.parts[-1]
            with _dir_lock(self.root_fd, self.parts):
                if if_not_exists:
                    try:
                        self._link(target)
                    except FileExistsError:
                        if not _free_dir(target, self.dir_fd):  # an empty directory makes way
                            raise
                        self._link(target)
                    os.unlink(self.name, dir_fd=self.dir_fd)
                else:
                    try:
                        os.rename(self.name, target, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
                    except IsADirectoryError:
                        _free_dir(target, self.dir_fd)  # an empty directory makes way
                        os.rename(self.name, target, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            self.name = ""
            if self.fsync:
                os.fsync(self.dir_fd)
        except BaseException:
            self.discard()
            raise
        self._release_dir()
        self._drop_root()

    def _link(self, target: str) -> None:
        os.link(
            self.name, target, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd, follow_symlinks=False
        )

    def discard(self) -> None:
        try:
            if self.fd != -1:
                fd, self.fd = self.fd, -1
                os.close(fd)
            emptied = False
            if self.name and self.dir_fd != -1:
                name, self.name = self.name, ""
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=self.dir_fd)
                emptied = True
            self._release_dir()
            self._unmake(emptied=emptied)
        finally:
            self._drop_root()


class InPlaceFile(_OpenFile):
    """The key's own file, overwritten in place and cut to the new length (``atomic=false``).

    Same interface as `TempFile`. Opened with ``O_NOFOLLOW`` under directories walked
    without following links, so a symbolic link is refused as with atomic writes. Checked
    before any byte changes: anything but a regular file at the key (a directory, a FIFO, a
    device) is refused, and so is a file with other hard links (changing it in place would
    change them too, maybe outside ROOT). The new bytes are written over the old ones from
    offset 0 and `commit` then truncates the file to their length: the blocks the file
    already has are reused, where truncating to zero first would free them all and make
    ext4 write the file back at close. Not atomic: while a write runs a reader may see a mix
    of new bytes and old ones (the new prefix, then the rest of the old file). A write that
    fails or is cancelled is cut at the bytes written so far (`discard`, best effort), so the
    file then holds the start of the new content only; a crash may leave any mix of old and
    new bytes.
    With *if_not_exists* the file is created with ``O_EXCL``: an existing key raises
    `FileExistsError` and is left untouched.
    """

    def __init__(self, root_fd: int, parts: list[str], fsync: bool, *, if_not_exists: bool):
        self.root_fd = root_fd
        self.parts = parts
        self.fsync = fsync
        self.fd = -1
        self.dir_fd = -1
        self.size = 0  # bytes written so far, all at the start of the file
        self.made = []
        name = parts[-1]
        flags = _IN_PLACE_FLAGS | (os.O_EXCL if if_not_exists else 0)
        try:
            for attempt in range(3):
                self.dir_fd = parent_fd(root_fd, parts, create=True, made=self.made)
                try:
                    self.fd = os.open(name, flags, 0o666, dir_fd=self.dir_fd)
                    break
                except FileNotFoundError:
                    # the directory was pruned by a concurrent delete between walk and create
                    self._release_dir()
                    if attempt == 2:
                        raise
                except OSError as exc:
                    there = (
                        _lstat_mode(name, self.dir_fd)
                        if exc.errno in (errno.EEXIST, errno.EISDIR)
                        else 0
                    )
                    if stat_mod.S_ISDIR(there) and attempt < 2:
                        try:
                            _free_dir(name, self.dir_fd)  # an empty directory makes way
                        finally:
                            self._release_dir()
                        continue
                    symlink = exc.errno == errno.ELOOP or stat_mod.S_ISLNK(there)
                    self._release_dir()
                    if symlink:
                        raise _SymlinkRefused(errno.ELOOP, "symbolic link", name) from exc
                    if stat_mod.S_ISDIR(there):  # a prefix, or an empty directory: no object
                        raise IsADirectoryError(errno.EISDIR, "a directory", name) from exc
                    if exc.errno == errno.ENXIO:  # a FIFO without a reader
                        raise IsADirectoryError(errno.EISDIR, "not a regular file", name) from exc
                    raise
                except BaseException:
                    self._release_dir()
                    raise
        except BaseException:
            self._unmake()  # no file was made: nor are the directories made for it kept
            raise
        try:
            st = os.fstat(self.fd)
            if not stat_mod.S_ISREG(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a regular file", name)
            if st.st_nlink > 1:
                raise _HardLinkRefused(errno.EMLINK, f"{st.st_nlink} hard links", name)
            if not fsync:
                self._release_dir()
        except BaseException:
            self._close()
            raise

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self.fd, view)
                self.size += written
                view = view[written:]
        except BaseException:
            self.discard()
            raise

    def commit(self, *, if_not_exists: bool) -> None:
        try:
            os.ftruncate(self.fd, self.size)  # the old bytes past the new end
            if self.fsync:
                os.fsync(self.fd)
            os.close(self.fd)
            self.fd = -1
            if self.fsync:
                os.fsync(self.dir_fd)  # the entry of a newly created file
        except BaseException:
            self.discard()
            raise
        self._release_dir()
        self._drop_root()

    def discard(self) -> None:
        """Cut the file at the bytes written so far (no old byte is left after them), close.

        Best effort: it runs while another error propagates, so a failing ``ftruncate``
        (the disk went away) is ignored, and the old bytes after the new ones then remain.
        """
        try:
            if self.fd != -1:
                try:
                    with contextlib.suppress(OSError):
                        os.ftruncate(self.fd, self.size)
                finally:
                    self._close()
            self._release_dir()
        finally:
            self._drop_root()

    def _close(self) -> None:
        if self.fd != -1:
            fd, self.fd = self.fd, -1
            os.close(fd)
        self._release_dir()


def begin_write(
    root_fd: int, parts: list[str], *, if_not_exists: bool, fsync: bool, atomic: bool
) -> TempFile | InPlaceFile:
    """Start writing *parts*: a `TempFile` (atomic) or the key's file itself (in place)."""
    if not atomic:
        return InPlaceFile(root_fd, parts, fsync, if_not_exists=if_not_exists)
    if if_not_exists:
        _refuse_existing(root_fd, parts)
    return TempFile(root_fd, parts, fsync)


def begin_stream(
    root_fd: int, parts: list[str], *, if_not_exists: bool, fsync: bool, atomic: bool
) -> TempFile | InPlaceFile:
    """`begin_write` for a write spread over several hops (``open(key, "wb")``), on a
    descriptor of ROOT of its own, closed when the write is committed or discarded: the
    `Storage` may be closed meanwhile, and the number of its descriptor of ROOT given to
    another directory, where the rest of the write (rename, unlink, prune) would then go."""
    own = os.open(".", _DIR_FLAGS, dir_fd=root_fd)
    try:
        file = begin_write(own, parts, if_not_exists=if_not_exists, fsync=fsync, atomic=atomic)
    except BaseException:
        os.close(own)
        raise
    file.owns_root = True
    return file


def _discard(file: TempFile | InPlaceFile) -> None:
    """Discard a write whose caller never got its file (cancelled while it was opened)."""
    file.discard()


def _write_file(
    root_fd: int, parts: list[str], data: bytes, if_not_exists: bool, fsync: bool, atomic: bool
) -> None:
    file = begin_write(root_fd, parts, if_not_exists=if_not_exists, fsync=fsync, atomic=atomic)
    file.write(data)
    file.commit(if_not_exists=if_not_exists)


# Spare files: a small atomic write into a prepared unnamed file (O_TMPFILE), linked under a
# temp name and renamed over the key, while the file it replaces is held open (O_PATH) so that
# it is freed when closed, not inside the rename. Preparing the next file and freeing the
# replaced one are left to its SerialQueue's worker after the caller has its outcome (`defer`):
# on ext4, creating a file scans the inode bitmap past recently freed inodes, and freeing one
# returns its blocks (and trims them with -o discard); both can cost more than the rest of the
# write. Raw loops, 1,000 rewrites of 4 KiB files, µs per write:
#                                  tmpfs  ext4  ext4 without journal, -o discard
#   temp file + rename (all)        14     64    72
#   spare file: the write's part    12     50    46
#   spare file: deferred part        5     24    42
# Linux only (O_TMPFILE, O_PATH, /proc/self/fd for linkat); elsewhere, or on a file system
# without O_TMPFILE, every write makes its temp file as before.
_TMPFILE_FLAGS = getattr(os, "O_TMPFILE", 0) | os.O_WRONLY | _CLOEXEC
_HOLD_FLAGS = getattr(os, "O_PATH", 0) | _NOFOLLOW | _CLOEXEC
_SPARES = bool(getattr(os, "O_TMPFILE", 0) and getattr(os, "O_PATH", 0))
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, getattr(errno, "ENOTSUP", 0)}
_fork_generation = 0
# Spare files held at most per backend (each is an open descriptor and an inode): writes into
# more directories than this, one after another, make their own temp files beyond it.
_SPARES_KEPT = 16


def _close_fds(*fds: int) -> None:
    for fd in fds:
        if fd != -1:
            os.close(fd)


class SpareFile:
    """The unnamed file prepared for the next small atomic write into one directory.

    Used only by the calls of that directory's `SerialQueue` (one at a time), and by its
    deferred work.
    """

    def __init__(self, root_fd: int, dir_parts: list[str], budget: threading.Semaphore) -> None:
        self.root_fd = root_fd
        self.dir_parts = dir_parts
        self.budget = budget  # shared by the backend's spare files: _SPARES_KEPT
        self.fd = -1
        self.dir_id: tuple[int, int] | None = None  # (st_dev, st_ino) of its directory
        self.generation = _fork_generation
        self.enabled = _SPARES
        self.orphans: list[int] = []  # files set aside (not usable here), closed next

    def take(self, dfd: int) -> int:
        """The prepared file if it was made in the directory *dfd* by this process, else -1."""
        fd, self.fd = self.fd, -1
        if fd != -1:
            self.budget.release()
        if fd == -1 or (
            self.generation == _fork_generation
            and (dfd == self.root_fd or _dir_id(dfd) == self.dir_id)
        ):
            return fd
        self.orphans.append(fd)  # closed with the next deferred work, off the write's path
        return -1

    def prepare(self) -> None:
        """Make the file for the next write (deferred work; a failure only means none)."""
        orphans, self.orphans = self.orphans, []
        _close_fds(*orphans)
        if self.fd != -1 or not self.enabled:
            return
        if not _proc_fd():  # linkat needs it
            self.enabled = False
            return
        if not self.budget.acquire(blocking=False):
            return  # as many directories have one already
        try:
            dfd = parent_fd(self.root_fd, [*self.dir_parts, ""], create=False)
        except OSError:
            self.budget.release()
            return  # the directory is gone: the next write makes it, and its own temp file
        try:
            fd = os.open(".", _TMPFILE_FLAGS, 0o666, dir_fd=dfd)
            try:
                dir_id = None if dfd == self.root_fd else _dir_id(dfd)
            except BaseException:
                os.close(fd)
                raise
        except OSError as exc:
            self.budget.release()
            if exc.errno in _NO_TMPFILE:
                self.enabled = False
            return
        finally:
            _close_dir(dfd, self.root_fd)
        self.fd, self.dir_id, self.generation = fd, dir_id, _fork_generation

    def set_aside(self) -> None:
        """Give up the prepared file (its directory is gone); it is closed next."""
        fd, self.fd = self.fd, -1
        if fd != -1:
            self.budget.release()
            self.orphans.append(fd)

    def detach(self) -> list[int]:
        """Give up the files held (to be closed by someone else); no more are prepared."""
        self.enabled = False
        fds = [fd for fd in (self.fd, *self.orphans) if fd != -1]
        if self.fd != -1:
            self.budget.release()
        self.fd = -1
        self.orphans = []
        return fds

    def close(self) -> None:
        _close_fds(*self.detach())


@functools.cache
def _proc_fd() -> bool:
    return os.path.isdir("/proc/self/fd")


def _dir_id(dfd: int) -> tuple[int, int]:
    st = os.fstat(dfd)
    return st.st_dev, st.st_ino


def write_small(
    queue: SerialQueue, spare: SpareFile, root_fd: int, parts: list[str], data: bytes
) -> None:
    """An atomic write without fsync, in turn on *queue*: into *spare* when it is ready."""
    try:
        try:
            done = spare.fd != -1 and _write_spare(queue, spare, root_fd, parts, data)
        except IsADirectoryError:  # a directory at the key: a temp file's write deals with it
            done = False
        if not done:
            _write_file(root_fd, parts, data, False, False, True)
    finally:
        if spare.enabled and not queue.waiting:
            queue.defer(spare.prepare)


def _write_spare(
    queue: SerialQueue, spare: SpareFile, root_fd: int, parts: list[str], data: bytes
) -> bool:
    """Write *data* to *parts* through the spare file; False if it cannot serve here."""
    name = parts[-1]
    try:
        dfd = parent_fd(root_fd, parts, create=False)
    except FileNotFoundError:
        # no such directory (the spare file's was removed): the write makes it, with a temp
        # file of its own, which also removes it again if the write fails
        spare.set_aside()
        return False
    try:
        fd = spare.take(dfd)
        if fd == -1:
            return False
        old = -1
        try:
            with contextlib.suppress(FileNotFoundError):
                old = os.open(name, _HOLD_FLAGS, dir_fd=dfd)  # freed when closed, deferred
            if old != -1 and stat_mod.S_ISLNK(os.fstat(old).st_mode):
                raise _SymlinkRefused(errno.ELOOP, "symbolic link", name)
            _write_all(fd, data)
            check_cancelled()
            temp = _temp_names.next()
            source = f"/proc/self/fd/{fd}"
            with _dir_lock(root_fd, parts):
                try:
                    try:
                        os.link(source, temp, dst_dir_fd=dfd, follow_symlinks=True)
                    except FileExistsError:  # a leftover, or planted: as in TempFile
                        temp = f"{TEMP_PREFIX}{secrets.token_hex(12)}.tmp"
                        os.link(source, temp, dst_dir_fd=dfd, follow_symlinks=True)
                except OSError as exc:
                    # ENOENT: the directory was removed meanwhile. Anything else (a file
                    # system or a policy refusing this link): no more spare files here.
                    # Either way the write starts over with a temp file of its own, which
                    # raises what a write there raises.
                    _close_fds(fd, old)
                    if exc.errno != errno.ENOENT:
                        spare.enabled = False
                    return False
                try:
                    os.rename(temp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(temp, dir_fd=dfd)
                    raise
        except BaseException:
            _close_fds(fd, old)
            raise
        queue.defer(functools.partial(_close_fds, fd, old))
        return True
    finally:
        _close_dir(dfd, root_fd)


def _close_lane(lane: _Lane) -> None:
    """Close the lane's spare file and, before its caller has the outcome, the descriptors
    its writes left to deferred work (the files they replaced, held until freed)."""
    lane.spare.close()
    lane.queue.run_deferred()


def _refuse_existing(root_fd: int, parts: list[str]) -> None:
    """Fail early (before writing any data) when *if_not_exists* cannot succeed."""
    try:
        dfd = parent_fd(root_fd, parts, create=False)
    except FileNotFoundError:
        return
    try:
        st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        if stat_mod.S_ISDIR(st.st_mode) and _empty_dir(parts[-1], dfd):
            return  # no object: the write's commit removes it (`_free_dir`)
    except FileNotFoundError:
        return
    finally:
        _close_dir(dfd, root_fd)
    if stat_mod.S_ISLNK(st.st_mode):
        raise _SymlinkRefused(errno.ELOOP, "symbolic link", parts[-1])
    if stat_mod.S_ISDIR(st.st_mode):
        # no object there (a prefix): the refusal of any write to it, not AlreadyExists
        raise IsADirectoryError(errno.EISDIR, "a directory", parts[-1])
    raise FileExistsError(errno.EEXIST, "exists", parts[-1])


def _info(key: str, st: os.stat_result, content_type: str | None) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=st.st_size,
        modified=datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=timezone.utc),
        etag=f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}",
        content_type=content_type,
    )


def _stat_file(root_fd: int, parts: list[str], key: str) -> ObjectInfo:
    dfd = parent_fd(root_fd, parts, create=False)
    try:
        st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
    finally:
        _close_dir(dfd, root_fd)
    if stat_mod.S_ISLNK(st.st_mode):
        raise _SymlinkRefused(errno.ELOOP, "symbolic link", parts[-1])
    if not stat_mod.S_ISREG(st.st_mode):
        raise FileNotFoundError(errno.ENOENT, "not a regular file", parts[-1])
    return _info(key, st, type_from_key(key))


def _prune(root_fd: int, parts: list[str]) -> None:
    """Remove the directories of *parts* that became empty, deepest first (as S3 prefixes)."""
    fds = [root_fd]
    try:
        for name in parts[:-2]:
            fds.append(_open_dir(name, fds[-1]))
        for depth in range(len(parts) - 2, -1, -1):
            try:
                os.rmdir(parts[depth], dir_fd=fds[depth])
            except OSError:
                return
    except OSError:
        return
    finally:
        for fd in fds[1:]:
            os.close(fd)


def _delete_file(root_fd: int, parts: list[str], missing_ok: bool, fsync: bool) -> None:
    try:
        dfd = parent_fd(root_fd, parts, create=False)
    except (FileNotFoundError, NotADirectoryError):
        # a missing directory, or an object where the key has a directory ("f" for "f/g"):
        # either way no such key
        if missing_ok:
            return
        raise
    try:
        st = os.stat(parts[-1], dir_fd=dfd, follow_symlinks=False)
        if stat_mod.S_ISLNK(st.st_mode):
            raise _SymlinkRefused(errno.ELOOP, "symbolic link", parts[-1])
        if not stat_mod.S_ISREG(st.st_mode):
            raise FileNotFoundError(errno.ENOENT, "not a regular file", parts[-1])
        os.unlink(parts[-1], dir_fd=dfd)
        if fsync:
            os.fsync(dfd)  # else, after a crash, the deleted object could come back
    except FileNotFoundError:
        if not missing_ok:
            raise
        return
    finally:
        _close_dir(dfd, root_fd)
    _prune(root_fd, parts)


def _source_error(exc: OSError) -> OSError:
    """Mark *exc* as met on the source of a copy or move, for `FileBackend._moved`."""
    exc.asyncify_source = True  # type: ignore[attr-defined]
    return exc


def _open_source(root_fd: int, src: list[str]) -> int:
    try:
        return open_beneath(root_fd, src)
    except OSError as exc:
        raise _source_error(exc) from None


def _copy_file(root_fd: int, src: list[str], dst: list[str], fsync: bool) -> None:
    fd = _open_source(root_fd, src)
    try:
        temp = TempFile(root_fd, dst, fsync)
        try:
            while True:
                try:
                    chunk = os.read(fd, _COPY_CHUNK)
                except OSError as exc:
                    raise _source_error(exc) from None
                if not chunk:
                    break
                check_cancelled()  # a cancelled copy of a large file stops here, not at its end
                temp.write(chunk)
        except BaseException:
            temp.discard()
            raise
        temp.commit(if_not_exists=False)
    finally:
        os.close(fd)


def _same_file(name: str, dir_fd: int, st: os.stat_result) -> bool:
    """Whether *name* in *dir_fd* is (still) the file *st* describes (not following links)."""
    try:
        other = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)


def _move_file(root_fd: int, src: list[str], dst: list[str], fsync: bool) -> None:
    fd = _open_source(root_fd, src)
    try:
        _rename_file(root_fd, src, dst, fsync, os.fstat(fd))
        # the object at dst is modified now, as on S3 (where a move is a copy); through the
        # descriptor, so only the moved file is touched. Best effort: the move is done
        with contextlib.suppress(OSError):
            os.utime(fd)
    finally:
        os.close(fd)


def _rename_file(
    root_fd: int, src: list[str], dst: list[str], fsync: bool, moved: os.stat_result
) -> None:
    try:
        sfd = parent_fd(root_fd, src, create=False)
    except OSError as exc:
        raise _source_error(exc) from None
    made: list[int] = []
    try:
        for attempt in range(3):
            dfd = parent_fd(root_fd, dst, create=True, made=made)
            try:
                try:
                    there = os.stat(dst[-1], dir_fd=dfd, follow_symlinks=False)
                except OSError:
                    there = None
                if there is not None and stat_mod.S_ISLNK(there.st_mode):
                    raise _SymlinkRefused(errno.ELOOP, "symbolic link", dst[-1])
                if there is not None and (there.st_dev, there.st_ino) == (
                    moved.st_dev,
                    moved.st_ino,
                ):
                    # two hard links of one file (made by another tool): rename() would do
                    # nothing and leave both; the key dst already holds the content
                    if _same_file(src[-1], sfd, moved):
                        os.unlink(src[-1], dir_fd=sfd)
                        if fsync:
                            os.fsync(sfd)
                    break
                try:
                    os.rename(src[-1], dst[-1], src_dir_fd=sfd, dst_dir_fd=dfd)
                except IsADirectoryError:
                    _free_dir(dst[-1], dfd)  # an empty directory at the key makes way
                    os.rename(src[-1], dst[-1], src_dir_fd=sfd, dst_dir_fd=dfd)
                if fsync:
                    # the new name first, then the old one's removal: a crash between the two
                    # can leave both names, never neither
                    os.fsync(dfd)
                    if src[:-1] != dst[:-1]:
                        os.fsync(sfd)
                break
            except FileNotFoundError as exc:
                # the source is gone, or a concurrent delete pruned the target's directory
                # (between walk and rename): then walk again
                if not _is_present(src[-1], sfd):
                    raise _source_error(exc) from None
                if attempt == 2:
                    raise
            finally:
                _close_dir(dfd, root_fd)
    except BaseException:
        if made:
            _prune(root_fd, dst)  # (every empty one: see `_OpenFile._unmake`)
        raise
    finally:
        _close_dir(sfd, root_fd)
    if src[:-1] != dst[:-1]:
        _prune(root_fd, src)


def _is_present(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _walk(dfd: int, base: str, start: str, recursive: bool) -> Iterator[ObjectInfo]:
    """Objects under the open directory *dfd* (key prefix *base*) whose name starts with
    *start*, in key order, never following a symbolic link.

    Only keys that `Storage` accepts are listed: a file or directory left on disk under a
    longer key than ``MAX_KEY_BYTES`` (made by another tool) is skipped, as on S3, which
    also bounds the depth of the walk (each level adds two bytes to the key at least).
    A directory that cannot be read or entered (its permissions) is never skipped: that
    would hide the objects in it, so the walk raises, naming it (`_unlistable`). One removed
    or replaced meanwhile (a delete pruning it) holds nothing to list.
    """
    room = MAX_KEY_BYTES - len(base.encode("utf-8"))  # bytes left for the rest of a key
    entries = []
    with os.scandir(dfd) as it:
        for entry in it:
            name = entry.name
            if not name.startswith(start) or not is_key_segment(name, first=not base):
                continue
            encoded = name.encode("utf-8")
            if entry.is_dir(follow_symlinks=False):
                if len(encoded) + 2 <= room:  # "/" and one byte at least below it
                    entries.append((encoded + b"/", name, True))
            elif entry.is_file(follow_symlinks=False) and len(encoded) <= room:
                entries.append((encoded, name, False))
    entries.sort(key=lambda e: e[0])
    for encoded, name, is_dir in entries:
        key = base + name
        if is_dir:
            if not recursive:
                if _holds_objects(name, dfd, room - len(encoded), key + "/"):
                    yield ObjectInfo(key + "/", 0, is_dir=True)
                continue
            try:
                sub = _open_dir(name, dfd)
            except OSError as exc:
                if _vanished(exc) or _lost_and_found(name, dfd):
                    continue
                raise _unlistable(exc, _blocked(dfd, base, key + "/")) from None
            try:
                yield from _walk(sub, key + "/", "", True)
            finally:
                os.close(sub)
        else:
            try:
                st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:  # a directory that can be read but not entered
                raise _unlistable(exc, base) from None
            if stat_mod.S_ISREG(st.st_mode):
                yield _info(key, st, None)


def _vanished(exc: OSError) -> bool:
    """Whether *exc*, met opening a directory found by a listing, means that it is gone, or
    is no directory any more (a delete pruned it, a write replaced it): nothing to list."""
    return isinstance(exc, _SymlinkRefused) or exc.errno in (errno.ENOENT, errno.ENOTDIR)


def _lost_and_found(name: str, dfd: int) -> bool:
    """Whether *name*, a directory of *dfd* that could not be opened, is the ``lost+found`` of
    a file system whose top *dfd* is (``mke2fs`` makes it, readable by root only): fsck's
    own, holding no objects, so a listing leaves it out rather than fail on every volume
    mounted at ROOT or under it."""
    if name != "lost+found":
        return False
    try:
        here = os.stat(".", dir_fd=dfd)
        parent = os.stat("..", dir_fd=dfd)
    except OSError:
        return False
    return here.st_dev != parent.st_dev or here.st_ino == parent.st_ino


def _unlistable(exc: OSError, dir_key: str) -> OSError:
    """Mark *exc* as met listing the directory of *dir_key* ("" for ROOT), which the listing
    cannot read or enter, for `FileBackend.list`: skipping it would hide its objects."""
    exc.asyncify_listing = dir_key  # type: ignore[attr-defined]
    return exc


def _blocked(dfd: int, dir_key: str, child_key: str) -> str:
    """Which of the directory *dfd* (*dir_key*) and its child (*child_key*), which could not
    be opened, is at fault: *dfd* itself when it can be read but not entered."""
    try:
        os.stat(".", dir_fd=dfd)
    except PermissionError:
        return dir_key
    except OSError:
        pass
    return child_key


def _scan_for_objects(dfd: int, room: int, subdirs: list[tuple[str, int]]) -> bool:
    """Whether the directory *dfd* directly holds an object whose name fits in *room*
    bytes; its sub-directories that could hold one are appended to *subdirs* (with the
    room left below them)."""
    with os.scandir(dfd) as it:
        for entry in it:
            if not is_key_segment(entry.name, first=False):  # below a key's first segment
                continue
            size = len(entry.name.encode("utf-8"))
            if entry.is_file(follow_symlinks=False):
                if size <= room:
                    return True
            elif entry.is_dir(follow_symlinks=False) and size + 2 <= room:
                subdirs.append((entry.name, room - size - 1))
    return False


def _holds_objects(name: str, dfd: int, room: int, key: str) -> bool:
    """Whether the directory *name* of *dfd* (key prefix *key*) holds an object at some
    depth: S3 shows a sub-prefix only then, and an empty directory (left by a crash, made by
    hand, or holding only a write's temp file) is none. *room* is what is left of
    ``MAX_KEY_BYTES`` below it (a key longer than that is no object). Depth first, without
    recursion (a tree 500 levels deep is a valid key), holding open only the directories of
    the current path. A directory below that cannot be read (its permissions) could hold
    an object: when no other one is found, that is an error naming it (`_unlistable`),
    not a "no"."""
    try:
        sub = _open_dir(name, dfd)
    except OSError as exc:
        if _vanished(exc) or _lost_and_found(name, dfd):
            return False
        raise _unlistable(exc, key) from None
    # the open directories of the path being explored (and their keys), each with the
    # sub-directories of it that are still to be looked into
    path: list[tuple[int, str, list[tuple[str, int]]]] = []
    unreadable: OSError | None = None
    try:
        todo: list[tuple[str, int]] = []
        path.append((sub, key, todo))
        if _scan_for_objects(sub, room, todo):
            return True
        while path:
            fd, where, todo = path[-1]
            if not todo:
                path.pop()
                os.close(fd)
                continue
            child, left = todo.pop()
            try:
                cfd = _open_dir(child, fd)
            except OSError as exc:
                if not (_vanished(exc) or _lost_and_found(child, fd)) and unreadable is None:
                    unreadable = _unlistable(exc, _blocked(fd, where, f"{where}{child}/"))
                continue
            below: list[tuple[str, int]] = []
            path.append((cfd, f"{where}{child}/", below))
            if _scan_for_objects(cfd, left, below):
                return True
        if unreadable is not None:
            raise unreadable
        return False
    finally:
        for fd, _, _ in path:
            os.close(fd)


def _list_pages(
    root_fd: int, prefix: str, recursive: bool
) -> Generator[list[ObjectInfo], None, None]:
    base, _, start = prefix.rpartition("/")
    parts = [*split_key(base), ""] if base else [""]
    try:
        dfd = parent_fd(root_fd, parts, create=False)
        if dfd == root_fd:
            # a descriptor of its own: the listing pauses between pages, and ROOT's may be
            # closed meanwhile (the Storage left) and its number given to another directory
            dfd = os.open(".", _DIR_FLAGS, dir_fd=root_fd)
    except (FileNotFoundError, NotADirectoryError, _SymlinkRefused):
        return
    page: list[ObjectInfo] = []
    try:
        for info in _walk(dfd, base + "/" if base else "", start, recursive):
            page.append(info)
            if len(page) >= _LIST_PAGE:
                yield page
                page = []
    finally:
        os.close(dfd)
    if page:
        yield page


def _next_page(pages: Iterator[list[ObjectInfo]]) -> list[ObjectInfo] | None:
    """The next page of a listing (`_list_pages`), None after the last one."""
    return next(pages, None)


def _invoke(fn: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any]) -> object:
    return fn(*args, **kwargs)


def _open_root(path: str, create: bool) -> int:
    try:
        if create:
            os.makedirs(path, exist_ok=True)
        real = os.path.realpath(path)
        return os.open(real, _DIR_FLAGS & ~_NOFOLLOW)
    except (FileExistsError, NotADirectoryError) as exc:
        # makedirs says EEXIST for a ROOT that is a file (or a link to none) and ENOTDIR for
        # a file on the way to it, open ENOTDIR for both: which one it is takes a look, here
        # in the worker thread
        refused = _RootNotADirectory(exc.errno, exc.strerror, exc.filename)
        refused.itself = os.path.lexists(path)
        raise refused from exc


def translate_root(exc: OSError, backend: str, *, create: bool) -> StorageError:
    """The StorageError for an `OSError` met while opening (or creating) ROOT: about ROOT,
    which is no object (`translate` would speak of an object '.')."""
    if isinstance(exc, _RootNotADirectory):
        if exc.itself:
            return StorageError(f"the root of {backend} is not a directory", orig=exc)
        return StorageError(
            f"the root of {backend} cannot be a directory: an entry on its path is not one",
            orig=exc,
        )
    code = exc.errno
    if code == errno.ENOENT:
        # (with create=true: removed between being made and being opened)
        why = " (create=false: it is not created)" if not create else ""
        return NotFound(f"the root directory of {backend} does not exist{why}", orig=exc)
    if code in (errno.EACCES, errno.EPERM):
        doing = "open or create" if create else "open"
        what = repr(exc.filename) if exc.filename is not None else "it"
        return PermissionDenied(
            f"permission denied for the root directory of {backend}: cannot {doing} {what}",
            orig=exc,
        )
    return StorageError(
        f"cannot open the root directory of {backend}: {exc.strerror or exc}", orig=exc
    )


def translate(exc: OSError, key: str, backend: str, *, writing: bool = False) -> StorageError:
    """The StorageError for an `OSError` met while working on *key*."""
    where = f"{key!r} in {backend}"
    if isinstance(exc, _SymlinkRefused):
        return InvalidPath(
            f"{where} goes through a symbolic link ({exc.filename!r}); "
            "file storage never follows symbolic links",
            orig=exc,
        )
    if isinstance(exc, _HardLinkRefused):
        return InvalidPath(
            f"{where} has {exc.strerror}; an in-place write (atomic=false) would change "
            "every link to it, so it is refused",
            orig=exc,
        )
    code = exc.errno
    if code == errno.ENOENT or (code in (errno.ENOTDIR, errno.EISDIR) and not writing):
        return NotFound(f"no object {where}", orig=exc)
    if code == errno.EEXIST:
        return AlreadyExists(f"object {where} already exists", orig=exc)
    if code in (errno.EACCES, errno.EPERM):
        return PermissionDenied(f"permission denied for {where}", orig=exc)
    if code in (errno.ENOTDIR, errno.EISDIR):
        return StorageError(
            f"cannot write {where}: a path component is a file, or the key is a directory", orig=exc
        )
    if code == errno.ENAMETOOLONG:
        return InvalidPath(f"{where}: name too long for this file system", orig=exc)
    return StorageError(f"{exc.strerror or exc} for {where}", orig=exc)


class _FileReader(ByteReader):
    def __init__(self, fd: int, run: Runner) -> None:
        self._fd = fd
        self._run = run
        self._finalizer = weakref.finalize(self, os.close, fd)

    async def read(self, size: int) -> bytes:
        if not self._finalizer.alive:
            raise ValueError("read from a closed reader")
        data: bytes = await self._run(os.read, self._fd, size)
        return data

    async def aclose(self) -> None:
        if self._finalizer.alive:
            self._finalizer()


def _discard_dropped(
    pool: str,
    temp: TempFile | InPlaceFile,
    pending: deque[threading.Event],
    file: IO[bytes] | None,
) -> None:
    """Finalizer of a writer dropped open, neither committed nor aborted (a "wb" file left
    unclosed): its temp file (an in-place file: cut at the bytes written) and descriptors are
    discarded by a worker of *pool*, nobody waiting (this may run on the event loop's
    thread); the backend's close waits for it (*pending*). *file*, a file object on the temp
    file, is closed first, there too (collected, it would close and flush on this thread)."""
    done = threading.Event()

    def discard() -> None:
        try:
            if file is not None:
                with contextlib.suppress(OSError):  # its buffer is thrown away anyway
                    file.close()
            temp.discard()
        finally:
            done.set()

    pending.append(done)
    get_pool(pool).submit(Job(discard, (), {}, contextvars.Context(), None))


def discard_if_dropped(
    writer: ByteWriter,
    backend: FileBackend,
    temp: TempFile | InPlaceFile,
    file: IO[bytes] | None = None,
) -> weakref.finalize[Any, Any]:
    """The finalizer that discards *temp* (and closes *file*) if *writer* is collected still
    open; detach it once the writer has committed or aborted. Not at interpreter exit (no
    new thread then)."""
    finalizer = weakref.finalize(
        writer, _discard_dropped, backend.pool, temp, backend.dropped, file
    )
    finalizer.atexit = False
    return finalizer


def _wait_for(events: list[threading.Event], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for event in events:
        event.wait(max(0.0, deadline - time.monotonic()))


class _FileWriter(ByteWriter):
    def __init__(
        self, temp: TempFile | InPlaceFile, key: str, backend: FileBackend, if_not_exists: bool
    ):
        self._temp = temp
        self._key = key
        self._backend = backend
        self._if_not_exists = if_not_exists
        self._run = backend._run
        self._failed = False  # a write raised or was cancelled: its bytes may be missing
        self._dropped = discard_if_dropped(self, backend, temp)

    async def write(self, data: bytes) -> None:
        try:
            await self._run(self._temp.write, data)
        except BaseException as exc:
            self._failed = True
            if isinstance(exc, OSError):
                raise translate(exc, self._key, self._backend.describe(), writing=True) from exc
            raise

    async def commit(self) -> None:
        if self._failed:
            raise broken_write(self._key, self._backend.describe())
        try:
            await self._run(self._temp.commit, if_not_exists=self._if_not_exists)
        except OSError as exc:
            raise translate(exc, self._key, self._backend.describe(), writing=True) from exc
        self._dropped.detach()

    async def abort(self) -> None:
        await self._run(self._temp.discard)
        self._dropped.detach()


class _Lane(NamedTuple):
    queue: SerialQueue
    spare: SpareFile


class FileBackend(StorageBackend):
    """Files under ROOT (``file://./data``, ``file:///srv/objects?fsync=false``)."""

    name = "file"

    def __init__(self, url: BackendURL, options: dict[str, Any]) -> None:
        super().__init__(url, options)
        self.root = url.location
        if not self.root:
            raise ConfigError(
                f"{url} names no directory; use e.g. 'file://./data' or 'file:///srv/objects'"
            )
        self.fsync: bool = options.get("fsync", True)
        self.create_root: bool = options.get("create", True)
        self.atomic: bool = options.get("atomic", True)
        self.pool: str = options.get("pool") or DEFAULT_POOL
        self._root_fd = -1
        self._serial: dict[tuple[str, ...], _Lane] = {}
        self._spare_budget = threading.Semaphore(_SPARES_KEPT)
        #: the discards of writers dropped open, under way or done (see `discard_if_dropped`)
        self.dropped: deque[threading.Event] = deque()
        self._pooled: Callable[..., Coroutine[Any, Any, object]] = asyncify(pool=self.pool)(_invoke)

    async def _run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run one sync step in a worker thread: the whole operation in a single hop."""
        with quiet_late_errors():  # (a cancelled caller's missing key is not worth a log)
            if self.pool == DEFAULT_POOL:
                return await run_sync(fn, *args, **kwargs)
            return cast(T, await self._pooled(fn, args, kwargs))

    async def _run_owned(
        self, release: Callable[[T], object], fn: Callable[..., T], /, *args: Any, **kwargs: Any
    ) -> T:
        """`_run` for a step that opens something (a descriptor, a temp file): if the caller
        is cancelled while it runs, *release* closes what it opened, in the same pool."""
        with quiet_late_errors():
            return await run_owned(self.pool, release, fn, *args, **kwargs)

    def _lane(self, parts: list[str]) -> _Lane:
        """The queue (and spare file) of small atomic writes into the directory of *parts*."""
        key = tuple(parts[:-1])
        lanes = self._serial
        lane = lanes.get(key)
        if lane is None:
            spare = SpareFile(self.root_fd, parts[:-1], self._spare_budget)
            lane = _Lane(SerialQueue(get_pool(self.pool)), spare)
            if len(lanes) >= _SERIAL_QUEUES_KEPT:
                # a copy: loops in other threads may share this backend
                for where, old in list(lanes.items()):
                    if old.queue.idle:
                        lanes.pop(where, None)
                        # its spare file is closed by the new lane's worker, off the loop
                        lane.spare.orphans.extend(old.spare.detach())
            lanes[key] = lane
        return lane

    @property
    def root_fd(self) -> int:
        if self._root_fd == -1:
            raise RuntimeError(f"{self.describe()} is not open")
        return self._root_fd

    async def aopen(self) -> None:
        get_pool(self.pool)  # an unknown pool is a ConfigError naming the known ones
        needed = {os.open, os.mkdir, os.rename, os.unlink, os.rmdir, os.link, os.stat}
        if not needed <= os.supports_dir_fd:
            raise Unsupported(
                "file storage needs dir_fd support (Linux, macOS, BSD); "
                "on this platform use 'file+aiofiles://' or 'memory://'"
            )
        try:
            self._root_fd = await self._run_owned(os.close, _open_root, self.root, self.create_root)
        except OSError as exc:
            raise translate_root(exc, self.describe(), create=self.create_root) from exc
        if not mimetypes.inited:
            await self._run(mimetypes.init)

    async def aclose(self) -> None:
        # to the end: leaving `async with` in a cancelled task must still close the descriptors
        lanes, self._serial = self._serial, {}
        fd, self._root_fd = self._root_fd, -1
        await finish(self._close_all(lanes, fd))

    async def _close_all(self, lanes: dict[tuple[str, ...], _Lane], root_fd: int) -> None:
        dropped = [event for event in self.dropped if not event.is_set()]
        self.dropped.clear()
        if dropped:  # the temp files of writers dropped open are gone when this returns
            await self._run(_wait_for, dropped, _DROPPED_WAIT)
        for lane in lanes.values():
            # in turn with the lane's work: a spare file may be in use or being prepared
            await run_serial(lane.queue, _close_lane, lane)
        if root_fd != -1:
            await self._run(os.close, root_fd)

    async def read(self, key: str, offset: int, length: int | None) -> bytes:
        try:
            return await self._run(_read_file, self.root_fd, split_key(key), offset, length)
        except OSError as exc:
            raise translate(exc, key, self.describe()) from exc

    async def write(
        self, key: str, data: bytes, *, if_not_exists: bool, content_type: str | None
    ) -> None:
        parts = split_key(key)
        try:
            if self.atomic and not self.fsync and len(data) <= _SERIAL_WRITE_MAX:
                lane = self._lane(parts)
                with quiet_late_errors():
                    if if_not_exists:
                        await run_serial(
                            lane.queue, _write_file, self.root_fd, parts, data, True, False, True
                        )
                    else:
                        await run_serial(
                            lane.queue,
                            write_small,
                            lane.queue,
                            lane.spare,
                            self.root_fd,
                            parts,
                            data,
                        )
            else:
                args = (self.root_fd, parts, data, if_not_exists, self.fsync, self.atomic)
                await self._run(_write_file, *args)
        except OSError as exc:
            raise translate(exc, key, self.describe(), writing=True) from exc

    async def open_reader(self, key: str) -> ByteReader:
        try:
            fd = await self._run_owned(os.close, open_beneath, self.root_fd, split_key(key))
        except OSError as exc:
            raise translate(exc, key, self.describe()) from exc
        return _FileReader(fd, self._run)

    async def open_writer(
        self, key: str, *, if_not_exists: bool, content_type: str | None
    ) -> ByteWriter:
        try:
            temp = await self._run_owned(
                _discard,
                begin_stream,
                self.root_fd,
                split_key(key),
                if_not_exists=if_not_exists,
                fsync=self.fsync,
                atomic=self.atomic,
            )
        except OSError as exc:
            raise translate(exc, key, self.describe(), writing=True) from exc
        return _FileWriter(temp, key, self, if_not_exists)

    async def stat(self, key: str) -> ObjectInfo:
        try:
            return await self._run(_stat_file, self.root_fd, split_key(key), key)
        except OSError as exc:
            raise translate(exc, key, self.describe()) from exc

    async def delete(self, key: str, *, missing_ok: bool) -> None:
        try:
            await self._run(_delete_file, self.root_fd, split_key(key), missing_ok, self.fsync)
        except OSError as exc:
            raise translate(exc, key, self.describe()) from exc

    def _moved(self, exc: OSError, src: str, dst: str) -> StorageError:
        """The StorageError for *exc*, met by a copy or a move: about *src* when it was met
        reading the source (a missing one is `NotFound`, as on every backend, even where a
        component of it is a file), else about *dst*, which it was writing."""
        if getattr(exc, "asyncify_source", False):
            return translate(exc, src, self.describe())
        return translate(exc, dst, self.describe(), writing=True)

    async def copy(self, src: str, dst: str) -> None:
        try:
            await self._run(_copy_file, self.root_fd, split_key(src), split_key(dst), self.fsync)
        except OSError as exc:
            raise self._moved(exc, src, dst) from exc

    async def move(self, src: str, dst: str) -> None:
        if src == dst:
            await self.stat(src)
            return
        try:
            await self._run(_move_file, self.root_fd, split_key(src), split_key(dst), self.fsync)
        except OSError as exc:
            raise self._moved(exc, src, dst) from exc

    async def list(self, prefix: str, *, recursive: bool) -> AsyncIterator[ObjectInfo]:
        # the generator is made in a worker too (it opens nothing before its first page), so
        # that no code that can block is called from the event loop, not even seemingly
        pages = await self._run(_list_pages, self.root_fd, prefix, recursive)
        try:
            while (page := await self._run(_next_page, pages)) is not None:
                for info in page:
                    yield info
        except OSError as exc:
            raise self._list_error(exc, prefix) from exc
        finally:
            # stopped at a page (the caller left, or was cancelled): its directory is closed
            # before the listing ends, not later by a thread of its own
            if inspect.getgeneratorstate(pages) == inspect.GEN_SUSPENDED:
                await finish(self._run(pages.close))

    def _list_error(self, exc: OSError, prefix: str) -> StorageError:
        """The StorageError for *exc*, met listing *prefix*; a directory under it that could
        not be read or entered is named (`_unlistable`)."""
        dir_key = getattr(exc, "asyncify_listing", None)
        if dir_key is None:
            return translate(exc, prefix, self.describe())
        where = f"directory {dir_key!r}" if dir_key else "ROOT"
        why = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else exc.strerror
        message = (
            f"cannot list {prefix!r} in {self.describe()}: {why} reading its {where}; a "
            "listing does not skip a directory it cannot read, which could hold objects"
        )
        if isinstance(exc, PermissionError):
            return PermissionDenied(message, orig=exc)
        return StorageError(message, orig=exc)
