"""Every name in a public module's ``__all__`` is documented in docs/api.md.

docs/api.md documents a name in one of three ways:

- its own mkdocstrings block, ``::: asyncify_kit.sql.Database``;
- a hand-written line that starts with the name in backticks, for values mkdocstrings cannot
  describe (```asyncify_kit.sql.SPEEDUPS` (`bool`): ...``);
- a block of the whole module that defines it, ``::: asyncify_kit.exceptions``, which renders
  every name of that module's ``__all__`` (the facades re-export their exceptions from there).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
API_MD = ROOT / "docs" / "api.md"

PUBLIC_MODULES = (
    "asyncify_kit",
    "asyncify_kit.sql",
    "asyncify_kit.storage",
    "asyncify_kit.http",
    "asyncify_kit.aws",
    "asyncify_kit.detect",
    "asyncify_kit.fastapi",
    "asyncify_kit.scan",
    "asyncify_kit.exceptions",
)

# a block: "::: identifier", then its indented option lines, if any
BLOCK = re.compile(r"^:::[ \t]+(?P<id>[\w.]+)[ \t]*$(?P<options>(?:\n[ \t]+\S.*)*)", re.M)
# a hand-written entry: "`asyncify_kit.sql.SPEEDUPS` (`bool`): ..."
WRITTEN = re.compile(r"^`(?P<id>asyncify_kit[\w.]*)` \(", re.M)


def _exports(module_name: str) -> dict[str, object]:
    module = importlib.import_module(module_name)
    names: list[str] = module.__all__
    return {name: getattr(module, name) for name in names}


def _rendered_by(whole_module: str, name: str, obj: object) -> bool:
    exports = _exports(whole_module)
    return name in exports and exports[name] is obj


def undocumented(text: str) -> list[str]:
    """The ``module.name`` of each public name that *text* (an api.md) does not document."""
    blocks = list(BLOCK.finditer(text))
    named = {m["id"] for m in blocks} | {m["id"] for m in WRITTEN.finditer(text)}
    # a module block restricted by a `members:` option renders only some of its names
    whole_modules = [
        m["id"] for m in blocks if m["id"] in PUBLIC_MODULES and "members:" not in m["options"]
    ]
    missing: list[str] = []
    for module_name in PUBLIC_MODULES:
        for name, obj in _exports(module_name).items():
            path = f"{module_name}.{name}"
            if path not in named and not any(
                _rendered_by(whole, name, obj) for whole in whole_modules
            ):
                missing.append(path)
    return missing


def test_every_public_name_is_in_the_api_reference() -> None:
    missing = undocumented(API_MD.read_text(encoding="utf-8"))
    assert missing == [], f"docs/api.md does not document: {', '.join(missing)}"


def _entries() -> list[tuple[str, int]]:
    """(identifier, line index) of each entry of api.md: a ``:::`` line or a hand-written one."""
    lines = API_MD.read_text(encoding="utf-8").splitlines()
    return [
        (m["id"], index)
        for index, line in enumerate(lines)
        if (m := BLOCK.match(line) or WRITTEN.match(line))
    ]


ENTRIES = _entries()


@pytest.mark.parametrize(("identifier", "index"), ENTRIES, ids=[e[0] for e in ENTRIES])
def test_removing_an_entry_is_detected(identifier: str, index: int) -> None:
    """The check is not vacuous: api.md without any one of its entries fails it."""
    lines = API_MD.read_text(encoding="utf-8").splitlines()
    del lines[index]
    missing = undocumented("\n".join(lines))
    if identifier in PUBLIC_MODULES:  # a whole-module block: the names it renders go missing
        assert missing != []
    else:
        assert identifier in missing
