"""The public names of asyncify_kit.detect: exactly these, each importable."""

from __future__ import annotations

import asyncify_kit.detect as detect

EXPECTED = {
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
}


def test_exported_members_are_exact() -> None:
    assert set(detect.__all__) == EXPECTED
    for name in detect.__all__:
        assert getattr(detect, name) is not None


def test_every_rule_has_a_fix_and_a_kind() -> None:
    for rule in detect.RULES:
        assert rule.fix.startswith(f"{rule.name} -> ")
        assert rule.kind in {
            "sleep",
            "socket",
            "ssl",
            "dns",
            "file",
            "os",
            "subprocess",
            "select",
            "thread",
            "sqlite3",
            "http",
            "postgres",
            "mysql",
            "aws",
        }
    names = [rule.name for rule in detect.RULES]
    assert len(names) == len(set(names))
