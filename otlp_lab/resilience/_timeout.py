"""Deadlines: absolute expiry times that propagate from a caller to its callees."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from otlp_lab.errors import ConfigError

__all__ = ["Deadline", "current_deadline", "deadline_scope"]

# gRPC "grpc-timeout" units (PROTOCOL-HTTP2.md): at most 8 digits then one unit letter.
_GRPC_UNITS_S = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "S": 1.0, "M": 60.0, "H": 3600.0}
_GRPC_TIMEOUT = re.compile(r"^([0-9]{1,8})([HMSmun])$")


@dataclass(frozen=True, slots=True, order=True)
class Deadline:
    """An absolute expiry time on the caller's clock; ``math.inf`` means "no deadline".

    A deadline is a value: child deadlines are new objects, never mutations.

    Parameters
    ----------
    expires_at_s : float
        When it expires, in the same seconds as the ``now`` values passed to it.

    Examples
    --------
    >>> d = Deadline.after(10.0, 2.0)
    >>> d.remaining_s(11.5), d.expired(12.0)
    (0.5, True)
    >>> d.child(10.0, timeout_s=5.0, margin_s=0.1)   # the parent's 2 s win, minus the margin
    Deadline(expires_at_s=11.9)
    """

    expires_at_s: float = math.inf

    def __post_init__(self) -> None:
        if not isinstance(self.expires_at_s, (int, float)) or math.isnan(self.expires_at_s):
            raise ConfigError(
                f"Deadline.expires_at_s must be a number or inf. Got {self.expires_at_s!r} instead."
            )

    @classmethod
    def _at(cls, expires_at_s: float) -> Deadline:
        """A deadline at a time already known to be a number (no check: for hot paths)."""
        d = object.__new__(cls)
        object.__setattr__(d, "expires_at_s", expires_at_s)
        return d

    @classmethod
    def after(cls, now: float, timeout_s: float | None) -> Deadline:
        """The deadline ``timeout_s`` after ``now`` (no deadline when ``timeout_s`` is None)."""
        if timeout_s is None:
            return cls()
        if not timeout_s >= 0:
            raise ConfigError(f"Deadline timeout_s must be >= 0. Got {timeout_s!r} instead.")
        return cls(now + timeout_s)

    @property
    def is_set(self) -> bool:
        """False for the "no deadline" value."""
        return math.isfinite(self.expires_at_s)

    def remaining_s(self, now: float) -> float:
        """Seconds left at ``now`` (0 once expired, ``inf`` when there is no deadline)."""
        return max(0.0, self.expires_at_s - now)

    def expired(self, now: float) -> bool:
        """True at or after the expiry time."""
        return now >= self.expires_at_s

    def child(self, now: float, timeout_s: float | None = None, *, margin_s: float = 0.0) -> Deadline:
        """The deadline to hand a callee: ``min(now + timeout_s, expires_at_s - margin_s)``.

        ``margin_s`` leaves the caller time to handle the callee's failure.
        """
        own = math.inf if timeout_s is None else now + timeout_s
        at = min(own, self.expires_at_s - margin_s)
        return Deadline._at(at) if at == at else Deadline(at)  # NaN (a bad margin or now) fails the check

    def to_grpc_timeout(self, now: float) -> str | None:
        """The ``grpc-timeout`` header for the time left (rounded up), or None without a deadline."""
        if not self.is_set:
            return None
        remaining = self.remaining_s(now)
        for unit in "numSMH":
            amount = math.ceil(remaining / _GRPC_UNITS_S[unit] - 1e-9)
            if amount < 100_000_000:
                return f"{max(amount, 0)}{unit}"
        return "99999999H"

    @classmethod
    def from_grpc_timeout(cls, now: float, header: str | None) -> Deadline:
        """The deadline a ``grpc-timeout`` header (``"250m"``) sets, counted from ``now``."""
        if header is None:
            return cls()
        m = _GRPC_TIMEOUT.match(header.strip())
        if m is None:
            raise ConfigError(
                f"grpc-timeout must be up to 8 digits and one of H M S m u n. Got {header!r} instead."
            )
        return cls(now + int(m.group(1)) * _GRPC_UNITS_S[m.group(2)])


_CURRENT: ContextVar[Deadline | None] = ContextVar("otlp_lab_deadline", default=None)
_NONE = Deadline()


def current_deadline() -> Deadline:
    """The deadline of the attempt this code runs in (asyncio drivers set it; "none" elsewhere).

    A :class:`PolicyStack` called from inside another stack's attempt starts from it, so
    deadlines propagate down a chain of async calls without being passed around.
    """
    return _CURRENT.get() or _NONE


@contextmanager
def deadline_scope(deadline: Deadline) -> Iterator[Deadline]:
    """Make ``deadline`` current inside the ``with`` block (and in tasks created there).

    Examples
    --------
    >>> with deadline_scope(Deadline(5.0)):
    ...     current_deadline()
    Deadline(expires_at_s=5.0)
    >>> current_deadline().is_set
    False
    """
    token = _CURRENT.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT.reset(token)
