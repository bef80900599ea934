"""The SimPy processes of one run: arrivals, server instances, client calls, faults, metrics.

One :class:`Simulation` owns its ``simpy.Environment`` and its random streams (all derived
from the seed): nothing is global, so runs can go in parallel and a seed reproduces a run.

The hot path is kept small:

* a server instance is a queue and a worker count driven by event callbacks (no process
  per request unless the endpoint makes downstream calls);
* a downstream call with a policy stack runs the :mod:`otlp_lab.resilience` state machine
  through its SimPy driver (:func:`~otlp_lab.resilience.simpy_call`), which runs a retry
  attempt inline in the calling process (a hedge gets a process) and keeps per-try timers off
  SimPy's queue unless they fire; a parallel step runs its first call inline too;
* one policy stack per caller instance and upstream serves all their calls at once;
* output is one tuple appended per span (see :mod:`._emit`), and nothing at all without a Lab.
"""

from __future__ import annotations

import itertools
import math
import random
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from heapq import heappush
from typing import Any

import numpy as np

try:
    import simpy
    from simpy.events import NORMAL, PENDING, Event
except ImportError as exc:  # pragma: no cover - simpy is in the [lab] extra
    raise ImportError("otlp_lab.sim needs SimPy: pip install 'otlp-lab[lab]' (or pip install simpy)") from exc

from otlp_lab.errors import NoHealthyUpstreamError
from otlp_lab.resilience import (
    CircuitBreaker,
    CircuitState,
    ConnectionPool,
    Deadline,
    HealthChecker,
    HorizontalPodAutoscaler,
    LoadBalancer,
    Outcome,
    OutlierAction,
    OutlierDetector,
    PolicyStack,
    RetryBudget,
    RetryPolicy,
    simpy_call,
    with_health,
)
from otlp_lab.resilience import (
    Endpoint as LbEndpoint,
)
from otlp_lab.resilience._pool import PoolConnection
from otlp_lab.sim._emit import (
    KIND_CLIENT,
    KIND_INTERNAL,
    KIND_SERVER,
    STATUS_ERROR,
    STATUS_UNSET,
    AttrPool,
    Emitter,
)
from otlp_lab.sim._faults import Effect, Fault, Partition
from otlp_lab.sim._model import STATEFUL, Call, Endpoint, OneOf, Parallel, Policy, Service, split_target
from otlp_lab.sim._scenario import Scenario
from otlp_lab.sim._workload import ClosedLoop, OpenLoop

__all__ = ["Simulation", "LogHist"]

INF = math.inf
NO_DEADLINE = Deadline()
SERVER_SPAN = 1 << 62  # server span numbers: the client span's number with this bit set
OK = Outcome.success()
# Envoy's local reply when a circuit breaker overflows: 503, flag UO, never retried by the same proxy
# (a negative pushback: "do not retry"), and never counted against the host
OVERFLOW = Outcome.failure(503, retry_after_s=-1.0, local=True)
_FAIL: dict[Any, Outcome] = {}
DURATION_BOUNDS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)


class _Choice:
    """A resolved :class:`OneOf`: cumulative weights and the resolved options."""

    __slots__ = ("cum", "options")

    def __init__(self, cum: list[float], options: list[Any]) -> None:
        self.cum, self.options = cum, options


_new_event = object.__new__


def _one_healthy_level(eps: tuple[LbEndpoint, ...]) -> bool:
    """Every endpoint healthy and on the same priority level (and at least one)."""
    return bool(eps) and all(ep.healthy and ep.priority == eps[0].priority for ep in eps)


def failure(status: str | int) -> Outcome:
    """A shared failure outcome per status (outcomes are immutable; one object per status)."""
    o = _FAIL.get(status)
    if o is None:
        o = _FAIL[status] = Outcome.failure(status)
    return o


class LogHist:
    """Latency histogram with 1 % wide log buckets from 1 us: quantiles within 0.5 %, constant memory."""

    __slots__ = ("counts", "n", "total")
    _LO = 1e-6
    _INV = 1.0 / math.log(1.01)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.total = 0.0

    def add(self, x: float) -> None:
        b = int(math.log(x * 1e6) * self._INV) if x > self._LO else -1
        c = self.counts
        c[b] = c.get(b, 0) + 1
        self.n += 1
        self.total += x

    def quantile(self, q: float) -> float | None:
        if not self.n:
            return None
        rank = q * (self.n - 1)
        seen = 0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if seen > rank:
                return 0.0 if b < 0 else self._LO * 1.01 ** (b + 0.5)
        return None  # pragma: no cover

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


# ---------------------------------------------------------------- runtime objects


class Instance:
    """One running instance of a service: workers, a FIFO queue, fault state, counters."""

    __slots__ = (
        "svc",
        "name",
        "index",
        "id",
        "zone",
        "ctx",
        "c",
        "queue_limit",
        "busy",
        "queue",
        "jobs",
        "up",
        "epoch",
        "factor",
        "delay_s",
        "err_p",
        "err_status",
        "err_before",
        "faults",
        "fault_attr",
        "drop_expired",
        "sidecar_s",
        "arrivals",
        "ok",
        "errors",
        "rejected",
        "area",
        "last_t",
        "hist",
        "buckets",
        "lat_sum",
        "lat_n",
        "lb",
        "active",
        "starting",
        "ready_s",
    )

    def __init__(self, svc: Service, index: int, ctx: int) -> None:
        self.svc = svc
        self.name = svc.name
        self.index = index
        self.id = svc.instance_id(index)
        self.zone = svc.zone_of(index)
        self.ctx = ctx
        self.c = svc.concurrency
        self.queue_limit = INF if svc.queue_limit is None else svc.queue_limit
        self.busy = 0
        self.queue: deque[Job] = deque()
        self.jobs: set[Job] = set()
        self.up = True
        self.epoch = 0
        self.factor = 1.0
        self.delay_s = 0.0
        self.err_p = 0.0
        self.err_status: Any = "UNAVAILABLE"
        self.err_before = True
        self.faults: list[Fault] = []
        self.fault_attr: tuple[int, ...] = ()
        self.drop_expired = svc.drop_expired
        self.sidecar_s = svc.sidecar_latency_s
        self.arrivals = self.ok = self.errors = self.rejected = 0
        self.area = 0.0  # integral of busy workers over time
        self.last_t = 0.0
        self.hist: LogHist | None = None  # the service's (shared)
        self.buckets = [0] * (len(DURATION_BOUNDS_S) + 1)
        self.lat_sum = 0.0
        self.lat_n = 0
        self.lb = LbEndpoint(self.id, zone=self.zone or "")
        self.active = index < svc.instances  # in the callers' load balancers (autoscaled pods come and go)
        self.starting = False  # created by the autoscaler, not ready yet
        self.ready_s = 0.0  # when it last became ready


