"""Circuit breaker with resilience4j semantics, as a pure state machine.

States and transitions (each one is recorded as a :class:`Transition` where it happens)::

    CLOSED --(failure or slow-call rate >= threshold, with >= minimum_number_of_calls)--> OPEN
    OPEN --(wait_duration_in_open_state_s passed)--> HALF_OPEN
          automatic: at exactly opened_at + wait; otherwise at the first try_acquire after it
    HALF_OPEN --(permitted calls recorded, rates >= threshold)--> OPEN
    HALF_OPEN --(permitted calls recorded, rates below)--> CLOSED (fresh window)
    HALF_OPEN --(max_wait_duration_in_half_open_state_s passed, if > 0)--> OPEN
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

from otlp_lab.errors import CircuitOpenError
from otlp_lab.resilience._core import ConfigBase, StateRecorder, Transition, check, check_int, check_number

__all__ = [
    "BreakerMetrics",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitState",
    "SlidingWindowType",
]


class CircuitState(Enum):
    """Breaker states."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


class SlidingWindowType(Enum):
    """How the CLOSED-state window is counted."""

    COUNT_BASED = "COUNT_BASED"  # the last sliding_window_size calls
    TIME_BASED = "TIME_BASED"  # calls in the last sliding_window_size whole seconds (1 s buckets)


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitBreakerConfig(ConfigBase):
    """resilience4j ``CircuitBreakerConfig`` fields (and defaults), durations in seconds.

    Parameters
    ----------
    failure_rate_threshold : float
        Percent (0-100] of failed calls at or above which the breaker opens.
    slow_call_rate_threshold : float
        Percent (0-100] of slow calls at or above which the breaker opens.
    slow_call_duration_threshold_s : float
        Calls longer than this are slow.
    sliding_window_type : SlidingWindowType or str
        ``COUNT_BASED`` or ``TIME_BASED``.
    sliding_window_size : int
        Calls (count based) or seconds (time based).
    minimum_number_of_calls : int
        Calls needed in the window before rates are evaluated (count based: capped at the
        window size, as resilience4j does).
    wait_duration_in_open_state_s : float
        Time OPEN before HALF_OPEN.
    permitted_number_of_calls_in_half_open_state : int
        Trial calls in HALF_OPEN.
    max_wait_duration_in_half_open_state_s : float
        Back to OPEN if HALF_OPEN lasts this long (0 = wait for the trial calls forever).
    automatic_transition_from_open_to_half_open_enabled : bool
        Move to HALF_OPEN when the wait ends rather than on the next call.
    """

    failure_rate_threshold: float = 50.0
    slow_call_rate_threshold: float = 100.0
    slow_call_duration_threshold_s: float = 60.0
    sliding_window_type: SlidingWindowType = SlidingWindowType.COUNT_BASED
    sliding_window_size: int = 100
    minimum_number_of_calls: int = 100
    wait_duration_in_open_state_s: float = 60.0
    permitted_number_of_calls_in_half_open_state: int = 10
    max_wait_duration_in_half_open_state_s: float = 0.0
    automatic_transition_from_open_to_half_open_enabled: bool = False

    def __post_init__(self) -> None:
        name = "CircuitBreakerConfig"
        check_number(name, "failure_rate_threshold", self.failure_rate_threshold, high=100.0, open_low=True)
        check_number(
            name, "slow_call_rate_threshold", self.slow_call_rate_threshold, high=100.0, open_low=True
        )
        check_number(
            name, "slow_call_duration_threshold_s", self.slow_call_duration_threshold_s, open_low=True
        )
        kind = self.sliding_window_type
        kinds = [k.value for k in SlidingWindowType]
        check(
            isinstance(kind, SlidingWindowType) or str(kind).upper() in kinds,
            name,
            "sliding_window_type",
            f"one of {kinds}",
            kind,
        )
        object.__setattr__(
            self, "sliding_window_type", SlidingWindowType(str(getattr(kind, "value", kind)).upper())
        )
        check_int(name, "sliding_window_size", self.sliding_window_size)
        check_int(name, "minimum_number_of_calls", self.minimum_number_of_calls)
        check_number(name, "wait_duration_in_open_state_s", self.wait_duration_in_open_state_s)
        check_int(
            name,
            "permitted_number_of_calls_in_half_open_state",
            self.permitted_number_of_calls_in_half_open_state,
        )
        check_number(
            name, "max_wait_duration_in_half_open_state_s", self.max_wait_duration_in_half_open_state_s
        )
        auto = self.automatic_transition_from_open_to_half_open_enabled
        check(
            isinstance(auto, bool),
            name,
            "automatic_transition_from_open_to_half_open_enabled",
            "a bool",
            auto,
        )


class BreakerMetrics(NamedTuple):
    """A snapshot of the current window; rates are None below ``minimum_number_of_calls``."""

    calls: int
    failed_calls: int
    slow_calls: int
    failure_rate: float | None
    slow_call_rate: float | None


