"""Scenario sizes are checked against a stated budget before anything is simulated."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from otlp_lab.errors import ScenarioError
from otlp_lab.sim import Scenario, SimBudget, run

from .test_scenario import SMALL


def _with(path: tuple, value: object, base: dict = SMALL) -> dict:
    d = copy.deepcopy(base)
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return d


@pytest.mark.parametrize(
    ("path", "value", "key", "setting"),
    [
        (("duration_s",), 1.0e12, "duration_s", "max_duration_s"),
        (("services", "cart", "instances"), 10_000_000, "services.cart.instances", "max_instances"),
        (("workloads", 0, "rate"), 1.0e12, "workloads[0]", "max_spans"),
        (("workloads", 0, "rate", "burst_rps"), 1.0e9, "workloads[0]", "max_spans"),
    ],
)
def test_oversized_scenarios_name_the_budget_and_how_to_raise_it(path, value, key, setting):
    with pytest.raises(ScenarioError) as err:
        Scenario.from_dict(_with(path, value))
    assert err.value.key == key
    msg = str(err.value)
    assert "budget" in msg and setting in msg and f"SimBudget({setting}=N)" in msg


def test_the_estimate_counts_spans_per_request():
    sc = Scenario.from_dict(SMALL)
    # front/home: its server span, then cart/get (client + server), then in parallel ads and
    # cart/get again (client + server each): 1 + 2 + 2 + 2
    assert sc.spans_per_request("front/home") == 7
    budget = {"max_spans": int(30 * 30 * 7) - 1}  # burst peak 30 rps x 30 s x 7 spans
    with pytest.raises(ScenarioError, match="max_spans"):
        Scenario.from_dict({**SMALL, "budget": budget})
    assert Scenario.from_dict({**SMALL, "budget": {"max_spans": 30 * 30 * 7}}).budget.max_spans == 6300


def test_raising_the_budget_lets_a_large_scenario_through():
    d = _with(("services", "cart", "instances"), 20_000)
    d["budget"] = {"max_instances": 50_000}
    assert Scenario.from_dict(d).services[1].instances == 20_000
    sc = Scenario.from_dict(SMALL).replace(budget=SimBudget(max_duration_s=10.0), duration_s=5.0)
    with pytest.raises(ScenarioError, match="max_duration_s"):
        sc.replace(duration_s=60.0)


def test_run_duration_override_is_checked_too(lab):
    with pytest.raises(ScenarioError, match="max_duration_s"):
        run(Scenario.from_dict(SMALL), lab=lab, duration_s=1e12)
    assert lab.counts()["spans"] == 0


def test_bad_budget_values_are_named():
    with pytest.raises(ScenarioError, match="budget.max_spans"):
        Scenario.from_dict({**SMALL, "budget": {"max_spans": -1}})
    with pytest.raises(ScenarioError, match="budget.max_events"):
        Scenario.from_dict({**SMALL, "budget": {"max_events": 5}})


def test_deeply_nested_yaml_is_a_named_error(tmp_path: Path):
    f = tmp_path / "deep.yaml"
    f.write_text("name: deep\nservices: " + "[" * 1000 + "]" * 1000 + "\n")
    with pytest.raises(ScenarioError, match="nested too deeply"):
        Scenario.from_yaml(f)
    f.write_text(yaml.safe_dump(SMALL))
    assert Scenario.from_yaml(f).name == "small"
