"""Ledger scenarios: a permissioned network of validators running Raft or PBFT, with clients and faults.

The fault timeline is the simulator's own (:mod:`otlp_lab.sim._faults`): ``Crash`` (a validator
down, then back with its persistent state), ``Latency`` (a slow validator: every message it
handles takes ``delay_s`` longer) and ``Partition`` (the link between two validators cut), plus
three kinds that only mean something here: ``LeaderCrash`` (whoever leads at ``at_s``),
``Byzantine`` (a validator that lies: wrong digests, and equivocation when it is the primary)
and ``NetworkSplit`` (a group of validators cut off from the rest).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, ClassVar, Literal

from otlp_lab.errors import ScenarioError
from otlp_lab.sim._faults import Crash, Fault, Latency, Partition
from otlp_lab.sim._model import check_positive_int, check_seconds
from otlp_lab.sim._scenario import DEFAULT_START, Scenario, _keys, seconds

__all__ = ["Protocol", "LedgerScenario", "LeaderCrash", "Byzantine", "NetworkSplit", "LEDGER_FAULTS"]

Protocol = Literal["raft", "pbft"]


def _bad(key: str, what: str, v: Any) -> ScenarioError:
    return ScenarioError(f"scenario key '{key}' must be {what}. Got {v!r} instead.", key=key)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaderCrash(Fault):
    """The validator leading at ``at_s`` (Raft leader, PBFT primary) crashes for ``duration_s``."""

    kind: ClassVar[str] = "leader_crash"


@dataclass(frozen=True, slots=True, kw_only=True)
class Byzantine(Fault):
    """``service`` (a validator) lies from ``at_s``: its prepares and commits carry a wrong digest, and as
    PBFT primary it sends conflicting pre-prepares to two halves of the network (equivocation)."""

    service: str
    kind: ClassVar[str] = "byzantine"

    def check(self, key: str, services: Callable[[str], Any], zones: set[str]) -> None:
        Fault.check(self, key, services, zones)
        self._check_service(f"{key}.service", self.service, services)


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkSplit(Fault):
    """The validators in ``group`` can talk to each other but not to the others (both directions)."""

    group: tuple[str, ...] = ()
    kind: ClassVar[str] = "split"
    _params: ClassVar[tuple[str, ...]] = ("group",)

    def __post_init__(self) -> None:
        if isinstance(self.group, list):
            object.__setattr__(self, "group", tuple(self.group))

    def check(self, key: str, services: Callable[[str], Any], zones: set[str]) -> None:
        Fault.check(self, key, services, zones)
        if not isinstance(self.group, tuple) or not self.group:
            raise _bad(f"{key}.group", "a non-empty list of validator names", self.group)
        for n, v in enumerate(self.group):
            self._check_service(f"{key}.group[{n}]", v, services)


LEDGER_FAULTS: dict[str, type[Fault]] = {
    c.kind: c for c in (Crash, Latency, Partition, LeaderCrash, Byzantine, NetworkSplit)
}
_ONE = SimpleNamespace(instances=1)

_LEDGER_KEYS = (
    "name",
    "description",
    "kind",
    "protocol",
    "validators",
    "duration_s",
    "one_way_delay_s",
    "jitter_s",
    "message_cost_s",
    "block_size",
    "block_interval_s",
    "tx_rate",
    "tx_exec_s",
    "election_timeout_s",
    "heartbeat_s",
    "view_change_timeout_s",
    "metrics_interval_s",
    "start_time",
    "faults",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerScenario:
    """A permissioned ledger: ``validators`` nodes agreeing on blocks of client transactions.

    Parameters
    ----------
    name : str
    protocol : "raft" or "pbft"
        Raft tolerates crashes of a minority; PBFT tolerates ``f = (n - 1) // 3`` Byzantine validators.
    validators : int
        Named ``validator-0`` ... ``validator-{n-1}`` (PBFT needs at least 4).
    duration_s : float
    one_way_delay_s, jitter_s : float
        Network delay of every message: constant plus an exponential jitter of mean ``jitter_s``.
    message_cost_s : float
        CPU time a validator spends on each message it handles (one CPU per validator, FIFO).
    block_size : int
        Most transactions per block.
    block_interval_s : float
        The leader (primary) proposes a block of the pending transactions this often.
    tx_rate : float
        Client transactions per second (Poisson), sent to every validator.
    tx_exec_s : float
        Smart-contract execution cost per transaction, paid by the proposer before it proposes.
    election_timeout_s : (low, high)
        Raft's randomized election timeout range (each wait is uniform in it).
    heartbeat_s : float
        Raft leader's heartbeat period when it has nothing to replicate.
    view_change_timeout_s : float
        PBFT: a replica waiting this long without progress while transactions are pending asks for a view change.
    metrics_interval_s : float
        Period of the OTLP metric points.
    faults : sequence of Fault
        ``Crash``, ``Latency``, ``Partition`` (services are validator names), ``LeaderCrash``,
        ``Byzantine``, ``NetworkSplit``.

    Examples
    --------
    >>> from otlp_lab.sim.ledger import LedgerScenario, LeaderCrash
    >>> sc = LedgerScenario(name="r5", protocol="raft", validators=5, faults=[LeaderCrash(at_s=10, duration_s=20)])
    >>> sc.quorum
    3
    """

    name: str
    protocol: Protocol = "raft"
    validators: int = 4
    duration_s: float = 60.0
    one_way_delay_s: float = 0.01
    jitter_s: float = 0.0
    message_cost_s: float = 0.0
    block_size: int = 100
    block_interval_s: float = 0.2
    tx_rate: float = 200.0
    tx_exec_s: float = 0.0
    election_timeout_s: tuple[float, float] = (0.15, 0.3)
    heartbeat_s: float = 0.05
    view_change_timeout_s: float = 1.0
    metrics_interval_s: float = 5.0
    start_time: str | datetime = DEFAULT_START
    faults: tuple[Fault, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        for k in ("faults", "election_timeout_s"):
            if isinstance(getattr(self, k), list):
                object.__setattr__(self, k, tuple(getattr(self, k)))
        if not isinstance(self.name, str) or not self.name:
            raise _bad("name", "a non-empty string", self.name)
        if self.protocol not in ("raft", "pbft"):
            raise _bad("protocol", "'raft' or 'pbft'", self.protocol)
        check_positive_int("validators", self.validators)
        if self.protocol == "pbft" and self.validators < 4:
            raise _bad("validators", "at least 4 for PBFT (n = 3f + 1 with f >= 1)", self.validators)
        for k in (
            "duration_s",
            "block_interval_s",
            "heartbeat_s",
            "view_change_timeout_s",
            "metrics_interval_s",
        ):
            check_seconds(k, getattr(self, k), positive=True)
        for k in ("one_way_delay_s", "jitter_s", "message_cost_s", "tx_exec_s"):
            check_seconds(k, getattr(self, k))
        check_positive_int("block_size", self.block_size)
        if (
            isinstance(self.tx_rate, bool)
            or not isinstance(self.tx_rate, (int, float))
            or not self.tx_rate >= 0
        ):
            raise _bad("tx_rate", "a non-negative number", self.tx_rate)
        et = self.election_timeout_s
        if not (
            isinstance(et, tuple)
            and len(et) == 2
            and all(isinstance(x, (int, float)) for x in et)
            and 0 < et[0] <= et[1]
        ):
            raise _bad("election_timeout_s", "a pair (low, high) with 0 < low <= high", et)
        Scenario.start_ns(self)  # type: ignore[arg-type]
        names = set(self.names)
        for n, f in enumerate(self.faults):
            if not isinstance(f, tuple(LEDGER_FAULTS.values())):
                raise _bad(f"faults[{n}]", f"one of the fault kinds {sorted(LEDGER_FAULTS)}", f)
            f.check(f"faults[{n}]", lambda s: _ONE if s in names else None, set())

    @property
    def names(self) -> list[str]:
        """Validator names (their ``service.name``)."""
        return [f"validator-{i}" for i in range(self.validators)]

    @property
    def f(self) -> int:
        """Faults tolerated: Byzantine ``(n - 1) // 3`` for PBFT, crashed ``(n - 1) // 2`` for Raft."""
        return (self.validators - 1) // (3 if self.protocol == "pbft" else 2)

    @property
    def quorum(self) -> int:
        """Votes a decision needs: ``2f + 1`` for PBFT, a majority for Raft."""
        return 2 * self.f + 1 if self.protocol == "pbft" else self.validators // 2 + 1

    def start_ns(self) -> int:
        return Scenario.start_ns(self)  # type: ignore[arg-type]

    def replace(self, **changes: Any) -> LedgerScenario:
        """A checked copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerScenario:
        """A ledger scenario from its YAML form."""
        d = _keys(data, "", _LEDGER_KEYS, required=("name",))
        if d.pop("kind", "ledger") != "ledger":
            raise _bad("kind", "'ledger'", data.get("kind"))
        for k in (
            "duration_s",
            "one_way_delay_s",
            "jitter_s",
            "message_cost_s",
            "block_interval_s",
            "tx_exec_s",
            "heartbeat_s",
            "view_change_timeout_s",
            "metrics_interval_s",
        ):
            if k in d:
                d[k] = seconds(d[k], k)
        if "election_timeout_s" in d:
            et = d["election_timeout_s"]
            if not isinstance(et, list) or len(et) != 2:
                raise _bad("election_timeout_s", "a pair [low, high]", et)
            d["election_timeout_s"] = tuple(seconds(x, "election_timeout_s") for x in et)
        faults = d.pop("faults", None) or []
        if not isinstance(faults, list):
            raise _bad("faults", "a list", faults)
        d["faults"] = tuple(_fault(f, f"faults[{n}]") for n, f in enumerate(faults))
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> LedgerScenario:
        """Read a ledger scenario YAML file."""
        from otlp_lab.sim._scenario import read_scenario_yaml, scenario_from_file

        p, data = read_scenario_yaml(path)
        return scenario_from_file(p, data, cls.from_dict)


def _fault(f: Any, key: str) -> Fault:
    kind = f.get("kind") if isinstance(f, Mapping) else None
    cls = LEDGER_FAULTS.get(kind)  # type: ignore[arg-type]
    if cls is None:
        raise _bad(f"{key}.kind", f"one of {sorted(LEDGER_FAULTS)}", kind)
    fields = tuple(x.name for x in dataclasses.fields(cls))
    d = _keys(f, key, ("kind", *fields))
    d.pop("kind")
    d = {
        k: (seconds(v, f"{key}.{k}") if k.endswith("_s") and isinstance(v, str) else v) for k, v in d.items()
    }
    try:
        return cls(**d)
    except TypeError as exc:
        raise ScenarioError(f"scenario key '{key}' is not a valid {kind} fault: {exc}", key=key) from None
