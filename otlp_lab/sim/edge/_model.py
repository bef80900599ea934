"""The SimPy model of one edge site: nodes, tail sampling, the buffer, the uplink and its outages.

Per site, plain generator processes:

- ``arrivals``: Poisson requests, each served on a random node by one of its workers
  (``work / cpu_share`` seconds); the worker then runs the telemetry pipeline (tail sampling
  costs CPU per span) and the trace, if kept, is offered to the buffer;
- ``exporter`` (one per node): every ``metrics_interval_s`` the node's request metrics, raw
  (one point per request) or pre-aggregated (one histogram point), are offered to the buffer;
- ``sender``: takes the head of the buffer and transfers it at the uplink bandwidth; an outage
  interrupts the transfer, which resumes (or restarts) when the link is back;
- ``markov`` / ``scheduled``: the uplink's on/off process and its scheduled outages.

Randomness comes from one ``random.Random`` per site and purpose (arrivals, sizes, link,
sampling), so two buffer policies run with the same seed see the same requests and outages.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import simpy

from otlp_lab.sim._dist import Constant
from otlp_lab.sim.edge._config import EdgeSite

__all__ = ["Item", "Link", "Buffer", "SiteModel"]

TRACE, METRICS = "traces", "metrics"


@dataclass(slots=True)
class Item:
    """One unit of telemetry in the buffer: a trace, or one node's metrics for an interval."""

    kind: str
    created_s: float
    nbytes: float
    error: bool = False
    t0_s: float = 0.0  # the request's start (traces)
    enqueued_s: float = 0.0
    started_s: float | None = None  # first transfer attempt
    arrived_s: float | None = None
    node: int = 0


