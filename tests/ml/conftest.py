"""A small simulated capture with one labelled fault, shared by the ml tests."""

from __future__ import annotations

import pytest

from otlp_lab import Lab
from otlp_lab.ml._suite import SuiteCase, suite_scenario
from otlp_lab.sim import run


def small_case(kind: str, service: str, seed: int = 1) -> SuiteCase:
    # 75 simulated seconds at a tenth of the shop's load: normal until 45 s, the fault from 45 s to 65 s.
    return SuiteCase(kind, service, seed, at_s=45.0, duration_s=20.0, run_s=75.0, load=0.1)


@pytest.fixture(scope="package")
def latency_lab():
    """shop at 10 % load, payment slowed by 100 ms on instance 0 from 45 s to 65 s."""
    lab = Lab()
    run(suite_scenario(small_case("latency", "payment")), lab=lab, seed=1)
    yield lab
    lab.close()


@pytest.fixture(scope="package")
def crash_lab():
    """shop at 10 % load, inventory-0 crashed from 45 s to 65 s."""
    lab = Lab()
    run(suite_scenario(small_case("crash", "inventory")), lab=lab, seed=2)
    yield lab
    lab.close()
