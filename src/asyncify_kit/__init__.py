"""asyncify-kit: stop blocking the event loop.

Offload any sync callable to worker threads with `asyncify`, `run_sync` and `wrap`; use the
facades (`asyncify_kit.sql`, `asyncify_kit.storage`, `asyncify_kit.http`, `asyncify_kit.aws`)
for one async interface over native async drivers or legacy sync libraries; find the
blocking calls that remain with `asyncify_kit.detect` and `asyncify-kit scan`.

This module imports no facade and no driver.
"""

from ._config import BackendURL as BackendURL
from ._executor import PoolStats as PoolStats
from ._executor import check_cancelled as check_cancelled
from ._executor import configure as configure
from ._executor import stats as stats
from ._offload import AsyncProxy as AsyncProxy
from ._offload import CancelPolicy as CancelPolicy
from ._offload import OffloadedContextManager as OffloadedContextManager
from ._offload import OffloadedIterator as OffloadedIterator
from ._offload import asyncify as asyncify
from ._offload import run_sync as run_sync
from ._offload import wrap as wrap
from .exceptions import AsyncifyError as AsyncifyError
from .exceptions import BackendNotInstalled as BackendNotInstalled
from .exceptions import BlockingCallError as BlockingCallError
from .exceptions import CallCancelled as CallCancelled
from .exceptions import ConfigError as ConfigError
from .exceptions import Unsupported as Unsupported

__version__ = "0.1.0"

__all__ = [
    "AsyncProxy",
    "AsyncifyError",
    "BackendNotInstalled",
    "BackendURL",
    "BlockingCallError",
    "CallCancelled",
    "CancelPolicy",
    "ConfigError",
    "OffloadedContextManager",
    "OffloadedIterator",
    "PoolStats",
    "Unsupported",
    "__version__",
    "asyncify",
    "check_cancelled",
    "configure",
    "run_sync",
    "stats",
    "wrap",
]


def _load_anyio() -> None:
    """Resolve anyio's names now. anyio (4.16) imports its own modules lazily, at the first
    use of each name, and this library's first operation made that use on the event loop:
    20-47 ms of the loop, once per process (33 modules, and the asyncio backend's). Here it
    costs the import of this package about 20 ms. (The trio backend's module is loaded
    only when trio is imported already: it imports trio.)"""
    import importlib
    import sys

    import anyio

    for name in dir(anyio):  # (lazily: the names of anyio's API, deprecated aliases aside)
        getattr(anyio, name)
    for module in ("anyio.lowlevel", "anyio.to_thread", "anyio._backends._asyncio"):
        importlib.import_module(module)
    if "trio" in sys.modules:
        importlib.import_module("anyio._backends._trio")


_load_anyio()
del _load_anyio
