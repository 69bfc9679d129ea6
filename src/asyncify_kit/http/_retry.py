"""When and how long to wait before sending a request again.

A request is retried after a connect error, a connect, read or pool timeout, or a response
whose status is in `Retry.statuses` (429, 502, 503, 504) — but only for idempotent methods,
unless the caller asks for more (``Retry(methods=Retry.ALL_METHODS)`` for a client, or
``idempotent=True`` for one request). The wait grows exponentially with jitter; a
``Retry-After`` header (seconds or an HTTP date) replaces it, capped at
`Retry.max_retry_after`.
"""

from __future__ import annotations

import datetime
import email.utils
import random
from dataclasses import dataclass, field

from ..exceptions import ConfigError, ConnectError, HTTPError, TimeoutException

__all__ = ["IDEMPOTENT_METHODS", "Retry", "RetryInput", "parse_retry_after"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

_RETRYABLE_TIMEOUTS = frozenset({"connect", "read", "pool"})


@dataclass(frozen=True)
class Retry:
    """The retry policy of an `HttpClient` (or of one request).

    *total* is the number of retries after the first attempt (``Retry(3)`` sends at most four
    times). Attempt *n* waits ``min(backoff_max, backoff_factor * 2 ** (n - 1))`` seconds,
    less a random share of up to *jitter* of it; a ``Retry-After`` header sets the wait
    instead (when *respect_retry_after*), never longer than *max_retry_after*.

    >>> HttpClient(retries=Retry(3, backoff_factor=0.2, statuses={503}))
    """

    ALL_METHODS = frozenset(
        {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE", "POST", "PATCH", "CONNECT"}
    )

    total: int = 2
    backoff_factor: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.5
    statuses: frozenset[int] = field(default=frozenset({429, 502, 503, 504}))
    methods: frozenset[str] = IDEMPOTENT_METHODS
    respect_retry_after: bool = True
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.total, bool) or not isinstance(self.total, int) or self.total < 0:
            raise ConfigError(f"invalid retry total {self.total!r}; accepted: an integer >= 0")
        for name in ("backoff_factor", "backoff_max", "max_retry_after"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"invalid retry {name} {value!r}; accepted: seconds >= 0")
        if not 0 <= self.jitter <= 1:
            raise ConfigError(f"invalid retry jitter {self.jitter!r}; accepted: 0 to 1")
        object.__setattr__(self, "statuses", frozenset(int(s) for s in self.statuses))
        object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))

    @classmethod
    def coerce(cls, value: RetryInput) -> Retry:
        """A `Retry` from a count of retries, ``None`` (no retries) or a `Retry`."""
        if isinstance(value, Retry):
            return value
        if value is None:
            return cls(0)
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        raise ConfigError(
            f"invalid retries {value!r}; accepted: a count >= 0, None or asyncify_kit.http.Retry"
        )

    def allows(self, method: str, idempotent: bool | None) -> bool:
        """Whether a request with *method* may be retried at all."""
        if self.total == 0 or idempotent is False:
            return False
        return idempotent is True or method in self.methods

    def should_retry_error(self, error: HTTPError) -> bool:
        """Whether the transport *error* is one that retrying can cure."""
        if isinstance(error, ConnectError):
            return True
        if isinstance(error, TimeoutException):
            return getattr(error, "phase", "read") in _RETRYABLE_TIMEOUTS
        return False

    def backoff(self, attempt: int) -> float:
        """The wait before retry number *attempt* (1 for the first retry), jitter included."""
        delay: float = min(self.backoff_max, self.backoff_factor * (2 ** (attempt - 1)))
        return delay * (1 - self.jitter * random.random())

    def wait_for(self, attempt: int, retry_after: str | None) -> float:
        """The wait before retry *attempt*, given the response's ``Retry-After`` value."""
        if self.respect_retry_after and retry_after is not None:
            seconds = parse_retry_after(retry_after)
            if seconds is not None:
                return min(seconds, self.max_retry_after)
        return self.backoff(attempt)


RetryInput = Retry | int | None


def parse_retry_after(value: str, now: datetime.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta seconds or an HTTP date.

    >>> parse_retry_after("3")
    3.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=...)  # seconds until then

    Returns ``None`` for a value that is neither; a date in the past gives ``0.0``.
    """
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    current = now or datetime.datetime.now(datetime.timezone.utc)
    return max(0.0, (when - current).total_seconds())