class Link:
    """The uplink's state: up unless the on/off process or a scheduled outage holds it down."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.markov_up = True
        self.scheduled_down = 0
        self.up = True
        self._down_ev = env.event()
        self._up_ev = env.event()
        self.outages: list[list[float]] = []  # [start_s, end_s]; end is inf while it lasts
        self.downtime_s = 0.0

    def _update(self) -> None:
        up = self.markov_up and self.scheduled_down == 0
        if up == self.up:
            return
        self.up = up
        now = self.env.now
        if up:
            self.outages[-1][1] = now
            self.downtime_s += now - self.outages[-1][0]
            ev, self._up_ev = self._up_ev, self.env.event()
        else:
            self.outages.append([now, math.inf])
            ev, self._down_ev = self._down_ev, self.env.event()
        ev.succeed()

    def set_markov(self, up: bool) -> None:
        self.markov_up = up
        self._update()

    def schedule(self, delta: int) -> None:
        self.scheduled_down += delta
        self._update()

    def went_down(self) -> simpy.Event:
        """Triggers at the next up -> down change."""
        return self._down_ev

    def came_up(self) -> simpy.Event:
        """Triggers at the next down -> up change."""
        return self._up_ev


class Buffer:
    """The store-and-forward buffer of a site, with its overflow policy and counters.

    ``occupancy`` counts the queued items and the one in transfer (``inflight``), which no
    policy evicts.
    """

    def __init__(self, env: simpy.Environment, site: EdgeSite, rng: random.Random) -> None:
        self.env = env
        self.capacity = site.buffer_bytes
        self.policy = site.policy
        self.degrade_at = site.degrade_at
        self.rng = rng
        self.items: deque[Item] = deque()
        self.inflight: Item | None = None
        self.occupancy = 0.0
        self.max_occupancy = 0.0
        self._nonempty = env.event()
        # counters per kind: offered, dropped (overflow / eviction), shed (degraded sampling)
        self.offered = {TRACE: 0, METRICS: 0}
        self.dropped = {TRACE: 0, METRICS: 0}
        self.shed = {TRACE: 0, METRICS: 0}
        self.errors_offered = 0
        self.errors_lost = 0
        self.lost_bytes = 0.0

    def _lose(self, item: Item, counter: dict[str, int]) -> None:
        counter[item.kind] += 1
        self.lost_bytes += item.nbytes
        if item.error:
            self.errors_lost += 1

    def offer(self, item: Item) -> bool:
        """Admit ``item`` or drop something, as the policy says; True when ``item`` was admitted."""
        self.offered[item.kind] += 1
        self.errors_offered += item.error
        fill = self.occupancy / self.capacity
        if (
            self.policy == "sample"
            and item.kind == TRACE
            and not item.error
            and fill > self.degrade_at
            and self.rng.random() >= (1 - fill) / (1 - self.degrade_at)
        ):
            self._lose(item, self.shed)
            return False
        if self.occupancy + item.nbytes > self.capacity:
            if self.policy == "drop_oldest":
                while self.items and self.occupancy + item.nbytes > self.capacity:
                    old = self.items.popleft()
                    self.occupancy -= old.nbytes
                    self._lose(old, self.dropped)
            elif self.policy == "sample" and item.error:
                self._evict_ok_traces(item.nbytes)
            if self.occupancy + item.nbytes > self.capacity:
                self._lose(item, self.dropped)
                return False
        item.enqueued_s = self.env.now
        self.items.append(item)
        self.occupancy += item.nbytes
        self.max_occupancy = max(self.max_occupancy, self.occupancy)
        if not self._nonempty.triggered:
            self._nonempty.succeed()
        return True

    def _evict_ok_traces(self, need: float) -> None:
        """Make room for an error trace by evicting the oldest traces without an error."""
        keep: deque[Item] = deque()
        for it in self.items:
            if self.occupancy + need > self.capacity and it.kind == TRACE and not it.error:
                self.occupancy -= it.nbytes
                self._lose(it, self.dropped)
            else:
                keep.append(it)
        self.items = keep

    def wait(self) -> simpy.Event:
        """An event that triggers when an item is queued (at once if one is)."""
        if self.items:
            ev = self.env.event()
            ev.succeed()
            return ev
        if self._nonempty.triggered:
            self._nonempty = self.env.event()
        return self._nonempty

    def take(self) -> Item:
        item = self.items.popleft()
        self.inflight = item
        return item

    def done(self, item: Item) -> None:
        self.inflight = None
        self.occupancy -= item.nbytes

    def pending(self) -> list[Item]:
        return ([self.inflight] if self.inflight is not None else []) + list(self.items)


@dataclass
class SiteModel:
    """The processes and state of one site in a run."""

    env: simpy.Environment
    site: EdgeSite
    index: int
    seed: int
    end_s: float
    link: Link = field(init=False)
    buffer: Buffer = field(init=False)
    delivered: list[Item] = field(default_factory=list)
    sampled_out: int = 0
    requests: int = 0
    busy_s: float = 0.0  # worker-seconds (requests + telemetry pipeline)
    telemetry_cpu_s: float = 0.0
    uplink_bytes: float = 0.0  # bytes put on the wire (interrupted transfers included)
    wasted_bytes: float = 0.0  # bytes of transfers restarted from the beginning
    on_link: Any = None  # callback(site_model, up)

    def __post_init__(self) -> None:
        env, s = self.env, self.site

        def rng(purpose: str) -> random.Random:
            return random.Random(f"edge/{self.seed}/{s.name}/{purpose}")

        self.r_arrivals, self.r_sizes, self.r_link, self.r_sample = (
            rng("arrivals"),
            rng("sizes"),
            rng("link"),
            rng("sample"),
        )
        self.link = Link(env)
        self.buffer = Buffer(env, s, rng("buffer"))
        self.nodes = [simpy.Resource(env, capacity=s.workers) for _ in range(s.nodes)]
        self.node_requests = [0] * s.nodes
        self.work = s.work.sampler(self.r_arrivals)
        self.node_busy = [0.0] * s.nodes
        if s.rate > 0:
            env.process(self.arrivals())
        for n in range(s.nodes):
            if s.metric_point_bytes or s.histogram_bytes:
                env.process(self.exporter(n))
        env.process(self.sender())
        u = s.uplink
        if u.mean_up_s is not None and not u.fail_only_while_busy:
            env.process(self.markov())
        for at, dur in u.outages:
            env.process(self.scheduled(at, dur))
        env.process(self.watch_link())

    # ---------------------------------------------------------------- requests and telemetry
    def arrivals(self):
        s, env, r = self.site, self.env, self.r_arrivals
        # no work and no pipeline cost: the trace is ready on arrival, no worker process needed
        instant = isinstance(s.work, Constant) and s.work.value_s == 0 and s.tail_sampling is None
        while True:
            yield env.timeout(r.expovariate(s.rate))
            if env.now >= self.end_s:
                return
            node = r.randrange(s.nodes)
            if instant:
                self.requests += 1
                self.node_requests[node] += 1
                self.finish(node, env.now, env.now, r.random() < s.error_rate, True)
            else:
                env.process(self.request(node))

    def request(self, node: int):
        s, env = self.site, self.env
        t0 = env.now
        error = self.r_arrivals.random() < s.error_rate
        work = self.work() / s.cpu_share
        with self.nodes[node].request() as req:
            yield req
            t_start = env.now
            if work > 0:
                yield env.timeout(work)
            t1 = env.now
            self.requests += 1
            self.node_requests[node] += 1
            ts = s.tail_sampling
            keep = True
            if ts is not None:
                cost = s.spans_per_trace * ts.cpu_s_per_span / s.cpu_share
                if cost > 0:
                    yield env.timeout(cost)
                self.telemetry_cpu_s += cost
                keep = ts.keeps(error, t1 - t0, self.r_sample.random())
            self.busy_s += env.now - t_start
        self.finish(node, t0, t1, error, keep)

    def finish(self, node: int, t0: float, t1: float, error: bool, keep: bool) -> None:
        """The trace of a finished request: offered to the buffer, or sampled out at the edge."""
        s = self.site
        if not keep:
            self.sampled_out += 1
            return
        size = s.trace_bytes if s.trace_size == "constant" else self.r_sizes.expovariate(1 / s.trace_bytes)
        self.buffer.offer(Item(TRACE, t1, size, error, t0_s=t0, node=node))

    def exporter(self, node: int):
        s, env = self.site, self.env
        while env.now < self.end_s:
            yield env.timeout(min(s.metrics_interval_s, self.end_s - env.now))
            n = self.node_requests[node]
            self.node_requests[node] = 0
            nbytes = s.histogram_bytes if s.metric_aggregation else n * s.metric_point_bytes
            if nbytes > 0:
                self.buffer.offer(Item(METRICS, env.now, float(nbytes), node=node))

    # ---------------------------------------------------------------- the uplink
    def markov(self):
        u, env, r = self.site.uplink, self.env, self.r_link
        while True:
            yield env.timeout(r.expovariate(1 / u.mean_up_s))
            self.link.set_markov(False)
            yield env.timeout(r.expovariate(1 / u.mean_down_s))
            self.link.set_markov(True)

    def scheduled(self, at_s: float, duration_s: float):
        yield self.env.timeout(at_s)
        self.link.schedule(+1)
        yield self.env.timeout(duration_s)
        self.link.schedule(-1)

    def watch_link(self):
        while True:
            yield self.link.went_down()
            if self.on_link is not None:
                self.on_link(self, False)
            yield self.link.came_up()
            if self.on_link is not None:
                self.on_link(self, True)

    def repair(self, down_s: float):
        yield self.env.timeout(down_s)
        self.link.set_markov(True)

    def sender(self):
        """Transfers the head of the buffer at the uplink bandwidth; outages interrupt and resume it."""
        env, u, buf, link = self.env, self.site.uplink, self.buffer, self.link
        bw = u.bandwidth_bytes_per_s
        busy_failures = u.fail_only_while_busy and u.mean_up_s is not None
        while True:
            yield buf.wait()
            item = buf.take()
            full = item.nbytes / bw
            remaining = full
            while remaining > 0:
                if not link.up:
                    yield link.came_up()
                    continue
                if item.started_s is None:
                    item.started_s = env.now
                ttf = self.r_link.expovariate(1 / u.mean_up_s) if busy_failures else math.inf
                step = min(remaining, ttf)
                t0 = env.now
                down = link.went_down()
                yield env.timeout(step) | down
                if not down.triggered:  # the step ran to its end (decided by the event, not by float time)
                    self.uplink_bytes += step * bw
                    if step >= remaining:
                        break
                    # a failure while busy: down until repaired
                    link.set_markov(False)
                    env.process(self.repair(self.r_link.expovariate(1 / u.mean_down_s)))
                    elapsed = step
                else:  # an outage cut the transfer
                    elapsed = min(env.now - t0, step)
                    self.uplink_bytes += elapsed * bw
                if u.resume:
                    remaining -= elapsed
                else:
                    self.wasted_bytes += (full - remaining + elapsed) * bw
                    remaining = full
            buf.done(item)
            item.arrived_s = env.now + u.latency_s
            self.delivered.append(item)
