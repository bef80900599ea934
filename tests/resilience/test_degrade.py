"""Fallbacks and degradation levels."""

from __future__ import annotations

import pytest

from otlp_lab.errors import ConfigError
from otlp_lab.resilience import (
    CircuitState,
    DegradationConfig,
    Degrader,
    Fallback,
    FallbackCache,
    FallbackResult,
)


def test_cache_fresh_then_stale_then_gone_and_eviction():
    c = FallbackCache(fresh_for_s=1.0, stale_for_s=5.0, max_entries=2)
    c.put("a", 1, now=0.0)
    assert c.get("a", 1.0) == FallbackResult(1, "fresh")
    assert c.get("a", 5.0) == FallbackResult(1, "stale")
    assert c.get("a", 5.1) is None
    c.put("b", 2, 0.0), c.put("c", 3, 0.0)
    assert c.get("a", 0.0) is None and c.evicted == 1
    with pytest.raises(ConfigError, match="stale_for_s"):
        FallbackCache(fresh_for_s=10, stale_for_s=1)


def test_fallback_prefers_cache_then_default_then_reraises():
    fb = Fallback(cache=FallbackCache(fresh_for_s=1.0, stale_for_s=10.0), default="empty")
    fb.remember("k", "v1", 0.0)
    err = ConnectionError("down")
    assert fb.serve("k", 0.5, err) == ("v1", "fresh")
    assert fb.serve("k", 3.0, err) == ("v1", "stale")
    assert fb.serve("other", 3.0, err) == ("empty", "default")
    assert fb.served == {"fresh": 1, "stale": 1, "default": 1}
    with pytest.raises(ConnectionError):
        Fallback().serve("k", 0.0, err)


def test_degrader_steps_up_at_once_and_down_with_hysteresis():
    d = Degrader(
        DegradationConfig(
            enter_thresholds=(0.5, 0.8), exit_thresholds=(0.3, 0.6), min_dwell_s=10.0, latency_target_s=0.2
        )
    )
    levels = [
        d.observe(0.0, latency_s=0.05),  # 0.25
        d.observe(1.0, latency_s=0.18),  # 0.9  -> 2 at once
        d.observe(2.0, latency_s=0.14),  # 0.7: above exit 0.6, stays 2
        d.observe(5.0, latency_s=0.10),  # 0.5 < 0.6 but dwell 4 s < 10 s
        d.observe(11.0, latency_s=0.10),  # -> 1
        d.observe(12.0, latency_s=0.02),  # 0.1 < 0.3 but dwell 1 s
        d.observe(21.0, latency_s=0.02),  # -> 0
    ]
    assert levels == [0, 2, 2, 2, 1, 1, 0]
    assert d.transitions == [(1.0, 0, 2), (11.0, 2, 1), (21.0, 1, 0)]


def test_degrader_signals_combine_and_gate_calls():
    heard = []
    d = Degrader(DegradationConfig(min_dwell_s=0.0), listener=heard.append)
    assert d.observe(0.0, breaker_state=CircuitState.OPEN) == 3  # open breaker = pressure 1.0
    assert not d.allows(skip_from_level=1) and d.allows()  # critical calls always run
    assert d.observe(1.0, breaker_state=CircuitState.HALF_OPEN, utilisation=0.2) == 2  # 0.7 < exit 0.85
    assert d.observe(2.0, breaker_state=CircuitState.CLOSED, error_rate=10.0) == 1
    assert d.observe(3.0) == 0
    assert [t.to_state for t in heard] == [3, 2, 1, 0]


def test_degradation_config_validation():
    with pytest.raises(ConfigError, match="each below its enter threshold"):
        DegradationConfig(enter_thresholds=(0.5,), exit_thresholds=(0.5,))
    with pytest.raises(ConfigError, match="non-decreasing"):
        DegradationConfig(enter_thresholds=(0.9, 0.5), exit_thresholds=(0.1, 0.2))
    assert DegradationConfig.from_dict({"min_dwell_s": "1m"}).min_dwell_s == 60.0
