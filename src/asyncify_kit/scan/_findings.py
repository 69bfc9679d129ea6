"""What a scan reports: findings with their call chain, and the scan's totals."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Finding", "Hop", "ScanResult"]


@dataclass(frozen=True)
class Hop:
    """One call on the way from an ``async def`` to a blocking call.

    `function` is the qualified name of the function that makes the call (``"UserService.get"``),
    `call` the call as written in the source (``"self._fetch(...)"``, ``"requests.get(...)"``,
    or ``"service.settings"`` for a property);
    `line` and `column` are 1-based and locate the call.
    """

    path: str
    line: int
    column: int
    function: str
    call: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column} in {self.function}: {self.call}"


@dataclass(frozen=True)
class Finding:
    """A blocking call reachable from an ``async def``, or a file that could not be parsed.

    The location (`path`, `line`, `column`) is the call inside the ``async def``: the line
    where the event loop blocks and where ``await run_sync(...)`` would go. `chain` lists every
    hop from there to the blocking call (`blocking_call`, e.g. ``"requests.get"``); it has one
    hop for a blocking call written directly in the ``async def``, and no hop for a syntax
    error (rule ``ASY001``).

    Example:
        >>> f = Finding("ASY111", "time-sleep", "app.py", 3, 5, "blocking call time.sleep",
        ...             "use `await asyncio.sleep(...)`", "time.sleep", "handler", ())
        >>> f.location
        'app.py:3:5'
    """

    rule_id: str
    rule_name: str
    path: str
    line: int
    column: int
    message: str
    fix: str
    blocking_call: str
    function: str
    chain: tuple[Hop, ...]

    @property
    def location(self) -> str:
        """``path:line:column`` of the finding."""
        return f"{self.path}:{self.line}:{self.column}"

    def chain_text(self) -> str:
        """The chain on one line: ``a.py:3 handler -> b.py:7 helper -> requests.get``."""
        parts = [f"{hop.path}:{hop.line} {hop.function}" for hop in self.chain]
        parts.append(self.blocking_call)
        return " -> ".join(parts)


@dataclass(frozen=True)
class ScanResult:
    """The findings of a scan (sorted by location) and what was scanned."""

    findings: tuple[Finding, ...]
    files: int
    lines: int
    seconds: float
    root: str

    @property
    def exit_code(self) -> int:
        """1 when there are findings, else 0 (the CLI's exit status)."""
        return 1 if self.findings else 0
