"""Config importers: Istio, Envoy, resilience4j, gRPC service config; strict key checking."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from otlp_lab.errors import ConfigError, ImportConfigError
from otlp_lab.resilience import (
    EXAMPLES_DIR,
    ISTIO_DEFAULT_RETRY,
    Bulkhead,
    CircuitBreakerConfig,
    Endpoint,
    HealthCheckConfig,
    HedgingPolicy,
    ImportedPolicies,
    LoadBalancerConfig,
    OutlierDetectionConfig,
    RetryBudget,
    RetryPolicy,
    RetryThrottle,
    SlidingWindowType,
    from_envoy_cluster,
    from_grpc_service_config,
    from_istio,
    from_resilience4j,
    import_yaml,
    parse_config_duration_s,
)

ISTIO_EXAMPLE = EXAMPLES_DIR / "istio-reviews.yaml"
ENVOY_EXAMPLE = EXAMPLES_DIR / "envoy-cart-cluster.yaml"
UNLIMITED = 2**32 - 1


def docs(path) -> list[dict]:
    return list(yaml.safe_load_all(path.read_text()))


def unmodelled(source: str, path: str, value: object) -> str:
    """The exact sentence an unmodelled key produces (as a regex)."""
    return re.escape(f"{source} key {path!r} is not modelled by otlp_lab (value {value!r})")


# --------------------------------------------------------------------------------------------
# Durations
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1.5s", 1.5),
        ("100ms", 0.1),
        ("30s", 30.0),
        ("1m", 60.0),
        ("1m30s", 90.0),
        ("2h", 7200.0),
        ("250us", 0.00025),
        ("1d", 86400.0),
        ("PT10S", 10.0),
        ("PT1M0.5S", 60.5),
        ("P1DT1H", 90000.0),
        ({"seconds": 1, "nanos": 500_000_000}, 1.5),
        ({"seconds": "2"}, 2.0),
    ],
)
def test_durations_in_every_dialect(text, seconds):
    assert parse_config_duration_s(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["10 seconds", "", "s", "-1s", "PT", 5, True, {"minutes": 1}, None])
def test_bad_durations(bad):
    with pytest.raises(ConfigError):
        parse_config_duration_s(bad)


def test_bare_numbers_need_a_unit():
    assert parse_config_duration_s(250, bare_unit_s=1e-3) == 0.25


# --------------------------------------------------------------------------------------------
# The shipped examples
# --------------------------------------------------------------------------------------------


def test_examples_are_package_data():
    assert ISTIO_EXAMPLE.is_file() and ENVOY_EXAMPLE.is_file()


def test_istio_example_imports_strictly():
    dr, vs = docs(ISTIO_EXAMPLE)
    p = from_istio(dr, vs)
    assert import_yaml(ISTIO_EXAMPLE).outlier == p.outlier
    assert (p.source, p.name, p.warnings) == ("istio", "reviews.prod.svc.cluster.local", ())
    assert isinstance(p.balancer, LoadBalancerConfig)
    assert (p.balancer.policy, p.balancer.locality_failover, p.balancer.failover) == (
        "least_request",
        True,
        (("us-east1", "us-west1"),),
    )
    assert p.balancer.panic_threshold_percent == 25.0  # Istio: minHealthPercent
    assert isinstance(p.limits, Bulkhead)
    assert p.limits.limits == {"connections": 100, "pending_requests": 64, "requests": 256, "retries": 8}
    assert p.connect_timeout_s == 2.0
    assert isinstance(p.outlier, OutlierDetectionConfig)
    o = p.outlier
    assert (o.consecutive_5xx, o.consecutive_gateway_failure, o.enforcing_consecutive_gateway_failure) == (
        5,
        3,
        100.0,
    )
    assert (o.interval_s, o.base_ejection_time_s, o.max_ejection_percent, o.enforcing_success_rate) == (
        10,
        30,
        50,
        0,
    )
    assert isinstance(p.retry, RetryPolicy)
    assert (p.retry.max_attempts, p.retry.per_try_timeout_s, p.timeout_s) == (4, 1.0, 3.0)
    assert p.retry.retryable_status_codes == {502, 503, 504, "UNAVAILABLE"}
    assert (p.retry.initial_backoff_s, p.retry.max_backoff_s, p.retry.jitter) == (0.025, 0.25, "full")


def test_envoy_example_imports_strictly():
    cluster, route = docs(ENVOY_EXAMPLE)
    p = from_envoy_cluster(cluster, route)
    assert import_yaml(ENVOY_EXAMPLE).retry == p.retry
    assert (p.source, p.name, p.warnings, p.connect_timeout_s, p.timeout_s) == (
        "envoy",
        "cart",
        (),
        0.25,
        2.0,
    )
    assert (p.balancer.policy, p.balancer.choice_count, p.balancer.panic_threshold_percent) == (
        "least_request",
        2,
        50.0,
    )
    assert p.limits.limits == {"connections": 512, "pending_requests": 128, "requests": 1024, "retries": 3}
    assert isinstance(p.retry_budget, RetryBudget)
    assert (p.retry_budget.budget_percent, p.retry_budget.min_retry_concurrency) == (20.0, 3)
    assert p.outlier.enforcing_consecutive_gateway_failure == 100.0
    assert isinstance(p.health_check, HealthCheckConfig)
    assert (p.health_check.interval_s, p.health_check.timeout_s, p.health_check_target) == (
        5.0,
        1.0,
        "http:/healthz",
    )
    assert p.endpoints == (
        Endpoint("10.0.1.10:8080", region="us-east1", zone="us-east1-b"),
        Endpoint("10.0.1.11:8080", weight=2, region="us-east1", zone="us-east1-b"),
        Endpoint("10.0.2.10:8080", region="us-east1", zone="us-east1-c", healthy=False),
        Endpoint("10.1.1.10:8080", region="us-west1", zone="us-west1-a", priority=1),
    )
    r = p.retry
    assert (r.max_attempts, r.per_try_timeout_s, r.initial_backoff_s, r.max_backoff_s) == (3, 0.5, 0.05, 0.5)
    assert {500, 503, 599, "UNAVAILABLE"} <= r.retryable_status_codes and 499 not in r.retryable_status_codes
    # the imported balancer runs on the imported endpoints
    assert p.balancer.build().pick(0.0, p.endpoints).id != "10.0.2.10:8080"


# --------------------------------------------------------------------------------------------
# Istio
# --------------------------------------------------------------------------------------------


def test_istio_defaults():
    p = from_istio({"spec": {"host": "reviews"}})
    assert isinstance(p, ImportedPolicies)
    assert (p.balancer.policy, p.balancer.panic_threshold_percent, p.balancer.locality_failover) == (
        "least_request",
        50.0,
        False,
    )
    assert p.limits.limits == dict.fromkeys(
        ("connections", "pending_requests", "requests", "retries"), UNLIMITED
    )
    assert p.retry == ISTIO_DEFAULT_RETRY and p.retry.max_attempts == 3
    assert (p.timeout_s, p.outlier, p.connect_timeout_s) == (None, None, 10.0)


def test_istio_outlier_detection_defaults_follow_istios_translation():
    p = from_istio({"spec": {"host": "reviews", "trafficPolicy": {"outlierDetection": {}}}})
    o = p.outlier
    assert (o.consecutive_5xx, o.enforcing_consecutive_5xx) == (5, 100.0)
    assert (o.consecutive_gateway_failure, o.enforcing_consecutive_gateway_failure) == (5, 0.0)
    assert (o.enforcing_success_rate, o.max_ejection_percent, o.base_ejection_time_s) == (0.0, 10.0, 30.0)
    assert p.balancer.panic_threshold_percent == 0.0  # minHealthPercent defaults to 0: panic off
    assert p.balancer.locality_failover  # on by default once outlier detection is set
    off = from_istio(
        {"spec": {"host": "r", "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 0}}}}
    )
    assert off.outlier.enforcing_consecutive_5xx == 0.0


@pytest.mark.parametrize(
    ("lb", "expected"),
    [
        ({"simple": "ROUND_ROBIN"}, {"policy": "weighted_round_robin"}),
        ({"simple": "RANDOM"}, {"policy": "random"}),
        ({"simple": "LEAST_CONN"}, {"policy": "least_request"}),
        ({"simple": "PASSTHROUGH"}, {"policy": "passthrough"}),
        (
            {"consistentHash": {"httpHeaderName": "x-user"}},
            {"policy": "ring_hash", "hash_key": "header:x-user"},
        ),
        (
            {"consistentHash": {"httpCookie": {"name": "sid"}, "ringHash": {"minimumRingSize": 4096}}},
            {"policy": "ring_hash", "hash_key": "cookie:sid", "minimum_ring_size": 4096},
        ),
        (
            {"consistentHash": {"useSourceIp": True, "maglev": {"tableSize": 5003}}},
            {"policy": "maglev", "hash_key": "source_ip", "table_size": 5003},
        ),
        (
            {"consistentHash": {"httpQueryParameterName": "u", "minimumRingSize": 64}},
            {"policy": "ring_hash", "hash_key": "query:u", "minimum_ring_size": 64},
        ),
    ],
)
def test_istio_load_balancers(lb, expected):
    p = from_istio({"spec": {"host": "r", "trafficPolicy": {"loadBalancer": lb}}})
    assert {k: getattr(p.balancer, k) for k in expected} == expected


def test_istio_rejects_unmodelled_keys_with_their_path():
    dr = {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "DestinationRule",
        "metadata": {"name": "reviews"},
        "spec": {
            "host": "reviews",
            "trafficPolicy": {
                "connectionPool": {"http": {"idleTimeout": "30s"}},
                "tls": {"mode": "ISTIO_MUTUAL"},
            },
            "subsets": [{"name": "v1"}],
        },
    }
    path = "spec.trafficPolicy.connectionPool.http.idleTimeout"
    expected = f"DestinationRule key '{path}' is not modelled by otlp_lab (value '30s')"
    with pytest.raises(ImportConfigError) as info:
        from_istio(dr)
    assert str(info.value) == expected + "; remove it or ignore it with strict=False"
    assert (info.value.source, info.value.path, info.value.value) == ("DestinationRule", path, "30s")
    assert isinstance(info.value, ConfigError) and isinstance(info.value, ValueError)
    lenient = from_istio(dr, strict=False)
    assert lenient.warnings == (
        expected + "; imported without it (the simulation behaves as if it were absent)",
    )
    assert any("tls" in n for n in lenient.notes)  # TLS does not change the simulated traffic: a note
    assert lenient.balancer.policy == "least_request"  # the rest was imported


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        (
            {"trafficPolicy": {"outlierDetection": {"splitExternalLocalOriginErrors": True}}},
            "spec.trafficPolicy.outlierDetection.splitExternalLocalOriginErrors",
        ),
        (
            {"trafficPolicy": {"connectionPool": {"http": {"useClientProtocol": True}}}},
            "spec.trafficPolicy.connectionPool.http.useClientProtocol",
        ),
        (
            {
                "trafficPolicy": {
                    "loadBalancer": {"localityLbSetting": {"distribute": [{"from": "a", "to": {"b": 100}}]}}
                }
            },
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from",
        ),
        ({"trafficPolicy": {"tunnel": {"protocol": "CONNECT"}}}, "spec.trafficPolicy.tunnel.protocol"),
    ],
)
def test_istio_unmodelled_paths(spec, path):
    with pytest.raises(ImportConfigError, match=re.escape(f"key '{path}' is not modelled")):
        from_istio({"spec": {"host": "r", **spec}})


@pytest.mark.parametrize(
    ("dr", "message"),
    [
        ({"kind": "Gateway", "spec": {"host": "r"}}, "key 'kind' must be 'DestinationRule'"),
        ({"spec": {}}, "key 'spec.host' must be the service host name"),
        (
            {"spec": {"host": "r", "trafficPolicy": {"outlierDetection": {"maxEjectionPercent": -1}}}},
            "'spec.trafficPolicy.outlierDetection.maxEjectionPercent' must be an integer >= 0. Got -1 instead.",
        ),
        (
            {"spec": {"host": "r", "trafficPolicy": {"outlierDetection": {"interval": "10 seconds"}}}},
            "'spec.trafficPolicy.outlierDetection.interval' must be a duration",
        ),
        (
            {"spec": {"host": "r", "trafficPolicy": {"loadBalancer": {"simple": "FASTEST"}}}},
            "'spec.trafficPolicy.loadBalancer.simple' must be one of",
        ),
        (
            {
                "spec": {
                    "host": "r",
                    "trafficPolicy": {"loadBalancer": {"consistentHash": {"maglev": {"tableSize": 1000}}}},
                }
            },
            "exactly one of httpHeaderName",
        ),
        (
            {
                "spec": {
                    "host": "r",
                    "trafficPolicy": {
                        "loadBalancer": {
                            "consistentHash": {"httpHeaderName": "x", "maglev": {"tableSize": 1000}}
                        }
                    },
                }
            },
            "prime",
        ),
    ],
)
def test_istio_bad_values_always_raise(dr, message):
    with pytest.raises(ImportConfigError, match=re.escape(message)):
        from_istio(dr, strict=False)


def vs(*routes: dict) -> dict:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "spec": {"hosts": ["r"], "http": list(routes)},
    }


def to(host: str = "r", **extra) -> dict:
    return {"route": [{"destination": {"host": host}}], **extra}


def test_virtual_service_retries_and_timeout():
    p = from_istio(
        {"spec": {"host": "r.ns.svc.cluster.local"}},
        vs(
            to("other"),
            to("r", timeout="1.5s", retries={"attempts": 5, "perTryTimeout": "200ms", "retryOn": "5xx,429"}),
        ),
    )
    assert (p.retry.max_attempts, p.retry.per_try_timeout_s, p.timeout_s) == (6, 0.2, 1.5)
    assert 429 in p.retry.retryable_status_codes and 500 in p.retry.retryable_status_codes
    defaults = from_istio({"spec": {"host": "r"}}, vs(to(retries={"attempts": 1})))
    assert defaults.retry.retryable_status_codes == ISTIO_DEFAULT_RETRY.retryable_status_codes
    assert from_istio({"spec": {"host": "r"}}, vs(to(retries={"attempts": 0}))).retry is None
    assert from_istio({"spec": {"host": "r"}}, vs(to(timeout="0s"))).timeout_s is None


def test_virtual_service_route_selection():
    routes = vs(to(name="a", timeout="1s"), to(name="b", timeout="2s"))
    assert from_istio({"spec": {"host": "r"}}, routes, route_name="b").timeout_s == 2.0
    p = from_istio({"spec": {"host": "r"}}, routes)
    assert p.timeout_s == 1.0 and "'b' also sends every request to 'r' but is never reached" in p.warnings[0]
    with pytest.raises(ImportConfigError, match="an http route to host 'r'"):
        from_istio({"spec": {"host": "r"}}, vs(to("other")))


@pytest.mark.parametrize(
    ("route", "path", "value"),
    [
        (
            to(retries={"attempts": 2, "retryOn": "5xx,retriable-headers"}),
            "spec.http[0].retries.retryOn",
            "retriable-headers",
        ),
        (to(mirror={"host": "shadow"}), "spec.http[0].mirror.host", "shadow"),
        (to(redirect={"uri": "/v2"}), "spec.http[0].redirect.uri", "/v2"),
    ],
)
def test_virtual_service_unmodelled_keys(route, path, value):
    with pytest.raises(ImportConfigError, match=unmodelled("VirtualService", path, value)):
        from_istio({"spec": {"host": "r"}}, vs(route))
    assert any(path in w for w in from_istio({"spec": {"host": "r"}}, vs(route), strict=False).warnings)


# --------------------------------------------------------------------------------------------
# Envoy
# --------------------------------------------------------------------------------------------


def test_envoy_defaults():
    p = from_envoy_cluster({"name": "c"})
    assert p.balancer.policy == "weighted_round_robin"  # Envoy ROUND_ROBIN is weighted
    assert p.limits.limits == {"connections": 1024, "pending_requests": 1024, "requests": 1024, "retries": 3}
    assert (p.retry, p.outlier, p.timeout_s, p.connect_timeout_s) == (None, None, None, 5.0)
    r = from_envoy_cluster(
        {"name": "c"}, {"route": {"cluster": "c", "retry_policy": {"retry_on": "gateway-error"}}}
    )
    assert r.timeout_s == 15.0  # Envoy's route timeout
    assert (r.retry.max_attempts, r.retry.initial_backoff_s, r.retry.max_backoff_s) == (2, 0.025, 0.25)
    assert r.retry.retryable_status_codes == {502, 503, 504}
    od = from_envoy_cluster({"name": "c", "outlier_detection": {}}).outlier
    assert od == OutlierDetectionConfig()


def test_envoy_field_spellings_and_written_out_values():
    p = from_envoy_cluster(
        {
            "name": "c",
            "lbPolicy": "RING_HASH",
            "ringHashLbConfig": {"minimumRingSize": "2048"},
            "outlierDetection": {"baseEjectionTime": {"seconds": 5}, "consecutive5xx": {"value": 7}},
            "commonLbConfig": {"healthyPanicThreshold": {"value": 0}},
        }
    )
    assert (p.balancer.policy, p.balancer.minimum_ring_size, p.balancer.panic_threshold_percent) == (
        "ring_hash",
        2048,
        0.0,
    )
    assert (p.outlier.base_ejection_time_s, p.outlier.consecutive_5xx) == (5.0, 7)
    maglev = from_envoy_cluster(
        {"name": "c", "lb_policy": "MAGLEV", "maglev_lb_config": {"table_size": 5003}}
    )
    assert (maglev.balancer.policy, maglev.balancer.table_size) == ("maglev", 5003)


def test_envoy_retriable_status_codes():
    rp = {
        "retry_on": "retriable-status-codes,connect-failure",
        "retriable_status_codes": [409, 503],
        "num_retries": 3,
    }
    p = from_envoy_cluster(
        {"name": "c"},
        {"match": {"prefix": "/"}, "route": {"cluster": "c", "retry_policy": rp, "timeout": "0s"}},
    )
    assert p.retry.retryable_status_codes == {409, 503, "UNAVAILABLE"} and p.retry.max_attempts == 4
    assert p.timeout_s is None
    quiet = from_envoy_cluster(
        {"name": "c"}, {"retry_policy": {"retry_on": "5xx", "retriable_status_codes": [409]}}
    )
    assert "has no effect" in quiet.warnings[0]


@pytest.mark.parametrize(
    ("cluster", "route", "path", "value"),
    [
        ({"upstream_bind_config": {"freebind": True}}, None, "upstream_bind_config.freebind", True),
        (
            {"circuit_breakers": {"thresholds": [{"priority": "HIGH", "max_requests": 5}]}},
            None,
            "circuit_breakers.thresholds[0].priority",
            "HIGH",
        ),
        (
            {"outlier_detection": {"consecutive_local_origin_failure": 3}},
            None,
            "outlier_detection.consecutive_local_origin_failure",
            3,
        ),
        (
            {"ring_hash_lb_config": {"hash_function": "MURMUR_HASH_2"}},
            None,
            "ring_hash_lb_config.hash_function",
            "MURMUR_HASH_2",
        ),
        (
            {"health_checks": [{"interval": "5s", "timeout": "1s", "no_traffic_interval": "60s"}]},
            None,
            "health_checks[0].no_traffic_interval",
            "60s",
        ),
        (
            {},
            {"route": {"cluster": "c", "hedge_policy": {"initial_requests": 2}}},
            "route.hedge_policy.initial_requests",
            2,
        ),
        (
            {},
            {"retry_policy": {"retry_on": "envoy-ratelimited"}},
            "retry_policy.retry_on",
            "envoy-ratelimited",
        ),
    ],
)
def test_envoy_unmodelled_keys(cluster, route, path, value):
    source = "Envoy route" if route else "Envoy cluster"
    with pytest.raises(ImportConfigError, match=unmodelled(source, path, value)):
        from_envoy_cluster({"name": "c", **cluster}, route)
    assert any(
        repr(path) in w for w in from_envoy_cluster({"name": "c", **cluster}, route, strict=False).warnings
    )


def test_envoy_bad_values():
    with pytest.raises(ImportConfigError, match=r"'route\.cluster' must be the imported cluster 'c'"):
        from_envoy_cluster({"name": "c"}, {"route": {"cluster": "d"}})
    with pytest.raises(ImportConfigError, match=r"'lb_policy' must be one of"):
        from_envoy_cluster({"name": "c", "lb_policy": "FASTEST"})
    with pytest.raises(
        ImportConfigError, match=r"'outlier_detection.max_ejection_percent' must be a number in"
    ):
        from_envoy_cluster({"name": "c", "outlier_detection": {"max_ejection_percent": 150}})
    with pytest.raises(ImportConfigError, match=r"'outlier_detection': .*max_ejection_time_s"):
        from_envoy_cluster(
            {"name": "c", "outlier_detection": {"base_ejection_time": "60s", "max_ejection_time": "10s"}}
        )
    with pytest.raises(ImportConfigError, match="given once"):
        from_envoy_cluster({"name": "c", "lb_policy": "RANDOM", "lbPolicy": "RANDOM"})


# --------------------------------------------------------------------------------------------
# resilience4j
# --------------------------------------------------------------------------------------------

R4J = """
resilience4j:
  circuitbreaker:
    configs:
      default:
        slidingWindowSize: 50
        failureRateThreshold: 40
        waitDurationInOpenState: 20s
        registerHealthIndicator: true
    instances:
      inventory:
        baseConfig: default
        minimum-number-of-calls: 10
        sliding-window-type: TIME_BASED
        slowCallDurationThreshold: 2000
        automaticTransitionFromOpenToHalfOpenEnabled: true
  retry:
    instances:
      inventory:
        maxAttempts: 4
        waitDuration: 200ms
        enableExponentialBackoff: true
        exponentialBackoffMultiplier: 3
        exponentialMaxWaitDuration: PT5S
  timelimiter:
    instances:
      inventory:
        timeoutDuration: 3s
  bulkhead:
    instances:
      inventory:
        maxConcurrentCalls: 12
