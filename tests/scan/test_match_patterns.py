"""``match`` statements: names a ``case`` pattern captures are local, value patterns are uses.

A capture binds in the enclosing function like an assignment, so a captured ``requests``
is the matched value, not the module, in the case body and after the ``match``. A dotted
name (``case requests.codes.ok``) is a value pattern: it reads ``requests``, binds nothing.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from asyncify_kit.scan import scan_paths

S = "snippet.py"

HEADER = """\
import requests

class Point:
    __match_args__ = ("x", "y")

    def __init__(self, x, y):
        self.x = x
        self.y = y

"""


def findings(tmp_path: Path, source: str) -> list[str]:
    (tmp_path / S).write_text(HEADER + textwrap.dedent(source))
    result = scan_paths([tmp_path], root=tmp_path)
    return [f"{f.rule_id} {f.chain_text()}" for f in result.findings]


CAPTURES = [
    "requests",
    "[requests, *rest]",
    "[_, *requests]",
    '{"k": requests, **rest}',
    '{"k": _, **requests}',
    "Point(x=requests)",
    "Point(requests, _)",
    "[requests] | (requests, _)",
    "_ as requests",
    "[Point(x=1) as requests]",
    'Point(y=[{"k": (1 | 2) as kind, "v": [*_, requests]}])',
]


@pytest.mark.parametrize("pattern", CAPTURES)
def test_a_capture_shadows_the_module_in_the_case_body(tmp_path: Path, pattern: str) -> None:
    source = f"""\
        async def handler(x):
            match x:
                case {pattern}:
                    requests.get("https://example.com")
        """
    assert findings(tmp_path, source) == []


def test_a_capture_is_local_to_the_whole_function(tmp_path: Path) -> None:
    source = """\
        async def handler(x):
            match x:
                case [requests] if requests.get("https://example.com"):
                    pass
                case _:
                    pass
            return requests.get("https://example.com")
        """
    assert findings(tmp_path, source) == []


def test_value_patterns_are_uses_and_bind_nothing(tmp_path: Path) -> None:
    source = """\
        class Settings:
            @property
            def expected(self):
                return requests.get("https://example.com/status").status_code

        async def handler(code, settings: Settings):
            match code:
                case requests.codes.ok:
                    pass
                case {requests.codes.ok: _}:
                    pass
                case requests.Response(status_code=200):
                    pass
                case settings.expected:
                    pass
            return requests.get("https://example.com")
        """
    assert findings(tmp_path, source) == [
        f"ASY101 {S}:23 handler -> {S}:13 Settings.expected -> requests.get",
        f"ASY101 {S}:25 handler -> requests.get",
    ]
