"""Permissioned ledger networks: Raft and PBFT validators, clients, smart-contract cost and faults, as OTLP.

A :class:`LedgerScenario` (Python or YAML) sets the protocol, the validators, the network
delay, blocks (size and interval), the client transaction rate and the execution cost per
transaction, and faults on the simulator's timeline (crash, slow validator, partition, leader
crash, Byzantine validator, network split). :func:`run_ledger` simulates it with SimPy;
:func:`sweep_ledger` runs a grid of protocols, validator counts and fault variants.

>>> from otlp_lab.sim.ledger import LedgerScenario, LeaderCrash, sweep_ledger
>>> base = LedgerScenario(name="chain", duration_s=20, one_way_delay_s=0.01)
>>> sweep_ledger(base, validators=(4, 7, 10))  # doctest: +SKIP
"""

from otlp_lab.sim.ledger._config import (
    LEDGER_FAULTS,
    Byzantine,
    LeaderCrash,
    LedgerScenario,
    NetworkSplit,
    Protocol,
)
from otlp_lab.sim.ledger._run import LedgerResult, run_ledger, shipped_ledger_scenarios, sweep_ledger

__all__ = [
    "LedgerScenario",
    "Protocol",
    "LeaderCrash",
    "Byzantine",
    "NetworkSplit",
    "LEDGER_FAULTS",
    "run_ledger",
    "sweep_ledger",
    "shipped_ledger_scenarios",
    "LedgerResult",
]
