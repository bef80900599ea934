"""Retry and hedging: configs, shared budget/throttle, and the per-call state machine.

One machine, :class:`RetryCall`, runs both a :class:`RetryPolicy` (one attempt at a time,
backoff between them) and a :class:`HedgingPolicy` (attempts overlap, first success wins).
It never sleeps: ``next(now)`` returns a decision, ``on_outcome(now, attempt, outcome)``
reports one; see the package docstring for the driver loop.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from otlp_lab.errors import ConfigError, ResilienceError
from otlp_lab.resilience._core import (
    GRPC_STATUS_NAMES,
    ConfigBase,
    Outcome,
    Status,
    check,
    check_int,
    check_number,
    parse_duration_s,
    status_set,
)
from otlp_lab.resilience._timeout import Deadline

__all__ = [
    "Admission",
    "Cancel",
    "Decision",
    "Done",
    "GiveUp",
    "HedgingPolicy",
    "Jitter",
    "RetryBudget",
    "RetryCall",
    "RetryPolicy",
    "RetryThrottle",
    "Send",
    "Wait",
]

Jitter = Literal["none", "full", "equal", "decorrelated"]
_JITTERS = ("none", "full", "equal", "decorrelated")
#: Default retryable statuses: the OTLP exporter's gRPC UNAVAILABLE and HTTP 429/502/503/504.
DEFAULT_RETRYABLE: frozenset[Status] = frozenset({"UNAVAILABLE", 429, 502, 503, 504})
_GRPC_MAX_ATTEMPTS = 5  # gRFC A6: larger maxAttempts values are treated as 5


# --------------------------------------------------------------------------------------------
# Decisions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Start attempt ``attempt`` (1-based) now, without waiting for it; then call ``next`` again.

    ``timeout_s`` is the time it is allowed (``inf`` for none); the machine enforces it.
    """

    attempt: int
    timeout_s: float = math.inf


