"""Raft (Ongaro and Ousterhout, 2014): leader election with randomized timeouts and log replication.

Each log entry is a block. The leader proposes a block of pending transactions every
``block_interval_s`` (after executing them), appends it and sends ``AppendEntries`` to every
follower (pipelined: it does not wait for the previous block); a block commits when a majority
stores it (entries of the leader's term only, earlier ones with them), so with a constant
one-way delay d the leader decides 2d after proposing. Followers that hear nothing for a random
time in ``election_timeout_s`` stand for election; a candidate with a majority of votes (given
once per term, only to a log at least as up to date) becomes leader. Crashed validators keep
their term, vote and log (persistent state) and come back as followers.
"""

from __future__ import annotations

from typing import Any

from otlp_lab.sim.ledger._net import Net

__all__ = ["Raft"]

FOLLOWER, CANDIDATE, LEADER = "follower", "candidate", "leader"


class Raft:
    def __init__(self, net: Net) -> None:
        self.net = net
        sc = net.sc
        self.n = sc.validators
        self.majority = self.n // 2 + 1
        self.elections = 0  # leaders elected
        self.candidacies = 0
        for v in net.nodes:
            v.state.update(
                role=FOLLOWER,
                term=0,
                voted_for=None,
                log=[],
                commit=0,
                votes=set(),
                next={},
                match={},
                last_heard=0.0,
                last_sent=0.0,
                heard_epoch=0,
            )
        net.handlers.update(
            vote=self.on_vote,
            vote_ok=self.on_vote_ok,
            append=self.on_append,
            append_ok=self.on_append_ok,
            heartbeat=self.on_append,
            heartbeat_ok=self.on_append_ok,
        )
        net.on_crash = self.on_crash
        net.on_recover = self.on_recover
        net.leader = self.current_leader

    def start(self) -> None:
        for i in range(self.n):
            self.reset_timer(i)
        self.net.after(self.net.sc.block_interval_s, self.tick)

    def s(self, i: int) -> dict[str, Any]:
        return self.net.nodes[i].state

    def current_leader(self) -> int | None:
        best = None
        for i, v in enumerate(self.net.nodes):
            if (
                v.up
                and v.state["role"] == LEADER
                and (best is None or v.state["term"] > self.s(best)["term"])
            ):
                best = i
        return best

    # ---------------------------------------------------------------- elections
    def reset_timer(self, i: int) -> None:
        st = self.s(i)
        st["heard_epoch"] += 1
        lo, hi = self.net.sc.election_timeout_s
        self.net.timer(i, self.net.rng.uniform(lo, hi), self.on_timeout, i, st["heard_epoch"])

    def on_timeout(self, i: int, epoch: int) -> None:
        st = self.s(i)
        if st["heard_epoch"] != epoch or st["role"] == LEADER:
            return
        st["role"] = CANDIDATE
        st["term"] += 1
        st["voted_for"] = i
        st["votes"] = {i}
        self.candidacies += 1
        self.net.log("election", f"validator-{i} stands for election in term {st['term']}", i)
        self.reset_timer(i)
        log = st["log"]
        last_term = log[-1][0] if log else 0
        self.net.broadcast(i, "vote", st["term"], len(log), last_term)
        self.maybe_win(i)

    def step_down(self, i: int, term: int) -> None:
        st = self.s(i)
        was_leader = st["role"] == LEADER
        if term > st["term"]:
            st["term"] = term
            st["voted_for"] = None  # a new term: no vote given yet
        st["role"] = FOLLOWER
        if was_leader:
            self.reset_timer(i)

    def on_vote(self, i: int, cand: int, term: int, last_index: int, last_term: int) -> None:
        st = self.s(i)
        if term > st["term"]:
            self.step_down(i, term)
        log = st["log"]
        my_last = log[-1][0] if log else 0
        up_to_date = last_term > my_last or (last_term == my_last and last_index >= len(log))
        grant = term == st["term"] and st["voted_for"] in (None, cand) and up_to_date
        if grant:
            st["voted_for"] = cand
            self.reset_timer(i)
        self.net.send(i, cand, "vote_ok", st["term"], grant)

    def on_vote_ok(self, i: int, voter: int, term: int, granted: bool) -> None:
        st = self.s(i)
        if term > st["term"]:
            self.step_down(i, term)
            return
        if st["role"] != CANDIDATE or term != st["term"] or not granted:
            return
        st["votes"].add(voter)
        self.maybe_win(i)

    def maybe_win(self, i: int) -> None:
        st = self.s(i)
        if st["role"] != CANDIDATE or len(st["votes"]) < self.majority:
            return
        st["role"] = LEADER
        st["next"] = {j: len(st["log"]) for j in range(self.n) if j != i}
        st["match"] = {j: 0 for j in range(self.n) if j != i}
        self.elections += 1
        self.net.leader_log.append((self.net.env.now, st["term"], i))
        self.net.log("leader", f"validator-{i} elected leader for term {st['term']}", i)
        self.replicate(i)
        self.net.timer(i, self.net.sc.heartbeat_s, self.heartbeat, i, st["term"])

    # ---------------------------------------------------------------- replication
    def tick(self) -> None:
        """Every block interval the leader (if any) proposes the pending transactions."""
        net = self.net
        sc = net.sc
        if net.env.now < sc.duration_s:
            net.after(sc.block_interval_s, self.tick)
        i = self.current_leader()
        if i is None:
            return
        st = self.s(i)
        in_log = {tx for _, bid in st["log"][st["commit"] :] for tx in net.blocks[bid].txs}
        txs = net.pending_txs(in_log, sc.block_size)
        if not txs:
            return
        t0 = net.env.now
        net.cpu(i, len(txs) * sc.tx_exec_s, self.propose, i, st["term"], txs, t0)

    def propose(self, i: int, term: int, txs: list[int], t0: float) -> None:
        st = self.s(i)
        if st["role"] != LEADER or st["term"] != term:
            return
        b = self.net.new_block(i, term, txs, t0)
        st["log"].append((term, b.id))
        self.replicate(i)
        if self.n == 1:
            self.advance_commit(i)

    def replicate(self, i: int) -> None:
        st = self.s(i)
        log = st["log"]
        for j in range(self.n):
            if j == i:
                continue
            nxt = st["next"][j]
            entries = log[nxt:]
            prev_term = log[nxt - 1][0] if nxt > 0 else 0
            block = entries[-1][1] if entries else None
            self.net.send(i, j, "append", st["term"], nxt, prev_term, entries, st["commit"], block=block)
            st["next"][j] = len(log)  # pipelined: assume it lands; a refusal moves it back
        st["last_sent"] = self.net.env.now

    def heartbeat(self, i: int, term: int) -> None:
        st = self.s(i)
        if st["role"] != LEADER or st["term"] != term:
            return
        hb = self.net.sc.heartbeat_s
        if self.net.env.now - st["last_sent"] >= hb - 1e-12:
            # only followers with nothing in flight get an empty append (a heartbeat)
            for j in range(self.n):
                if j != i:
                    nxt = st["next"][j]
                    prev_term = st["log"][nxt - 1][0] if nxt > 0 else 0
                    self.net.send(i, j, "heartbeat", st["term"], nxt, prev_term, [], st["commit"])
            st["last_sent"] = self.net.env.now
        self.net.timer(i, hb, self.heartbeat, i, term)

    def on_append(
        self, i: int, leader: int, term: int, prev: int, prev_term: int, entries: list, commit: int
    ) -> None:
        st = self.s(i)
        if term < st["term"]:
            self.net.send(i, leader, "append_ok", st["term"], False, len(st["log"]))
            return
        if term > st["term"] or st["role"] != FOLLOWER:
            self.step_down(i, term)
        self.reset_timer(i)
        log = st["log"]
        if prev > len(log) or (prev > 0 and log[prev - 1][0] != prev_term):
            self.net.send(i, leader, "append_ok", st["term"], False, min(len(log), prev - 1))
            return
        for k, e in enumerate(entries):
            idx = prev + k
            if idx < len(log):
                if log[idx][0] != e[0]:
                    del log[idx:]
                    log.append(e)
            else:
                log.append(e)
        match = prev + len(entries)
        st["commit"] = max(st["commit"], min(commit, match))
        block = entries[-1][1] if entries else None
        kind = "append_ok" if entries else "heartbeat_ok"
        self.net.send(i, leader, kind, st["term"], True, match, block=block)

    def on_append_ok(self, i: int, follower: int, term: int, ok: bool, match: int) -> None:
        st = self.s(i)
        if term > st["term"]:
            self.step_down(i, term)
            return
        if st["role"] != LEADER or term != st["term"]:
            return
        if not ok:
            st["next"][follower] = max(0, match)
            nxt = st["next"][follower]
            log = st["log"]
            prev_term = log[nxt - 1][0] if nxt > 0 else 0
            entries = log[nxt:]
            self.net.send(
                i,
                follower,
                "append",
                st["term"],
                nxt,
                prev_term,
                entries,
                st["commit"],
                block=entries[-1][1] if entries else None,
            )
            st["next"][follower] = len(log)
            return
        st["match"][follower] = max(st["match"][follower], match)
        self.advance_commit(i)

    def advance_commit(self, i: int) -> None:
        st = self.s(i)
        log = st["log"]
        matches = sorted([len(log), *st["match"].values()], reverse=True)
        n = matches[self.majority - 1]  # the highest index a majority stores
        if n > st["commit"] and log[n - 1][0] == st["term"]:
            for _, bid in log[st["commit"] : n]:
                self.net.commit(bid)
            st["commit"] = n

    # ---------------------------------------------------------------- crashes
    def on_crash(self, i: int) -> None:
        st = self.s(i)
        if st["role"] == LEADER:
            self.net.leader_log.append((self.net.env.now, st["term"], None))
        st["role"] = FOLLOWER  # volatile state is lost; term, vote and log persist
        st["votes"] = set()

    def on_recover(self, i: int) -> None:
        self.reset_timer(i)
