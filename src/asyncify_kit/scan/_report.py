"""Render a `ScanResult` as human text, JSON, or SARIF 2.1.0 (for code-scanning tools)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ._findings import Finding, ScanResult
from ._rules import RULES, SYNTAX_ERROR_RULE

__all__ = ["FORMATS", "render", "render_json", "render_sarif", "render_text"]

SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
_INFORMATION_URI = "https://asyncify-kit.readthedocs.io/en/latest/scan/"


def _version() -> str:
    from .. import __version__

    return __version__


def render_text(result: ScanResult) -> str:
    """One block per finding (location, rule, message, chain, fix), then a summary line."""
    out: list[str] = []
    for finding in result.findings:
        out.append(f"{finding.location}: {finding.rule_id} [{finding.rule_name}] {finding.message}")
        if len(finding.chain) > 1:
            width = max(len(f"{hop.path}:{hop.line}:{hop.column}") for hop in finding.chain)
            for hop in finding.chain:
                where = f"{hop.path}:{hop.line}:{hop.column}"
                out.append(f"    {where:<{width}}  {hop.function}: {hop.call}")
        out.append(f"    fix: {finding.fix}")
    scanned = (
        f"{result.files} file{'s' if result.files != 1 else ''}, "
        f"{result.lines} line{'s' if result.lines != 1 else ''} in {result.seconds:.2f} s"
    )
    unscanned = sum(finding.rule_id == SYNTAX_ERROR_RULE.id for finding in result.findings)
    count = len(result.findings) - unscanned
    if count:
        summary = f"Found {count} blocking call{'s' if count != 1 else ''}"
    else:
        summary = "No blocking calls found"
    if unscanned:  # ASY001: a file that does not parse, or code too deep to analyse
        summary += f", {unscanned} place{'s' if unscanned != 1 else ''} not scanned (ASY001)"
    if result.findings:
        out.append("")
    out.append(f"{summary} ({scanned}).")
    return "\n".join(out) + "\n"


def _finding_dict(finding: Finding) -> dict[str, Any]:
    return {
        "rule_id": finding.rule_id,
        "rule": finding.rule_name,
        "path": finding.path,
        "line": finding.line,
        "column": finding.column,
        "function": finding.function,
        "blocking_call": finding.blocking_call,
        "message": finding.message,
        "fix": finding.fix,
        "chain": [
            {
                "path": hop.path,
                "line": hop.line,
                "column": hop.column,
                "function": hop.function,
                "call": hop.call,
            }
            for hop in finding.chain
        ],
    }


def render_json(result: ScanResult) -> str:
    """A JSON document: totals and every finding with its chain."""
    document = {
        "tool": "asyncify-kit",
        "version": _version(),
        "root": result.root,
        "files": result.files,
        "lines": result.lines,
        "seconds": round(result.seconds, 4),
        "findings": [_finding_dict(finding) for finding in result.findings],
    }
    return json.dumps(document, indent=2) + "\n"


def _artifact(path: str) -> dict[str, str]:
    if Path(path).is_absolute():
        return {"uri": Path(path).as_uri()}
    # os.fsencode: the original bytes of a file name that is not valid UTF-8
    return {"uri": quote(os.fsencode(path)), "uriBaseId": "%SRCROOT%"}


def _physical(path: str, line: int, column: int) -> dict[str, Any]:
    return {
        "artifactLocation": _artifact(path),
        "region": {"startLine": line, "startColumn": column},
    }


def _directory_uri(root: str) -> str:
    uri = Path(root).as_uri()
    return uri if uri.endswith("/") else uri + "/"


def render_sarif(result: ScanResult) -> str:
    """A SARIF 2.1.0 log with one run; each chain becomes a code flow."""
    rules = list(RULES.values())
    index = {rule.id: i for i, rule in enumerate(rules)}
    results: list[dict[str, Any]] = []
    for finding in result.findings:
        entry: dict[str, Any] = {
            "ruleId": finding.rule_id,
            "ruleIndex": index[finding.rule_id],
            "level": "error" if finding.rule_id == "ASY001" else "warning",
            "message": {"text": f"{finding.message}. Fix: {finding.fix}."},
            "locations": [
                {"physicalLocation": _physical(finding.path, finding.line, finding.column)}
            ],
            "partialFingerprints": {
                "asyncifyChain/v1": hashlib.sha256(
                    "|".join(
                        [finding.rule_id, finding.function, finding.blocking_call]
                        + [f"{hop.path}:{hop.function}:{hop.call}" for hop in finding.chain]
                    ).encode("utf-8", "surrogateescape")
                ).hexdigest()[:32]
            },
            "properties": {"fix": finding.fix, "blockingCall": finding.blocking_call},
        }
        if finding.chain:
            entry["codeFlows"] = [
                {
                    "threadFlows": [
                        {
                            "locations": [
                                {
                                    "location": {
                                        "physicalLocation": _physical(
                                            hop.path, hop.line, hop.column
                                        ),
                                        "message": {"text": f"{hop.function}: {hop.call}"},
                                    },
                                    "nestingLevel": depth,
                                }
                                for depth, hop in enumerate(finding.chain)
                            ]
                        }
                    ]
                }
            ]
        results.append(entry)
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "asyncify-kit",
                        "version": _version(),
                        "informationUri": _INFORMATION_URI,
                        "rules": [
                            {
                                "id": rule.id,
                                "name": rule.name,
                                "shortDescription": {"text": rule.summary},
                                "help": {"text": f"Fix: {rule.fix}."},
                                "defaultConfiguration": {
                                    "level": "error" if rule.id == "ASY001" else "warning"
                                },
                            }
                            for rule in rules
                        ],
                    }
                },
                "originalUriBaseIds": {"%SRCROOT%": {"uri": _directory_uri(result.root)}},
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"


FORMATS = {"text": render_text, "json": render_json, "sarif": render_sarif}


def render(result: ScanResult, fmt: str) -> str:
    """Render `result` in format `fmt` (``text``, ``json`` or ``sarif``)."""
    return FORMATS[fmt](result)