class _Window:
    """Running totals of calls, failures and slow calls: the last ``size`` calls, or ``size`` 1 s buckets."""

    __slots__ = ("_buckets", "_size", "_time_based", "calls", "failed", "slow")

    def __init__(self, size: int, *, time_based: bool) -> None:
        self._size = size
        self._time_based = time_based
        self._buckets: deque[list[int]] = deque()  # count: [1, failed, slow]; time: [second, n, failed, slow]
        self.calls = self.failed = self.slow = 0

    def _evict(self, now: float) -> None:
        if self._time_based:
            oldest = math.floor(now) - self._size
            while self._buckets and self._buckets[0][0] <= oldest:
                self._drop(self._buckets.popleft()[1:])
        else:
            while len(self._buckets) > self._size:
                self._drop(self._buckets.popleft()[1:])

    def _drop(self, counts: list[int]) -> None:
        self.calls -= counts[0]
        self.failed -= counts[1]
        self.slow -= counts[2]

    def record(self, now: float, *, failed: bool, slow: bool) -> None:
        if self._time_based:
            second = math.floor(now)
            if not self._buckets or self._buckets[-1][0] < second:
                self._buckets.append([second, 0, 0, 0])
            bucket = self._buckets[-1]
            bucket[1] += 1
            bucket[2] += failed
            bucket[3] += slow
            self.calls += 1
            self.failed += failed
            self.slow += slow
            self._evict(now)
        else:
            buckets = self._buckets
            buckets.append([0, 1, int(failed), int(slow)])
            self.calls += 1
            self.failed += failed
            self.slow += slow
            while len(buckets) > self._size:  # self._evict(now), count-based
                _, n, f, s = buckets.popleft()
                self.calls -= n
                self.failed -= f
                self.slow -= s

    def snapshot(self, now: float, minimum_calls: int) -> BreakerMetrics:
        self._evict(now)
        if self.calls < minimum_calls or self.calls == 0:
            return BreakerMetrics(self.calls, self.failed, self.slow, None, None)
        return BreakerMetrics(
            self.calls,
            self.failed,
            self.slow,
            100.0 * self.failed / self.calls,
            100.0 * self.slow / self.calls,
        )


