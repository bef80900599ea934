"""Shared pieces of the resilience policies: outcomes, transitions, config validation.

Nothing here reads a clock: every function that needs the time takes ``now`` (seconds).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, NamedTuple, Self

from otlp_lab._config import parse_duration_s as _parse_duration_s
from otlp_lab.errors import ConfigError

__all__ = [
    "GRPC_STATUS_NAMES",
    "ConfigBase",
    "Outcome",
    "StateRecorder",
    "Status",
    "Transition",
    "check",
    "check_int",
    "check_number",
    "normalize_status",
    "parse_duration_s",
    "parse_grpc_pushback",
    "parse_retry_after",
    "status_set",
]

#: gRPC status code names, indexed by their numeric code.
GRPC_STATUS_NAMES: tuple[str, ...] = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)

#: A status: a gRPC status name (``"UNAVAILABLE"``) or an HTTP status code (``503``).
Status = str | int


def normalize_status(status: object) -> Status:
    """Return ``status`` as an upper-case gRPC name or an HTTP ``int``.

    Strings of digits become ints (``"503"`` -> ``503``); other strings are upper-cased.
    """
    if isinstance(status, bool) or not isinstance(status, (str, int)):
        raise ConfigError(
            f"a status must be a gRPC status name or an HTTP status int. Got {status!r} instead."
        )
    if isinstance(status, str):
        text = status.strip()
        return int(text) if text.isdigit() else text.upper()
    return status


# --------------------------------------------------------------------------------------------
# Outcomes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """What one attempt produced.

    Parameters
    ----------
    ok : bool
        True for a success.
    status : str or int or None
        gRPC status name (``"UNAVAILABLE"``) or HTTP status code (``503``); None when unknown.
    retry_after_s : float or None
        Server pushback. None: no pushback. ``>= 0``: wait exactly that long before the next
        attempt. Negative or NaN: the server asks not to retry.
    value : object
        The call's result (also for failures classified from a returned value).
    error : BaseException or None
        The exception the attempt raised, if any.
    local : bool
        True when a local policy refused the attempt and nothing was sent.

    Examples
    --------
    >>> Outcome.failure("unavailable", retry_after_s=0.5)
    Outcome(ok=False, status='UNAVAILABLE', retry_after_s=0.5, value=None, error=None, local=False)
    """

    ok: bool
    status: Status | None = None
    retry_after_s: float | None = None
    value: Any = None
    error: BaseException | None = None
    local: bool = False

    def __post_init__(self) -> None:
        if self.status is not None:
            object.__setattr__(self, "status", normalize_status(self.status))
        if self.retry_after_s is not None:
            object.__setattr__(self, "retry_after_s", float(self.retry_after_s))

    @classmethod
    def success(cls, value: Any = None, *, status: Status | None = None) -> Outcome:
        """A successful attempt returning ``value``."""
        return cls(ok=True, status=status, value=value)

    @classmethod
    def failure(
        cls,
        status: Status | None,
        *,
        retry_after_s: float | None = None,
        error: BaseException | None = None,
        value: Any = None,
        local: bool = False,
    ) -> Outcome:
        """A failed attempt with ``status`` (and optional pushback, error, value)."""
        return cls(
            ok=False, status=status, retry_after_s=retry_after_s, error=error, value=value, local=local
        )

    @classmethod
    def timeout(cls) -> Outcome:
        """An attempt stopped by its per-try timeout (status ``"DEADLINE_EXCEEDED"``)."""
        return cls.failure("DEADLINE_EXCEEDED")

    @property
    def forbids_retry(self) -> bool:
        """True when the server's pushback says "do not retry" (negative or NaN)."""
        return self.retry_after_s is not None and not self.retry_after_s >= 0.0


def parse_grpc_pushback(value: str | bytes | None) -> float | None:
    """Turn a ``grpc-retry-pushback-ms`` metadata value into ``Outcome.retry_after_s``.

    Returns None when absent, the delay in seconds for a non-negative integer, and ``-1.0``
    ("do not retry") for anything else, as gRFC A6 requires.

    Examples
    --------
    >>> parse_grpc_pushback("250"), parse_grpc_pushback("-1"), parse_grpc_pushback("soon")
    (0.25, -1.0, -1.0)
    """
    if value is None:
        return None
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
    text = text.strip()
    return int(text) / 1000.0 if text.isdigit() else -1.0


