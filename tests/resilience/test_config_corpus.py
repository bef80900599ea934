"""Real configuration files from the Istio, Envoy, resilience4j and gRPC repositories, imported as they are.

The files and their sources (repository, path, commit, licence) are listed in
tests/data/configs/NOTICE.md. Each one is imported strictly and the policy it sets is asserted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from otlp_lab.errors import ConfigFileNotFoundError, ConfigKindError, ConfigSyntaxError, ImportConfigError
from otlp_lab.resilience import import_all, import_yaml

CONFIGS = Path(__file__).parents[1] / "data" / "configs"


def test_notice_names_every_file():
    notice = (CONFIGS / "NOTICE.md").read_text()
    files = sorted(p.relative_to(CONFIGS).as_posix() for p in CONFIGS.glob("*/*"))
    assert len(files) >= 12
    for f in files:
        assert f"| {f} |" in notice and "Apache-2.0" in notice


# ---------------------------------------------------------------------------------------------- Istio
def test_istio_bookinfo_destination_rules_key_every_host_and_subset():
    p = import_all(CONFIGS / "istio" / "destination-rule-all.yaml")  # four documents, no last-one-wins
    assert {"productpage", "reviews/v3", "ratings/v2-mysql-vm", "details/v2"} <= set(p)
    assert len(p) == 14
    r = p["reviews/v2"]
    assert r.balancer.policy == "least_request" and r.retry.max_attempts == 3  # Istio's defaults
    assert r.connection_pool.max_connections == 2**32 - 1


def test_istio_destination_rule_subsets_inherit_the_host_policy():
    p = import_all(CONFIGS / "istio" / "destination-rule-reviews.yaml")
    assert {k: v.balancer.policy for k, v in p.items()} == dict.fromkeys(
        ["reviews", "reviews/v1", "reviews/v2", "reviews/v3"], "random"
    )


def test_istio_weighted_routes():
    p = import_all(CONFIGS / "istio" / "virtual-service-reviews-80-20.yaml")
    assert p["reviews"].routes == (("v1", 80.0), ("v2", 20.0))
    assert p["reviews/v1"].routes == () and p["reviews/v1"].retry.max_attempts == 3


@pytest.mark.parametrize(
    "file, fault",
    [
        ("virtual-service-ratings-test-abort.yaml", {"abort_status": 500, "abort_percent": 100.0}),
        ("virtual-service-ratings-test-delay.yaml", {"delay_s": 7.0, "delay_percent": 100.0}),
    ],
)
def test_istio_fault_injection_lives_on_its_matching_route(file, fault):
    p = import_all(CONFIGS / "istio" / file)
    jason = p["ratings/v1@http[0]"]
    assert {k: getattr(jason.fault, k) for k in fault} == fault
    assert any("end-user" in n for n in jason.notes)  # the match is said, not evaluated
    assert p["ratings/v1"].fault is None  # everybody else takes the catch-all route


def test_istio_virtual_services_in_one_file():
    p = import_all(CONFIGS / "istio" / "virtual-service-all-v1.yaml")
    assert {"productpage", "productpage/v1", "reviews/v1", "ratings/v1", "details/v1"} <= set(p)


def test_istio_circuit_breaking_task_rule():
    p = import_yaml(CONFIGS / "istio" / "circuit-breaking-httpbin.yaml")
    pool = p.connection_pool
    assert (pool.max_connections, pool.max_pending_requests, pool.max_requests_per_connection) == (1, 1, 1)
    assert p.outlier.consecutive_gateway_failure == 1 and p.outlier.enforcing_consecutive_5xx == 0.0
    assert (p.outlier.interval_s, p.outlier.base_ejection_time_s, p.outlier.max_ejection_percent) == (
        1.0,
        180.0,
        100.0,
    )
    assert "deprecated" in p.notes[0] and "circuit breakers" in p.describe()


def test_istio_v1alpha1_destination_policy_is_the_wrong_kind():
    with pytest.raises(ConfigKindError, match=r"DestinationPolicy \(config.istio.io/v1alpha1\)"):
        import_all(CONFIGS / "istio" / "httpbin-circuit-breaker.yaml")


# ---------------------------------------------------------------------------------------------- Envoy
def test_envoy_demo_bootstrap_binds_the_route_to_its_cluster():
    p = import_all(CONFIGS / "envoy" / "envoy-demo.yaml")
    assert list(p) == ["loopback"]
    lb = p["loopback"]
    assert lb.timeout_s == 15.0 and lb.retry is None  # Envoy's route default, no retry policy
    assert lb.connection_pool.max_connections == 1024 and lb.connection_pool.max_retries == 3
    assert lb.balancer.policy == "weighted_round_robin" and lb.endpoints[0].id == "127.0.0.1:10001"


def test_envoy_proxy_bootstrap_with_tls_and_dns_settings():
    p = import_yaml(CONFIGS / "envoy" / "envoyproxy_io_proxy.yaml")
    assert p.name == "service_envoyproxy_io" and p.connect_timeout_s == 30.0
    assert any("transport_socket" in n for n in p.notes) and any("host_rewrite_literal" in n for n in p.notes)


def test_envoy_front_proxy_clusters_by_name():
    p = import_all(CONFIGS / "envoy" / "front-proxy_envoy.yaml")
    assert sorted(p) == ["service1", "service2"] and p["service2"].endpoints[0].id == "service2:8000"
    with pytest.raises(ImportConfigError, match="service3"):
        import_yaml(CONFIGS / "envoy" / "front-proxy_envoy.yaml", name="service3")


# ---------------------------------------------------------------------------------------------- gRPC
def test_grpc_retrying_example():
    p = import_all(CONFIGS / "grpc" / "retrying_service_config.json")
    r = p["helloworld.Greeter/SayHello"].retry
    assert (r.max_attempts, r.initial_backoff_s, r.max_backoff_s, r.backoff_multiplier) == (5, 0.5, 30.0, 2.0)
    assert r.retryable_status_codes == frozenset({"UNAVAILABLE"})


def test_grpc_hedging_example():
    p = import_yaml(CONFIGS / "grpc" / "hedging_service_config.json")
    assert (p.retry.max_attempts, p.retry.hedging_delay_s) == (3, 1.0)
    assert (p.retry_throttle.max_tokens, p.retry_throttle.token_ratio) == (10.0, 0.1)


# ---------------------------------------------------------------------------------------------- resilience4j
def test_resilience4j_commons_configuration_file():
    path = CONFIGS / "resilience4j" / "resilience.yaml"
    # strict: the rate limiter's 10 s wait for a permit is not modelled, and the path says where
    with pytest.raises(ImportConfigError, match=r"ratelimiter\.configs\.default\.timeoutDuration"):
        import_all(path)
    p = import_all(path, strict=False)
    a, b = p["backendA"], p["backendB"]
    assert (
        a.breaker.wait_duration_in_open_state_s == 5.0 and a.breaker.sliding_window_type.value == "TIME_BASED"
    )
    assert (
        b.breaker.failure_rate_threshold,
        b.breaker.sliding_window_size,
        b.breaker.minimum_number_of_calls,
    ) == (
        60.0,
        10,
        10,
    )
    assert a.retry.max_attempts == 3 and a.retry.initial_backoff_s == 10.0
    assert b.retry.max_attempts == 5 and b.retry.backoff_multiplier == 2.0
    assert a.limits.limits["requests"] == 10 and a.timeout_s == 5.0 and b.timeout_s == 15.0
    assert a.rate_limiter.rate_per_s == 10.0
    # strict=False says what each value it could not model became
    assert any("timeoutDuration" in w and "imported without it" in w for w in a.warnings)
    assert any("maxWaitDuration" in w for w in b.warnings)
    assert any("recordExceptions" in n for n in a.notes)


# ---------------------------------------------------------------------------------------------- errors
def test_distinct_errors_for_missing_unparsable_and_wrong_kind(tmp_path):
    with pytest.raises(ConfigFileNotFoundError, match="does not exist") as missing:
        import_all(tmp_path / "nope.yaml")
    assert isinstance(missing.value, FileNotFoundError)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigSyntaxError, match="line"):
        import_all(bad)
    deploy = tmp_path / "deploy.yaml"
    deploy.write_text("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n")
    with pytest.raises(ConfigKindError, match=r"Deployment \(apps/v1\)"):
        import_all(deploy)


def test_grpc_json_with_tabs_and_pascal_case(tmp_path):
    f = tmp_path / "sc.json"
    f.write_text(
        '{\n\t"MethodConfig": [{\n\t\t"Name": [{"Service": "a.B", "Method": "C"}, {"Service": "a.B"}],\n'
        '\t\t"Timeout": "2s",\n\t\t"RetryPolicy": {"MaxAttempts": 3, "InitialBackoff": "0.1s",'
        ' "MaxBackoff": "1s", "BackoffMultiplier": 2, "RetryableStatusCodes": ["UNAVAILABLE"]}\n\t}]\n}\n'
    )
    p = import_all(f)
    assert sorted(p) == ["a.B", "a.B/C"] and p["a.B/C"].timeout_s == 2.0 and p["a.B"].retry.max_attempts == 3


def test_kubectl_list_and_duplicate_hosts(tmp_path):
    f = tmp_path / "list.yaml"
    f.write_text(
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: networking.istio.io/v1, kind: DestinationRule, spec: {host: a,"
        " trafficPolicy: {connectionPool: {tcp: {maxConnections: 7}}}}}\n"
        "- {apiVersion: networking.istio.io/v1, kind: DestinationRule, spec: {host: b}}\n"
    )
    assert import_yaml(f, name="a").connection_pool.max_connections == 7
    f.write_text(
        f.read_text() + "- {apiVersion: networking.istio.io/v1, kind: DestinationRule, spec: {host: a}}\n"
    )
    with pytest.raises(ImportConfigError, match="given twice"):
        import_all(f)


def test_strict_names_the_path_and_lenient_says_what_it_became():
    text = (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nspec:\n  host: a\n  subsets:\n"
        "  - name: v1\n    trafficPolicy:\n      connectionPool:\n        http: {idleTimeout: 30s, http1MaxPendingRequests: 3}\n"
    )
    with pytest.raises(
        ImportConfigError, match=r"spec\.subsets\[0\]\.trafficPolicy\.connectionPool\.http\.idleTimeout"
    ):
        import_all(text)
    p = import_all(text, strict=False)["a/v1"]
    assert p.connection_pool.max_pending_requests == 3
    assert any("idleTimeout" in w and "imported without it" in w for w in p.warnings)
