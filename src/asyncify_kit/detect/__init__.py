"""Find blocking calls at runtime: a detector for tests, a loop monitor for production.

- `detect_blocking` patches the blocking functions of the standard library and of the sync
  drivers asyncify-kit replaces, and reports each call made on an event-loop thread (asyncio or
  trio), naming the user's line and the fix.
- `LoopMonitor` watches a running loop from a thread: lag percentiles, stalls with the loop
  thread's stack sampled during the stall, and thread-pool saturation.
- `BlockingMiddleware` (raw ASGI) attributes both to the route being served.
- The pytest plugin (``pytest --detect-blocking``) fails the test that blocked.
"""

from ._detector import BlockingCallWarning as BlockingCallWarning
from ._detector import BlockingDetector as BlockingDetector
from ._detector import BlockingReport as BlockingReport
from ._detector import CallSite as CallSite
from ._detector import Mode as Mode
from ._detector import allow_blocking as allow_blocking
from ._detector import current_loop_kind as current_loop_kind
from ._detector import detect_blocking as detect_blocking
from ._middleware import BlockingMiddleware as BlockingMiddleware
from ._middleware import route_label as route_label
from ._monitor import LoopMonitor as LoopMonitor
from ._monitor import StallReport as StallReport
from ._rules import RULES as RULES
from ._rules import Rule as Rule

__all__ = [
    "RULES",
    "BlockingCallWarning",
    "BlockingDetector",
    "BlockingMiddleware",
    "BlockingReport",
    "CallSite",
    "LoopMonitor",
    "Mode",
    "Rule",
    "StallReport",
    "allow_blocking",
    "current_loop_kind",
    "detect_blocking",
    "route_label",
]