class CircuitBreaker:
    """A resilience4j-style circuit breaker driven by ``now`` values; reads no clock.

    Parameters
    ----------
    config : CircuitBreakerConfig, optional
        Thresholds and durations (resilience4j defaults if None).
    name : str
        Used in error messages.
    listener : callable, optional
        Called with each :class:`Transition` as it happens.

    Attributes
    ----------
    transitions : list of Transition
        Every state change, ``(at_s, from_state, to_state)``.
    not_permitted_calls : int
        ``try_acquire`` refusals.

    Examples
    --------
    >>> cb = CircuitBreaker(CircuitBreakerConfig(sliding_window_size=2, minimum_number_of_calls=2,
    ...                                          wait_duration_in_open_state_s=5.0))
    >>> for t in (0.0, 1.0):
    ...     cb.try_acquire(t) and cb.on_error(t, 0.1)
    >>> cb.state, cb.try_acquire(3.0), cb.try_acquire(6.0), cb.state
    (<CircuitState.OPEN: 'OPEN'>, False, True, <CircuitState.HALF_OPEN: 'HALF_OPEN'>)
    >>> [(t.at_s, t.to_state.name) for t in cb.transitions]
    [(1.0, 'OPEN'), (6.0, 'HALF_OPEN')]
    """

    def __init__(
        self,
        config: CircuitBreakerConfig | None = None,
        *,
        name: str = "circuit breaker",
        listener: Callable[[Transition], None] | None = None,
    ) -> None:
        self.config = config if config is not None else CircuitBreakerConfig()
        self.name = name
        self._states = StateRecorder(CircuitState.CLOSED, listener)
        self.not_permitted_calls = 0
        self.ignored_outcomes = 0  # outcomes of calls that finished while OPEN
        self._entered_at_s = -math.inf
        self._permits = 0
        self._window = self._closed_window()

    # -- state --------------------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The state as of the last call (``poll(now)`` applies timed transitions first)."""
        return self._states.state

    @property
    def transitions(self) -> list[Transition]:
        """Every state change so far."""
        return self._states.transitions

    @property
    def next_transition_at_s(self) -> float | None:
        """When a timed transition is due (automatic OPEN -> HALF_OPEN, or HALF_OPEN max wait), else None."""
        c = self.config
        if self.state is CircuitState.OPEN and c.automatic_transition_from_open_to_half_open_enabled:
            return self._entered_at_s + c.wait_duration_in_open_state_s
        if self.state is CircuitState.HALF_OPEN and c.max_wait_duration_in_half_open_state_s > 0:
            return self._entered_at_s + c.max_wait_duration_in_half_open_state_s
        return None

    def retry_in_s(self, now: float) -> float | None:
        """Seconds until an OPEN breaker may let a call through (None unless OPEN)."""
        if self.state is not CircuitState.OPEN:
            return None
        return max(0.0, self._entered_at_s + self.config.wait_duration_in_open_state_s - now)

    def poll(self, now: float) -> CircuitState:
        """Apply the timed transitions due by ``now`` and return the state."""
        state = self._states._state
        if state is CircuitState.CLOSED:  # the common case: CLOSED has no timed transition
            return state
        while (due := self.next_transition_at_s) is not None and now >= due:
            if self.state is CircuitState.OPEN:
                self._move(due, CircuitState.HALF_OPEN)  # OPEN -> HALF_OPEN: automatic, at the scheduled time
            else:
                self._move(due, CircuitState.OPEN)  # HALF_OPEN -> OPEN: trial calls took too long
        return self.state

    def metrics(self, now: float) -> BreakerMetrics:
        """Counts and rates of the current window."""
        return self._window.snapshot(now, self._minimum_calls())

    # -- calls --------------------------------------------------------------------------------

    def try_acquire(self, now: float) -> bool:
        """May a call start at ``now``? Counts a permit in HALF_OPEN; counts refusals."""
        state = self.poll(now)
        if (
            state is CircuitState.OPEN
            and now >= self._entered_at_s + self.config.wait_duration_in_open_state_s
        ):
            self._move(now, CircuitState.HALF_OPEN)  # OPEN -> HALF_OPEN: on the first call after the wait
            state = CircuitState.HALF_OPEN
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and self._permits > 0:
            self._permits -= 1
            return True
        self.not_permitted_calls += 1
        return False

    def acquire(self, now: float) -> None:
        """Like :meth:`try_acquire` but raise :class:`CircuitOpenError` when refused."""
        if not self.try_acquire(now):
            raise self.open_error(now)

    def open_error(self, now: float) -> CircuitOpenError:
        """The error describing a refusal at ``now``."""
        state = self.state.name
        return CircuitOpenError(
            f"{self.name} is {state}: call not permitted at t={now:g}",
            state=state,
            retry_in_s=self.retry_in_s(now),
        )

    @property
    def epoch(self) -> int:
        """Number of transitions so far: tag a permit with it to release it only in the same state period."""
        return len(self._states.transitions)

    def release_permission(self, epoch: int | None = None) -> None:
        """A permitted call did not run (or its result is ignored): give its HALF_OPEN permit back.

        Pass the ``epoch`` read when the permit was granted so that a permit from an earlier
        state period is not returned to a later HALF_OPEN period.
        """
        if self.state is CircuitState.HALF_OPEN and (epoch is None or epoch == self.epoch):
            self._permits = min(self._permits + 1, self.config.permitted_number_of_calls_in_half_open_state)

    def on_success(self, now: float, duration_s: float) -> None:
        """A permitted call succeeded after ``duration_s``."""
        self._on_result(now, duration_s, failed=False)

    def on_error(self, now: float, duration_s: float) -> None:
        """A permitted call failed after ``duration_s``."""
        self._on_result(now, duration_s, failed=True)

    # -- internals ----------------------------------------------------------------------------

    def _on_result(self, now: float, duration_s: float, *, failed: bool) -> None:
        state = self.poll(now)
        if state is CircuitState.OPEN:
            self.ignored_outcomes += 1
            return
        c = self.config
        w = self._window
        w.record(now, failed=failed, slow=duration_s > c.slow_call_duration_threshold_s)
        calls = w.calls  # record() evicted up to now already: the window as metrics(now) would see it
        if calls < self._minimum_calls() or calls == 0:
            return
        tripped = (
            100.0 * w.failed / calls >= c.failure_rate_threshold
            or 100.0 * w.slow / calls >= c.slow_call_rate_threshold
        )
        if tripped:
            self._move(now, CircuitState.OPEN)  # CLOSED/HALF_OPEN -> OPEN: a rate reached its threshold
        elif state is CircuitState.HALF_OPEN:
            self._move(now, CircuitState.CLOSED)  # HALF_OPEN -> CLOSED: the trial calls went well

    def _minimum_calls(self) -> int:
        c = self.config
        if self._states._state is CircuitState.HALF_OPEN:
            return c.permitted_number_of_calls_in_half_open_state
        if c.sliding_window_type is SlidingWindowType.COUNT_BASED:
            return min(c.minimum_number_of_calls, c.sliding_window_size)
        return c.minimum_number_of_calls

    def _closed_window(self) -> _Window:
        c = self.config
        return _Window(
            c.sliding_window_size, time_based=c.sliding_window_type is SlidingWindowType.TIME_BASED
        )

    def _move(self, at_s: float, to: CircuitState) -> None:
        """Enter ``to`` at ``at_s`` with a fresh window (resilience4j builds new state metrics)."""
        self._entered_at_s = at_s
        if to is CircuitState.HALF_OPEN:
            self._permits = self.config.permitted_number_of_calls_in_half_open_state
            self._window = _Window(self._permits, time_based=False)
        elif to is CircuitState.CLOSED:
            self._window = self._closed_window()
        self._states.move(at_s, to)

    def __repr__(self) -> str:
        return f"CircuitBreaker(name={self.name!r}, state={self.state.name}, transitions={len(self.transitions)})"