@dataclass(frozen=True, slots=True)
class Wait:
    """Sleep up to ``delay_s`` (may be ``inf``), waking early when a running attempt finishes."""

    delay_s: float


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop these running attempts (their per-try timeout passed; already recorded). Do not report them."""

    attempts: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Done:
    """Final answer: a success, or a failure not to retry. Cancel ``cancel`` (losing hedges)."""

    outcome: Outcome
    attempts: int
    cancel: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the final outcome is a success."""
        return self.outcome.ok


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Retrying stopped: ``reason`` in exhausted/deadline/budget/throttled/pushback (or cancelled,
    after ``RetryCall.abort``). Cancel ``cancel``."""

    reason: str
    outcome: Outcome | None
    attempts: int
    cancel: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        """Always False."""
        return False


Decision = Send | Wait | Cancel | Done | GiveUp


# --------------------------------------------------------------------------------------------
# Shared per-client state: Envoy retry budget, gRPC retry throttling
# --------------------------------------------------------------------------------------------


class RetryBudget(ConfigBase):
    """Envoy retry budget: concurrent retries <= max(min_retry_concurrency, budget_percent% of active requests).

    Share one instance between all calls to one upstream. The :class:`RetryCall` machines
    count their requests and retries here.

    Parameters
    ----------
    budget_percent : float
        Allowed concurrent retries as a percentage (0-100) of active requests.
    min_retry_concurrency : int
        Retries always allowed concurrently, whatever the number of active requests.

    Examples
    --------
    >>> budget = RetryBudget(budget_percent=20.0, min_retry_concurrency=1)
    >>> budget.on_request_start(); budget.try_acquire_retry(), budget.try_acquire_retry()
    (True, False)
    """

    __slots__ = ("active_requests", "active_retries", "budget_percent", "min_retry_concurrency", "rejected")

    def __init__(self, *, budget_percent: float = 20.0, min_retry_concurrency: int = 3) -> None:
        check_number("RetryBudget", "budget_percent", budget_percent, high=100.0)
        check_int("RetryBudget", "min_retry_concurrency", min_retry_concurrency, minimum=0)
        self.budget_percent = float(budget_percent)
        self.min_retry_concurrency = min_retry_concurrency
        self.active_requests = 0
        self.active_retries = 0
        self.rejected = 0

    @property
    def max_retries(self) -> int:
        """Concurrent retries allowed now."""
        return max(self.min_retry_concurrency, int(self.budget_percent / 100.0 * self.active_requests))

    def on_request_start(self) -> None:
        """A request (with all its attempts) began."""
        self.active_requests += 1

    def on_request_end(self) -> None:
        """A request finished."""
        self.active_requests -= 1

    def try_acquire_retry(self) -> bool:
        """Take a retry slot if the budget allows; count a refusal otherwise."""
        if self.active_retries >= self.max_retries:
            self.rejected += 1
            return False
        self.active_retries += 1
        return True

    def release_retry(self) -> None:
        """A retry attempt finished or was cancelled."""
        self.active_retries -= 1

    def __repr__(self) -> str:
        return (
            f"RetryBudget(budget_percent={self.budget_percent}, min_retry_concurrency={self.min_retry_concurrency},"
            f" active_requests={self.active_requests}, active_retries={self.active_retries})"
        )


class RetryThrottle(ConfigBase):
    """gRPC retry throttling: a token bucket shared by every call a client makes to one server.

    Tokens start at ``max_tokens``; each failed attempt (a retryable or non-fatal status, or
    pushback) takes 1, each success adds ``token_ratio``; retries and hedges are off while
    tokens <= max_tokens / 2. Counted in thousandths, as gRPC does, so there is no drift.

    Parameters
    ----------
    max_tokens : float
        In (0, 1000], up to 3 decimals.
    token_ratio : float
        > 0, up to 3 decimals.

    Examples
    --------
    >>> t = RetryThrottle(max_tokens=4, token_ratio=0.5)
    >>> t.on_failure(); t.allows_retry
    True
    >>> t.on_failure(); t.tokens, t.allows_retry
    (2.0, False)
    """

    __slots__ = ("_max_milli", "_milli", "_ratio_milli")

    def __init__(self, *, max_tokens: float = 10.0, token_ratio: float = 0.1) -> None:
        check_number("RetryThrottle", "max_tokens", max_tokens, high=1000.0, open_low=True)
        check_number("RetryThrottle", "token_ratio", token_ratio, open_low=True)
        self._max_milli = round(max_tokens * 1000)
        self._ratio_milli = round(token_ratio * 1000)
        check(self._ratio_milli > 0, "RetryThrottle", "token_ratio", "at least 0.001", token_ratio)
        self._milli = self._max_milli

    @classmethod
    def from_grpc_service_config(cls, config: Mapping[str, Any]) -> RetryThrottle:
        """From a service config (or its ``retryThrottling`` object): ``maxTokens``, ``tokenRatio``."""
        d = _lower_keys(config)
        d = _lower_keys(d["retrythrottling"]) if "retrythrottling" in d else d
        try:
            return cls(max_tokens=d["maxtokens"], token_ratio=d["tokenratio"])
        except KeyError as exc:
            raise ConfigError(
                f"retryThrottling needs maxTokens and tokenRatio. Got {dict(config)!r} instead."
            ) from exc

    @property
    def token_ratio(self) -> float:
        """Tokens a success adds back (read-only)."""
        return self._ratio_milli / 1000

    @property
    def max_tokens(self) -> float:
        """The configured maximum."""
        return self._max_milli / 1000

    @property
    def tokens(self) -> float:
        """Tokens now."""
        return self._milli / 1000

    @property
    def allows_retry(self) -> bool:
        """True while tokens > max_tokens / 2."""
        return 2 * self._milli > self._max_milli

    def on_success(self) -> None:
        """A successful attempt: add ``token_ratio`` (up to ``max_tokens``)."""
        self._milli = min(self._max_milli, self._milli + self._ratio_milli)

    def on_failure(self) -> None:
        """A failed attempt that counts for throttling: take one token (down to 0)."""
        self._milli = max(0, self._milli - 1000)

    def __repr__(self) -> str:
        return f"RetryThrottle(max_tokens={self.max_tokens}, token_ratio={self._ratio_milli / 1000}, tokens={self.tokens})"


# --------------------------------------------------------------------------------------------
# Policies (frozen configs)
# --------------------------------------------------------------------------------------------


def _lower_keys(d: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        raise ConfigError(f"a gRPC service config section must be a JSON object. Got {d!r} instead.")
    return {str(k).lower(): v for k, v in d.items()}


def _grpc_codes(values: Any) -> frozenset[Status]:
    """gRPC status codes given as names (any case) or numbers -> upper-case names."""

    def name(v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(GRPC_STATUS_NAMES):
            return GRPC_STATUS_NAMES[v]
        return v

    return status_set(name(v) for v in (values or ()))


def _grpc_section(config: Mapping[str, Any], key: str) -> dict[str, Any]:
    d = _lower_keys(config)
    return _lower_keys(d[key]) if key in d else d


@dataclass(frozen=True, slots=True, kw_only=True)
class _AttemptPolicy(ConfigBase):
    """Fields and the ``start`` method shared by retry and hedging policies."""

    max_attempts: int = 3
    per_try_timeout_s: float | None = None

    def __post_init__(self) -> None:
        name = type(self).__name__
        check_int(name, "max_attempts", self.max_attempts)
        if self.per_try_timeout_s is not None:
            check_number(name, "per_try_timeout_s", self.per_try_timeout_s, open_low=True)
        self._validate()

    def _validate(self) -> None:
        raise NotImplementedError

    def retries_on(self, outcome: Outcome) -> bool:
        """True when a failed ``outcome`` may be followed by another attempt."""
        raise NotImplementedError

    def start(
        self,
        now: float,
        *,
        rng: random.Random | None = None,
        budget: RetryBudget | None = None,
        throttle: RetryThrottle | None = None,
        deadline: Deadline | None = None,
        admission: Admission | None = None,
    ) -> RetryCall:
        """Begin one call at ``now``; returns its :class:`RetryCall` state machine.

        Parameters
        ----------
        now : float
            The time on the driver's clock.
        rng : random.Random, optional
            Source of jitter (a fresh unseeded one if None).
        budget, throttle : optional
            Shared per-client :class:`RetryBudget` / :class:`RetryThrottle`.
        deadline : Deadline, optional
            Overall deadline; no attempt starts and no backoff runs past it.
        admission : Admission, optional
            Per-attempt gate (breaker, bulkhead, rate limiter); see :class:`PolicyStack`.
        """
        return RetryCall(
            self, now, rng=rng, budget=budget, throttle=throttle, deadline=deadline, admission=admission
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy(_AttemptPolicy):
    """Retry with capped exponential backoff and jitter (gRPC service config field names).

    Parameters
    ----------
    max_attempts : int
        Attempts including the first (1 = no retries).
    initial_backoff_s, max_backoff_s : float
        Base and cap of the backoff.
    backoff_multiplier : float
        Growth per retry.
    jitter : {"none", "full", "equal", "decorrelated"}
        AWS "Exponential Backoff And Jitter" definitions; gRPC uses ``"full"``.
    per_try_timeout_s : float or None
        Time allowed per attempt; a timed-out attempt is always retryable.
    retryable_status_codes : set of str or int
        gRPC status names and/or HTTP codes that may be retried.

    Examples
    --------
    >>> import random
    >>> p = RetryPolicy(initial_backoff_s=1.0, max_backoff_s=5.0, jitter="none", max_attempts=6)
    >>> [p.backoff_s(n, random.Random(0)) for n in range(1, 6)]
    [1.0, 2.0, 4.0, 5.0, 5.0]
    """

    initial_backoff_s: float = 0.1
    max_backoff_s: float = 10.0
    backoff_multiplier: float = 2.0
    jitter: Jitter = "full"
    retryable_status_codes: frozenset[Status] = field(default=DEFAULT_RETRYABLE)

    def _validate(self) -> None:
        check_number("RetryPolicy", "initial_backoff_s", self.initial_backoff_s, open_low=True)
        check_number("RetryPolicy", "max_backoff_s", self.max_backoff_s, open_low=True)
        check_number("RetryPolicy", "backoff_multiplier", self.backoff_multiplier, open_low=True)
        check(self.jitter in _JITTERS, "RetryPolicy", "jitter", f"one of {_JITTERS}", self.jitter)
        object.__setattr__(self, "retryable_status_codes", status_set(self.retryable_status_codes))

    @classmethod
    def from_grpc_service_config(cls, config: Mapping[str, Any]) -> RetryPolicy:
        """From a gRPC ``retryPolicy`` object (or a method config holding one).

        Durations are strings like ``"0.1s"``; status codes are names or numbers;
        ``maxAttempts`` above 5 is treated as 5 and below 2 is an error, as in gRPC.
        Jitter is ``"full"``, gRPC's ``random(0, backoff)``.
        """
        d = _grpc_section(config, "retrypolicy")
        try:
            attempts = d["maxattempts"]
            check_int("retryPolicy", "maxAttempts", attempts, minimum=2)
            return cls(
                max_attempts=min(attempts, _GRPC_MAX_ATTEMPTS),
                initial_backoff_s=parse_duration_s(d["initialbackoff"], name="retryPolicy.initialBackoff"),
                max_backoff_s=parse_duration_s(d["maxbackoff"], name="retryPolicy.maxBackoff"),
                backoff_multiplier=d["backoffmultiplier"],
                retryable_status_codes=_grpc_codes(d["retryablestatuscodes"]),
                jitter="full",
            )
        except KeyError as exc:
            raise ConfigError(
                f"retryPolicy needs {exc.args[0]!r} (any case). Got {dict(d)!r} instead."
            ) from None

    def retries_on(self, outcome: Outcome) -> bool:
        """True when ``outcome.status`` is in ``retryable_status_codes``."""
        return outcome.status in self.retryable_status_codes

    def backoff_s(self, retry: int, rng: random.Random, previous_s: float | None = None) -> float:
        """Delay before retry number ``retry`` (1 = the first retry).

        Parameters
        ----------
        retry : int
            1-based retry index (the exponent is ``retry - 1``).
        rng : random.Random
            Jitter source.
        previous_s : float, optional
            The previous delay (decorrelated jitter; ``initial_backoff_s`` if None).
        """
        cap = self.max_backoff_s
        try:
            ceiling = min(cap, self.initial_backoff_s * self.backoff_multiplier ** (retry - 1))
        except OverflowError:
            ceiling = cap
        if self.jitter == "none":
            return ceiling
        if self.jitter == "full":
            return rng.uniform(0.0, ceiling)
        if self.jitter == "equal":
            return ceiling / 2 + rng.uniform(0.0, ceiling / 2)
        prev = self.initial_backoff_s if previous_s is None else previous_s
        return min(cap, rng.uniform(self.initial_backoff_s, 3.0 * prev))


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgingPolicy(_AttemptPolicy):
    """Hedging (gRFC A6): overlapping attempts, first success wins, the rest are cancelled.

    Attempt k+1 starts ``hedging_delay_s`` after attempt k, or at once when an attempt fails
    with a status in ``non_fatal_status_codes``; any other failure ends the call.

    Parameters
    ----------
    max_attempts : int
        Attempts including the first.
    hedging_delay_s : float
        Delay between hedges (0 sends all at once).
    non_fatal_status_codes : set of str or int
        Failures that let the remaining hedges go on.
    per_try_timeout_s : float or None
        Time allowed per attempt (a timeout is non-fatal).
    """

    hedging_delay_s: float = 0.0
    non_fatal_status_codes: frozenset[Status] = field(default=frozenset())

    def _validate(self) -> None:
        check_number("HedgingPolicy", "hedging_delay_s", self.hedging_delay_s)
        object.__setattr__(self, "non_fatal_status_codes", status_set(self.non_fatal_status_codes))

    @classmethod
    def from_grpc_service_config(cls, config: Mapping[str, Any]) -> HedgingPolicy:
        """From a gRPC ``hedgingPolicy`` object (or a method config holding one)."""
        d = _grpc_section(config, "hedgingpolicy")
        attempts = d.get("maxattempts")
        check_int("hedgingPolicy", "maxAttempts", attempts, minimum=2)
        return cls(
            max_attempts=min(attempts, _GRPC_MAX_ATTEMPTS),  # type: ignore[type-var]
            hedging_delay_s=parse_duration_s(d.get("hedgingdelay", 0.0), name="hedgingPolicy.hedgingDelay"),
            non_fatal_status_codes=_grpc_codes(d.get("nonfatalstatuscodes")),
        )

    def retries_on(self, outcome: Outcome) -> bool:
        """True when ``outcome.status`` is non-fatal."""
        return outcome.status in self.non_fatal_status_codes


# --------------------------------------------------------------------------------------------
# The per-call state machine
# --------------------------------------------------------------------------------------------


class Admission(Protocol):
    """A per-attempt gate run inside the retry loop (circuit breaker, bulkhead, rate limiter)."""

    def admit(self, now: float, attempt: int) -> Outcome | None:
        """None to let the attempt go, or a ``local=True`` refusal outcome (having released what it took)."""

    def complete(self, now: float, attempt: int, outcome: Outcome, duration_s: float) -> None:
        """An admitted attempt finished (or timed out) with ``outcome`` after ``duration_s``."""

    def abandon(self, now: float, attempt: int) -> None:
        """An admitted attempt was cancelled before it finished."""


class RetryCall:
    """The state machine of one call under a :class:`RetryPolicy` or :class:`HedgingPolicy`.

    Create it with ``policy.start(now, ...)``; then alternate ``next(now)`` and
    ``on_outcome(now, attempt, outcome)`` as the package docstring describes.

    Attributes
    ----------
    attempts : int
        Attempts sent so far (refused ones included).
    outcomes : list of (int, Outcome)
        Every recorded outcome, in order.
    final : Done or GiveUp or None
        The terminal decision, once reached.
    late_outcomes : int
        Outcomes reported for attempts already cancelled or after the end (ignored, counted).
    """

    def __init__(
        self,
        policy: RetryPolicy | HedgingPolicy,
        now: float,
        *,
        rng: random.Random | None = None,
        budget: RetryBudget | None = None,
        throttle: RetryThrottle | None = None,
        deadline: Deadline | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.policy = policy
        self.rng = rng if rng is not None else random.Random()
        self.budget = budget
        self.throttle = throttle
        self.deadline = deadline if deadline is not None else Deadline()
        self.admission = admission
        self.started_at_s = now
        self.attempts = 0
        self.outcomes: list[tuple[int, Outcome]] = []
        self.final: Done | GiveUp | None = None
        self.late_outcomes = 0
        self._hedging = isinstance(policy, HedgingPolicy)
        self._running: dict[int, tuple[float, float]] = {}  # attempt -> (sent_at, expires_at)
        self._admitted: set[int] = set()
        self._retry_slots: set[int] = set()
        self._next_send_at: float | None = now
        self._retries = 0  # retries since the last pushback (the backoff exponent)
        self._previous_delay_s: float | None = None
        self._stop_reason: str | None = None
        self._closed = False
        self._rejection: Outcome | None = None
        if budget is not None:
            budget.on_request_start()

    # -- public API ---------------------------------------------------------------------------

    @property
    def running(self) -> tuple[int, ...]:
        """Attempts started and not finished."""
        return tuple(self._running)

    @property
    def last_outcome(self) -> Outcome | None:
        """The most recent recorded outcome."""
        return self.outcomes[-1][1] if self.outcomes else None

    def next(self, now: float) -> Decision:
        """The next thing the driver must do at ``now``."""
        if self.final is not None:
            return self.final if self._closed else self._finish(now, self.final)
        if now >= self.deadline.expires_at_s:  # self.deadline.expired(now)
            self._stop_reason = "deadline"
            return self._finish(now, self._give_up("deadline"))
        running = self._running
        timed_out = tuple(a for a, (_, expires) in running.items() if now >= expires) if running else ()
        for attempt in timed_out:
            self._record(now, attempt, Outcome.timeout(), timed_out=True)
        if self.final is not None:
            return self._finish(now, self.final)
        if timed_out:
            return Cancel(timed_out)
        while self._next_send_at is not None and now >= self._next_send_at:
            decision = self._try_send(now)
            if decision is not None:
                return decision
            if self.final is not None:
                return self._finish(now, self.final)
        wake = [expires for _, expires in self._running.values()]
        if self._next_send_at is not None:
            wake.append(self._next_send_at)
        if self.deadline.is_set:
            wake.append(self.deadline.expires_at_s)
        if not self._running and self._next_send_at is None:  # pragma: no cover - a bug if reached
            raise ResilienceError(f"RetryCall has nothing to wait for at {now} (attempts={self.attempts})")
        return Wait(max(0.0, min(wake, default=math.inf) - now))

    def abort(self, now: float) -> GiveUp | Done:
        """The caller abandoned the call (e.g. its task was cancelled): release everything held.

        Returns the final decision: the existing one if the call had already ended, else
        ``GiveUp("cancelled", ...)`` listing the running attempts to cancel.
        """
        if self._closed:
            return self.final  # type: ignore[return-value]
        return self._finish(now, self.final or self._give_up("cancelled"))

    def on_outcome(self, now: float, attempt: int, outcome: Outcome) -> None:
        """Report that ``attempt`` finished at ``now`` with ``outcome``."""
        if attempt not in self._running:
            if 1 <= attempt <= self.attempts:
                self.late_outcomes += 1
                return
            raise ResilienceError(f"RetryCall.on_outcome for attempt {attempt}, which was never sent")
        if self.final is not None:  # decided (e.g. another hedge won) but not yet cancelled
            self.late_outcomes += 1
            return
        self._record(now, attempt, outcome)

    # -- internals ----------------------------------------------------------------------------

    def _try_send(self, now: float) -> Send | None:
        """Send the next attempt if every gate allows; None if it was refused (and recorded)."""
        if self.attempts >= self.policy.max_attempts:
            self._next_send_at = None
            self._stop("exhausted")
            return None
        attempt = self.attempts + 1
        if attempt > 1:
            if self.throttle is not None and not self.throttle.allows_retry:
                self._next_send_at = None
                self._stop("throttled")
                return None
            if self.budget is not None:
                if not self.budget.try_acquire_retry():
                    self._next_send_at = None
                    self._stop("budget")
                    return None
                self._retry_slots.add(attempt)
        self.attempts = attempt
        timeout_s = self.policy.per_try_timeout_s or math.inf
        expires = min(now + timeout_s, self.deadline.expires_at_s)
        self._running[attempt] = (now, expires)
        hedge_later = self._hedging and attempt < self.policy.max_attempts
        self._next_send_at = now + self.policy.hedging_delay_s if hedge_later else None  # type: ignore[union-attr]
        refusal = self.admission.admit(now, attempt) if self.admission is not None else None
        if refusal is not None:
            self._record(now, attempt, refusal)
            return None
        if self.admission is not None:
            self._admitted.add(attempt)
        return Send(attempt, expires - now)

    def _release(self, now: float, attempt: int, outcome: Outcome | None) -> float:
        """Forget a running attempt and give back what it holds; returns its duration."""
        sent_at, _ = self._running.pop(attempt)
        duration_s = now - sent_at
        if attempt in self._retry_slots:
            self._retry_slots.discard(attempt)
            self.budget.release_retry()  # type: ignore[union-attr]
        if attempt in self._admitted:
            self._admitted.discard(attempt)
            if outcome is None:
                self.admission.abandon(now, attempt)  # type: ignore[union-attr]
            else:
                self.admission.complete(now, attempt, outcome, duration_s)  # type: ignore[union-attr]
        return duration_s

    def _record(self, now: float, attempt: int, outcome: Outcome, *, timed_out: bool = False) -> None:
        """Account for a finished attempt and decide what follows (schedule, stop or end)."""
        self._release(now, attempt, outcome)
        self.outcomes.append((attempt, outcome))
        retryable = not outcome.ok and (timed_out or self.policy.retries_on(outcome))
        if self.throttle is not None and not outcome.local:
            if outcome.ok:
                self.throttle.on_success()
            elif retryable or outcome.retry_after_s is not None:
                self.throttle.on_failure()
        if outcome.ok or (not retryable and not outcome.local):
            # Transition to the end: a success, or the server's final (fatal) answer; others are cancelled.
            self.final = Done(outcome, self.attempts)
            return
        if not retryable:  # a local refusal: no more attempts; let running hedges finish
            self._rejection = outcome
            self._next_send_at = None
            self._stop("rejected")
        elif outcome.forbids_retry:
            self._next_send_at = None
            self._stop("pushback")
        elif self.attempts >= self.policy.max_attempts:
            self._next_send_at = None
            self._stop("exhausted")
        elif self.throttle is not None and not self.throttle.allows_retry:
            self._next_send_at = None
            self._stop("throttled")
        else:
            self._schedule(now, outcome)
        self._end_if_idle()

    def _schedule(self, now: float, outcome: Outcome) -> None:
        """Set when the next attempt goes after a retryable failure at ``now``."""
        if outcome.retry_after_s is not None:  # server pushback replaces the backoff and resets it
            delay = outcome.retry_after_s
            self._retries = 0
            self._previous_delay_s = None
        elif self._hedging:
            delay = 0.0
        else:
            self._retries += 1
            delay = self.policy.backoff_s(self._retries, self.rng, self._previous_delay_s)  # type: ignore[union-attr]
            self._previous_delay_s = delay
        at = now + delay
        if self.deadline.is_set and at >= self.deadline.expires_at_s:
            self._next_send_at = None
            self._stop("deadline")
            return
        if self._next_send_at is None or outcome.retry_after_s is not None:
            self._next_send_at = at
        else:  # a non-fatal hedge failure: the next hedge goes now, not at its timer
            self._next_send_at = min(self._next_send_at, at)

    def _stop(self, reason: str) -> None:
        """Send no more attempts; remember the first reason why."""
        if self._stop_reason is None:
            self._stop_reason = reason
        self._end_if_idle()

    def _end_if_idle(self) -> None:
        if self.final is None and not self._running and self._next_send_at is None and self._stop_reason:
            if self._stop_reason == "rejected":
                self.final = Done(self._rejection, self.attempts)  # type: ignore[arg-type]
            else:
                self.final = self._give_up(self._stop_reason)

    def _give_up(self, reason: str) -> GiveUp:
        return GiveUp(reason, self.last_outcome, self.attempts)

    def _finish(self, now: float, final: Done | GiveUp) -> Done | GiveUp:
        """Cancel what still runs, release the request, and freeze the terminal decision."""
        cancel = tuple(self._running)
        for attempt in cancel:
            self._release(now, attempt, None)
        if cancel or final.attempts != self.attempts or final.cancel:  # else it is that decision already
            if isinstance(final, Done):
                final = Done(final.outcome, self.attempts, cancel)
            else:
                final = GiveUp(final.reason, final.outcome, self.attempts, cancel)
        self.final = final
        self._closed = True
        self._next_send_at = None
        if self.budget is not None:
            self.budget.on_request_end()
        return final

    def __repr__(self) -> str:
        return (
            f"RetryCall(policy={type(self.policy).__name__}, attempts={self.attempts},"
            f" running={self.running}, final={self.final!r})"
        )
