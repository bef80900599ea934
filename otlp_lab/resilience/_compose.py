"""Composition: one :class:`PolicyStack` puts deadline, retry, breaker, bulkhead and rate limit around a call.

Order, outermost first::

    deadline (timeout_s, or the caller's current_deadline() minus deadline_margin_s)
      -> retry or hedging (with the shared RetryBudget / RetryThrottle)
        -> circuit breaker (per attempt)
          -> bulkhead (a "requests" slot; plus a "retries" slot for retries when no budget is set)
            -> rate limiter (one token per attempt)
              -> the call
"""

from __future__ import annotations

import asyncio
import enum
import random
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any

from otlp_lab.errors import DeadlineExceededError, RetryExhaustedError
from otlp_lab.resilience._breaker import CircuitBreaker
from otlp_lab.resilience._core import Outcome, Status, status_set
from otlp_lab.resilience._degrade import Fallback
from otlp_lab.resilience._drivers import drive_async
from otlp_lab.resilience._limits import Bulkhead, LimitKind, TokenBucket
from otlp_lab.resilience._retry import (
    Done,
    GiveUp,
    HedgingPolicy,
    RetryBudget,
    RetryCall,
    RetryPolicy,
    RetryThrottle,
)
from otlp_lab.resilience._timeout import Deadline, current_deadline

__all__ = ["PolicyStack", "classify_exception", "raise_for_final"]


def _status_of(value: Any) -> Status | None:
    if isinstance(value, enum.Enum):  # grpc.StatusCode.UNAVAILABLE -> "UNAVAILABLE"
        return value.name
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return value
    return None


def classify_exception(exc: BaseException) -> Outcome:
    """The default way an exception from the wrapped call becomes an :class:`Outcome`.

    The status is the first of ``exc.status``, ``exc.status_code``, ``exc.code()`` /
    ``exc.code`` (an enum gives its name, as ``grpc.RpcError.code()`` does) that is a
    str/int; else ``"DEADLINE_EXCEEDED"`` for ``TimeoutError``, ``"UNAVAILABLE"`` for
    ``ConnectionError``, else the exception's class name (never retryable unless listed).
    ``exc.retry_after_s``, when present, is the pushback.

    Examples
    --------
    >>> classify_exception(ConnectionResetError()).status
    'UNAVAILABLE'
    """
    status: Status | None = None
    for attr in ("status", "status_code", "code"):
        value = getattr(exc, attr, None)
        if callable(value):
            try:
                value = value()
            except Exception:  # noqa: BLE001 - an odd .code() just means "no status here"
                value = None
        status = _status_of(value)
        if status is not None:
            break
    if status is None:
        if isinstance(exc, TimeoutError):
            status = "DEADLINE_EXCEEDED"
        elif isinstance(exc, ConnectionError):
            status = "UNAVAILABLE"
        else:
            status = type(exc).__name__
    retry_after = getattr(exc, "retry_after_s", None)
    retry_after = (
        retry_after if isinstance(retry_after, (int, float)) and not isinstance(retry_after, bool) else None
    )
    return Outcome.failure(status, retry_after_s=retry_after, error=exc)


def raise_for_final(final: Done | GiveUp) -> Any:
    """Turn a terminal decision into the call's value, or raise.

    ``Done`` with a success returns its value; ``Done`` with a failure re-raises the
    outcome's error (the call's own exception, or CircuitOpenError / RejectedError for a
    local refusal) or, with no error, returns its value (a response classified as a final
    failure, e.g. HTTP 400). A single attempt that was not retried (``max_attempts=1``) is
    treated the same way. Otherwise ``GiveUp`` raises :class:`DeadlineExceededError` (reason
    ``"deadline"``) or :class:`RetryExhaustedError`, chained from the last error.
    """
    outcome = final.outcome
    if isinstance(final, Done) or (
        final.reason == "exhausted" and final.attempts <= 1 and outcome is not None
    ):
        if not outcome.ok and outcome.error is not None:
            raise outcome.error
        return outcome.value
    cause = outcome.error if outcome is not None else None
    last = "no outcome" if outcome is None else f"last status {outcome.status!r}"
    if final.reason == "deadline":
        raise DeadlineExceededError(
            f"deadline passed after {final.attempts} attempt(s), {last}",
            attempts=final.attempts,
            last_outcome=outcome,
        ) from cause
    raise RetryExhaustedError(
        f"gave up ({final.reason}) after {final.attempts} attempt(s), {last}",
        reason=final.reason,
        attempts=final.attempts,
        last_outcome=outcome,
    ) from cause