class Job:
    """A request (one attempt) at a server instance."""

    __slots__ = (
        "inst",
        "ep",
        "steps",
        "trace",
        "span",
        "parent",
        "deadline",
        "key",
        "t_arrive",
        "reply",
        "epoch",
        "back_s",
    )

    def __init__(
        self,
        inst: Instance,
        ep: Endpoint,
        steps: tuple,
        trace: int,
        parent: int,
        deadline: float,
        key: Any,
        reply: Event,
        back_s: float,
    ) -> None:
        self.inst = inst
        self.ep = ep
        self.steps = steps
        self.trace = trace
        self.span = parent | SERVER_SPAN  # the server span's number: the client span's, in another range
        self.parent = parent
        self.deadline = deadline
        self.key = key
        self.reply = reply
        self.back_s = back_s  # the way back: the same sidecars and network as the way in
        self.t_arrive = 0.0
        self.epoch = 0


class Client:
    """One caller instance's view of one upstream service under one policy: the Envoy cluster."""

    __slots__ = (
        "sim",
        "caller",
        "ctx",
        "target",
        "policy_name",
        "instances",
        "by_id",
        "balancer",
        "outlier",
        "health",
        "breaker",
        "stack",
        "per_try_s",
        "endpoints",
        "dynamic",
        "lb_version",
        "calls",
        "attempts",
        "retries",
        "failures",
        "ejections",
        "base_attrs",
        "span_names",
        "inst_attrs",
        "state_attrs",
        "resend_attrs",
        "sidecar_s",
        "no_policy",
        "pool",
        "uo_attrs",
        "plain_pick",
        "plain",
        "steps_of",
    )

    def __init__(
        self, sim: Simulation, caller: str, ctx: int, sidecar_s: float, target: str, policy_name: str | None
    ) -> None:
        self.sim = sim
        self.caller = caller
        self.ctx = ctx
        self.sidecar_s = sidecar_s
        self.target = target
        self.policy_name = policy_name
        self.instances = sim.instances[target]
        self.by_id = {i.id: i for i in self.instances}
        policy = sim.scenario.policies[policy_name] if policy_name is not None else Policy()
        # nothing to drive when the stack holds no retry, timeout, breaker or limit (balancing is per attempt)
        self.no_policy = not any(
            getattr(policy, k) is not None
            for k in ("timeout_s", "retry", "breaker", "budget", "throttle", "bulkhead", "rate_limiter")
        )
        rng = sim.policy_rng
        self.breaker = None
        if policy.breaker is not None:
            self.breaker = CircuitBreaker(
                policy.breaker, name=f"{caller}->{target}", listener=self._on_breaker
            )
        # the sidecar's connection pool to this cluster with Envoy's circuit breakers (None: not modelled)
        self.pool = ConnectionPool(policy.connection_pool) if policy.connection_pool is not None else None
        stateful = {
            k: (cls.from_dict(getattr(policy, k)) if getattr(policy, k) is not None else None)
            for k, cls in STATEFUL.items()
        }
        if self.pool is not None and stateful["budget"] is None:
            # Envoy's max_retries: retries in flight at once (a retry budget, when set, replaces it)
            stateful["budget"] = RetryBudget(
                budget_percent=0.0, min_retry_concurrency=self.pool.config.max_retries
            )
        # one stack per caller instance and upstream, as in Envoy: its breaker, limits, budget and throttle are
        # shared by every call it runs, and each call gets its own machine from stack.start()
        self.stack = PolicyStack(
            policy.retry if policy.retry is not None else RetryPolicy(max_attempts=1),
            breaker=self.breaker,
            timeout_s=policy.timeout_s,
            rng=rng,
            **stateful,
        )
        self.per_try_s = getattr(policy.retry, "per_try_timeout_s", None) or INF
        self.balancer = policy.balancer.build(rng)
        self.outlier = None
        if policy.outlier_detection is not None:
            self.outlier = OutlierDetector(
                policy.outlier_detection,
                endpoint_ids=[i.id for i in self.instances],
                start_s=sim.env.now,
                rng=rng,
                listener=self._on_outlier,
            )
            sim.env.process(self._outlier_ticks())
        self.health = None
        if policy.health_check is not None:
            self.health = HealthChecker(policy.health_check, rng=rng)
            for i in self.instances:
                self.health.add(i.id, sim.env.now, healthy=True)
            sim.env.process(self._health_probes())
        self.endpoints: tuple[LbEndpoint, ...] = tuple(i.lb for i in self.instances if i.active)
        # the endpoint list changes with health, ejections and (autoscaled) pods joining and leaving
        self.dynamic = (
            self.outlier is not None
            or self.health is not None
            or sim.scenario.service(target).autoscaler is not None  # type: ignore[union-attr]
        )
        self.lb_version = -1
        # the balancer's own pick() is the base class's: with one healthy level, pick() is choose()
        self.plain_pick = type(self.balancer).pick is LoadBalancer.pick
        self.plain = self.plain_pick and bool(self.endpoints) and _one_healthy_level(self.endpoints)
        self.calls = self.attempts = self.retries = self.failures = self.ejections = 0
        pool = sim.pool
        self.base_attrs = (pool("peer.service", target), pool("rpc.system", "sim"))
        self.steps_of = {e.name: sim.steps[(target, e.name)] for e in sim.scenario.service(target).endpoints}  # type: ignore[union-attr]
        self.span_names = {e.name: f"{target}/{e.name}" for e in sim.scenario.service(target).endpoints}  # type: ignore[union-attr]
        self.inst_attrs = {i.id: pool("server.address", i.id) for i in self.instances}
        self.state_attrs = {s: pool("sim.breaker.state", s.name.lower()) for s in CircuitState}
        self.resend_attrs = [()] + [(pool("http.request.resend_count", n),) for n in range(1, 32)]
        self.uo_attrs = (pool("envoy.response_flags", "UO"),)

    # -- balancing -----------------------------------------------------------------------
    def pick(self, now: float, key: Any) -> Instance:
        eps = self.endpoints
        if self.dynamic and self.lb_version != self.sim.health_version:
            eps = tuple(i.lb for i in self.instances if i.active)
            if self.outlier is not None or self.health is not None:
                eps = with_health(eps, health=self.health, outlier=self.outlier)
            self.endpoints = eps
            self.lb_version = self.sim.health_version
            self.plain = self.plain_pick and _one_healthy_level(eps)
        if self.plain:
            # what LoadBalancer.pick does when every host is healthy on one priority level: no draw,
            # all of them are candidates (select_hosts' fast path), without building the selection
            balancer = self.balancer
            balancer.picks += 1
            return self.by_id[balancer.choose(now, eps, key).id]
        return self.by_id[self.balancer.pick(now, eps, key).id]

    # -- listeners -------------------------------------------------------------------------
    def _on_breaker(self, t: Any) -> None:
        sim = self.sim
        sim.breaker_log.append((t.at_s, self.caller, self.target, t.to_state.name))
        sim.log(
            t.at_s,
            "WARN" if t.to_state is CircuitState.OPEN else "INFO",
            f"circuit breaker {self.caller} -> {self.target}: {t.from_state.name} -> {t.to_state.name}",
            "sim.breaker.transition",
            self.ctx,
            {"peer.service": self.target, "sim.breaker.state": t.to_state.name.lower()},
        )

    def _on_outlier(self, e: Any) -> None:
        sim = self.sim
        sim.health_version += 1
        if e.action is OutlierAction.EJECT and e.enforced:
            self.ejections += 1
        sim.log(
            e.at_s,
            "WARN" if e.action is OutlierAction.EJECT else "INFO",
            f"outlier detection {self.caller} -> {e.endpoint_id}: {e.action.value}"
            + (f" ({e.ejection_type.value})" if e.ejection_type is not None else "")
            + ("" if e.enforced else " not enforced"),
            "sim.outlier." + e.action.value,
            self.ctx,
            {
                "peer.service": self.target,
                "server.address": e.endpoint_id,
                "sim.outlier.enforced": bool(e.enforced),
            },
        )

    def _outlier_ticks(self) -> Generator[Any, Any, None]:
        env, od = self.sim.env, self.outlier
        while True:
            yield env.timeout(max(0.0, od.next_tick_at_s - env.now))  # type: ignore[union-attr]
            od.tick(env.now)  # type: ignore[union-attr]

    def _health_probes(self) -> Generator[Any, Any, None]:
        env, hc, sim = self.sim.env, self.health, self.sim
        while True:
            due = hc.next_due_s()  # type: ignore[union-attr]
            yield env.timeout(max(0.0, due - env.now))
            for eid in hc.due(env.now):  # type: ignore[union-attr]
                hc.start_probe(eid, env.now)  # type: ignore[union-attr]
                inst = self.by_id[eid]
                ok = inst.up and not sim.partitioned(self.caller, self.target)
                before = hc.is_healthy(eid)  # type: ignore[union-attr]
                hc.record(eid, env.now, "success" if ok else "network_failure")  # type: ignore[union-attr]
                if self.outlier is not None:
                    self.outlier.on_active_health_check(eid, env.now, ok)
                if hc.is_healthy(eid) != before:  # type: ignore[union-attr]
                    sim.health_version += 1
                    sim.log(
                        env.now,
                        "INFO" if ok else "WARN",
                        f"health check {self.caller} -> {eid}: {'healthy' if ok else 'unhealthy'}",
                        "sim.health.change",
                        self.ctx,
                        {"peer.service": self.target, "server.address": eid},
                    )