def parse_retry_after(value: str | bytes | None, *, now_unix_s: float | None = None) -> float | None:
    """Turn an HTTP ``Retry-After`` header into ``Outcome.retry_after_s``.

    Delta-seconds (``"120"``) are returned as a float. An HTTP-date needs ``now_unix_s``
    (policies read no clock) and gives the seconds until then (at least 0). A missing,
    malformed or date-without-``now_unix_s`` header gives None: retry with the normal backoff.

    Examples
    --------
    >>> parse_retry_after("3"), parse_retry_after("soon")
    (3.0, None)
    >>> parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", now_unix_s=40.0)
    60.0
    """
    if value is None:
        return None
    text = (value.decode("latin-1") if isinstance(value, bytes) else str(value)).strip()
    if text.isdigit():
        return float(text)
    if now_unix_s is None:
        return None
    try:
        when = parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when - now_unix_s)


# --------------------------------------------------------------------------------------------
# State transitions
# --------------------------------------------------------------------------------------------


class Transition(NamedTuple):
    """One state change of a policy: ``(at_s, from_state, to_state)``."""

    at_s: float
    from_state: Any
    to_state: Any


class StateRecorder:
    """Holds a state, records every change as a :class:`Transition` and tells a listener."""

    __slots__ = ("_state", "listener", "transitions")

    def __init__(self, initial: Any, listener: Callable[[Transition], None] | None = None) -> None:
        self._state = initial
        self.listener = listener
        self.transitions: list[Transition] = []

    @property
    def state(self) -> Any:
        """The current state."""
        return self._state

    def move(self, at_s: float, to_state: Any) -> None:
        """Change to ``to_state`` at ``at_s`` (a no-op when already there)."""
        if to_state == self._state:
            return
        event = Transition(at_s, self._state, to_state)
        self._state = to_state
        self.transitions.append(event)
        if self.listener is not None:
            self.listener(event)


# --------------------------------------------------------------------------------------------
# Configuration helpers
# --------------------------------------------------------------------------------------------


def parse_duration_s(value: object, *, name: str = "duration") -> float:
    """``"100ms"``, ``"0.1s"`` (gRPC service config), ``"2m"``, ``"inf"`` or a number -> seconds (>= 0)."""
    return _parse_duration_s(value, key=name, allow_inf=True)


def check(ok: bool, owner: str, name: str, must: str, value: object) -> None:
    """Raise :class:`ConfigError` ``"{owner}.{name} must be {must}. Got {value!r} instead."`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{owner}.{name} must be {must}. Got {value!r} instead.")


def check_int(owner: str, name: str, value: object, *, minimum: int = 1) -> None:
    """Check that ``value`` is an int (not a bool) >= ``minimum``."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    check(ok, owner, name, f"an integer >= {minimum}", value)


def check_number(
    owner: str, name: str, value: object, *, low: float = 0.0, high: float = math.inf, open_low: bool = False
) -> None:
    """Check that ``value`` is a real number in ``[low, high]`` (``(low, high]`` if ``open_low``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    ok = ok and (value > low if open_low else value >= low) and value <= high  # type: ignore[operator]
    bracket = "(" if open_low else "["
    check(ok, owner, name, f"a number in {bracket}{low}, {high}]", value)


def status_set(values: Iterable[object]) -> frozenset[Status]:
    """A frozenset of normalized statuses; ints 0-16 given as gRPC codes are NOT renamed here."""
    if isinstance(values, (str, bytes, int)):
        raise ConfigError(
            f"status codes must be a collection such as ['UNAVAILABLE'] or [503]. Got {values!r} instead."
        )
    return frozenset(normalize_status(v) for v in values)


class ConfigBase:
    """Mixin adding ``from_dict`` to a config dataclass (or any keyword-only constructor).

    Keys ending in ``_s`` may be duration strings (``"100ms"``); unknown keys are an error.
    """

    __slots__ = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from a mapping of constructor keyword arguments (e.g. parsed YAML)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__}.from_dict needs a mapping. Got {type(data).__name__} instead.")
        known = [p for p in inspect.signature(cls).parameters if p not in {"self", "listener"}]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"{cls.__name__} has no setting {unknown[0]!r}. Known settings: {', '.join(known)}."
            )
        kwargs = {
            k: parse_duration_s(v, name=f"{cls.__name__}.{k}")
            if k.endswith("_s") and isinstance(v, str)
            else v
            for k, v in data.items()
        }
        return cls(**kwargs)
