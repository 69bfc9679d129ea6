"""The service's own settings, from the environment (the facades read theirs themselves)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import get_args

from asyncify_kit.detect import Mode


@dataclass(frozen=True)
class Settings:
    """``CATALOGUE_FX_URL``, ``CATALOGUE_DETECT_BLOCKING``, ``CATALOGUE_DETECT_ALLOW``.

    See the package docstring; ``CATALOGUE_DETECT_ALLOW`` is a comma-separated list of the
    patterns of ``detect_blocking(allow=...)`` (``module:botocore.*``, ``time.sleep``...).
    """

    fx_url: str = "http://127.0.0.1:8001"
    detect_blocking: Mode | None = "log"
    detect_allow: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        mode = environ.get("CATALOGUE_DETECT_BLOCKING", "log").strip().lower()
        modes = get_args(Mode)
        if mode != "off" and mode not in modes:
            raise ValueError(
                f"CATALOGUE_DETECT_BLOCKING={mode!r}; accepted: off, {', '.join(modes)}"
            )
        return cls(
            fx_url=environ.get("CATALOGUE_FX_URL", cls.fx_url),
            detect_blocking=None if mode == "off" else mode,  # type: ignore[arg-type]
            detect_allow=tuple(
                p.strip() for p in environ.get("CATALOGUE_DETECT_ALLOW", "").split(",") if p.strip()
            ),
        )
