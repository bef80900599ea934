"""The simulator against queueing theory, and the retry-storm behaviour the issue asks for.

Each check runs several seeds and compares a 99 % confidence interval of the per-seed
estimates with the closed form (not one lucky run); each also checks the interval is tight
enough for the comparison to be able to fail.
"""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats

from otlp_lab.sim import Constant, Distribution, Exponential, OpenLoop, Policy, Scenario, Service, run

SEEDS = range(5)


def ci(xs: list[float], level: float = 0.99) -> tuple[float, float, float]:
    """Mean and the two ends of a Student-t confidence interval over independent replications."""
    m = statistics.fmean(xs)
    half = stats.t.ppf(0.5 + level / 2, len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return m, m - half, m + half


def mean_time_in_system(
    c: int, rho: float, service: Distribution, *, jobs: int = 25_000, seeds: range = SEEDS
) -> list[float]:
    """Mean response time of one c-server station (an instance with concurrency c) per seed."""
    lam = rho * c / service.mean_s
    duration = jobs / lam
    sc = Scenario(
        "station",
        services=[Service("s", concurrency=c, service_time=service)],
        workloads=[OpenLoop("s", rate=lam)],
        duration_s=duration,
        warmup_s=0.1 * duration,
    )
    return [run(sc, seed=s).mean_s for s in seeds]


def erlang_c(c: int, a: float) -> float:
    """Probability of waiting in M/M/c with offered load a = lambda / mu (Erlang C)."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def assert_matches(xs: list[float], theory: float, *, max_half_width: float) -> None:
    m, lo, hi = ci(xs)
    assert hi - m < max_half_width * theory, f"interval too wide to test anything: {m:.4f} +- {hi - m:.4f}"
    assert lo <= theory <= hi, (
        f"theory {theory:.4f} outside the 99% interval [{lo:.4f}, {hi:.4f}] (mean {m:.4f})"
    )


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_mm1_mean_response_time(rho: float) -> None:
    es = 0.01
    theory = es / (1 - rho)  # W = 1 / (mu - lambda)
    assert_matches(mean_time_in_system(1, rho, Exponential(es)), theory, max_half_width=0.15)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_mmc_mean_response_time_erlang_c(rho: float) -> None:
    c, es = 4, 0.01
    a = rho * c
    theory = erlang_c(c, a) * es / (c - a) + es  # W = C(c, a) / (c mu - lambda) + 1 / mu
    assert_matches(mean_time_in_system(c, rho, Exponential(es)), theory, max_half_width=0.15)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_md1_pollaczek_khinchine(rho: float) -> None:
    es = 0.01
    theory = es + rho * es / (2 * (1 - rho))  # W = 1/mu + rho / (2 mu (1 - rho))
    assert_matches(mean_time_in_system(1, rho, Constant(es)), theory, max_half_width=0.15)


def supermarket(
    balancer: str, *, n: int = 30, rho: float = 0.9, jobs: int = 25_000, seeds: range = SEEDS
) -> list[float]:
    sc = Scenario(
        "supermarket",
        services=[Service("s", instances=n, service_time=Exponential(1.0))],
        workloads=[OpenLoop("s", rate=rho * n)],
        policies={"lb": Policy(balancer=balancer)},
        default_policy="lb",
        duration_s=jobs / (rho * n),
        warmup_s=0.1 * jobs / (rho * n),
    )
    return [run(sc, seed=s).mean_s for s in seeds]


def test_power_of_two_choices_beats_random_as_the_supermarket_model_predicts() -> None:
    rho = 0.9
    # Mitzenmacher: with d = 2 choices and n -> infinity, E[T] = sum_i rho^(2^i - 2) (mean service time 1)
    theory_p2c = sum(rho ** (2**i - 2) for i in range(1, 40))
    p2c, p2c_lo, p2c_hi = ci(supermarket("power_of_two_choices"))
    rnd, rnd_lo, _ = ci(supermarket("random", seeds=range(3)))
    assert p2c_hi < rnd_lo, "power of two choices must beat random"
    assert rnd / p2c > 3.0  # random is n independent M/M/1 queues at rho: E[T] = 1 / (1 - rho) = 10
    assert rnd == pytest.approx(1 / (1 - rho), rel=0.2)
    # finite n sits slightly above the n -> infinity limit
    assert theory_p2c * 0.98 <= p2c_lo and p2c_hi <= theory_p2c * 1.10, (p2c_lo, p2c_hi, theory_p2c)


# ---------------------------------------------------------------- metastable retry storm

STORM_SEEDS = (0, 1, 2)
LATE = slice(45, 60)  # long after the 4 s spike at t = 20 s
BASE_RPS = 120.0


def late_goodput(overrides: dict, seed: int) -> float:
    r = run("retry_storm", seed=seed, duration_s=60, policy_overrides=overrides)
    g = r.timeline()["goodput_rps"].to_list()[LATE]
    return sum(g) / len(g)


def test_retry_storm_is_metastable() -> None:
    """Timeouts + 3 retries + no server-side cancellation: a short spike leaves goodput near zero for good."""
    late = [late_goodput({}, s) for s in STORM_SEEDS]
    assert max(late) < 0.05 * BASE_RPS, late


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"storm": {"retry": {"max_attempts": 1, "per_try_timeout_s": 0.25}}}, id="no-retries"),
        pytest.param(
            {"storm": {"budget": {"budget_percent": 20, "min_retry_concurrency": 3}}}, id="retry-budget"
        ),
        pytest.param(
            {
                "storm": {
                    "breaker": {
                        "minimum_number_of_calls": 20,
                        "sliding_window_size": 20,
                        "wait_duration_in_open_state_s": 1.0,
                    }
                }
            },
            id="breaker",
        ),
    ],
)
def test_the_same_fleet_recovers_with(overrides: dict) -> None:
    late = [late_goodput(overrides, s) for s in STORM_SEEDS]
    assert min(late) > 0.9 * BASE_RPS, late
