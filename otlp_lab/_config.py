"""One vocabulary for settings: durations, counts and numbers checked in one place.

Every check names the setting by its key path and says what it must be, in
scikit-learn's words: ``"services.cart.instances must be an integer >= 1. Got -2 instead."``.
The error class is the caller's: :class:`~otlp_lab.errors.ConfigError` by default,
:class:`~otlp_lab.errors.ScenarioError` for scenarios (which then carries ``key``).

String options are the ``Literal`` aliases below, so every layer spells them alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from typing import Any, Literal

from otlp_lab.errors import ConfigError, OtlpLabError, ScenarioError

__all__ = [
    "ExportFormat",
    "MetricKind",
    "OnError",
    "Protocol",
    "Signal",
    "TraceOrder",
    "check_choice",
    "check_int",
    "check_number",
    "fail",
    "parse_duration_s",
]

Signal = Literal["traces", "metrics", "logs"]
OnError = Literal["raise", "skip"]
TraceOrder = Literal["duration", "start", "errors"]
MetricKind = Literal["gauge", "sum", "histogram", "exponential_histogram", "summary"]
ExportFormat = Literal["json", "protobuf"]
Protocol = Literal["grpc", "http/protobuf", "http/json"]

_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_ONE = re.compile(rf"({_NUMBER})\s*(ns|us|µs|ms|s|m|h|d)?")
_GO_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h|d)")
_ISO = re.compile(
    r"P(?:(?P<d>[0-9]+(?:\.[0-9]+)?)D)?(?:T(?:(?P<h>[0-9]+(?:\.[0-9]+)?)H)?(?:(?P<m>[0-9]+(?:\.[0-9]+)?)M)?"
    r"(?:(?P<s>[0-9]+(?:\.[0-9]+)?)S)?)?",
    re.IGNORECASE,
)


def fail(error: type[OtlpLabError], key: str, must: str, value: Any) -> OtlpLabError:
    """The error ``"{key} must be {must}. Got {value!r} instead."`` of class ``error``."""
    if issubclass(error, ScenarioError):
        return error(f"scenario key '{key}' must be {must}. Got {value!r} instead.", key=key)
    return error(f"{key} must be {must}. Got {value!r} instead.")  # type: ignore[call-arg]


def _text_seconds(text: str) -> float | None:
    text = text.strip()
    m = _ONE.fullmatch(text)
    if m:
        return float(m.group(1)) * _UNIT_S[m.group(2) or "s"]
    iso = _ISO.fullmatch(text)
    if iso and text.upper() not in {"P", "PT"}:
        d, h, mi, s = (float(iso.group(k) or 0) for k in "dhms")
        return d * 86400 + h * 3600 + mi * 60 + s
    parts = _GO_PART.findall(text)
    if parts and "".join(n + u for n, u in parts) == text.replace(" ", ""):
        return sum(float(n) * _UNIT_S[u] for n, u in parts)
    return None


def parse_duration_s(
    value: Any,
    *,
    key: str = "duration",
    positive: bool = False,
    allow_inf: bool = False,
    maximum: float = math.inf,
    bare_unit_s: float | None = 1.0,
    error: type[OtlpLabError] = ConfigError,
) -> float:
    """A duration in seconds, from a number or text in any of the dialects users write.

    Text: ``"250ms"``, ``"10s"``, ``"5m"``, ``"2h"``, ``"1d"`` (also ``ns``, ``us``/``µs``);
    Go / Istio compounds ``"1m30s"``; ISO-8601 ``"PT1M30S"`` (Spring); protobuf JSON
    ``"1.5s"``; Envoy's ``{seconds: 1, nanos: 500000000}``; ``"inf"`` when ``allow_inf``.
    Numbers are in units of ``bare_unit_s`` (seconds; ``1e-3`` for Spring's milliseconds;
    ``None`` refuses bare numbers).

    Parameters
    ----------
    key : str
        The setting's key path, for the error message.
    positive : bool
        Refuse zero.
    allow_inf : bool
        Accept an infinite duration (``"inf"``, ``math.inf``).
    maximum : float
        The largest duration accepted, in seconds.
    error : type
        The error class raised (``ConfigError``, ``ScenarioError``...).

    Raises
    ------
    ConfigError
        (or ``error``) for anything else: negative, NaN, infinite unless allowed,
        over ``maximum``, or text in no known form.

    Examples
    --------
    >>> parse_duration_s("1m30s"), parse_duration_s("PT0.5S"), parse_duration_s(250, bare_unit_s=1e-3)
    (90.0, 0.5, 0.25)
    """
    seconds: float | None = None
    if isinstance(value, bool):
        seconds = None
    elif isinstance(value, (int, float)):
        seconds = float(value) * bare_unit_s if bare_unit_s is not None else None
    elif isinstance(value, str):
        if allow_inf and value.strip().lower() in {"inf", "infinity"}:
            seconds = math.inf
        else:
            seconds = _text_seconds(value)
    elif isinstance(value, Mapping) and value and set(value) <= {"seconds", "nanos"}:
        s, n = value.get("seconds", 0), value.get("nanos", 0)
        if all(
            isinstance(v, (int, str)) and not isinstance(v, bool) and re.fullmatch(r"-?[0-9]+", str(v))
            for v in (s, n)
        ):
            seconds = int(s) + int(n) / 1e9
    kind = "a positive number of seconds" if positive else "a non-negative number of seconds"
    if seconds is None:
        numbers = "seconds or " if bare_unit_s == 1.0 else ""
        raise fail(error, key, f"{numbers}a duration such as '250ms', '10s', '5m', '1h30m' or 'PT1S'", value)
    if math.isnan(seconds) or seconds < 0 or (positive and seconds == 0):
        raise fail(error, key, kind, value)
    if math.isinf(seconds) and not allow_inf:
        raise fail(error, key, f"{kind} and finite", value)
    if seconds > maximum:
        raise fail(error, key, f"{kind} of at most {maximum:g} s", value)
    return seconds


def check_int(
    value: Any,
    key: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    error: type[OtlpLabError] = ConfigError,
) -> int:
    """``value`` if it is an int (not a bool) within ``[minimum, maximum]``."""
    ok = isinstance(value, int) and not isinstance(value, bool)
    ok = ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum)
    if not ok:
        if minimum in (0, 1) and maximum is None:
            must = "a positive integer" if minimum == 1 else "a non-negative integer"
        elif minimum is not None and maximum is not None:
            must = f"an integer in [{minimum:,}, {maximum:,}]"
        elif minimum is not None:
            must = f"an integer >= {minimum:,}"
        elif maximum is not None:
            must = f"an integer <= {maximum:,}"
        else:
            must = "an integer"
        raise fail(error, key, must, value)
    return value


def check_number(
    value: Any,
    key: str,
    *,
    minimum: float = -math.inf,
    maximum: float = math.inf,
    open_low: bool = False,
    finite: bool = True,
    error: type[OtlpLabError] = ConfigError,
) -> float:
    """``value`` as a float if it is a real number (not a bool, not NaN) within the bounds."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)
    ok = ok and (not finite or math.isfinite(value))
    ok = ok and (value > minimum if open_low else value >= minimum) and value <= maximum
    if not ok:
        lo = "(" if open_low else "["
        if minimum == 0 and maximum == math.inf:
            must = "a positive number" if open_low else "a non-negative number"
        elif (minimum, maximum) == (-math.inf, math.inf):
            must = "a finite number" if finite else "a number"
        else:
            must = f"a number in {lo}{minimum:g}, {maximum:g}]"
        raise fail(error, key, must, value)
    return float(value)


def check_choice(
    value: Any, key: str, choices: Collection[Any], *, error: type[OtlpLabError] = ConfigError
) -> Any:
    """``value`` if it is one of ``choices``."""
    try:
        ok = value in choices
    except TypeError:  # unhashable
        ok = False
    if not ok:
        raise fail(error, key, f"one of {sorted(map(str, choices))}", value)
    return value