"""


def test_resilience4j_instance_over_base_config():
    p = from_resilience4j(R4J)
    assert (p.source, p.name, p.warnings, p.timeout_s) == ("resilience4j", "inventory", (), 3.0)
    b = p.breaker
    assert isinstance(b, CircuitBreakerConfig)
    assert (b.sliding_window_size, b.failure_rate_threshold, b.wait_duration_in_open_state_s) == (
        50,
        40.0,
        20.0,
    )
    assert (b.minimum_number_of_calls, b.sliding_window_type, b.slow_call_duration_threshold_s) == (
        10,
        SlidingWindowType.TIME_BASED,
        2.0,
    )
    assert b.automatic_transition_from_open_to_half_open_enabled
    assert b.permitted_number_of_calls_in_half_open_state == 10  # resilience4j default
    r = p.retry
    assert (r.max_attempts, r.initial_backoff_s, r.backoff_multiplier, r.max_backoff_s, r.jitter) == (
        4,
        0.2,
        3.0,
        5.0,
        "none",
    )
    assert p.limits.limits["requests"] == 12 and p.limits.limits["retries"] == UNLIMITED


def test_resilience4j_defaults_dotted_keys_and_parsed_input():
    p = from_resilience4j({"resilience4j.retry.instances.a.maxAttempts": 2})
    assert (p.retry.max_attempts, p.retry.initial_backoff_s, p.retry.backoff_multiplier) == (2, 0.5, 1.0)
    assert p.retry.max_backoff_s == 0.5  # no exponential backoff: a constant wait
    assert from_resilience4j({"retry": {"configs": {"default": {"maxAttempts": 5}}}}).retry.max_attempts == 5


@pytest.mark.parametrize(("factor", "jitter", "initial_s"), [(1.0, "full", 1.0), (1 / 3, "equal", 2 / 3)])
def test_resilience4j_randomized_wait_with_exact_equivalents(factor, jitter, initial_s):
    text = f"resilience4j.retry.instances.a: {{waitDuration: 500, enableRandomizedWait: true, randomizedWaitFactor: {factor}}}"
    r = from_resilience4j(text).retry
    assert (r.jitter, r.initial_backoff_s) == (jitter, pytest.approx(initial_s))


def test_resilience4j_randomized_wait_without_an_equivalent_is_reported():
    text = "resilience4j.retry.instances.a: {enableRandomizedWait: true}"
    with pytest.raises(
        ImportConfigError, match=r"'resilience4j.retry.instances.a.enableRandomizedWait'.*default"
    ):
        from_resilience4j(text)
    assert from_resilience4j(text, strict=False).retry.jitter == "equal"


def test_resilience4j_unmodelled_and_bad_input():
    text = "resilience4j.circuitbreaker.instances.a: {recordExceptions: [java.io.IOException], initialState: DISABLED}"
    with pytest.raises(
        ImportConfigError,
        match=unmodelled("resilience4j", "resilience4j.circuitbreaker.instances.a.initialState", "DISABLED"),
    ):
        from_resilience4j(text)
    lenient = from_resilience4j(text, strict=False)
    assert lenient.breaker == CircuitBreakerConfig() and "recordExceptions" in lenient.notes[0]
    with pytest.raises(ImportConfigError, match="key 'resilience4j.ratelimiter.instances.a.timeoutDuration'"):
        from_resilience4j("resilience4j.ratelimiter.instances.a.limitForPeriod: 5")  # the 5 s default wait
    two = "resilience4j.retry.instances: {a: {maxAttempts: 2}, b: {maxAttempts: 3}}"
    with pytest.raises(ImportConfigError, match=r"instance=<name>\). Got \['a', 'b'\]"):
        from_resilience4j(two)
    assert from_resilience4j(two, instance="b").retry.max_attempts == 3
    with pytest.raises(ImportConfigError, match="instance named 'c'"):
        from_resilience4j(two, instance="c")
    with pytest.raises(ImportConfigError, match="baseConfig"):
        from_resilience4j("resilience4j.retry.instances.a.baseConfig: shared")
    with pytest.raises(ImportConfigError, match="failureRateThreshold' must be a number"):
        from_resilience4j("resilience4j.circuitbreaker.instances.a.failureRateThreshold: 150")


# --------------------------------------------------------------------------------------------
# gRPC service config
# --------------------------------------------------------------------------------------------

RETRY = {
    "maxAttempts": 4,
    "initialBackoff": "0.1s",
    "maxBackoff": "1s",
    "backoffMultiplier": 2,
    "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
}
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"pick_first": {}}, {"round_robin": {}}],
    "methodConfig": [
        {
            "name": [{"service": "otlp.Trace", "method": "Export"}],
            "timeout": "2s",
            "hedgingPolicy": {
                "maxAttempts": 3,
                "hedgingDelay": "0.05s",
                "nonFatalStatusCodes": ["UNAVAILABLE"],
            },
        },
        {
            "name": [{"service": "otlp.Trace"}],
            "timeout": "5s",
            "retryPolicy": {**RETRY, "perAttemptRecvTimeout": "0.5s"},
        },
        {"name": [{}], "timeout": "10s"},
    ],
    "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.1},
}


def test_grpc_method_selection_follows_grpc():
    export = from_grpc_service_config(SERVICE_CONFIG, service="otlp.Trace", method="Export")
    assert isinstance(export.retry, HedgingPolicy)
    assert (export.retry.max_attempts, export.retry.hedging_delay_s, export.timeout_s) == (3, 0.05, 2.0)
    other = from_grpc_service_config(SERVICE_CONFIG, service="otlp.Trace", method="Other")
    assert isinstance(other.retry, RetryPolicy)
    assert (other.retry.max_attempts, other.retry.per_try_timeout_s, other.timeout_s) == (4, 0.5, 5.0)
    assert other.retry.retryable_status_codes == {"UNAVAILABLE", "RESOURCE_EXHAUSTED"}
    fallback = from_grpc_service_config(SERVICE_CONFIG, service="otlp.Logs")
    assert (fallback.retry, fallback.timeout_s) == (None, 10.0)
    assert isinstance(other.retry_throttle, RetryThrottle) and other.retry_throttle.max_tokens == 10.0
    assert other.balancer.policy == "round_robin"  # pick_first is skipped as unsupported, as gRPC does
    assert (
        from_grpc_service_config(json.dumps(SERVICE_CONFIG)).timeout_s == 2.0
    )  # JSON text, first method config


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"waitForReady": True}, unmodelled("gRPC service config", "methodConfig[0].waitForReady", True)),
        ({"maxRequestMessageBytes": 1024}, "methodConfig\\[0\\].maxRequestMessageBytes"),
        (
            {"retryPolicy": {**RETRY, "maxAttempts": 1}},
            r"'methodConfig\[0\].retryPolicy': retryPolicy.maxAttempts",
        ),
        (
            {"retryPolicy": {**RETRY, "jitter": 0.2}},
            r"'methodConfig\[0\].retryPolicy.jitter' is not modelled",
        ),
        (
            {"retryPolicy": RETRY, "hedgingPolicy": {"maxAttempts": 2}},
            "only one of retryPolicy, hedgingPolicy",
        ),
        ({"timeout": "soon"}, r"'methodConfig\[0\].timeout' must be a duration"),
    ],
)
def test_grpc_rejects_unmodelled_and_bad_keys(change, message):
    config = {"methodConfig": [{"name": [{}], **change}]}
    with pytest.raises(ImportConfigError, match=message):
        from_grpc_service_config(config)


def test_grpc_balancers():
    assert from_grpc_service_config({"loadBalancingPolicy": "round_robin"}).balancer.policy == "round_robin"
    with pytest.raises(
        ImportConfigError, match=unmodelled("gRPC service config", "loadBalancingConfig[0].pick_first", {})
    ):
        from_grpc_service_config({"loadBalancingConfig": [{"pick_first": {}}]})
    assert (
        from_grpc_service_config({"loadBalancingConfig": [{"pick_first": {}}]}, strict=False).balancer is None
    )


# --------------------------------------------------------------------------------------------
# import_yaml recognises the dialect
# --------------------------------------------------------------------------------------------


def test_import_yaml_recognises_each_dialect(tmp_path):
    assert import_yaml(ISTIO_EXAMPLE).source == "istio"
    assert import_yaml(str(ENVOY_EXAMPLE)).source == "envoy"
    assert import_yaml(R4J).source == "resilience4j"
    assert import_yaml(yaml.safe_dump(SERVICE_CONFIG), service="otlp.Trace").source == "grpc"
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ImportConfigError, match="neither JSON nor valid YAML"):
        import_yaml(bad)
    lenient_text = ISTIO_EXAMPLE.read_text().replace(
        "    connectionPool:", "    tunnel: {protocol: CONNECT}\n    connectionPool:"
    )
    with pytest.raises(ImportConfigError, match="tunnel.protocol"):
        import_yaml(lenient_text)
    assert len(import_yaml(lenient_text, strict=False).warnings) == 1


def test_importers_do_not_mutate_their_input():
    cluster, route = docs(ENVOY_EXAMPLE)
    before = copy.deepcopy((cluster, route))
    from_envoy_cluster(cluster, route)
    assert (cluster, route) == before
