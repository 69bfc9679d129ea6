"""A plain ``pip install asyncify-kit`` has what the library imports without an extra.

The test environment holds every extra and the dev tools, which hides a module imported
unconditionally but not declared: ``sniffio`` was (anyio 4.16 no longer brings it), and
``from asyncify_kit.sql import Database`` failed with ``ModuleNotFoundError`` in a fresh
install, README's SQLite example included. Here a fresh interpreter refuses every
third-party module outside the declared dependencies (and theirs), imports each public
module and runs that example on SQLite, ``memory://`` and ``file://``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = textwrap.dedent(
    """
    import importlib, importlib.abc, importlib.metadata as md, json, re, sys

    def requirements(dist):
        names = []
        for req in md.requires(dist) or []:
            if "extra ==" in req:
                continue
            name, _, marker = req.partition(";")
            if marker and not eval_marker(marker):
                continue
            names.append(re.split(r"[ <>=!~\\[(]", name.strip(), maxsplit=1)[0])
        return names

    def eval_marker(marker):
        from packaging.markers import Marker
        return Marker(marker).evaluate()

    allowed, todo = set(), ["asyncify-kit"]
    while todo:
        dist = todo.pop()
        key = re.sub(r"[-_.]+", "-", dist).lower()
        if key in allowed:
            continue
        allowed.add(key)
        todo.extend(requirements(dist))
    owners = md.packages_distributions()
    refused = set()

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            top = name.partition(".")[0]
            if top in sys.stdlib_module_names or top.startswith("_"):
                return None
            dists = {re.sub(r"[-_.]+", "-", d).lower() for d in owners.get(top, [])}
            if dists and not dists & allowed:
                refused.add(top)
                raise ModuleNotFoundError(f"No module named {name!r} (not declared)", name=name)
            return None

    import packaging.markers  # (the probe's own tool, loaded before the finder)
    assert not {m.partition(".")[0] for m in sys.modules} - set(sys.stdlib_module_names) - {
        "packaging", "__main__", "sitecustomize", "usercustomize"
    } - {m for m in sys.modules if m.startswith("_")}, sorted(sys.modules)
    sys.meta_path.insert(0, Refuse())

    for name in ("asyncify_kit", "asyncify_kit.sql", "asyncify_kit.storage",
                 "asyncify_kit.http", "asyncify_kit.aws", "asyncify_kit.detect",
                 "asyncify_kit.scan", "asyncify_kit.exceptions"):
        importlib.import_module(name)

    import asyncio, tempfile
    from asyncify_kit import asyncify
    from asyncify_kit.sql import Database
    from asyncify_kit.storage import Storage

    @asyncify
    def double(x):
        return 2 * x

    async def main():
        root = tempfile.mkdtemp()
        async with Database(f"sqlite:///{root}/app.db") as db:
            await db.execute("create table t (id integer primary key, name text)")
            await db.execute("insert into t (name) values (:name)", {"name": "a"})
            rows = await db.fetch_all("select id, name from t")
        for url in ("memory://", f"file://{root}/data"):
            async with Storage(url) as st:
                await st.write("a/b.txt", b"hello")
                assert await st.read("a/b.txt") == b"hello"
        return [dict(r) for r in rows], await double(21)

    rows, doubled = asyncio.run(main())
    print(json.dumps({"rows": rows, "doubled": doubled, "refused": sorted(refused),
                      "allowed": sorted(allowed)}))
    """
)


def test_the_core_runs_with_the_declared_dependencies_alone(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["rows"] == [{"id": 1, "name": "a"}]
    assert report["doubled"] == 42
    assert "anyio" in report["allowed"]
    assert "sniffio" not in report["allowed"]  # (else the test proves nothing for it)
