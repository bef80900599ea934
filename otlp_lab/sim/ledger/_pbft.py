"""PBFT (Castro and Liskov, 1999): pre-prepare, prepare, commit, and view changes, for n = 3f + 1 validators.

The primary of view v is validator ``v mod n``. Every ``block_interval_s`` it executes a block of
pending transactions and multicasts PRE-PREPARE; each backup that accepts it multicasts
PREPARE; a replica with the pre-prepare and 2f matching prepares is *prepared* and multicasts
COMMIT; with 2f + 1 matching commits it commits the block. With a constant one-way delay d a
block is decided 3d after it is proposed, and each decision costs (n - 1) + (n - 1)^2 + n (n - 1)
messages. A block counts as decided when f + 1 honest replicas committed it (what a client
needs to trust the answer).

Faults: a Byzantine backup's prepares and commits carry a wrong digest (they count for nothing);
a Byzantine primary equivocates (two digests to two halves), so no quorum forms. Replicas that
see no progress for ``view_change_timeout_s`` while transactions wait multicast VIEW-CHANGE for
the next view; a replica seeing f + 1 of them joins; the new primary, with 2f + 1, multicasts
NEW-VIEW and starts proposing (simplification: blocks prepared in the old view are dropped and
their transactions proposed again).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from otlp_lab.sim.ledger._net import Net

__all__ = ["Pbft"]

BAD = -1  # the digest a Byzantine replica votes for


class _Entry:
    __slots__ = ("pp", "block", "prepares", "commits", "commit_sent", "committed")

    def __init__(self) -> None:
        self.pp: tuple | None = None
        self.block = 0
        self.prepares: dict[tuple, set[int]] = defaultdict(set)
        self.commits: dict[tuple, set[int]] = defaultdict(set)
        self.commit_sent = False
        self.committed = False


class Pbft:
    def __init__(self, net: Net) -> None:
        self.net = net
        sc = net.sc
        self.n = sc.validators
        self.f = (self.n - 1) // 3
        self.view_changes = 0
        self.installed: set[int] = {0}
        self.honest_commits: dict[int, int] = defaultdict(int)
        for v in net.nodes:
            v.state.update(
                view=0,
                vc_target=None,
                vc_started=0.0,
                log={},
                vc_votes=defaultdict(set),
                last_progress=0.0,
                next_seq=1,
                inflight=set(),
            )
        net.handlers.update(
            pre_prepare=self.on_pre_prepare,
            prepare=self.on_prepare,
            commit=self.on_commit,
            view_change=self.on_view_change,
            new_view=self.on_new_view,
        )
        net.leader = self.current_primary
        net.on_recover = self.on_recover

    def s(self, i: int) -> dict[str, Any]:
        return self.net.nodes[i].state

    def start(self) -> None:
        sc = self.net.sc
        self.net.after(sc.block_interval_s, self.tick)
        for i in range(self.n):
            self.net.timer(i, sc.view_change_timeout_s / 4, self.watchdog, i)
        self.net.leader_log.append((0.0, 0, 0))

    def current_primary(self) -> int | None:
        views = [v.state["view"] for v in self.net.nodes if v.up and not v.byzantine]
        return max(views) % self.n if views else None

    # ---------------------------------------------------------------- normal case
    def tick(self) -> None:
        net, sc = self.net, self.net.sc
        if net.env.now < sc.duration_s:
            net.after(sc.block_interval_s, self.tick)
        for i, v in enumerate(net.nodes):
            st = v.state
            if v.up and st["vc_target"] is None and st["view"] % self.n == i:
                txs = net.pending_txs(st["inflight"], sc.block_size)
                if txs:
                    st["inflight"].update(txs)
                    net.cpu(i, len(txs) * sc.tx_exec_s, self.propose, i, st["view"], txs, net.env.now)

    def propose(self, i: int, view: int, txs: list[int], t0: float) -> None:
        st = self.s(i)
        if st["view"] != view or st["vc_target"] is not None:
            return
        net = self.net
        b = net.new_block(i, view, txs, t0)
        seq = st["next_seq"]
        st["next_seq"] += 1
        e = st["log"].setdefault((view, seq), _Entry())
        e.pp, e.block = (b.id, 0), b.id
        if net.nodes[i].byzantine:  # equivocate: one digest to half the backups, another to the rest
            for k, j in enumerate(j for j in range(self.n) if j != i):
                net.send(i, j, "pre_prepare", view, seq, (b.id, k % 2), b.id, block=b.id)
        else:
            net.broadcast(i, "pre_prepare", view, seq, (b.id, 0), b.id, block=b.id)

    def _vote(self, i: int, digest: tuple) -> tuple:
        return (BAD, i) if self.net.nodes[i].byzantine else digest

    def on_pre_prepare(self, i: int, src: int, view: int, seq: int, digest: tuple, block: int) -> None:
        st = self.s(i)
        if view != st["view"] or st["vc_target"] is not None or src != view % self.n:
            return
        e = st["log"].setdefault((view, seq), _Entry())
        if e.pp is not None:
            return  # one pre-prepare per (view, seq)
        e.pp, e.block = digest, block
        mine = self._vote(i, digest)
        e.prepares[mine].add(i)
        self.net.broadcast(i, "prepare", view, seq, mine, block=block)
        self.check(i, view, seq)

    def on_prepare(self, i: int, src: int, view: int, seq: int, digest: tuple) -> None:
        st = self.s(i)
        if view != st["view"] or st["vc_target"] is not None:
            return
        e = st["log"].setdefault((view, seq), _Entry())
        e.prepares[digest].add(src)
        self.check(i, view, seq)

    def on_commit(self, i: int, src: int, view: int, seq: int, digest: tuple) -> None:
        st = self.s(i)
        if view != st["view"] or st["vc_target"] is not None:
            return
        e = st["log"].setdefault((view, seq), _Entry())
        e.commits[digest].add(src)
        self.check(i, view, seq)

    def check(self, i: int, view: int, seq: int) -> None:
        e = self.s(i)["log"][(view, seq)]
        if e.pp is None:
            return
        if not e.commit_sent and len(e.prepares[e.pp]) >= 2 * self.f:
            e.commit_sent = True
            mine = self._vote(i, e.pp)
            e.commits[mine].add(i)
            self.net.broadcast(i, "commit", view, seq, mine, block=e.block)
        if e.commit_sent and not e.committed and len(e.commits[e.pp]) >= 2 * self.f + 1:
            e.committed = True
            st = self.s(i)
            st["last_progress"] = self.net.env.now
            if not self.net.nodes[i].byzantine:
                self.honest_commits[e.block] += 1
                if self.honest_commits[e.block] == self.f + 1:
                    self.net.commit(e.block)

    # ---------------------------------------------------------------- view changes
    def watchdog(self, i: int) -> None:
        net, sc = self.net, self.net.sc
        timeout = sc.view_change_timeout_s
        net.timer(i, timeout / 4, self.watchdog, i)
        v = net.nodes[i]
        if v.byzantine:
            return
        st = v.state
        now = net.env.now
        age = net.oldest_pending_age()
        if st["vc_target"] is not None:
            if now - st["vc_started"] > timeout:
                self.start_view_change(i, st["vc_target"] + 1)
        elif age is not None and age > timeout and now - st["last_progress"] > timeout:
            self.start_view_change(i, st["view"] + 1)

    def start_view_change(self, i: int, view: int) -> None:
        st = self.s(i)
        st["vc_target"] = view
        st["vc_started"] = self.net.env.now
        st["vc_votes"][view].add(i)
        self.net.log("view_change", f"validator-{i} asks for view {view}", i)
        self.net.broadcast(i, "view_change", view)
        self.maybe_new_view(i, view)

    def on_view_change(self, i: int, src: int, view: int) -> None:
        st = self.s(i)
        if view <= st["view"]:
            return
        st["vc_votes"][view].add(src)
        target = st["vc_target"]
        if (
            len(st["vc_votes"][view]) >= self.f + 1
            and (target is None or target < view)
            and not self.net.nodes[i].byzantine
        ):
            self.start_view_change(i, view)  # f + 1 asked: at least one honest replica did, join it
        self.maybe_new_view(i, view)

    def maybe_new_view(self, i: int, view: int) -> None:
        st = self.s(i)
        if view % self.n != i or st["view"] >= view or len(st["vc_votes"][view]) < 2 * self.f + 1:
            return
        if self.net.nodes[i].byzantine:
            return  # a Byzantine new primary stays silent: the others time out and move on
        self.enter_view(i, view)
        self.net.broadcast(i, "new_view", view)

    def on_new_view(self, i: int, src: int, view: int) -> None:
        if view > self.s(i)["view"] and src == view % self.n:
            self.enter_view(i, view)

    def enter_view(self, i: int, view: int) -> None:
        st = self.s(i)
        st["view"] = view
        st["vc_target"] = None
        st["last_progress"] = self.net.env.now
        st["inflight"] = set()
        st["next_seq"] = 1
        if view not in self.installed:
            self.installed.add(view)
            self.view_changes += 1
            self.net.leader_log.append((self.net.env.now, view, view % self.n))
            self.net.log("new_view", f"view {view} starts, primary validator-{view % self.n}", i)

    def on_recover(self, i: int) -> None:
        st = self.s(i)
        st["last_progress"] = self.net.env.now
        self.net.timer(i, self.net.sc.view_change_timeout_s / 4, self.watchdog, i)
