"""List a store in a process that file permissions apply to, even when the tests run as root.

Run as a script (the permission tests start it)::

    python -m tests.storage.unprivileged URL PREFIX RECURSIVE

It prints one JSON line: ``{"keys": [...]}`` (with a ``/`` ending each sub-prefix), or
``{"error": "PermissionDenied", "message": "..."}`` when the listing raised a StorageError.

Root bypasses permission bits (``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``), and the tests
run as root in CI. So as root, the script first drops both capabilities from its bounding
set (``prctl(PR_CAPBSET_DROP)``, Linux) and executes itself again: the new image gets no
capability outside that set, and is then refused what its permission bits refuse, as any
other user would be. It checks that before listing (``CapEff`` in ``/proc/self/status``),
and fails rather than list with the capabilities still there.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import sys

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2
_DROPPED = "ASYNCIFY_TEST_DAC_DROPPED"


def drop_dac_capabilities() -> None:
    """As root: execute this script again without the capabilities that bypass permissions."""
    if os.geteuid() != 0 or os.environ.get(_DROPPED):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            code = ctypes.get_errno()
            sys.exit(f"cannot drop capability {cap} as root: {os.strerror(code)}")
    os.environ[_DROPPED] = "1"
    os.execv(sys.executable, [sys.executable, "-m", "tests.storage.unprivileged", *sys.argv[1:]])


def effective_capabilities() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


async def listing(url: str, prefix: str, recursive: bool) -> dict[str, object]:
    from asyncify_kit.storage import Storage, StorageError

    async with Storage(url) as st:
        try:
            return {"keys": [info.key async for info in st.list(prefix, recursive=recursive)]}
        except StorageError as exc:
            return {"error": type(exc).__name__, "message": str(exc)}


def main() -> None:
    drop_dac_capabilities()
    bypass = (1 << _CAP_DAC_OVERRIDE) | (1 << _CAP_DAC_READ_SEARCH)
    if effective_capabilities() & bypass:
        sys.exit("still able to bypass file permissions: nothing would be tested")
    url, prefix, recursive = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    print(json.dumps(asyncio.run(listing(url, prefix, recursive))))


if __name__ == "__main__":
    main()