@dataclass
class Counters:
    """Per-second counters of the root requests (index: simulated second)."""

    offered: list[int]
    ok: list[int]
    failed: list[int]
    attempts: list[int]
    lat_sum: list[float]

    @classmethod
    def of(cls, n: int) -> Counters:
        return cls([0] * n, [0] * n, [0] * n, [0] * n, [0.0] * n)


# ---------------------------------------------------------------- the simulation


class Simulation:
    """One run of a scenario: build with a scenario and a seed, then :meth:`run_until` in slices."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int,
        duration_s: float,
        emitter_factory: Callable[[list[dict]], Emitter] | None,
        run_id: str,
        label: str,
    ) -> None:
        self.scenario = scenario
        self.duration_s = duration_s
        self.warmup_s = scenario.warmup_s
        self.env = simpy.Environment()
        # independent random streams per purpose, all from the seed: changing a policy does not change
        # the arrivals or the faults (common random numbers across the runs of a comparison)
        seq = np.random.SeedSequence(seed)
        streams = [random.Random(int(s.generate_state(1, np.uint64)[0])) for s in seq.spawn(7)]
        (
            self.arrival_rng,
            self.service_rng,
            self.policy_rng,
            self.fault_rng,
            self.key_rng,
            self.think_rng,
            self.branch_rng,  # call probabilities, fan-out counts and endpoint errors (fitted twins)
        ) = streams
        self.network_s = scenario.network_latency_s
        # fleet
        contexts: list[dict[str, Any]] = []
        self.instances: dict[str, list[Instance]] = {}
        self.hists: dict[str, LogHist] = {}
        for svc in scenario.services:
            insts = []
            self.hists[svc.name] = LogHist()
            slots = (
                svc.instances if svc.autoscaler is None else max(svc.instances, svc.autoscaler.max_replicas)
            )
            for i in range(slots):
                inst = Instance(svc, i, len(contexts))
                inst.hist = self.hists[svc.name]
                contexts.append(self._resource(svc.name, inst.id, inst.zone, run_id, label))
                insts.append(inst)
            self.instances[svc.name] = insts
        self.client_ctx: dict[str, int] = {}
        for w in scenario.workloads:
            if w.client not in self.client_ctx:
                self.client_ctx[w.client] = len(contexts)
                contexts.append(self._resource(w.client, f"{w.client}-0", None, run_id, label))
        self.contexts = contexts
        self.emitter = emitter_factory(contexts) if emitter_factory is not None else None
        self.pool = self.emitter.pool if self.emitter is not None else AttrPool()
        self._spans = self.emitter.spans.append if self.emitter is not None else None
        self.samplers = {
            (svc.name, ep.name): (ep.service_time or svc.service_time).sampler(self.service_rng)
            for svc in scenario.services
            for ep in svc.endpoints
        }
        self.sampler_of: dict[str, dict[str, Callable[[], float]]] = {}
        for (sname, ename), sampler in self.samplers.items():
            self.sampler_of.setdefault(sname, {})[ename] = sampler
        # call graph, resolved once: (service, endpoint) -> steps of (Call, target service, endpoint) or tuples for parallel
        self.steps: dict[tuple[str, str], tuple] = {}
        for svc in scenario.services:
            for ep in svc.endpoints:
                self.steps[(svc.name, ep.name)] = tuple(self._resolve_step(s) for s in ep.calls)
        self.clients: dict[tuple[int, str, str | None], Client] = {}
        self.partitions: dict[frozenset[str], list[Partition]] = {}
        self.dropped: dict[frozenset[str], list[Event]] = {}
        self.health_version = 0
        self.breaker_log: list[tuple[float, str, str, str]] = []
        # (t, service, desired replicas or None, ready replicas, reason) for autoscaled services
        self.scale_log: list[tuple[float, str, int | None, int, str]] = []
        n_sec = int(math.ceil(duration_s)) + 1
        self.counters = Counters.of(n_sec)
        self.root_hist = LogHist()
        self.requests = self.completed = self.succeeded = 0
        self.roots_in_flight = 0
        self.last_metrics_t = 0.0
        self.next_span = 0
        self.next_trace = 0
        self.hops = 0
        self.err_attrs: dict[Any, int] = {}

    # ---------------------------------------------------------------- setup helpers
    @staticmethod
    def _resource(
        service: str, instance_id: str, zone: str | None, run_id: str, label: str
    ) -> dict[str, Any]:
        r: dict[str, Any] = {"service.name": service, "service.instance.id": instance_id}
        if zone:
            r["cloud.availability_zone"] = zone
        r["sim.run_id"] = run_id
        r["sim.policy"] = label
        return r

    def _resolve_step(self, step: Call | Parallel | OneOf) -> Any:
        if isinstance(step, OneOf):
            w = step.weights or (1.0,) * len(step.calls)
            total = float(sum(w))
            cum = list(itertools.accumulate(x / total for x in w))
            return _Choice(cum, [self._resolve_step(c) for c in step.calls])
        if isinstance(step, Parallel):
            return tuple(self._resolve_call(c) for c in step.calls)
        if not step.plain:
            return [self._resolve_call(step)]  # a list marks a call drawn per request (probability, count)
        return self._resolve_call(step)

    def _resolve_call(self, c: Call) -> tuple[Call, str, Endpoint, str | None]:
        sname, ename = split_target(c.to)
        svc = self.scenario.service(sname)
        ep = svc.endpoint(ename)  # type: ignore[union-attr]
        policy = c.policy if c.policy is not None else self.scenario.default_policy
        return (c, sname, ep, policy)

    def client(self, ctx: int, caller: str, sidecar_s: float, target: str, policy: str | None) -> Client:
        key = (ctx, target, policy)
        cl = self.clients.get(key)
        if cl is None:
            cl = self.clients[key] = Client(self, caller, ctx, sidecar_s, target, policy)
        return cl

    def log(self, t: float, severity: str, body: str, event: str, ctx: int, attrs: dict[str, Any]) -> None:
        if self.emitter is not None:
            self.emitter.logs.append((t, severity, body, event, ctx, self.pool.many(attrs)))

    def partitioned(self, a: str, b: str) -> bool:
        return bool(self.partitions) and bool(self.partitions.get(frozenset((a, b))))

    def err_attr(self, status: Any) -> int:
        idx = self.err_attrs.get(status)
        if idx is None:
            idx = self.err_attrs[status] = self.pool("error.type", str(status))
        return idx

    # ---------------------------------------------------------------- start
    def start(self) -> None:
        env = self.env
        for w in self.scenario.workloads:
            if isinstance(w, OpenLoop):
                env.process(self._open_loop(w))
            else:
                for _ in range(w.users):
                    env.process(self._closed_loop(w))
        for f in self.scenario.faults:
            env.process(self._fault(f))
        if self.emitter is not None:
            env.process(self._metrics())
        for svc in self.scenario.services:
            if svc.autoscaler is not None:
                env.process(self._autoscale(svc))

    # ---------------------------------------------------------------- workloads
    def _open_loop(self, w: OpenLoop) -> Generator[Any, Any, None]:
        env, timeout, process, root = self.env, self.env.timeout, self.env.process, self._root
        target = self.scenario.resolve(w.target)
        policy = w.policy if w.policy is not None else self.scenario.default_policy
        ctx = self.client_ctx[w.client]
        keys, key_rng = w.keys, self.key_rng
        end = self.duration_s
        for t in w.profile.arrivals(self.arrival_rng):
            if t >= end:
                return
            yield timeout(t - env.now)
            process(root(w, target, policy, ctx, key_rng.randrange(keys) if keys else None))

    def _closed_loop(self, w: ClosedLoop) -> Generator[Any, Any, None]:
        env = self.env
        target = self.scenario.resolve(w.target)
        policy = w.policy if w.policy is not None else self.scenario.default_policy
        ctx = self.client_ctx[w.client]
        think = w.think_time.sampler(self.think_rng)
        while True:
            yield env.timeout(think())
            if env.now >= self.duration_s:
                return
            yield from self._root(w, target, policy, ctx, self.key_rng.randrange(w.keys) if w.keys else None)

    def _root(
        self, w: Any, target: tuple[Service, Endpoint], policy: str | None, ctx: int, key: Any
    ) -> Generator[Any, Any, None]:
        env = self.env
        t0 = env._now
        sec = int(t0)
        counted = t0 >= self.warmup_s
        c = self.counters
        c.offered[sec] += 1
        if counted:
            self.requests += 1
        self.next_trace += 1
        trace = self.next_trace
        self.next_span += 1
        span = self.next_span
        deadline = t0 + w.deadline_s if w.deadline_s is not None else INF
        svc, ep = target
        cl = self.client(ctx, w.client, 0.0, svc.name, policy)
        self.roots_in_flight += 1
        outcome = yield from self._call(cl, ep, trace, span, deadline, key)
        self.roots_in_flight -= 1
        t1 = env._now
        sec1 = int(t1)
        if sec1 < len(c.ok):  # completions while draining after the end are not on the timeline
            if outcome.ok:
                c.ok[sec1] += 1
            else:
                c.failed[sec1] += 1
            c.lat_sum[sec1] += t1 - t0
        if counted:
            self.completed += 1
            self.succeeded += outcome.ok
            self.root_hist.add(t1 - t0)
        if self._spans is not None:
            attrs = (self.err_attr(outcome.status),) if not outcome.ok else ()
            self._spans(
                (
                    trace,
                    span,
                    0,
                    f"request {svc.name}/{ep.name}",
                    KIND_INTERNAL,
                    t0,
                    t1,
                    STATUS_UNSET if outcome.ok else STATUS_ERROR,
                    "" if outcome.ok else str(outcome.status),
                    ctx,
                    attrs,
                )
            )

    # ---------------------------------------------------------------- client side
    def _call(
        self, cl: Client, ep: Endpoint, trace: int, parent: int, deadline: float, key: Any
    ) -> Generator[Any, Any, Outcome]:
        """One logical call from ``cl``'s caller to ``ep`` of its target: the policy stack, then attempts."""
        env = self.env
        cl.calls += 1
        if cl.no_policy and deadline == INF:
            return (yield from self._attempt(cl, ep, trace, parent, deadline, key, 1))
        rc = cl.stack.start(env._now, deadline=Deadline._at(deadline) if deadline != INF else NO_DEADLINE)
        call_deadline = rc.deadline.expires_at_s
        per_try = cl.per_try_s

        def attempt(n: int) -> Generator[Any, Any, Outcome]:
            return self._attempt(cl, ep, trace, parent, min(env._now + per_try, call_deadline), key, n)

        final = yield from simpy_call(env, rc, attempt)
        out = final.outcome
        if out is None:  # gave up before any attempt finished (e.g. the deadline had passed)
            out = failure("DEADLINE_EXCEEDED")
        elif out.ok and not final.ok:  # pragma: no cover - a GiveUp always carries a failure
            out = failure("UNKNOWN")
        return out

    def _attempt(
        self, cl: Client, ep: Endpoint, trace: int, parent: int, deadline: float, key: Any, n: int
    ) -> Generator[Any, Any, Outcome]:
        env = self.env
        now = env._now
        cl.attempts += 1
        if n > 1:
            cl.retries += 1
        self.hops += 1
        sec = int(now)
        if sec < len(self.counters.attempts):
            self.counters.attempts[sec] += 1
        self.next_span += 1
        span = self.next_span
        try:
            inst = cl.pick(now, key)
        except NoHealthyUpstreamError:
            out = failure("UNAVAILABLE")
            self._client_span(cl, None, trace, span, parent, ep, now, now, n, out)
            return out
        lb = inst.lb
        balancer = cl.balancer
        balancer.on_start(now, lb)
        stream = None
        if cl.pool is not None:
            stream, effects = cl.pool.request(inst.id)
            if effects:
                self._pool_effects(cl, inst, effects)
            if stream.state == "pending":
                stream.waiter = Event(env)
                try:
                    yield stream.waiter
                except simpy.Interrupt:
                    self._pool_effects(cl, inst, cl.pool.cancel(stream))
                    timed_out = env._now >= deadline - 1e-9
                    out = failure("DEADLINE_EXCEEDED" if timed_out else "CANCELLED")
                    cl.failures += timed_out
                    balancer.on_finish(env._now, lb)
                    self._client_span(cl, inst, trace, span, parent, ep, now, env._now, n, out)
                    return out
            if stream.state == "overflow":
                # Envoy answers at once with a local 503 (response flag UO); the host never sees it
                out = OVERFLOW
                cl.failures += 1
                balancer.on_finish(env._now, lb)
                self._client_span(cl, None, trace, span, parent, ep, now, env._now, n, out, cl.uo_attrs)
                return out
        reply = Event(env)
        if self.partitions and self.partitioned(cl.caller, cl.target):
            part = self.partitions[frozenset((cl.caller, cl.target))][-1]
            if part.mode == "reject":
                reply.succeed(failure("UNAVAILABLE"))
            else:
                self.dropped.setdefault(frozenset((cl.caller, cl.target)), []).append(reply)
        else:
            d = cl.sidecar_s + self.network_s + inst.sidecar_s
            job = Job(inst, ep, cl.steps_of[ep.name], trace, span, deadline, key, reply, d)
            if d > 0:
                self._later(d, self._arrive, job)
            else:
                self._arrive_now(job)
        try:
            out = yield reply
        except simpy.Interrupt:
            # stopped by the driver: its deadline passed (per-try timeout), or another hedge won
            timed_out = env._now >= deadline - 1e-9
            out = failure("DEADLINE_EXCEEDED" if timed_out else "CANCELLED")
            cl.failures += timed_out
            balancer.on_finish(env._now, lb)
            if stream is not None:
                self._pool_effects(cl, inst, cl.pool.cancel(stream))  # type: ignore[union-attr]
            if (
                cl.outlier is not None and timed_out
            ):  # a timeout counts against the host (504); a lost hedge does not
                cl.outlier.record(inst.id, env._now, out)
            self._client_span(cl, inst, trace, span, parent, ep, now, env._now, n, out)
            return out
        t1 = env._now
        balancer.on_finish(t1, lb)
        if stream is not None:  # a connection-level failure closes the connection
            effects = cl.pool.finish(stream, reset=out.status == "UNAVAILABLE")  # type: ignore[union-attr]
            if effects:
                self._pool_effects(cl, inst, effects)
        if cl.outlier is not None:
            cl.outlier.record(inst.id, t1, out)
        if not out.ok:
            cl.failures += 1
        self._client_span(cl, inst, trace, span, parent, ep, now, t1, n, out)
        return out

    def _client_span(
        self,
        cl: Client,
        inst: Instance | None,
        trace: int,
        span: int,
        parent: int,
        ep: Endpoint,
        t0: float,
        t1: float,
        n: int,
        out: Outcome,
        extra: tuple[int, ...] = (),
    ) -> None:
        if self._spans is None:
            return
        attrs = cl.base_attrs + extra
        if inst is not None:
            attrs = (*attrs, cl.inst_attrs[inst.id], *inst.fault_attr)
        if n > 1:
            attrs += cl.resend_attrs[min(n - 1, 31)]
        if cl.breaker is not None:
            attrs = (*attrs, cl.state_attrs[cl.breaker.state])
        if not out.ok:
            attrs = (*attrs, self.err_attr(out.status))
            if inst is not None and self.partitions and self.partitioned(cl.caller, cl.target):
                attrs = (*attrs, self.pool("sim.fault.kind", "partition"))
        self._spans(
            (
                trace,
                span,
                parent,
                cl.span_names[ep.name],
                KIND_CLIENT,
                t0,
                t1,
                STATUS_UNSET if out.ok else STATUS_ERROR,
                "" if out.ok else str(out.status),
                cl.ctx,
                attrs,
            )
        )

    def _pool_effects(self, cl: Client, inst: Instance, effects: list) -> None:
        """Act on what the connection pool asks: open connections, wake requests that got one (or overflowed)."""
        for fx in effects:
            if isinstance(fx, PoolConnection):
                # a TCP connect takes one round trip between the two sidecars
                self._later(2.0 * self.network_s, self._pool_connected, (cl, inst, fx))
            elif fx.waiter is not None and not fx.waiter.triggered:
                fx.waiter.succeed()

    def _pool_connected(self, ev: Event) -> None:
        cl, inst, conn = ev._value
        if conn in cl.pool.hosts[conn.host].conns:  # type: ignore[union-attr]
            self._pool_effects(cl, inst, cl.pool.connected(conn))  # type: ignore[union-attr]

    # ---------------------------------------------------------------- scheduling helpers
    def _later(self, delay: float, fn: Callable[[Any], None], arg: Any) -> None:
        env = self.env
        ev = _new_event(Event)  # Event(env) with its callback and value, without the calls
        ev.env = env
        ev.callbacks = [fn]
        ev._ok = True
        ev._value = arg
        # env.schedule(ev, NORMAL, delay), inlined: the same queue entry
        heappush(env._queue, (env._now + delay, NORMAL, next(env._eid), ev))

    def _arrive(self, ev: Event) -> None:
        self._arrive_now(ev._value)

    # ---------------------------------------------------------------- server side
    def _arrive_now(self, job: Job) -> None:
        inst = job.inst
        now = self.env._now
        job.t_arrive = now
        if not inst.up:
            self._respond(job, failure("UNAVAILABLE"))  # connection refused: the server never sees it
            return
        inst.arrivals += 1
        if inst.err_p and inst.err_before and self.fault_rng.random() < inst.err_p:
            self._finish(job, failure(inst.err_status), busy=False)
            return
        if inst.drop_expired and job.deadline <= now:
            self._finish(
                job, failure("DEADLINE_EXCEEDED"), busy=False
            )  # server-side cancellation: too late already
        elif inst.busy < inst.c:
            self._start(job)
        elif len(inst.queue) >= inst.queue_limit:
            inst.rejected += 1
            self._finish(job, failure("RESOURCE_EXHAUSTED"), busy=False)
        else:
            inst.queue.append(job)

    def _start(self, job: Job) -> None:
        inst = job.inst
        now = self.env._now
        inst.area += inst.busy * (now - inst.last_t)
        inst.last_t = now
        inst.busy += 1
        inst.jobs.add(job)
        job.epoch = inst.epoch
        work = self.sampler_of[inst.name][job.ep.name]() * inst.factor + inst.delay_s
        self._later(work, self._worked, job)

    def _worked(self, ev: Event) -> None:
        job: Job = ev._value
        inst = job.inst
        if job.epoch != inst.epoch:
            return  # the instance crashed meanwhile; the job has been failed already
        if inst.err_p and not inst.err_before and self.fault_rng.random() < inst.err_p:
            self._finish(job, failure(inst.err_status))
        elif job.ep.error_rate and self.branch_rng.random() < job.ep.error_rate:
            self._finish(job, failure("INTERNAL"))
        elif job.steps:
            self.env.process(self._handle(job))
        else:
            self._finish(job, OK)

    def _handle(self, job: Job) -> Generator[Any, Any, None]:
        """The downstream calls of an endpoint, in order; a Parallel step fans out and waits for all."""
        env = self.env
        inst = job.inst
        result = OK
        for step in job.steps:
            if type(step) is _Choice:  # one call of several, drawn per request
                step = step.options[
                    min(bisect_left(step.cum, self.branch_rng.random()), len(step.options) - 1)
                ]
            if type(step) is list:  # calls with a probability or a count: draw this request's calls
                step = self._draw(step)
                if not step:
                    continue
                if len(step) > 1:
                    for one in step:  # repeated sequential calls
                        out = yield from self._call_step(job, one)
                        if not out.ok and one[0].critical:
                            result = failure(out.status)
                            break
                    if result is not OK:
                        break
                    continue
                step = step[0]
            elif type(step) is tuple and type(step[0]) is tuple and not all(c[0].plain for c in step):
                step = self._draw_parallel(step)
                if not step:
                    continue
                if len(step) == 1:
                    step = step[0]
            if type(step) is tuple and type(step[0]) is tuple:  # Parallel
                # the first call runs in this process, the others each in their own (started first, so
                # they still begin in order once this one waits); then wait for whichever are still out
                procs = [env.process(self._downstream(job, c)) for c in step[1:]]
                first = yield from self._call_step(job, step[0])
                pending = [p for p in procs if not p.processed]
                if len(pending) > 1:
                    yield env.all_of(pending)
                elif pending:
                    yield pending[0]
                outs = [(step[0][0], first), *((c[0], p.value) for c, p in zip(step[1:], procs, strict=True))]
            else:
                out = yield from self._call_step(job, step)
                outs = [(step[0], out)]
            bad = next((o for c, o in outs if not o.ok and c.critical), None)
            if bad is not None:
                result = failure(bad.status)
                break
        if job.epoch == inst.epoch:
            self._finish(job, result)

    def _count(self, call: Call) -> int:
        """This request's calls of ``call``: 0 when its branch is not taken, else its count drawn."""
        rng = self.branch_rng
        if call.probability < 1.0 and rng.random() >= call.probability:
            return 0
        n = int(call.count)
        return n + (1 if rng.random() < call.count - n else 0)

    def _draw(self, step: list) -> list:
        """A sequential call with a probability or a count, as this request's list of calls."""
        return [step[0]] * self._count(step[0][0])

    def _draw_parallel(self, step: tuple) -> tuple:
        """A parallel step whose calls have probabilities or counts, as this request's fan-out."""
        out: list = []
        for c in step:
            out.extend([c] * (1 if c[0].plain else self._count(c[0])))
        return tuple(out)

    def _downstream(self, job: Job, step: tuple) -> Generator[Any, Any, Outcome]:
        """Process body: one call of a parallel step."""
        return (yield from self._call_step(job, step))

    def _call_step(self, job: Job, step: tuple) -> Generator[Any, Any, Outcome]:
        """The call of one step of ``job``'s endpoint (a generator to ``yield from``)."""
        call, target, ep, policy = step
        inst = job.inst
        cl = self.client(inst.ctx, inst.name, inst.sidecar_s, target, policy)
        return self._call(cl, ep, job.trace, job.span, job.deadline, job.key)

    def _finish(self, job: Job, out: Outcome, *, busy: bool = True) -> None:
        inst = job.inst
        now = self.env._now
        if busy:
            inst.area += inst.busy * (now - inst.last_t)
            inst.last_t = now
            inst.busy -= 1
            inst.jobs.discard(job)
        lat = now - job.t_arrive
        if out.ok:
            inst.ok += 1
        else:
            inst.errors += 1
        inst.hist.add(lat)  # type: ignore[union-attr]
        inst.lat_sum += lat
        inst.lat_n += 1
        if self._spans is not None:
            inst.buckets[bisect_left(DURATION_BOUNDS_S, lat)] += 1
            attrs = inst.fault_attr
            if not out.ok:
                attrs = (*attrs, self.err_attr(out.status))
            self._spans(
                (
                    job.trace,
                    job.span,
                    job.parent,
                    job.ep.operation or job.ep.name,
                    KIND_SERVER,
                    job.t_arrive,
                    now,
                    STATUS_UNSET if out.ok else STATUS_ERROR,
                    "" if out.ok else str(out.status),
                    inst.ctx,
                    attrs,
                )
            )
        self._respond(job, out)
        if busy:
            self._next(inst)

    def _next(self, inst: Instance) -> None:
        q = inst.queue
        now = self.env.now
        while q and inst.busy < inst.c:
            job = q.popleft()
            if inst.drop_expired and job.deadline <= now:
                self._finish(job, failure("DEADLINE_EXCEEDED"), busy=False)  # server-side cancellation
                continue
            self._start(job)

    def _respond(self, job: Job, out: Outcome) -> None:
        """Trigger the caller's reply event once the answer is back (``back_s`` later); first answer wins."""
        reply = job.reply
        if reply._value is PENDING:  # a crash or a healed partition may have answered already
            reply._ok = True
            reply._value = out
            self.env.schedule(reply, NORMAL, job.back_s)

    # ---------------------------------------------------------------- faults
    def _fault(self, f: Fault) -> Generator[Any, Any, None]:
        env = self.env
        if f.at_s > env.now:
            yield env.timeout(f.at_s - env.now)
        if f.at_s >= self.duration_s:
            return
        self._apply(f, True)
        if f.duration_s is not None:
            yield env.timeout(f.duration_s)
            self._apply(f, False)

    def fault_targets(self, f: Fault) -> list[Instance]:
        fleet = {s: len(v) for s, v in self.instances.items()}
        return [self.instances[s][i] for s, i in f.targets(fleet, lambda s, i: self.instances[s][i].zone)]

    def _apply(self, f: Fault, on: bool) -> None:
        now = self.env.now
        verb = "start" if on else "end"
        if isinstance(f, Partition):
            pair = frozenset((f.service, f.peer))
            parts = self.partitions.setdefault(pair, [])
            if on:
                parts.append(f)
            else:
                parts.remove(f)
                if not parts:
                    del self.partitions[pair]
                    for reply in self.dropped.pop(pair, []):  # connections reset as the network heals
                        if not reply.triggered:
                            reply.succeed(failure("UNAVAILABLE"))
            for inst in self.instances[f.service]:
                self.log(
                    now,
                    "WARN" if on else "INFO",
                    f"fault {f.kind} {verb}: {f.service} <-> {f.peer}",
                    f"sim.fault.{verb}",
                    inst.ctx,
                    {"sim.fault.kind": f.kind, "peer.service": f.peer},
                )
            return
        for inst in self.fault_targets(f):
            was_up = inst.up
            if on:
                inst.faults.append(f)
            else:
                inst.faults.remove(f)
            self._effects(inst)
            if was_up and not inst.up:
                self._crash(inst)
            self.log(
                now,
                "WARN" if on else "INFO",
                f"fault {f.kind} {verb} on {inst.id}",
                f"sim.fault.{verb}",
                inst.ctx,
                {"sim.fault.kind": f.kind},
            )
        self.health_version += 1

    def _effects(self, inst: Instance) -> None:
        eff = [e for e in (f.effect() for f in inst.faults) if e is not None]
        inst.up = not any(e.down for e in eff)
        inst.factor = math.prod(e.factor for e in eff)
        inst.delay_s = sum(e.delay_s for e in eff)
        ok = math.prod(1.0 - e.error_rate for e in eff)
        inst.err_p = 1.0 - ok
        err = [e for e in eff if e.error_rate > 0]
        last: Effect | None = err[-1] if err else None
        inst.err_status = last.status if last is not None else "UNAVAILABLE"
        inst.err_before = last.before_work if last is not None else True
        kinds = sorted({f.kind for f in inst.faults})
        inst.fault_attr = (self.pool("sim.fault.kind", ",".join(kinds)),) if kinds else ()

    def _crash(self, inst: Instance) -> None:
        """The instance goes down: everything in flight or queued there fails now (connection reset)."""
        now = self.env.now
        inst.area += inst.busy * (now - inst.last_t)
        inst.last_t = now
        inst.epoch += 1
        doomed = list(inst.jobs) + list(inst.queue)
        inst.jobs.clear()
        inst.queue.clear()
        inst.busy = 0
        for job in sorted(doomed, key=lambda j: j.span):
            self._finish(job, failure("UNAVAILABLE"), busy=False)

    # ---------------------------------------------------------------- autoscaling
    def _autoscale(self, svc: Service) -> Generator[Any, Any, None]:
        """The HPA controller of one service: a sync every ``sync_period_s``, pods ready ``pod_startup_s`` later.

        A pod's CPU is the share of its workers busy over the last sync period; its request rate the
        requests that reached it per second. Pods ready for less than a sync period count as not
        ready yet (the HPA ignores a pod's CPU during its initialisation). Scaling down removes
        pods still starting first, then the newest; a removed pod leaves the load balancers at once
        and finishes the requests it holds.
        """
        env = self.env
        cfg = svc.autoscaler
        hpa = HorizontalPodAutoscaler(cfg)
        insts = self.instances[svc.name]
        dt = cfg.sync_period_s
        last_area = {i.id: 0.0 for i in insts}
        last_arrivals = {i.id: 0 for i in insts}
        self.scale_log.append(
            (0.0, svc.name, sum(i.active for i in insts), sum(i.active for i in insts), "initial")
        )
        while True:
            yield env.timeout(dt)
            now = env.now
            if now > self.duration_s:
                return
            ready: dict[str, list[float]] = {m.name: [] for m in cfg.metrics}
            unready = 0
            for i in insts:
                i.area += i.busy * (now - i.last_t)
                i.last_t = now
                busy = (i.area - last_area[i.id]) / (i.c * dt)
                rate = (i.arrivals - last_arrivals[i.id]) / dt
                last_area[i.id], last_arrivals[i.id] = i.area, i.arrivals
                if i.starting or (i.active and i.ready_s > now - dt):
                    unready += 1
                elif i.active:
                    for m in cfg.metrics:
                        ready[m.name].append(busy if m.kind == "cpu" else rate)
            current = sum(1 for i in insts if i.active or i.starting)
            d = hpa.recommend(now, current=current, ready=ready, unready=unready)
            if d.desired > current:
                for i in [i for i in insts if not i.active and not i.starting][: d.desired - current]:
                    i.starting = True
                    self._later(cfg.pod_startup_s, self._pod_ready, i)
            elif d.desired < current:
                going = [i for i in reversed(insts) if i.starting] + [i for i in reversed(insts) if i.active]
                for i in going[: current - d.desired]:
                    i.starting = False
                    i.active = False
                self.health_version += 1
            if d.desired != current:
                self.scale_log.append((now, svc.name, d.desired, sum(i.active for i in insts), d.reason))
                self.log(
                    now,
                    "INFO",
                    f"autoscaler {svc.name}: {current} -> {d.desired} replicas ({d.reason}; "
                    + ", ".join(f"{k} {v:.2f}" for k, v in d.values.items() if v is not None)
                    + ")",
                    "sim.autoscaler.scale",
                    insts[0].ctx,
                    {"sim.autoscaler.replicas": d.desired, "sim.autoscaler.reason": d.reason},
                )

    def _pod_ready(self, ev: Event) -> None:
        inst: Instance = ev._value
        if not inst.starting:
            return  # removed before it became ready
        inst.starting = False
        inst.active = True
        inst.ready_s = self.env.now
        self.health_version += 1
        self.scale_log.append(
            (self.env.now, inst.name, None, sum(i.active for i in self.instances[inst.name]), "ready")
        )

    # ---------------------------------------------------------------- metrics
    def _metrics(self) -> Generator[Any, Any, None]:
        env = self.env
        step = self.scenario.metrics_interval_s
        while True:
            yield env.timeout(step)
            self.snapshot_metrics()
            if env.now + step > self.duration_s + 1e-9:
                return

    def snapshot_metrics(self) -> None:
        """One point per instance and client for every metric, at the current time (cumulative)."""
        em = self.emitter
        if em is None:
            return
        t = self.env.now
        self.last_metrics_t = t
        pool = self.pool
        bounds = list(DURATION_BOUNDS_S)
        for insts in self.instances.values():
            for inst in insts:
                ctx = inst.ctx
                inst.area += inst.busy * (t - inst.last_t)
                inst.last_t = t
                em.sums.append(
                    (
                        "sim.server.requests",
                        "{request}",
                        "Requests that reached the instance",
                        t,
                        inst.arrivals,
                        ctx,
                        (),
                        True,
                    )
                )
                em.sums.append(
                    (
                        "sim.server.errors",
                        "{request}",
                        "Requests the instance answered with an error",
                        t,
                        inst.errors,
                        ctx,
                        (),
                        True,
                    )
                )
                em.sums.append(
                    (
                        "sim.server.rejected",
                        "{request}",
                        "Requests refused because the queue was full",
                        t,
                        inst.rejected,
                        ctx,
                        (),
                        True,
                    )
                )
                em.sums.append(
                    (
                        "sim.server.busy_time",
                        "s",
                        "Integral of busy workers over time",
                        t,
                        inst.area,
                        ctx,
                        (),
                        True,
                    )
                )
                em.gauges.append(
                    ("sim.server.in_flight", "{request}", "Requests being worked on", t, inst.busy, ctx, ())
                )
                em.gauges.append(
                    (
                        "sim.server.queue_length",
                        "{request}",
                        "Requests waiting for a worker",
                        t,
                        len(inst.queue),
                        ctx,
                        (),
                    )
                )
                em.gauges.append(
                    ("sim.server.up", "1", "1 while the instance is up", t, int(inst.up), ctx, ())
                )
                n = inst.lat_n
                em.hists.append(
                    (
                        "http.server.request.duration",
                        "s",
                        "Time from arrival to answer at the instance",
                        t,
                        n,
                        inst.lat_sum,
                        None,
                        None,
                        list(inst.buckets),
                        bounds,
                        ctx,
                        (),
                    )
                )
        for cl in self.clients.values():
            a = (pool("peer.service", cl.target),)
            ctx = cl.ctx
            em.sums.append(
                (
                    "sim.client.calls",
                    "{call}",
                    "Logical calls to the upstream service",
                    t,
                    cl.calls,
                    ctx,
                    a,
                    True,
                )
            )
            em.sums.append(
                (
                    "sim.client.attempts",
                    "{attempt}",
                    "Attempts sent (retries and hedges included)",
                    t,
                    cl.attempts,
                    ctx,
                    a,
                    True,
                )
            )
            em.sums.append(
                ("sim.client.retries", "{attempt}", "Attempts after the first", t, cl.retries, ctx, a, True)
            )
            em.sums.append(
                (
                    "sim.client.ejections",
                    "{ejection}",
                    "Outlier ejections enforced",
                    t,
                    cl.ejections,
                    ctx,
                    a,
                    True,
                )
            )
            if cl.pool is not None:
                em.sums.append(
                    (
                        "sim.client.overflows",
                        "{request}",
                        "Requests answered with a local 503 UO by the sidecar's circuit breakers",
                        t,
                        cl.pool.overflowed,
                        ctx,
                        a,
                        True,
                    )
                )
            if cl.breaker is not None:
                st = cl.breaker.poll(t)
                em.gauges.append(
                    (
                        "sim.client.breaker_state",
                        "1",
                        "Circuit breaker state: 0 closed, 1 open, 2 half-open",
                        t,
                        {CircuitState.CLOSED: 0, CircuitState.OPEN: 1, CircuitState.HALF_OPEN: 2}[st],
                        ctx,
                        a,
                    )
                )

    # ---------------------------------------------------------------- running
    def run_until(self, t: float) -> None:
        self.env.run(until=t)

    def idle(self) -> bool:
        """No request in flight anywhere (root requests, and work queued or running at any instance)."""
        return not self.roots_in_flight and not any(
            i.busy or i.queue for insts in self.instances.values() for i in insts
        )