class _CallAdmission:
    """The per-attempt gates of ONE call under a stack: breaker, then bulkhead, then rate limiter.

    The gates (breaker, bulkhead, limiter) and their counts are the stack's, shared by every call.
    What each admitted attempt of this call holds (its bulkhead slots and the breaker epoch of its
    permit) is kept here, keyed by attempt number, so overlapping calls never mix up their attempts.
    :meth:`PolicyStack.start` makes one per call and gives it to that call's :class:`RetryCall`.
    """

    __slots__ = ("_held", "_stack")

    def __init__(self, stack: PolicyStack) -> None:
        self._stack = stack
        # attempt -> (the bulkhead slots it holds, the breaker epoch of its permit)
        self._held: dict[int, tuple[tuple[LimitKind, ...], int | None]] = {}

    def admit(self, now: float, attempt: int) -> Outcome | None:
        breaker = self._stack.breaker
        epoch = None
        if breaker is not None:
            if not breaker.try_acquire(now):
                return Outcome.failure("CIRCUIT_OPEN", error=breaker.open_error(now), local=True)
            epoch = len(breaker._states.transitions)  # breaker.epoch
        stack = self._stack
        taken = (
            () if stack.bulkhead is None and stack.rate_limiter is None else self._take_slots(now, attempt)
        )
        if isinstance(taken, Outcome):  # refused: the permit goes back too
            if breaker is not None:
                breaker.release_permission(epoch)
            return taken
        self._held[attempt] = (taken, epoch)
        return None

    def _take_slots(self, now: float, attempt: int) -> tuple[LimitKind, ...] | Outcome:
        """Bulkhead slots, then a rate-limiter token: what was taken, or a refusal (having given it back)."""
        stack = self._stack
        held: tuple[LimitKind, ...] = ()
        bulkhead = stack.bulkhead
        if bulkhead is not None:
            # a retry also takes a "retries" slot, unless a retry budget replaces max_retries (Envoy)
            retry_slot = attempt > 1 and stack.budget is None
            kinds: tuple[LimitKind, ...] = ("requests", "retries") if retry_slot else ("requests",)
            for kind in kinds:
                if not bulkhead.try_acquire(kind):
                    self._give_back(held)
                    return Outcome.failure("OVERFLOW", error=bulkhead.overflow_error(kind), local=True)
                held += (kind,)
        limiter = stack.rate_limiter
        if limiter is not None and not limiter.try_acquire(now):
            self._give_back(held)
            return Outcome.failure("RATE_LIMITED", error=limiter.rejected_error(), local=True)
        return held

    def _give_back(self, kinds: tuple[LimitKind, ...]) -> None:
        for kind in kinds:
            self._stack.bulkhead.release(kind)  # type: ignore[union-attr]

    def complete(self, now: float, attempt: int, outcome: Outcome, duration_s: float) -> None:
        held, epoch = self._held.pop(attempt)
        if held:
            self._give_back(held)
        breaker = self._stack.breaker
        if breaker is None:
            return
        if outcome.ok:
            breaker.on_success(now, duration_s)
        elif outcome.status in self._stack.breaker_ignores:
            breaker.release_permission(epoch)  # counted as neither: the permit just goes back
        else:
            breaker.on_error(now, duration_s)

    def abandon(self, now: float, attempt: int) -> None:
        held, epoch = self._held.pop(attempt)
        self._give_back(held)
        if self._stack.breaker is not None:
            self._stack.breaker.release_permission(epoch)


