"""Imports resolve the way Python resolves them, in the layouts real projects have.

A project file is importable under a name only from its import root: ``examples/requests.py``
is ``requests`` for the scripts next to it, not for the rest of the project, and an absolute
``import time`` inside a package is the standard library, never the package's ``time.py``.
Each case is a small project written to ``tmp_path``, scanned from its root (as
``asyncify-kit scan PATHS`` from the project directory), with its exact findings.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from asyncify_kit.scan import scan_paths

STDLIB_CALLS = """
import time
import http.client

async def handler():
    time.sleep(1)
    http.client.HTTPConnection("example.com").request("GET", "/")
"""
HTTP_REQUEST = "http.client.HTTPConnection.request"


@dataclass(frozen=True)
class Layout:
    id: str
    files: dict[str, str]
    scanned: list[str]
    expected: list[str]


LAYOUTS = [
    Layout(
        "script-folder-module-named-like-a-library",
        {
            "app/__init__.py": "",
            "app/api.py": "import requests\nasync def handler():\n    requests.get('u')\n",
            "examples/requests.py": "PAYLOAD = {'a': 1}\n",
        },
        ["."],
        ["ASY101 app/api.py:3 handler -> requests.get"],
    ),
    Layout(
        # the scripts of the folder do import their neighbour
        "script-folder-module-seen-by-its-neighbours",
        {
            "examples/requests.py": "import time\ndef get(url):\n    time.sleep(1)\n",
            "examples/run.py": "import requests\nasync def main():\n    requests.get('u')\n",
        },
        ["."],
        [
            "ASY111 examples/run.py:3 main -> examples/requests.py:3 get -> time.sleep",
        ],
    ),
    Layout(
        "script-folder-package-named-like-a-library",
        {
            "app/__init__.py": "",
            "app/api.py": STDLIB_CALLS,
            "examples/http/__init__.py": "",
            "examples/http/client.py": "def HTTPConnection(host):\n    return host\n",
        },
        ["."],
        [
            "ASY111 app/api.py:6 handler -> time.sleep",
            f"ASY103 app/api.py:7 handler -> {HTTP_REQUEST}",
        ],
    ),
    *(
        Layout(
            f"src-layout-package-modules-named-like-stdlib-scanning-{'-'.join(scanned)}",
            {
                "pyproject.toml": "",
                "src/app/__init__.py": "",
                "src/app/time.py": "def utcnow():\n    return 0\n",
                "src/app/http.py": "def ok():\n    return 1\n",
                "src/app/api.py": STDLIB_CALLS,
            },
            scanned,
            [
                "ASY111 src/app/api.py:6 handler -> time.sleep",
                f"ASY103 src/app/api.py:7 handler -> {HTTP_REQUEST}",
            ],
        )
        for scanned in (
            ["src/app"],
            ["src"],
            ["."],
            ["src/app/http.py", "src/app/time.py", "src/app/api.py"],  # as pre-commit does
        )
    ),
    Layout(
        # the package's own time.py is reached by a relative or package-qualified import
        "package-module-named-like-stdlib-imported-explicitly",
        {
            "src/app/__init__.py": "",
            "src/app/time.py": "import time\ndef pause():\n    time.sleep(1)\n",
            "src/app/api.py": (
                "from . import time as own\n"
                "from app.time import pause\n"
                "async def relative():\n"
                "    own.pause()\n"
                "async def qualified():\n"
                "    pause()\n"
            ),
        },
        ["src/app"],
        [
            "ASY111 src/app/api.py:4 relative -> src/app/time.py:3 pause -> time.sleep",
            "ASY111 src/app/api.py:6 qualified -> src/app/time.py:3 pause -> time.sleep",
        ],
    ),
    Layout(
        "src-layout-tests-import-the-package-and-their-helpers",
        {
            "pyproject.toml": "",
            "src/app/__init__.py": "",
            "src/app/service.py": "import requests\ndef load():\n    return requests.get('u')\n",
            "tests/helpers.py": "import time\ndef wait():\n    time.sleep(1)\n",
            "tests/test_api.py": (
                "from app.service import load\n"
                "from helpers import wait\n"
                "async def test_load():\n"
                "    load()\n"
                "    wait()\n"
            ),
        },
        ["src", "tests"],
        [
            "ASY101 tests/test_api.py:4 test_load -> src/app/service.py:3 load -> requests.get",
            "ASY111 tests/test_api.py:5 test_load -> tests/helpers.py:3 wait -> time.sleep",
        ],
    ),
    Layout(
        "flat-layout-top-level-module-and-scripts",
        {
            "settings.py": "import pathlib\ndef load():\n    return pathlib.Path('s').read_text()",
            "app/__init__.py": "",
            "app/views.py": "import settings\nasync def view():\n    settings.load()\n",
            "scripts/serve.py": "from app.views import view\nasync def main():\n    await view()\n",
        },
        ["."],
        ["ASY106 app/views.py:3 view -> settings.py:3 load -> pathlib.Path.read_text"],
    ),
    Layout(
        "namespace-package",
        {
            "ns/tools/disk.py": "import os\ndef clean():\n    os.remove('x')\n",
            "app/__init__.py": "",
            "app/api.py": "from ns.tools import disk\nasync def handler():\n    disk.clean()\n",
        },
        ["."],
        ["ASY107 app/api.py:3 handler -> ns/tools/disk.py:3 clean -> os.remove"],
    ),
    Layout(
        "monorepo-service-with-its-own-src-and-tests",
        {
            "services/billing/pyproject.toml": "",
            "services/billing/src/billing/__init__.py": "",
            "services/billing/src/billing/db.py": (
                "import sqlite3\ndef connect():\n    return sqlite3.connect('b')\n"
            ),
            "services/billing/tests/test_db.py": (
                "from billing.db import connect\nasync def test_connect():\n    connect()\n"
            ),
        },
        ["."],
        [
            "ASY110 services/billing/tests/test_db.py:3 test_connect"
            " -> services/billing/src/billing/db.py:3 connect -> sqlite3.connect",
        ],
    ),
    Layout(
        # a package named like build output is scanned; build output (no __init__.py) is not
        "packages-named-build-and-dist",
        {
            "app/__init__.py": "",
            "app/build/__init__.py": "",
            "app/build/runner.py": "import subprocess\ndef run(ref):\n    subprocess.run([ref])\n",
            "app/api.py": "from app.build.runner import run\nasync def go(ref):\n    run(ref)\n",
            "app/dist/__init__.py": "import time\nasync def publish():\n    time.sleep(5)\n",
            "build/lib/app/api.py": "import time\nasync def copied():\n    time.sleep(1)\n",
            "dist/tool.py": "import time\nasync def bundled():\n    time.sleep(1)\n",
        },
        ["."],
        [
            "ASY112 app/api.py:3 go -> app/build/runner.py:3 run -> subprocess.run",
            "ASY111 app/dist/__init__.py:3 publish -> time.sleep",
        ],
    ),
]


def write(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


@pytest.mark.parametrize("layout", LAYOUTS, ids=[layout.id for layout in LAYOUTS])
def test_layout(tmp_path: Path, layout: Layout) -> None:
    write(tmp_path, layout.files)
    result = scan_paths([tmp_path / path for path in layout.scanned], root=tmp_path)
    found = [f"{f.rule_id} {f.chain_text()}" for f in result.findings]
    assert found == layout.expected


def test_a_module_named_like_a_library_in_a_script_folder_hides_nothing_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command line from the project directory, default root: the current directory."""
    write(tmp_path, LAYOUTS[0].files)
    monkeypatch.chdir(tmp_path)
    (finding,) = scan_paths(["."]).findings
    assert finding.blocking_call == "requests.get"
