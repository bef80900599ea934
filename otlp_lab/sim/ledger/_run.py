"""Run a ledger scenario (optionally into a Lab) and sweep it over validators and faults."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from otlp_lab.errors import ScenarioError
from otlp_lab.sim._emit import KIND_INTERNAL, STATUS_UNSET
from otlp_lab.sim._output import emitter, new_run, write_faults, write_frame, write_run_row
from otlp_lab.sim.ledger._config import LedgerScenario
from otlp_lab.sim.ledger._net import REPLICATION, Net
from otlp_lab.sim.ledger._pbft import Pbft
from otlp_lab.sim.ledger._raft import Raft

__all__ = ["LedgerResult", "run_ledger", "sweep_ledger", "load_ledger_scenario", "shipped_ledger_scenarios"]

LATENCY_BOUNDS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def shipped_ledger_scenarios() -> list[str]:
    """Names of the ledger scenarios shipped with otlp_lab."""
    root = resources.files("otlp_lab.sim.ledger") / "scenarios"
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def load_ledger_scenario(scenario: LedgerScenario | str | os.PathLike[str]) -> LedgerScenario:
    """A :class:`LedgerScenario`, a YAML path or the name of a shipped one (``"consortium"``)."""
    if isinstance(scenario, LedgerScenario):
        return scenario
    p = Path(scenario)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return LedgerScenario.from_yaml(p)
    shipped = resources.files("otlp_lab.sim.ledger") / "scenarios" / f"{scenario}.yaml"
    if not shipped.is_file():
        raise ScenarioError(
            f"no shipped ledger scenario is named {scenario!r}. Shipped: {shipped_ledger_scenarios()}."
        )
    return LedgerScenario.from_yaml(Path(str(shipped)))


@dataclass
class LedgerResult:
    """The outcome of one ledger run.

    Attributes
    ----------
    run_id, scenario, protocol : str
    validators, seed : int
    summary : dict
        Headline numbers (see :meth:`summary_row`).
    spans : int
        Spans written to the Lab.
    """

    run_id: str
    scenario: str
    protocol: str
    validators: int
    seed: int
    duration_s: float
    summary: dict[str, Any]
    spans: int
    wall_s: float
    _blocks: pl.DataFrame = field(repr=False)
    _leaders: pl.DataFrame = field(repr=False)
    _tx_latency: np.ndarray = field(repr=False)

    def summary_row(self) -> pl.DataFrame:
        """One row: protocol, validators, f, blocks and transactions committed, throughput, block commit
        latency (proposal to decision) and transaction latency (submission to decision) p50/p95/p99,
        elections / view changes, messages per decision and in all."""
        return pl.DataFrame([self.summary])

    def blocks(self) -> pl.DataFrame:
        """One row per proposed block: proposer, round (term or view), transactions, proposed, committed, messages."""
        return self._blocks

    def leaders(self) -> pl.DataFrame:
        """Leadership changes: time, term (Raft) or view (PBFT), leader (null: the leader crashed)."""
        return self._leaders

    def commits_between(self, start_s: float, end_s: float) -> int:
        """Blocks decided in ``[start_s, end_s)``."""
        b = self._blocks
        return b.filter(pl.col("committed_s").is_between(start_s, end_s, closed="left")).height


def _q(xs: np.ndarray, p: float) -> float | None:
    return float(np.quantile(xs, p)) if xs.size else None


def run_ledger(
    scenario: LedgerScenario | str | os.PathLike[str],
    *,
    lab: Any = None,
    seed: int = 0,
    duration_s: float | None = None,
    label: str | None = None,
) -> LedgerResult:
    """Simulate a ledger network; with a Lab, write its spans, metrics, logs and ground truth.

    Parameters
    ----------
    scenario : LedgerScenario or path or str
        A scenario, a YAML file or a shipped name (``"consortium"``).
    lab : Lab, optional
        Receives one span per decided block (``raft.block`` / ``pbft.block``, service
        ``validator-i`` of its proposer, from execution start to decision) with children
        ``ledger.execute`` and ``<protocol>.consensus``; metrics every ``metrics_interval_s``
        (``ledger.blocks.committed``, ``ledger.txs.committed``, ``ledger.messages`` by type,
        ``ledger.leader.changes``, histogram ``ledger.commit.latency``); logs of crashes,
        elections and view changes; the faults in ``faults``, a ``sim_runs`` row and the
        summary in ``ledger_runs``.
    seed : int
    duration_s : float, optional
    label : str, optional
        The ``sim.policy`` of the run (defaults to ``"<protocol> n=<validators>"``).

    Examples
    --------
    >>> from otlp_lab.sim.ledger import LedgerScenario, run_ledger
    >>> r = run_ledger(LedgerScenario(name="r", protocol="raft", validators=5, duration_s=10))  # doctest: +SKIP
    >>> r.summary["commit_p50_s"]  # doctest: +SKIP
    0.02
    """
    sc = load_ledger_scenario(scenario)
    if duration_s is not None:
        sc = sc.replace(duration_s=float(duration_s))
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ScenarioError(f"run_ledger(seed=...) must be a non-negative integer. Got {seed!r} instead.")
    label = label or f"{sc.protocol} n={sc.validators}"
    run_id, salt = new_run(lab, f"{sc.name}/{label}/seed={seed}")
    start_ns = sc.start_ns()
    t_wall = time.perf_counter()
    net = Net(sc, seed)
    proto: Raft | Pbft = Raft(net) if sc.protocol == "raft" else Pbft(net)
    net.clients()
    net.schedule_faults()
    proto.start()
    out = _Output(sc, net, run_id, label, salt, start_ns) if lab is not None else None
    if out is not None:
        out.schedule()
    # a little time after the end for the last blocks to be decided
    net.env.run(until=sc.duration_s + 10 * sc.one_way_delay_s + sc.block_interval_s + 1e-9)
    blocks = _blocks_frame(net)
    decided = blocks.filter(pl.col("committed_s").is_not_null())
    lat = (decided["committed_s"] - decided["proposed_s"]).to_numpy()
    sub = np.array(net.tx_submitted)
    txl = np.array([t - sub[tx] for tx, t in net.tx_committed.items()])
    repl = sum(n for k, n in net.messages.items() if k in REPLICATION)
    summary = {
        "protocol": sc.protocol,
        "validators": sc.validators,
        "f": sc.f,
        "faults": ", ".join(sorted({f.kind for f in sc.faults})) or "none",
        "blocks": decided.height,
        "txs_committed": len(net.tx_committed),
        "txs_submitted": len(net.tx_submitted),
        "throughput_tps": len(net.tx_committed) / sc.duration_s,
        "commit_p50_s": _q(lat, 0.5),
        "commit_p95_s": _q(lat, 0.95),
        "commit_p99_s": _q(lat, 0.99),
        "tx_p50_s": _q(txl, 0.5),
        "tx_p99_s": _q(txl, 0.99),
        "elections": proto.elections if isinstance(proto, Raft) else 0,
        "view_changes": proto.view_changes if isinstance(proto, Pbft) else 0,
        "messages_per_decision": repl / decided.height if decided.height else None,
        "messages": sum(net.messages.values()),
    }
    loaded = 0
    if out is not None:
        out.metrics()
        out.blocks(decided)
        out.logs()
        if b := out.em.flush():
            loaded = lab.load_batches([b], source=f"sim:{sc.name}").get("spans", 0)
    wall = time.perf_counter() - t_wall
    result = LedgerResult(
        run_id=run_id,
        scenario=sc.name,
        protocol=sc.protocol,
        validators=sc.validators,
        seed=seed,
        duration_s=sc.duration_s,
        summary=summary,
        spans=loaded,
        wall_s=wall,
        _blocks=blocks,
        _leaders=pl.DataFrame(
            net.leader_log, schema={"t_s": pl.Float64, "round": pl.Int64, "leader": pl.Int64}, orient="row"
        ),
        _tx_latency=txl,
    )
    if lab is not None:
        _write(lab, sc, net, result, label, start_ns)
    return result


def _blocks_frame(net: Net) -> pl.DataFrame:
    bs = list(net.blocks.values())
    return pl.DataFrame(
        {
            "block": [b.id for b in bs],
            "proposer": [b.proposer for b in bs],
            "round": [b.round for b in bs],
            "txs": [len(b.txs) for b in bs],
            "exec_start_s": [b.exec_start_s for b in bs],
            "proposed_s": [b.proposed_s for b in bs],
            "committed_s": [b.committed_s for b in bs],
            "messages": [b.messages for b in bs],
        },
        schema={
            "block": pl.Int64,
            "proposer": pl.Int64,
            "round": pl.Int64,
            "txs": pl.Int64,
            "exec_start_s": pl.Float64,
            "proposed_s": pl.Float64,
            "committed_s": pl.Float64,
            "messages": pl.Int64,
        },
    )


class _Output:
    """Telemetry of a ledger run: one resource per validator."""

    def __init__(
        self, sc: LedgerScenario, net: Net, run_id: str, label: str, salt: int, start_ns: int
    ) -> None:
        self.sc, self.net = sc, net
        self.em = emitter(
            [
                {
                    "service.name": name,
                    "sim.run_id": run_id,
                    "sim.policy": label,
                    "ledger.protocol": sc.protocol,
                }
                for name in sc.names
            ],
            salt=salt,
            start_ns=start_ns,
        )
        self._hist_seen = 0

    def schedule(self) -> None:
        def tick() -> None:
            self.metrics()
            if self.net.env.now < self.sc.duration_s:
                self.net.after(self.sc.metrics_interval_s, tick)

        self.net.after(self.sc.metrics_interval_s, tick)

    def metrics(self) -> None:
        net, em, pool = self.net, self.em, self.em.pool
        now = net.env.now
        a = pool.many({"ledger.protocol": self.sc.protocol})
        decided = [b for b in net.blocks.values() if b.committed_s is not None]
        em.sums.append(
            ("ledger.blocks.committed", "{block}", "Blocks decided", now, len(decided), 0, a, True)
        )
        em.sums.append(
            ("ledger.txs.committed", "{tx}", "Transactions decided", now, len(net.tx_committed), 0, a, True)
        )
        for kind, n in sorted(net.messages.items()):
            em.sums.append(
                (
                    "ledger.messages",
                    "{message}",
                    "Protocol messages sent",
                    now,
                    n,
                    0,
                    pool.many({"ledger.protocol": self.sc.protocol, "ledger.message": kind}),
                    True,
                )
            )
        em.sums.append(
            (
                "ledger.leader.changes",
                "{change}",
                "Leaders elected (Raft) or views installed (PBFT)",
                now,
                len(net.leader_log),
                0,
                a,
                True,
            )
        )
        lat = np.array([b.committed_s - b.proposed_s for b in decided])
        if lat.size:
            counts = np.histogram(lat, bins=[-np.inf, *LATENCY_BOUNDS, np.inf])[0]
            em.hists.append(
                (
                    "ledger.commit.latency",
                    "s",
                    "Block proposal to decision",
                    now,
                    int(lat.size),
                    float(lat.sum()),
                    float(lat.min()),
                    float(lat.max()),
                    [int(c) for c in counts],
                    list(LATENCY_BOUNDS),
                    0,
                    a,
                )
            )

    def blocks(self, decided: pl.DataFrame) -> None:
        em, pool, sc = self.em, self.em.pool, self.sc
        proto = sc.protocol
        span = 0
        for trace, row in enumerate(decided.iter_rows(named=True), start=1):
            ctx = row["proposer"]
            attrs = pool.many(
                {"ledger.protocol": proto, "ledger.round": row["round"], "ledger.txs": row["txs"]}
            )
            root = span = span + 1
            em.spans.append(
                (
                    trace,
                    root,
                    0,
                    f"{proto}.block",
                    KIND_INTERNAL,
                    row["exec_start_s"],
                    row["committed_s"],
                    STATUS_UNSET,
                    "",
                    ctx,
                    attrs,
                )
            )
            span += 1
            em.spans.append(
                (
                    trace,
                    span,
                    root,
                    "ledger.execute",
                    KIND_INTERNAL,
                    row["exec_start_s"],
                    row["proposed_s"],
                    STATUS_UNSET,
                    "",
                    ctx,
                    (),
                )
            )
            span += 1
            em.spans.append(
                (
                    trace,
                    span,
                    root,
                    f"{proto}.consensus",
                    KIND_INTERNAL,
                    row["proposed_s"],
                    row["committed_s"],
                    STATUS_UNSET,
                    "",
                    ctx,
                    (),
                )
            )

    def logs(self) -> None:
        pool = self.em.pool
        for t, kind, msg, node in self.net.events:
            self.em.logs.append(
                (
                    t,
                    "WARN" if kind in ("crash", "view_change", "election") else "INFO",
                    msg,
                    f"ledger.{kind}",
                    node,
                    pool.many({"ledger.protocol": self.sc.protocol}),
                )
            )


def _write(lab: Any, sc: LedgerScenario, net: Net, r: LedgerResult, label: str, start_ns: int) -> None:
    s = r.summary
    with lab.transaction():  # every table of the run or none, under the Lab's lock
        write_run_row(
            lab,
            run_id=r.run_id,
            scenario=sc.name,
            seed=r.seed,
            policy=label,
            start_ns=start_ns,
            duration_s=sc.duration_s,
            requests=s["txs_submitted"],
            goodput=s["throughput_tps"],
            error_rate=1 - s["txs_committed"] / s["txs_submitted"] if s["txs_submitted"] else 0.0,
            p99_s=s["commit_p99_s"],
            amplification=s["messages_per_decision"] or 0.0,
            spans=r.spans,
            wall_s=r.wall_s,
        )
        write_faults(lab, r.run_id, start_ns, net.fault_rows)
        write_frame(
            lab,
            "ledger_runs",
            r.summary_row().select(pl.lit(r.run_id).alias("run_id"), pl.lit(label).alias("label"), pl.all()),
        )


def sweep_ledger(
    base: LedgerScenario,
    *,
    protocols: Iterable[str] = ("raft", "pbft"),
    validators: Iterable[int] = (4, 7, 10),
    variants: Mapping[str, Mapping[str, Any]] | None = None,
    seeds: Iterable[int] = (0,),
    lab: Any = None,
) -> pl.DataFrame:
    """:func:`run_ledger` over protocols x validator counts x variants x seeds: one summary row each.

    ``variants`` maps a label to scenario fields to change (``{"leader crash": {"faults": [LeaderCrash(at_s=5)]}}``);
    the default is the scenario as given (label ``"as is"``).

    Examples
    --------
    >>> sweep_ledger(LedgerScenario(name="x", duration_s=10), validators=(4, 7))  # doctest: +SKIP
    """
    rows = []
    for proto in protocols:
        for n in validators:
            for vlabel, changes in (variants or {"as is": {}}).items():
                sc = base.replace(protocol=proto, validators=n, **dict(changes))
                for seed in seeds:
                    r = run_ledger(sc, lab=lab, seed=seed, label=f"{proto} n={n} {vlabel}")
                    rows.append({"variant": vlabel, "seed": seed, **r.summary})
    return pl.DataFrame(rows)
