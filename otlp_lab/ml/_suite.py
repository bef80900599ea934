"""A labelled suite of simulated faults: six fault kinds x seeds on the shipped web shop.

Each case is one run of the ``shop`` scenario (10 services, 3 levels, retries, breakers) at a
reduced load, with one fault injected mid-run. The labels come from the run's ``faults``
table (service, instance, start, end); the case's ``kind`` names the suite's fault family
(``retry_storm`` is a latency fault slow enough that every attempt times out, with the
retry budget removed, so the callers' retries multiply the load).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import yaml

from otlp_lab.errors import ConfigError
from otlp_lab.sim import Scenario, scenario_path

__all__ = ["SUITE_KINDS", "SuiteCase", "suite_cases", "suite_scenario"]

#: The fault families of the simulated suite.
SUITE_KINDS = ("crash", "latency", "errors", "partition", "cpu", "brownout", "retry_storm")

# Services with callers (so every fault has someone to notice it), and a caller of each (for partitions).
_TARGETS = ("inventory", "payment", "catalog", "cart", "shipping", "recommendations", "currency", "checkout")
_CALLER = {
    "inventory": "catalog",
    "payment": "checkout",
    "catalog": "frontend",
    "cart": "frontend",
    "shipping": "checkout",
    "recommendations": "frontend",
    "currency": "frontend",
    "checkout": "frontend",
}


@dataclass(frozen=True)
class SuiteCase:
    """One case of the suite: a fault family, its target service and a seed."""

    kind: str
    service: str
    seed: int
    at_s: float
    duration_s: float
    run_s: float
    load: float

    @property
    def name(self) -> str:
        return f"{self.kind}/{self.service}/seed={self.seed}"


def suite_cases(
    kinds: tuple[str, ...] = SUITE_KINDS,
    seeds: tuple[int, ...] = (1, 2, 3),
    *,
    at_s: float = 40.0,
    duration_s: float = 25.0,
    run_s: float = 80.0,
    load: float = 0.2,
) -> list[SuiteCase]:
    """The cases: every kind x seed, the target service rotating with the seed.

    Parameters
    ----------
    kinds : tuple of str
        Fault families, from :data:`SUITE_KINDS`.
    seeds : tuple of int
        One case per kind and seed; the seed also picks the target service.
    at_s, duration_s, run_s : float
        Fault start and length, and run length, in simulated seconds (the normal period is
        the scenario's warm-up to ``at_s``).
    load : float
        Share of the shop scenario's request rates (0.2: about 40 requests/s).
    """
    bad = [k for k in kinds if k not in SUITE_KINDS]
    if bad:
        raise ConfigError(f"kinds must be among {list(SUITE_KINDS)}. Got {bad} instead.")
    if not 0 < at_s < at_s + duration_s <= run_s:
        raise ConfigError(
            f"the fault must fit in the run: 0 < at_s < at_s + duration_s <= run_s. Got at_s={at_s}, "
            f"duration_s={duration_s}, run_s={run_s} instead."
        )
    out = []
    for seed in seeds:
        for i, kind in enumerate(kinds):
            service = _TARGETS[(3 * seed + i) % len(_TARGETS)]
            out.append(SuiteCase(kind, service, int(seed), at_s, duration_s, run_s, load))
    return out


def _fault(case: SuiteCase) -> dict[str, Any]:
    base = {"service": case.service, "at_s": case.at_s, "duration_s": case.duration_s}
    k = case.kind
    if k == "crash":
        return {"kind": "crash", "instance": 0, **base}
    if k == "latency":
        return {"kind": "latency", "instance": 0, "delay_s": 0.1, **base}
    if k == "errors":
        return {"kind": "errors", "error_rate": 0.3, **base}
    if k == "partition":
        return {"kind": "partition", "peer": _CALLER[case.service], "mode": "drop", **base}
    if k == "cpu":
        return {"kind": "cpu", "factor": 5.0, **base}
    if k == "brownout":
        return {"kind": "brownout", "delay_s": 0.05, "error_rate": 0.1, **base}
    return {"kind": "latency", "delay_s": 0.5, **base}  # retry_storm


def suite_scenario(case: SuiteCase) -> Scenario:
    """The scenario of one case: the shipped shop at ``case.load`` of its rates, with the case's fault."""
    with open(scenario_path("shop"), encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    data = copy.deepcopy(data)
    data["name"] = f"suite-{case.kind}"
    data["duration_s"] = case.run_s
    for w in data["workloads"]:
        w["rate"] = float(w["rate"]) * case.load
    data["faults"] = [_fault(case)]
    if case.kind == "retry_storm":
        retry = data["policies"]["standard"]["retry"]
        retry["retryable_status_codes"] = [*retry["retryable_status_codes"], "DEADLINE_EXCEEDED"]
        data["policies"]["standard"]["budget"] = None
    return Scenario.from_dict(data)
