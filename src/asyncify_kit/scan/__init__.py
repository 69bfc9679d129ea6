"""Static scanner: blocking calls reachable from ``async def``, across functions and modules.

Linters see ``requests.get`` only when it is written inside the ``async def``. The scanner
parses the whole project with `ast`, builds the call graph of its functions and methods
(imports and aliases, ``self``/``cls``, module-level objects, ``functools.partial``) and
reports every blocking call an ``async def`` reaches through sync project code, with the
whole chain. Calls offloaded to threads (``await run_sync(f)``, ``@asyncify``,
``asyncio.to_thread``, ``loop.run_in_executor``, ``anyio.to_thread.run_sync``,
``run_in_threadpool``) are not reported.

Example:
    >>> import pathlib, tempfile
    >>> project = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (project / "app.py").write_text(
    ...     "import requests\\n"
    ...     "async def handler():\\n"
    ...     "    return requests.get('http://example.com')\\n"
    ... )
    >>> result = scan_paths([project], root=project)
    >>> [(f.rule_id, f.location) for f in result.findings]
    [('ASY101', 'app.py:3:12')]
"""

from ._cli import add_scan_subcommand as add_scan_subcommand
from ._cli import main as main
from ._cli import run_scan as run_scan
from ._config import ScanConfig as ScanConfig
from ._config import find_pyproject as find_pyproject
from ._config import load_config as load_config
from ._findings import Finding as Finding
from ._findings import Hop as Hop
from ._findings import ScanResult as ScanResult
from ._report import render as render
from ._report import render_json as render_json
from ._report import render_sarif as render_sarif
from ._report import render_text as render_text
from ._rules import RULES as RULES
from ._rules import Rule as Rule
from ._scanner import scan_paths as scan_paths

__all__ = [
    "RULES",
    "Finding",
    "Hop",
    "Rule",
    "ScanConfig",
    "ScanResult",
    "add_scan_subcommand",
    "find_pyproject",
    "load_config",
    "main",
    "render",
    "render_json",
    "render_sarif",
    "render_text",
    "run_scan",
    "scan_paths",
]
