"""The network, validators' CPUs, clients, blocks and the fault timeline shared by Raft and PBFT.

Everything is a callback scheduled on a SimPy environment (``Net.after``): a message is
delivered ``one_way_delay_s`` (+ jitter) after it is sent, then waits for the receiving
validator's CPU (FIFO, ``message_cost_s`` each, plus ``delay_s`` while the validator is slow),
then its handler runs. Crashed validators neither send nor handle; a cut link drops messages.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import simpy

from otlp_lab.sim._faults import Crash, Latency, Partition
from otlp_lab.sim.ledger._config import Byzantine, LeaderCrash, LedgerScenario, NetworkSplit

__all__ = ["Block", "Net", "Validator"]

REPLICATION = frozenset({"append", "append_ok", "pre_prepare", "prepare", "commit"})


@dataclass(slots=True)
class Block:
    """A proposed block: its transactions and what happened to it."""

    id: int
    proposer: int
    round: int  # Raft term or PBFT view
    txs: list[int]
    exec_start_s: float
    proposed_s: float
    committed_s: float | None = None
    messages: int = 0


@dataclass
class Validator:
    """State every validator has, whatever the protocol."""

    index: int
    up: bool = True
    byzantine: bool = False
    slow_s: float = 0.0
    cpu_free_s: float = 0.0
    epoch: int = 0  # bumped on crash: timers of an earlier life are ignored
    state: dict[str, Any] = field(default_factory=dict)


class Net:
    """The simulated network and everything the protocols share (clients, blocks, counters, faults)."""

    def __init__(self, sc: LedgerScenario, seed: int) -> None:
        self.sc = sc
        self.env = simpy.Environment()
        self.rng = random.Random(f"ledger/{seed}/{sc.protocol}/protocol")
        self.r_net = random.Random(f"ledger/{seed}/net")
        self.r_tx = random.Random(f"ledger/{seed}/clients")
        self.nodes = [Validator(i) for i in range(sc.validators)]
        self.cut: Counter[tuple[int, int]] = Counter()  # (a, b) with a < b -> active cuts
        self.messages: Counter[str] = Counter()
        self.tx_submitted: list[float] = []
        self.tx_committed: dict[int, float] = {}
        self.blocks: dict[int, Block] = {}
        self.leader_log: list[tuple[float, int, int | None]] = []  # (t, round, leader or None)
        self.events: list[tuple[float, str, str, int]] = []  # (t, kind, message, validator) for logs
        self.fault_rows: list[tuple[str, int | None, str, float, float, str]] = []
        self.handlers: dict[str, Callable[..., None]] = {}
        self.on_crash: Callable[[int], None] = lambda i: None
        self.on_recover: Callable[[int], None] = lambda i: None
        self.leader: Callable[[], int | None] = lambda: None
        self._block_ids = 0

    # ---------------------------------------------------------------- scheduling
    def after(self, delay: float, fn: Callable[..., None], *args: Any) -> None:
        ev = self.env.timeout(max(delay, 0.0))
        ev.callbacks.append(lambda _e: fn(*args))

    def timer(self, node: int, delay: float, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn`` after ``delay`` unless the node crashed in between."""
        v = self.nodes[node]
        epoch = v.epoch

        def fire() -> None:
            if v.up and v.epoch == epoch:
                fn(*args)

        self.after(delay, fire)

    # ---------------------------------------------------------------- messages
    def linked(self, a: int, b: int) -> bool:
        return self.cut[(min(a, b), max(a, b))] == 0

    def send(self, src: int, dst: int, kind: str, *args: Any, block: int | None = None) -> None:
        """Send a message (counted by kind, and against ``block`` when given)."""
        if not self.nodes[src].up:
            return
        self.messages[kind] += 1
        if block is not None and block in self.blocks:
            self.blocks[block].messages += 1
        if not self.linked(src, dst):
            return
        sc = self.sc
        delay = sc.one_way_delay_s + (self.r_net.expovariate(1 / sc.jitter_s) if sc.jitter_s > 0 else 0.0)
        self.after(delay, self._arrive, src, dst, kind, args)

    def broadcast(self, src: int, kind: str, *args: Any, block: int | None = None) -> None:
        for dst in range(len(self.nodes)):
            if dst != src:
                self.send(src, dst, kind, *args, block=block)

    def _arrive(self, src: int, dst: int, kind: str, args: tuple) -> None:
        v = self.nodes[dst]
        if not v.up or not self.linked(src, dst):
            return
        now = self.env.now
        cost = self.sc.message_cost_s + v.slow_s
        if cost <= 0 and v.cpu_free_s <= now:
            self.handlers[kind](dst, src, *args)
            return
        v.cpu_free_s = max(now, v.cpu_free_s) + cost
        self.timer(dst, v.cpu_free_s - now, self.handlers[kind], dst, src, *args)

    def cpu(self, node: int, seconds: float, fn: Callable[..., None], *args: Any) -> None:
        """Spend ``seconds`` of ``node``'s CPU (after what is queued), then run ``fn``."""
        v = self.nodes[node]
        now = self.env.now
        v.cpu_free_s = max(now, v.cpu_free_s) + seconds
        self.timer(node, v.cpu_free_s - now, fn, *args)

    # ---------------------------------------------------------------- blocks and transactions
    def new_block(self, proposer: int, round_: int, txs: list[int], exec_start_s: float) -> Block:
        self._block_ids += 1
        b = Block(self._block_ids, proposer, round_, txs, exec_start_s, self.env.now)
        self.blocks[b.id] = b
        return b

    def commit(self, block_id: int) -> None:
        """A block is decided (first time only); its transactions commit (each once)."""
        b = self.blocks[block_id]
        if b.committed_s is not None:
            return
        now = self.env.now
        b.committed_s = now
        for tx in b.txs:
            self.tx_committed.setdefault(tx, now)

    def pending_txs(self, exclude: set[int], limit: int) -> list[int]:
        """Up to ``limit`` submitted, uncommitted transactions not in ``exclude``, oldest first."""
        out = []
        start = self._oldest_pending
        for tx in range(start, len(self.tx_submitted)):
            if tx in self.tx_committed:
                if tx == self._oldest_pending:
                    self._oldest_pending += 1
                continue
            if tx not in exclude:
                out.append(tx)
                if len(out) >= limit:
                    break
        return out

    def oldest_pending_age(self) -> float | None:
        self.pending_txs(set(), 1)
        if self._oldest_pending < len(self.tx_submitted):
            return self.env.now - self.tx_submitted[self._oldest_pending]
        return None

    _oldest_pending = 0

    def clients(self) -> None:
        rate = self.sc.tx_rate
        if rate <= 0:
            return

        def next_tx() -> None:
            if self.env.now < self.sc.duration_s:
                self.tx_submitted.append(self.env.now)
                self.after(self.r_tx.expovariate(rate), next_tx)

        self.after(self.r_tx.expovariate(rate), next_tx)

    # ---------------------------------------------------------------- faults
    def log(self, kind: str, message: str, node: int) -> None:
        self.events.append((self.env.now, kind, message, node))

    def schedule_faults(self) -> None:
        names = self.sc.names
        for f in self.sc.faults:
            end = min(f.end_s, self.sc.duration_s)
            if f.at_s >= self.sc.duration_s:
                continue
            if isinstance(f, (Crash, LeaderCrash)):

                def crash(f: Any = f, end: float = end) -> None:
                    if isinstance(f, LeaderCrash):
                        i = self.leader()
                        if i is None:
                            return
                    else:
                        i = names.index(f.service)
                    self.fault_rows.append((names[i], None, f.kind, self.env.now, end, "{}"))
                    self._crash(i)
                    if f.duration_s is not None:
                        self.after(f.duration_s, self._recover, i)

                self.after(f.at_s, crash)
            elif isinstance(f, Latency):
                i = names.index(f.service)
                self._span(
                    f,
                    end,
                    names[i],
                    f'{{"delay_s": {f.delay_s}}}',
                    lambda on, i=i, d=f.delay_s: setattr(self.nodes[i], "slow_s", d if on else 0.0),
                )
            elif isinstance(f, Byzantine):
                i = names.index(f.service)
                self._span(f, end, names[i], "{}", lambda on, i=i: setattr(self.nodes[i], "byzantine", on))
            elif isinstance(f, Partition):
                a, b = names.index(f.service), names.index(f.peer)
                pairs = [(min(a, b), max(a, b))]
                self._span(f, end, names[a], f'{{"peer": "{f.peer}"}}', lambda on, p=pairs: self._cut(p, on))
            elif isinstance(f, NetworkSplit):
                g = {names.index(v) for v in f.group}
                pairs = [
                    (a, b)
                    for a in range(len(names))
                    for b in range(a + 1, len(names))
                    if (a in g) != (b in g)
                ]
                self._span(
                    f,
                    end,
                    ",".join(f.group),
                    json.dumps({"group": list(f.group)}),
                    lambda on, p=pairs: self._cut(p, on),
                )

    def _span(self, f: Any, end: float, service: str, params: str, toggle: Callable[[bool], None]) -> None:
        self.fault_rows.append((service, None, f.kind, f.at_s, end, params))
        self.after(f.at_s, toggle, True)
        if f.duration_s is not None:
            self.after(f.at_s + f.duration_s, toggle, False)

    def _cut(self, pairs: list[tuple[int, int]], on: bool) -> None:
        for p in pairs:
            self.cut[p] += 1 if on else -1

    def _crash(self, i: int) -> None:
        v = self.nodes[i]
        if not v.up:
            return
        v.up = False
        v.epoch += 1
        v.cpu_free_s = 0.0
        self.log("crash", f"{self.sc.names[i]} crashed", i)
        self.on_crash(i)

    def _recover(self, i: int) -> None:
        v = self.nodes[i]
        if v.up:
            return
        v.up = True
        self.log("recover", f"{self.sc.names[i]} restarted", i)
        self.on_recover(i)
