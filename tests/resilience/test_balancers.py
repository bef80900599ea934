"""Load balancers, host selection (priorities, panic), locality failover."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otlp_lab.errors import ConfigError, NoHealthyUpstreamError
from otlp_lab.resilience import (
    BALANCER_POLICIES,
    Endpoint,
    HealthChecker,
    LeastRequest,
    LoadBalancerConfig,
    LocalityFailoverBalancer,
    Maglev,
    OutlierDetector,
    Passthrough,
    PowerOfTwoChoices,
    RandomBalancer,
    RingHash,
    RoundRobin,
    SmoothWeightedRoundRobin,
    locality_priorities,
    priority_load,
    stable_hash64,
    with_health,
)


def eps(*ids: str, **kw) -> list[Endpoint]:
    return [Endpoint(i, **kw) for i in ids]


def picks(lb, endpoints, n: int, **kw) -> list[str]:
    return [lb.pick(float(t), endpoints, **kw).id for t in range(n)]


# --------------------------------------------------------------------------------------------
# Endpoints and hashing
# --------------------------------------------------------------------------------------------


def test_endpoint_validates_and_reads_dicts():
    assert Endpoint.from_dict({"id": "a", "weight": 3, "zone": "z1"}) == Endpoint("a", weight=3, zone="z1")
    with pytest.raises(ConfigError, match="Endpoint.weight must be an integer >= 1. Got 0 instead."):
        Endpoint("a", weight=0)
    with pytest.raises(ConfigError, match="Endpoint.id"):
        Endpoint("")
    with pytest.raises(ConfigError, match="has no setting 'colour'"):
        Endpoint.from_dict({"id": "a", "colour": "red"})


def test_stable_hash_is_the_same_in_every_process():
    # Pinned: a change here silently reshuffles every ring and Maglev table.
    assert stable_hash64("user-42") == stable_hash64(b"user-42") == 0xA6EFE67B4DCAA06F
    assert stable_hash64(7) == stable_hash64("7")
    assert stable_hash64("x", seed=1) != stable_hash64("x")
    with pytest.raises(ConfigError):
        stable_hash64(1.5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Round robin, smooth weighted round robin, random
# --------------------------------------------------------------------------------------------


def test_round_robin_exact_sequence():
    assert picks(RoundRobin(), eps("a", "b", "c"), 7) == list("abcabca")


def test_smooth_weighted_round_robin_nginx_sequence():
    lb = SmoothWeightedRoundRobin()
    endpoints = [Endpoint("a", weight=5), Endpoint("b"), Endpoint("c")]
    assert picks(lb, endpoints, 7) == list("aabacaa")
    assert picks(lb, endpoints, 7) == list("aabacaa")  # the cycle repeats exactly


def test_smooth_weighted_round_robin_is_round_robin_for_equal_weights():
    assert picks(SmoothWeightedRoundRobin(), eps("a", "b", "c"), 6) == list("abcabc")


def test_smooth_weighted_round_robin_proportions_for_any_weights():
    endpoints = [Endpoint("a", weight=3), Endpoint("b", weight=2), Endpoint("c", weight=7)]
    counts = Counter(picks(SmoothWeightedRoundRobin(), endpoints, 12 * 10))
    assert counts == {"a": 30, "b": 20, "c": 70}


def test_random_is_reproducible_and_weighted():
    endpoints = [Endpoint("a", weight=1), Endpoint("b", weight=3)]
    first = picks(RandomBalancer(rng=random.Random(3)), endpoints, 50)
    assert first == picks(RandomBalancer(rng=random.Random(3)), endpoints, 50)
    counts = Counter(picks(RandomBalancer(rng=random.Random(3)), endpoints, 4000))
    assert 0.70 < counts["b"] / 4000 < 0.80
    uniform = Counter(picks(RandomBalancer(rng=random.Random(3)), eps("a", "b", "c", "d"), 4000))
    assert all(850 < n < 1150 for n in uniform.values())


# --------------------------------------------------------------------------------------------
# Least request, power of two choices
# --------------------------------------------------------------------------------------------


def test_least_request_prefers_less_loaded_hosts():
    endpoints = [Endpoint("idle")] + [Endpoint(f"busy{i}", active_requests=10) for i in range(3)]
    n = 4000
    two = Counter(picks(LeastRequest(rng=random.Random(1)), endpoints, n))["idle"] / n
    three = Counter(picks(LeastRequest(choice_count=3, rng=random.Random(1)), endpoints, n))["idle"] / n
    # P(idle among 2 samples) = 1 - (3/4)^2 = 0.44; among 3: 0.58; uniform would be 0.25.
    assert 0.40 < two < 0.48
    assert 0.54 < three < 0.62


def test_least_request_balances_in_flight_requests_it_is_told_about():
    lb = LeastRequest(rng=random.Random(2))
    endpoints = eps("a", "b", "c", "d")
    for t in range(400):
        lb.on_start(float(t), lb.pick(float(t), endpoints))
    loads = [lb.active_requests(ep) for ep in endpoints]
    assert sum(loads) == 400
    assert max(loads) - min(loads) <= 3  # P2C keeps the spread tiny; random would be ~+-20
    for ep in endpoints:
        for _ in range(lb.active_requests(ep)):
            lb.on_finish(0.0, ep)
    with pytest.raises(ConfigError, match="without a matching on_start"):
        lb.on_finish(0.0, endpoints[0])


def test_least_request_with_weights_uses_effective_weight():
    lb = LeastRequest()
    endpoints = [Endpoint("heavy", weight=3), Endpoint("light", weight=1)]
    assert Counter(picks(lb, endpoints, 400)) == {"heavy": 300, "light": 100}
    # weight / (active + 1): heavy at 3 / (5 + 1) = 0.5 loses to light at 1 / 1.
    loaded = [Endpoint("heavy", weight=3, active_requests=5), Endpoint("light", weight=1)]
    assert Counter(picks(LeastRequest(), loaded, 300)) == {"heavy": 100, "light": 200}
    # active_request_bias = 0 ignores load: plain weighted round robin.
    assert Counter(picks(LeastRequest(active_request_bias=0.0), loaded, 400)) == {"heavy": 300, "light": 100}


def test_power_of_two_choices_picks_the_less_loaded_of_two_distinct():
    two = [Endpoint("busy", active_requests=4), Endpoint("idle")]
    assert set(picks(PowerOfTwoChoices(), two, 50)) == {"idle"}  # distinct samples: always both
    endpoints = [Endpoint("idle")] + [Endpoint(f"busy{i}", active_requests=10) for i in range(3)]
    share = Counter(picks(PowerOfTwoChoices(rng=random.Random(5)), endpoints, 4000))["idle"] / 4000
    assert 0.46 < share < 0.54  # P(idle in a distinct pair of 4) = 1/2
    weighted = [Endpoint("big", weight=4, active_requests=3), Endpoint("small", active_requests=1)]
    assert set(picks(PowerOfTwoChoices(), weighted, 20)) == {"big"}  # (3+1)/4 < (1+1)/1


def test_load_aware_balancers_validate():
    with pytest.raises(ConfigError, match="choice_count"):
        LeastRequest(choice_count=1)
    with pytest.raises(ConfigError, match="active_request_bias"):
        LeastRequest(active_request_bias=-1.0)


# --------------------------------------------------------------------------------------------
# Ring hash
# --------------------------------------------------------------------------------------------

KEYS = [f"user-{i}" for i in range(2000)]


def owners(lb, endpoints) -> list[str]:
    return [lb.pick(0.0, endpoints, key=k).id for k in KEYS]


def test_ring_hash_is_consistent_and_sized_like_envoy():
    lb = RingHash()
    endpoints = eps("a", "b", "c")
    hashes, _ = lb.ring(endpoints)
    assert len(hashes) == 342 * 3  # ceil(1024 / 3) points per host
    assert owners(lb, endpoints) == owners(RingHash(), list(reversed(endpoints)))  # order does not matter
    counts = Counter(owners(lb, endpoints))
    assert all(450 < n < 900 for n in counts.values())


def test_ring_hash_weights_scale_points():
    lb = RingHash(minimum_ring_size=4096)
    endpoints = [Endpoint("a", weight=1), Endpoint("b", weight=3)]
    _, owned = lb.ring(endpoints)
    counts = Counter(endpoints[i].id for i in owned)
    assert counts["b"] == 3 * counts["a"]


@settings(max_examples=25, deadline=None)
@given(n=st.integers(min_value=3, max_value=20), data=st.data())
def test_ring_hash_removing_one_endpoint_moves_about_one_nth_of_keys(n, data):
    endpoints = eps(*(f"10.0.0.{i}:80" for i in range(n)))
    removed = data.draw(st.integers(min_value=0, max_value=n - 1))
    lb = RingHash()
    before = owners(lb, endpoints)
    after = owners(lb, endpoints[:removed] + endpoints[removed + 1 :])
    moved = sum(b != a for b, a in zip(before, after, strict=True)) / len(KEYS)
    strays = sum(b != a and b != endpoints[removed].id for b, a in zip(before, after, strict=True)) / len(
        KEYS
    )
    assert all(a != endpoints[removed].id for a in after)
    # Envoy re-scales points per host with N, so keys of survivors move a little too.
    assert moved <= 2.0 / n + 0.05
    assert strays <= 1.0 / n + 0.05


# --------------------------------------------------------------------------------------------
# Maglev
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [3, 7, 10])
def test_maglev_table_shares_are_within_one_percent(n):
    endpoints = eps(*(f"h{i}" for i in range(n)))
    table = Maglev().table(endpoints)
    assert len(table) == 65537
    counts = Counter(table)
    fair = 65537 / n
    assert all(abs(c - fair) / fair < 0.01 for c in counts.values())


def test_maglev_weighted_shares():
    endpoints = [Endpoint("a", weight=1), Endpoint("b", weight=2), Endpoint("c", weight=3)]
    counts = Counter(Maglev().table(endpoints))
    for index, share in enumerate((1 / 6, 2 / 6, 3 / 6)):
        assert abs(counts[index] / 65537 - share) < 0.01


def test_maglev_keys_are_sticky():
    lb = Maglev(table_size=5003)
    endpoints = eps("a", "b", "c", "d")
    assert owners(lb, endpoints) == owners(Maglev(table_size=5003), list(reversed(endpoints)))
    with pytest.raises(ConfigError, match="prime"):
        Maglev(table_size=5000)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(min_value=3, max_value=30), data=st.data())
def test_maglev_removing_one_endpoint_disrupts_little_more_than_its_share(n, data):
    endpoints = eps(*(f"10.0.0.{i}:80" for i in range(n)))
    removed = data.draw(st.integers(min_value=0, max_value=n - 1))
    lb = Maglev(table_size=5003)
    rest = endpoints[:removed] + endpoints[removed + 1 :]
    before = [endpoints[i].id for i in lb.table(endpoints)]
    after = [rest[i].id for i in lb.table(rest)]
    moved = sum(b != a for b, a in zip(before, after, strict=True)) / len(before)
    assert moved <= 1.0 / n + 0.05


# --------------------------------------------------------------------------------------------
# Host selection: panic, priorities, locality
# --------------------------------------------------------------------------------------------


def test_unhealthy_endpoints_are_skipped():
    endpoints = [Endpoint("a"), Endpoint("b", healthy=False), Endpoint("c")]
    assert picks(RoundRobin(), endpoints, 4) == list("acac")


def test_panic_mode_balances_across_all_hosts_below_threshold():
    endpoints = [Endpoint(f"h{i}", healthy=i < 4) for i in range(10)]  # 40 % healthy < 50 %
    lb = RoundRobin()
    assert picks(lb, endpoints, 10) == [f"h{i}" for i in range(10)]
    assert lb.panic_picks == lb.picks == 10
    endpoints = [Endpoint(f"h{i}", healthy=i < 6) for i in range(10)]  # 60 %: healthy hosts only
    lb = RoundRobin()
    assert set(picks(lb, endpoints, 12)) == {f"h{i}" for i in range(6)}
    assert lb.panic_picks == 0


def test_panic_disabled_fails_with_no_healthy_upstream():
    endpoints = [Endpoint("a", healthy=False), Endpoint("b", healthy=False)]
    with pytest.raises(NoHealthyUpstreamError, match="0 of 2 endpoints healthy") as info:
        RoundRobin(panic_threshold_percent=0).pick(0.0, endpoints)
    assert (info.value.total, info.value.healthy) == (2, 0)
    assert RoundRobin().pick(0.0, endpoints).id == "a"  # default 50 %: panic, pick anyway
    with pytest.raises(NoHealthyUpstreamError, match="no endpoints"):
        RoundRobin().pick(0.0, [])


def test_priority_load_follows_envoy_overprovisioning():
    p0 = [Endpoint(f"p0-{i}", healthy=i < 8) for i in range(10)]
    p1 = [Endpoint(f"p1-{i}", priority=1) for i in range(10)]
    assert priority_load(p0 + p1).load_percent == (100, 0)  # 80 % * 1.4 = 112 % -> still 100
    half = [Endpoint(f"p0-{i}", healthy=i < 5) for i in range(10)]
    assert priority_load(half + p1).load_percent == (70, 30)
    assert priority_load(half + p1).panic == (False, False)  # total availability is 100 %
    weak_p1 = [Endpoint(f"p1-{i}", priority=1, healthy=i < 2) for i in range(10)]
    weak_p0 = [Endpoint(f"p0-{i}", healthy=i < 2) for i in range(10)]
    plan = priority_load(weak_p0 + weak_p1)  # 28 % + 28 %: both in panic -> split by host count
    assert plan.panic == (True, True)
    assert plan.load_percent == (50, 50)


def test_priority_spillover_by_health():
    p0 = [Endpoint(f"p0-{i}", healthy=i < 5) for i in range(10)]
    p1 = [Endpoint(f"p1-{i}", priority=1) for i in range(10)]
    ids = picks(RandomBalancer(rng=random.Random(4)), p0 + p1, 4000)
    share_p1 = sum(i.startswith("p1") for i in ids) / 4000
    assert 0.27 < share_p1 < 0.33
    assert not any(i in {f"p0-{k}" for k in range(5, 10)} for i in ids)


def test_locality_priorities_follow_istio_order():
    endpoints = [
        Endpoint("far", region="eu", zone="eu-1"),
        Endpoint("failover", region="ap", zone="ap-1"),
        Endpoint("region", region="us", zone="us-2"),
        Endpoint("zone", region="us", zone="us-1"),
    ]
    ranked = locality_priorities(endpoints, region="us", zone="us-1", failover=[("us", "ap")])
    assert [e.priority for e in ranked] == [3, 2, 1, 0]
    assert [e.priority for e in locality_priorities(endpoints, region="us", zone="us-1")] == [2, 2, 1, 0]


def test_zone_failover_prefers_local_zone_and_spills_by_health():
    local = [Endpoint(f"l{i}", region="us", zone="us-1") for i in range(4)]
    remote = [Endpoint(f"r{i}", region="us", zone="us-2") for i in range(4)]
    lb = LocalityFailoverBalancer(RoundRobin(), region="us", zone="us-1")
    assert {i[0] for i in picks(lb, local + remote, 20)} == {"l"}
    # one of four local hosts left: 1.4 * 25 % = 35 % stays local, 65 % spills to the other zone
    degraded = [Endpoint(f"l{i}", region="us", zone="us-1", healthy=i == 0) for i in range(4)]
    lb = LocalityFailoverBalancer(RandomBalancer(rng=random.Random(9)), region="us", zone="us-1")
    ids = picks(lb, degraded + remote, 4000)
    assert 0.31 < ids.count("l0") / 4000 < 0.39
    assert not any(i in {"l1", "l2", "l3"} for i in ids)
    # the whole local zone down: everything goes to the next zone, no panic needed
    down = [Endpoint(f"l{i}", region="us", zone="us-1", healthy=False) for i in range(4)]
    assert {i[0] for i in picks(lb, down + remote, 50)} == {"r"}


def test_health_checks_and_ejections_fold_into_endpoints():
    endpoints = eps("a", "b", "c")
    hc = HealthChecker()
    hc.add("b", 0.0)  # pending first check: not routed to
    od = OutlierDetector(endpoint_ids=["a", "b", "c"], listener=None)
    folded = with_health(endpoints, health=hc, outlier=od)
    assert [e.healthy for e in folded] == [True, False, True]
    assert folded[0] is endpoints[0]  # unchanged endpoints are not copied


# --------------------------------------------------------------------------------------------
# Passthrough and configuration
# --------------------------------------------------------------------------------------------


def test_passthrough_goes_to_the_named_endpoint():
    endpoints = [Endpoint("10.0.0.1:80", healthy=False), Endpoint("10.0.0.2:80")]
    assert Passthrough().pick(0.0, endpoints, key="10.0.0.1:80").id == "10.0.0.1:80"
    with pytest.raises(NoHealthyUpstreamError, match="10.0.0.9:80"):
        Passthrough().pick(0.0, endpoints, key="10.0.0.9:80")
    with pytest.raises(ConfigError, match="needs key"):
        Passthrough().pick(0.0, endpoints)


@pytest.mark.parametrize("policy", sorted(BALANCER_POLICIES))
def test_config_builds_every_policy(policy):
    lb = LoadBalancerConfig.from_dict({"policy": policy, "table_size": 5003}).build(rng=random.Random(1))
    assert isinstance(lb, BALANCER_POLICIES[policy])
    endpoints = eps("a", "b", "c")
    assert lb.pick(0.0, endpoints, key="a").id in {"a", "b", "c"}


def test_config_validates_and_wraps_locality():
    with pytest.raises(ConfigError, match="policy must be one of"):
        LoadBalancerConfig(policy="fastest")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="prime"):
        LoadBalancerConfig(policy="maglev", table_size=1000)
    with pytest.raises(ConfigError, match="panic_threshold_percent"):
        LoadBalancerConfig(panic_threshold_percent=150)
    cfg = LoadBalancerConfig(policy="round_robin", locality_failover=True, failover=[("us", "eu")])
    assert cfg.failover == (("us", "eu"),)
    assert isinstance(cfg.build(), RoundRobin)  # no caller locality: nothing to wrap
    wrapped = cfg.build(region="us", zone="us-1")
    assert isinstance(wrapped, LocalityFailoverBalancer) and wrapped.failover == (("us", "eu"),)
