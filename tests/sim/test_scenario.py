"""Scenarios: YAML and the Python builder agree; bad values are refused with the key path and the value."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from otlp_lab.errors import ScenarioError
from otlp_lab.sim import (
    Burst,
    Call,
    ClosedLoop,
    Constant,
    Crash,
    Endpoint,
    Exponential,
    OpenLoop,
    Parallel,
    Policy,
    Scenario,
    Service,
    scenario_path,
    shipped_scenarios,
)

SMALL = {
    "name": "small",
    "duration_s": "30s",
    "default_policy": "std",
    "policies": {
        "std": {
            "timeout_s": "500ms",
            "retry": {"max_attempts": 3, "per_try_timeout_s": "100ms"},
            "balancer": "p2c",
        }
    },
    "services": {
        "front": {
            "instances": 2,
            "concurrency": 8,
            "service_time": {"kind": "constant", "value_s": "1ms"},
            "endpoints": {
                "home": {"calls": ["cart/get", {"parallel": ["ads", {"to": "cart/get", "critical": False}]}]}
            },
        },
        "cart": {
            "instances": 3,
            "service_time": {"kind": "exponential", "mean_s": 0.002},
            "endpoints": {"get": None},
        },
        "ads": {"zones": ["a", "b"]},
    },
    "workloads": [
        {
            "kind": "open",
            "target": "front/home",
            "rate": {"kind": "burst", "base_rps": 10, "burst_rps": 30, "start_s": 5, "duration_s": 2},
        }
    ],
    "faults": [{"kind": "crash", "service": "cart", "instance": 1, "at_s": 10, "duration_s": 5}],
}


def built() -> Scenario:
    return Scenario(
        "small",
        duration_s=30.0,
        default_policy="std",
        policies={"std": Policy(0.5, retry={"max_attempts": 3, "per_try_timeout_s": 0.1}, balancer="p2c")},
        services=[
            Service(
                "front",
                instances=2,
                concurrency=8,
                service_time=Constant(0.001),
                endpoints=(
                    Endpoint(
                        "home",
                        calls=(Call("cart/get"), Parallel((Call("ads"), Call("cart/get", critical=False)))),
                    ),
                ),
            ),
            Service("cart", instances=3, service_time=Exponential(0.002), endpoints=(Endpoint("get"),)),
            Service("ads", zones=("a", "b")),
        ],
        workloads=[OpenLoop("front/home", rate=Burst(10, 30, 5, 2))],
        faults=[Crash(service="cart", instance=1, at_s=10, duration_s=5)],
    )


def test_yaml_and_builder_agree(tmp_path: Path) -> None:
    p = tmp_path / "small.yaml"
    p.write_text(yaml.safe_dump(SMALL, sort_keys=False))
    assert Scenario.from_yaml(p) == built()
    assert Scenario.from_dict(SMALL) == built()


@pytest.mark.parametrize("name", ["shop", "retry_storm", "slow_instance"])
def test_shipped_scenarios_load(name: str) -> None:
    assert name in shipped_scenarios()
    sc = Scenario.from_yaml(scenario_path(name))
    assert sc.name == name
    if name == "shop":
        assert len(sc.services) == 10
        assert sc.faults


def test_unknown_shipped_scenario_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError, match="retry_storm"):
        scenario_path("nope")


def _bad(path: tuple, value: object) -> dict:
    d = copy.deepcopy(SMALL)
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return d


E = re.escape


@pytest.mark.parametrize(
    ("path", "value", "pattern"),
    [
        (
            ("services", "cart", "instances"),
            -2,
            E("scenario key 'services.cart.instances' must be a positive integer. Got -2 instead."),
        ),
        (
            ("services", "cart", "concurrency"),
            "many",
            E("'services.cart.concurrency' must be a positive integer. Got 'many' instead."),
        ),
        (
            ("services", "cart", "queue_limit"),
            -1,
            E("'services.cart.queue_limit' must be a non-negative integer. Got -1 instead."),
        ),
        (
            ("services", "cart", "service_time"),
            {"kind": "weibull"},
            E("'services.cart.service_time.kind' must be one of"),
        ),
        (
            ("services", "cart", "service_time"),
            {"kind": "exponential", "mean_s": 0},
            E("'services.cart.service_time.mean_s' must be a positive number. Got 0.0"),
        ),
        (("services", "cart", "service_time"), {"kind": "exponential", "mean": 1}, E("unknown key 'mean'")),
        (
            ("services", "cart", "instanses"),
            2,
            E("'services.cart.instanses' is not a known setting. Did you mean 'instances'?"),
        ),
        (
            ("services", "front", "endpoints", "home", "calls", 0),
            "kart/get",
            E("must name a service of the scenario. Got 'kart/get' instead. Did you mean 'cart'?"),
        ),
        (
            ("services", "front", "endpoints", "home", "calls", 0),
            "cart/put",
            E("names no endpoint of 'cart'"),
        ),
        (
            ("services", "front", "sidecar_latency_s"),
            "fast",
            E("'services.front.sidecar_latency_s' must be seconds or a duration"),
        ),
        (("workloads", 0, "target"), "nowhere", E("'workloads[0].target' must name a service")),
        (
            ("workloads", 0, "kind"),
            "sideways",
            E("'workloads[0].kind' must be 'open' or 'closed'. Got 'sideways' instead."),
        ),
        (
            ("workloads", 0, "rate"),
            -5,
            E("'workloads[0].rate' must be a non-negative number. Got -5 instead."),
        ),
        (
            ("faults", 0, "instance"),
            7,
            E("'faults[0].instance' must be an instance index from 0 to 2 (or null for all). Got 7 instead."),
        ),
        (("faults", 0, "kind"), "meteor", E("'faults[0].kind' must be one of")),
        (
            ("policies", "std", "retry"),
            {"max_attempts": 0},
            E("'policies.std.retry' is not valid: RetryPolicy.max_attempts"),
        ),
        (("policies", "std", "balancer"), "fastest", E("'policies.std.balancer' is not valid")),
        (("default_policy",), "gold", E("'default_policy' must name a policy of 'policies'")),
        (("duration_s",), -1, E("'duration_s' must be a non-negative number of seconds. Got -1 instead.")),
    ],
)
def test_bad_values_name_the_key_and_the_value(path: tuple, value: object, pattern: str) -> None:
    with pytest.raises(ScenarioError, match=pattern) as info:
        Scenario.from_dict(_bad(path, value))
    assert isinstance(info.value, ValueError)


def test_builder_errors_name_the_key_path() -> None:
    with pytest.raises(
        ScenarioError,
        match=r"scenario key 'services.cart.instances' must be a positive integer. Got -2 instead.",
    ):
        Scenario("x", services=[Service("cart", instances=-2)], workloads=[OpenLoop("cart", rate=1.0)])
    with pytest.raises(
        ScenarioError, match=r"'workloads\[0\].users' must be a positive integer. Got 0 instead."
    ):
        Scenario("x", services=[Service("cart")], workloads=[ClosedLoop("cart", users=0)])


def test_call_cycles_are_refused() -> None:
    a = Service("a", endpoints=(Endpoint("x", calls=(Call("b"),)),))
    b = Service("b", endpoints=(Endpoint("y", calls=(Call("a/x"),)),))
    with pytest.raises(ScenarioError, match=r"call cycle: a/x -> b/y -> a/x"):
        Scenario("loop", services=[a, b], workloads=[OpenLoop("a", rate=1.0)])


def test_unreadable_yaml(tmp_path: Path) -> None:
    p = tmp_path / "broken.yaml"
    p.write_text("services: [unclosed")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        Scenario.from_yaml(p)


def test_policy_overrides() -> None:
    sc = built()
    off = sc.with_policies({"*": {"retry": None}})
    assert off.policies["std"].retry is None
    assert off.policies["std"].balancer.policy == "power_of_two_choices"
    budget = sc.with_policies({"std": {"budget": {"budget_percent": 10}}})
    assert budget.policies["std"].budget == {"budget_percent": 10}
    with pytest.raises(ScenarioError, match="unknown Policy fields"):
        sc.with_policies({"std": {"retries": 3}})
    with pytest.raises(ScenarioError, match="'policies.std.budget' is not valid"):
        sc.with_policies({"std": {"budget": {"budget_percent": -5}}})
