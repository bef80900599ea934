"""Service-time (and think-time) distributions.

A distribution is a frozen config object. The engine asks it for a *sampler*: a
zero-argument callable bound to one run's ``random.Random``, so a draw costs one
C-level call and no attribute look-ups on the hot path.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, field
from functools import partial
from typing import Any

from otlp_lab.errors import ScenarioError

Sampler = Callable[[], float]

__all__ = [
    "Distribution",
    "Constant",
    "Exponential",
    "LogNormal",
    "Gamma",
    "Empirical",
    "distribution_from_dict",
]


class Distribution:
    """Base of the distributions: ``mean_s`` and ``sampler(rng)``."""

    __slots__ = ()

    kind: str = ""

    @property
    def mean_s(self) -> float:  # pragma: no cover - every subclass overrides it
        raise NotImplementedError

    def sampler(self, rng: random.Random) -> Sampler:  # pragma: no cover
        raise NotImplementedError

    def check(self, key: str) -> None:
        """Raise :class:`ScenarioError` naming ``key`` if a parameter is out of range."""

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind}
        for f in self.__dataclass_fields__:  # type: ignore[attr-defined]
            v = getattr(self, f)
            d[f] = list(v) if isinstance(v, tuple) else v
        return d


def _positive(key: str, name: str, v: Any, *, zero_ok: bool = False) -> None:
    ok = (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and (v >= 0 if zero_ok else v > 0)
    )
    if not ok:
        what = "a non-negative number" if zero_ok else "a positive number"
        raise ScenarioError(
            f"scenario key '{key}.{name}' must be {what}. Got {v!r} instead.", key=f"{key}.{name}"
        )


@dataclass(frozen=True, slots=True)
class Constant(Distribution):
    """Always ``value_s`` (the D in M/D/1)."""

    value_s: float
    kind = "constant"

    @property
    def mean_s(self) -> float:
        return float(self.value_s)

    def sampler(self, rng: random.Random) -> Sampler:
        v = float(self.value_s)
        return lambda: v

    def check(self, key: str) -> None:
        _positive(key, "value_s", self.value_s, zero_ok=True)


@dataclass(frozen=True, slots=True)
class Exponential(Distribution):
    """Exponential with mean ``mean_s`` (the M in M/M/c)."""

    mean_s: float  # type: ignore[assignment]
    kind = "exponential"

    def sampler(self, rng: random.Random) -> Sampler:
        return partial(rng.expovariate, 1.0 / self.mean_s)

    def check(self, key: str) -> None:
        _positive(key, "mean_s", self.mean_s)


@dataclass(frozen=True, slots=True)
class LogNormal(Distribution):
    """Log-normal with median ``median_s`` and shape ``sigma`` (of the underlying normal).

    The mean is ``median_s * exp(sigma**2 / 2)``; p99 is ``median_s * exp(2.326 * sigma)``.
    """

    median_s: float
    sigma: float = 0.5
    kind = "lognormal"

    @property
    def mean_s(self) -> float:
        return self.median_s * math.exp(self.sigma**2 / 2)

    def sampler(self, rng: random.Random) -> Sampler:
        return partial(rng.lognormvariate, math.log(self.median_s), self.sigma)

    def check(self, key: str) -> None:
        _positive(key, "median_s", self.median_s)
        _positive(key, "sigma", self.sigma, zero_ok=True)


@dataclass(frozen=True, slots=True)
class Gamma(Distribution):
    """Gamma with mean ``mean_s`` and coefficient of variation ``cv`` (1 = exponential)."""

    mean_s: float  # type: ignore[assignment]
    cv: float = 1.0
    kind = "gamma"

    def sampler(self, rng: random.Random) -> Sampler:
        shape = 1.0 / self.cv**2
        return partial(rng.gammavariate, shape, self.mean_s / shape)

    def check(self, key: str) -> None:
        _positive(key, "mean_s", self.mean_s)
        _positive(key, "cv", self.cv)


@dataclass(frozen=True, slots=True)
class Empirical(Distribution):
    """Resampling of observed durations (seconds), e.g. from captured spans.

    Examples
    --------
    >>> from otlp_lab.sim import Empirical
    >>> d = Empirical.from_lab(lab, "ts-order-service", "GET /api/v1/orderservice")  # doctest: +SKIP
    >>> round(d.mean_s, 4)  # doctest: +SKIP
    0.0123
    """

    samples_s: tuple[float, ...] = field(repr=False)
    kind = "empirical"

    def __repr__(self) -> str:
        return f"Empirical(n={len(self.samples_s)}, mean_s={self.mean_s:.6g})"

    @property
    def mean_s(self) -> float:
        return math.fsum(self.samples_s) / len(self.samples_s) if self.samples_s else 0.0

    def sampler(self, rng: random.Random) -> Sampler:
        return partial(rng.choice, tuple(float(x) for x in self.samples_s))

    def check(self, key: str) -> None:
        s = self.samples_s
        if not isinstance(s, (tuple, list)) or not s:
            raise ScenarioError(
                f"scenario key '{key}.samples_s' must be a non-empty list of seconds. Got {s!r} instead.",
                key=f"{key}.samples_s",
            )
        bad = next(
            (x for x in s if not (isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0)), None
        )
        if bad is not None:
            raise ScenarioError(
                f"scenario key '{key}.samples_s' must hold non-negative numbers. Got {bad!r} instead.",
                key=f"{key}.samples_s",
            )

    @classmethod
    def from_lab(
        cls, lab: Any, service: str, operation: str, *, use: str = "self", limit: int = 100_000
    ) -> Empirical:
        """Durations of the ``operation`` spans of ``service`` captured in a :class:`~otlp_lab.Lab`.

        Parameters
        ----------
        lab : Lab
            Holds the captured spans.
        service, operation : str
            ``service_name`` and span ``name`` to sample.
        use : {"self", "duration"}
            ``"self"`` (default) takes each span's self time (its duration minus the time
            covered by its children), the local work a simulated endpoint does before its
            downstream calls add their own time; ``"duration"`` takes whole span durations.
        limit : int
            At most this many samples (a deterministic sample when there are more).

        Raises
        ------
        ScenarioError
            No such spans in the Lab.
        """
        if use not in ("self", "duration"):
            raise ScenarioError(
                f"Empirical.from_lab(use=...) must be 'self' or 'duration'. Got {use!r} instead."
            )
        if use == "self":
            q = "SELECT self_time_ns::DOUBLE / 1e9 AS s FROM span_tree WHERE service_name = ? AND name = ?"
        else:
            q = "SELECT duration_ns::DOUBLE / 1e9 AS s FROM spans WHERE service_name = ? AND name = ?"
        q += " AND s >= 0 ORDER BY hash(s) LIMIT ?"
        frame = lab.sql(q, [service, operation, int(limit)])
        if frame.is_empty():
            raise ScenarioError(
                f"the Lab has no spans of service {service!r} named {operation!r} to build an Empirical distribution from. "
                f'See lab.sql("select service_name, name, count(*) from spans group by all").'
            )
        return cls(tuple(sorted(frame["s"].to_list())))


KINDS: dict[str, type[Distribution]] = {
    c.kind: c for c in (Constant, Exponential, LogNormal, Gamma, Empirical)
}


def distribution_from_dict(d: Any, key: str, seconds: Callable[[Any, str], float]) -> Distribution:
    """A distribution from its YAML form ``{kind: exponential, mean_s: 0.01}`` (durations may be ``"10ms"``)."""
    if isinstance(d, Distribution):
        return d
    if not isinstance(d, dict) or "kind" not in d:
        raise ScenarioError(
            f"scenario key '{key}' must be a mapping with a 'kind' among {sorted(KINDS)}, such as "
            f"{{kind: exponential, mean_s: 0.01}}. Got {d!r} instead.",
            key=key,
        )
    cls = KINDS.get(d["kind"])
    if cls is None:
        raise ScenarioError(
            f"scenario key '{key}.kind' must be one of {sorted(KINDS)}. Got {d['kind']!r} instead.",
            key=f"{key}.kind",
        )
    fields = list(cls.__dataclass_fields__)
    args: dict[str, Any] = {}
    for k, v in d.items():
        if k == "kind":
            continue
        if k not in fields:
            raise ScenarioError(
                f"scenario key '{key}' has an unknown key {k!r} for a {cls.kind} distribution. Expected {fields}.",
                key=f"{key}.{k}",
            )
        if k.endswith("_s"):
            v = (
                tuple(seconds(x, f"{key}.{k}") for x in v)
                if isinstance(v, Sequence) and not isinstance(v, str)
                else seconds(v, f"{key}.{k}")
            )
        args[k] = v
    spec = cls.__dataclass_fields__
    missing = [
        f
        for f in fields
        if f not in args and spec[f].default is MISSING and spec[f].default_factory is MISSING
    ]
    if missing:
        raise ScenarioError(f"scenario key '{key}' needs {missing} for a {cls.kind} distribution.", key=key)
    dist = cls(**args)
    dist.check(key)
    return dist
