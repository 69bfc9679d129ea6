"""MkDocs hook: render the backend table of the registry into the configuration reference.

The page keeps a marker, ``<!-- backends-table -->``; at build time it is replaced by one
table per facade generated from `asyncify_kit._registry.backends()`, so the reference cannot
drift from the code. ``tests/test_docs.py`` checks the same rendering.
"""

from __future__ import annotations

from typing import Any

MARKER = "<!-- backends-table -->"


def render_backends_table() -> str:
    from asyncify_kit._registry import backends, default_scheme

    out: list[str] = []
    titles = {
        "sql": "SQL (`Database`)",
        "storage": "Storage (`Storage`)",
        "http": "HTTP (`HttpClient`)",
    }
    for family, title in titles.items():
        out.append(f"### {title}\n")
        out.append("| scheme | backend | extra | trio | options |")
        out.append("|---|---|---|---|---|")
        for spec in backends(family):
            defaults = [
                d
                for d in ("postgresql", "postgres", "mysql", "mariadb")
                if default_scheme(family, d) == spec.scheme
            ]
            scheme = f"`{spec.scheme}`"
            if defaults:
                scheme += " (default for " + ", ".join(f"`{d}`" for d in defaults) + ")"
            extra = f"`asyncify-kit[{spec.extra}]`" if spec.extra else "built in"
            options = (
                "<br>".join(
                    f"`{opt.name}` = `{opt.default}`: {opt.accepted}"
                    + (f" — {opt.doc}" if opt.doc else "")
                    for opt in spec.options
                )
                or "—"
            )
            trio = "yes" if spec.trio else "no (asyncio only)"
            out.append(f"| {scheme} | {spec.description} | {extra} | {trio} | {options} |")
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, render_backends_table())
    return markdown