class PolicyStack:
    """Deadline, retry/hedging, circuit breaker, bulkhead and rate limiter around one kind of call.

    The stack holds the shared, long-lived objects (breaker, bulkhead, limiter, budget,
    throttle, rng); each call gets a fresh :class:`RetryCall` from :meth:`start`, which also
    keeps what that call's attempts hold (bulkhead slots, breaker permits). So one stack serves
    any number of overlapping calls, as one Envoy cluster's thresholds serve all its requests.
    Use :meth:`call` on real async code, or hand the stack to ``simpy_call`` in a simulation.

    Parameters
    ----------
    retry : RetryPolicy or HedgingPolicy, optional
        None means a single attempt.
    breaker : CircuitBreaker, optional
    bulkhead : Bulkhead, optional
    rate_limiter : TokenBucket, optional
    timeout_s : float, optional
        Overall time allowed per call (the deadline).
    deadline_margin_s : float
        Kept back from an inherited :func:`current_deadline`.
    budget : RetryBudget, optional
    throttle : RetryThrottle, optional
    rng : random.Random, optional
        Jitter source shared by the calls (fresh unseeded if None).
    breaker_ignores : iterable of status
        Failures the breaker counts as neither success nor failure (e.g. ``{400, "INVALID_ARGUMENT"}``).
    classify_exception : callable
        ``exc -> Outcome`` for exceptions the call raises.
    classify_result : callable, optional
        ``value -> Outcome`` for values it returns (default: every value is a success).

    Examples
    --------
    >>> import asyncio, random
    >>> from otlp_lab.resilience import PolicyStack, RetryPolicy
    >>> failures = [ConnectionError("reset"), ConnectionError("reset")]
    >>> async def fetch(url):
    ...     if failures:
    ...         raise failures.pop()
    ...     return f"200 {url}"
    >>> stack = PolicyStack(RetryPolicy(initial_backoff_s=0.001), rng=random.Random(1))
    >>> asyncio.run(stack.call(fetch, "/v1/traces"))
    '200 /v1/traces'
    """

    def __init__(
        self,
        retry: RetryPolicy | HedgingPolicy | None = None,
        *,
        breaker: CircuitBreaker | None = None,
        bulkhead: Bulkhead | None = None,
        rate_limiter: TokenBucket | None = None,
        timeout_s: float | None = None,
        deadline_margin_s: float = 0.0,
        budget: RetryBudget | None = None,
        throttle: RetryThrottle | None = None,
        rng: random.Random | None = None,
        breaker_ignores: Iterable[Status] = (),
        classify_exception: Callable[[BaseException], Outcome] = classify_exception,
        classify_result: Callable[[Any], Outcome] | None = None,
    ) -> None:
        self.retry = retry if retry is not None else RetryPolicy(max_attempts=1)
        self.breaker = breaker
        self.bulkhead = bulkhead
        self.rate_limiter = rate_limiter
        self.timeout_s = timeout_s
        self.deadline_margin_s = deadline_margin_s
        self.budget = budget
        self.throttle = throttle
        self.rng = rng if rng is not None else random.Random()
        self.breaker_ignores = status_set(breaker_ignores)
        self.classify_exception = classify_exception
        self.classify_result = classify_result

    def start(self, now: float, *, deadline: Deadline | None = None) -> RetryCall:
        """The state machine of one call starting at ``now``.

        The deadline is the earliest of ``now + timeout_s`` and ``deadline`` (default: the
        :func:`current_deadline` minus ``deadline_margin_s``).
        """
        parent = deadline if deadline is not None else current_deadline()
        effective = parent.child(now, self.timeout_s, margin_s=self.deadline_margin_s)
        return self.retry.start(
            now,
            rng=self.rng,
            budget=self.budget,
            throttle=self.throttle,
            deadline=effective,
            admission=_CallAdmission(self),  # this call's attempts; the gates they pass are the stack's
        )

    async def call(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any:
        """``await fn(*args, **kwargs)`` under the stack; returns its value or raises.

        Raises
        ------
        CircuitOpenError, RejectedError
            An attempt was refused locally and not retried.
        DeadlineExceededError
            The deadline passed.
        RetryExhaustedError
            Retries ran out (also budget, throttling, pushback); ``.last_outcome`` holds the last.
        Exception
            The call's own exception when its status is not retryable.
        """
        clock = asyncio.get_running_loop().time

        async def attempt(_: int) -> Outcome:
            try:
                value = await fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified; CancelledError is not an Exception
                return self.classify_exception(exc)
            return self.classify_result(value) if self.classify_result is not None else Outcome.success(value)

        final = await drive_async(self.start(clock()), attempt, clock=clock)
        return raise_for_final(final)

    async def call_with_fallback(
        self,
        fallback: Fallback,
        key: Hashable,
        fn: Callable[..., Awaitable[Any]],
        /,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        """Like :meth:`call`, but remember good results under ``key`` and serve ``fallback`` on failure."""
        clock = asyncio.get_running_loop().time
        try:
            value = await self.call(fn, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure may be served a fallback
            return fallback.serve(key, clock(), exc).value
        fallback.remember(key, value, clock())
        return value

    def __repr__(self) -> str:
        parts = [f"retry={self.retry!r}"] + [
            f"{n}={getattr(self, n)!r}"
            for n in ("breaker", "bulkhead", "rate_limiter", "timeout_s", "budget", "throttle")
            if getattr(self, n) is not None
        ]
        return f"PolicyStack({', '.join(parts)})"
