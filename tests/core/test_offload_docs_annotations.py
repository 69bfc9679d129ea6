"""The documentation's ``@contextmanager`` examples are annotated as typeshed wants.

docs/offload.md annotated its ``@asyncify @contextmanager`` example ``-> Iterator[T]``, which
typeshed marks deprecated for ``@contextmanager``: pyright's strict mode failed the example as
written. ``-> Generator[T, None, None]`` is what `asyncify` types as an async context manager
(``tests/typing/offload_shapes_types.py``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON_BLOCK = re.compile(r"^```python\n(?P<code>.*?)^```", re.S | re.M)


def _contextmanager_returns() -> list[tuple[str, str]]:
    """(where, return annotation) of each ``@contextmanager`` function of the docs' examples."""
    found: list[tuple[str, str]] = []
    for path in [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        for block in PYTHON_BLOCK.finditer(text):
            line = text.count("\n", 0, block.start()) + 1
            for node in ast.walk(ast.parse(block["code"])):
                if not isinstance(node, ast.FunctionDef) or node.returns is None:
                    continue
                names = {ast.unparse(d).rsplit(".", 1)[-1] for d in node.decorator_list}
                if "contextmanager" in names:
                    where = f"{path.relative_to(ROOT)}:{line} {node.name}"
                    found.append((where, ast.unparse(node.returns)))
    return found


def test_contextmanager_examples_return_generators() -> None:
    found = _contextmanager_returns()
    assert any(where.startswith("docs/offload.md") for where, _ in found)
    wrong = [(where, returns) for where, returns in found if not returns.startswith("Generator[")]
    assert wrong == []
