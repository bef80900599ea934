"""Scenarios: a fleet, its workloads, its faults and its policies, from YAML or built in Python.

Both routes end in :class:`Scenario`, whose constructor checks the whole tree and raises
:class:`~otlp_lab.errors.ScenarioError` naming the key path and the bad value::

    scenario key 'services.cart.instances' must be a positive integer. Got -2 instead.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from otlp_lab._config import check_int, check_number, parse_duration_s
from otlp_lab.errors import ScenarioError
from otlp_lab.sim._dist import Distribution, distribution_from_dict
from otlp_lab.sim._faults import FAULT_KINDS, Fault
from otlp_lab.sim._model import Call, Endpoint, OneOf, Parallel, Policy, Service, check_seconds, split_target
from otlp_lab.sim._workload import RATE_KINDS, ClosedLoop, OpenLoop, Rate, Workload

__all__ = ["Scenario", "SimBudget", "scenario_path", "shipped_scenarios", "DEFAULT_START"]

DEFAULT_START = "2025-01-01T00:00:00Z"


def seconds(v: Any, key: str) -> float:
    """A duration given as seconds or as text with a unit (``"250ms"``, ``"10m"``), named by ``key`` on error."""
    return parse_duration_s(v, key=key, error=ScenarioError)


# ---------------------------------------------------------------- the budget


@dataclass(frozen=True, slots=True)
class SimBudget:
    """How large a scenario may be before it is refused (with a :class:`ScenarioError`).

    A simulation's time and memory follow the number of spans it makes, which is about
    requests per second × duration × spans per request (each call adds a client and a
    server span), and the number of instances it models. A laptop simulates some tens of
    thousands of spans per second.

    Parameters
    ----------
    max_spans : int, default 20,000,000
        The most spans a run may be expected to make.
    max_instances : int, default 10,000
        The most instances across all services (each is a SimPy resource with its state).
    max_duration_s : float, default 30 days
        The longest simulated time.

    Raise it in YAML (``budget: {max_spans: 100000000}``) or in Python
    (``Scenario(..., budget=SimBudget(max_spans=100_000_000))``).
    """

    max_spans: int = 20_000_000
    max_instances: int = 10_000
    max_duration_s: float = 30 * 86400.0

    def check(self, key: str = "budget") -> None:
        check_int(self.max_spans, f"{key}.max_spans", minimum=1, error=ScenarioError)
        check_int(self.max_instances, f"{key}.max_instances", minimum=1, error=ScenarioError)
        check_number(
            self.max_duration_s, f"{key}.max_duration_s", minimum=0, open_low=True, error=ScenarioError
        )


def _over_budget(what: str, setting: str, value: float, limit: float, key: str) -> ScenarioError:
    return ScenarioError(
        f"scenario key '{key}': {what} ({value:,.4g}) is over the simulation budget of {limit:,.4g} {setting}. "
        f"If you mean it, raise the budget: 'budget: {{{setting}: N}}' in the YAML, or "
        f"Scenario(..., budget=SimBudget({setting}=N)).",
        key=key,
    )


# ---------------------------------------------------------------- the scenario


@dataclass(frozen=True, slots=True)
class Scenario:
    """A simulation scenario.

    Parameters
    ----------
    name : str
        Names the run (``sim_runs.scenario``, the ``source`` of its load).
    services : sequence of Service
        The fleet.
    workloads : sequence of OpenLoop or ClosedLoop
        Where requests come from.
    faults : sequence of Fault
        What breaks and when.
    policies : mapping of str to Policy
        Named client-side policy stacks that calls (and workloads) refer to.
    default_policy : str, optional
        The policy of calls that name none (no policy at all when omitted).
    duration_s : float, default 60
        Simulated time.
    warmup_s : float, default 0
        Requests arriving before this are left out of the summary statistics (not the output).
    network_latency_s : float, default 0
        One-way network latency of every hop.
    metrics_interval_s : float, default 10
        Period of the OTLP metric points.
    start_time : str or datetime, default "2025-01-01T00:00:00Z"
        Wall-clock time of simulated time 0.
    description : str
        Free text.

    Examples
    --------
    >>> from otlp_lab.sim import Scenario, Service, OpenLoop, Exponential
    >>> s = Scenario("mm1", services=[Service("api", service_time=Exponential(0.01))],
    ...              workloads=[OpenLoop("api", rate=50.0)], duration_s=30)
    >>> s.services[0].instances
    1
    """

    name: str
    _: KW_ONLY
    services: tuple[Service, ...] = ()
    workloads: tuple[Workload, ...] = ()
    faults: tuple[Fault, ...] = ()
    policies: Mapping[str, Policy] = field(default_factory=dict)
    default_policy: str | None = None
    duration_s: float = 60.0
    warmup_s: float = 0.0
    network_latency_s: float = 0.0
    metrics_interval_s: float = 10.0
    start_time: str | datetime = DEFAULT_START
    budget: SimBudget = SimBudget()
    description: str = ""

    def __post_init__(self) -> None:
        for name in ("services", "workloads", "faults"):
            v = getattr(self, name)
            if isinstance(v, list):
                object.__setattr__(self, name, tuple(v))
        if isinstance(self.policies, Mapping):
            object.__setattr__(self, "policies", dict(self.policies))
        self._check()

    # ---------------------------------------------------------------- checks
    def _check(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ScenarioError(
                f"scenario key 'name' must be a non-empty string. Got {self.name!r} instead.", key="name"
            )
        check_seconds("duration_s", self.duration_s, positive=True)
        check_seconds("warmup_s", self.warmup_s)
        if self.warmup_s >= self.duration_s:
            raise ScenarioError(
                f"scenario key 'warmup_s' must be shorter than duration_s ({self.duration_s:g}). Got {self.warmup_s!r} instead.",
                key="warmup_s",
            )
        check_seconds("network_latency_s", self.network_latency_s)
        check_seconds("metrics_interval_s", self.metrics_interval_s, positive=True)
        self.start_ns()
        if not isinstance(self.policies, dict):
            raise ScenarioError(
                f"scenario key 'policies' must be a mapping of names to policies. Got {self.policies!r} instead.",
                key="policies",
            )
        for pname, pol in self.policies.items():
            if not isinstance(pol, Policy):
                raise ScenarioError(
                    f"scenario key 'policies.{pname}' must be a Policy. Got {pol!r} instead.",
                    key=f"policies.{pname}",
                )
            pol.check(f"policies.{pname}")
        self._check_policy_name("default_policy", self.default_policy)
        if not isinstance(self.services, tuple) or not self.services:
            raise ScenarioError(
                f"scenario key 'services' must list at least one service. Got {self.services!r} instead.",
                key="services",
            )
        by_name: dict[str, Service] = {}
        for svc in self.services:
            if not isinstance(svc, Service):
                raise ScenarioError(
                    f"scenario key 'services' must hold Service objects. Got {svc!r} instead.", key="services"
                )
            if not isinstance(svc.name, str) or not svc.name or "/" in svc.name:
                raise ScenarioError(
                    f"scenario key 'services' has a bad service name (non-empty, no '/'). Got {svc.name!r} instead.",
                    key="services",
                )
            if svc.name in by_name:
                raise ScenarioError(
                    f"scenario key 'services' names {svc.name!r} twice.", key=f"services.{svc.name}"
                )
            by_name[svc.name] = svc
            svc.check(f"services.{svc.name}")
        for svc in self.services:
            for ep in svc.endpoints:
                for n, step in enumerate(ep.calls):
                    calls = step.calls if isinstance(step, (Parallel, OneOf)) else (step,)
                    for m, c in enumerate(calls):
                        key = f"services.{svc.name}.endpoints.{ep.name}.calls[{n}]" + (
                            f".parallel[{m}]"
                            if isinstance(step, Parallel)
                            else f".one_of[{m}]"
                            if isinstance(step, OneOf)
                            else ""
                        )
                        self._resolve(f"{key}.to", c.to)
                        self._check_policy_name(f"{key}.policy", c.policy)
        self._check_acyclic()
        if not isinstance(self.workloads, tuple) or not self.workloads:
            raise ScenarioError(
                f"scenario key 'workloads' must list at least one workload. Got {self.workloads!r} instead.",
                key="workloads",
            )
        for n, w in enumerate(self.workloads):
            key = f"workloads[{n}]"
            if not isinstance(w, (OpenLoop, ClosedLoop)):
                raise ScenarioError(
                    f"scenario key '{key}' must be an OpenLoop or a ClosedLoop. Got {w!r} instead.", key=key
                )
            w.check(key)
            self._resolve(f"{key}.target", w.target)
            self._check_policy_name(f"{key}.policy", w.policy)
            if w.client in by_name:
                raise ScenarioError(
                    f"scenario key '{key}.client' must not be the name of a service of the fleet. Got {w.client!r} instead.",
                    key=f"{key}.client",
                )
        zones = {z for s in self.services for z in s.zones}
        for n, f in enumerate(self.faults):
            if not isinstance(f, Fault):
                raise ScenarioError(
                    f"scenario key 'faults[{n}]' must be a Fault. Got {f!r} instead.", key=f"faults[{n}]"
                )
            f.check(f"faults[{n}]", by_name.get, zones)
        self._check_budget()

    def spans_per_request(self, target: str) -> float:
        """Expected spans one request to ``target`` makes (server spans, plus a client span per call),
        counting each call's ``count`` and ``probability`` and, for a ``one_of``, its largest choice."""
        memo: dict[str, float] = {}

        def spans(t: str) -> float:
            if t in memo:
                return memo[t]
            _, ep = self._resolve("", t)
            total = 1.0
            for step in ep.calls:
                calls = step.calls if isinstance(step, (Parallel, OneOf)) else (step,)
                each = [c.count * c.probability * (1.0 + spans(c.to)) for c in calls]
                total += max(each) if isinstance(step, OneOf) else sum(each)
            memo[t] = total
            return total

        return spans(target)

    def _check_budget(self) -> None:
        b = self.budget
        if not isinstance(b, SimBudget):
            raise ScenarioError(
                f"scenario key 'budget' must be a SimBudget. Got {b!r} instead.", key="budget"
            )
        b.check()
        if self.duration_s > b.max_duration_s:
            raise _over_budget(
                "the simulated time in seconds",
                "max_duration_s",
                self.duration_s,
                b.max_duration_s,
                "duration_s",
            )
        total = 0
        for svc in self.services:
            if svc.instances > b.max_instances:
                raise _over_budget(
                    f"{svc.name}'s instances",
                    "max_instances",
                    svc.instances,
                    b.max_instances,
                    f"services.{svc.name}.instances",
                )
            total += svc.instances
        if total > b.max_instances:
            raise _over_budget(
                "the instances of all services", "max_instances", total, b.max_instances, "services"
            )
        expected = 0.0
        for n, w in enumerate(self.workloads):
            if isinstance(w, OpenLoop):
                rate = w.profile.max_rps
            else:
                think = getattr(w.think_time, "mean_s", 1.0) or 0.0
                rate = w.users / max(think, 1e-3)
            per = self.spans_per_request(w.target)
            expected += rate * self.duration_s * per
            if expected > b.max_spans:
                raise _over_budget(
                    f"about {rate:,.4g} requests/s × {self.duration_s:,.4g} s × {per:,.3g} spans per request: the spans "
                    "this run would make",
                    "max_spans",
                    expected,
                    b.max_spans,
                    f"workloads[{n}]",
                )

    def _check_policy_name(self, key: str, name: Any) -> None:
        if name is not None and name not in self.policies:
            raise ScenarioError(
                f"scenario key '{key}' must name a policy of 'policies' ({sorted(self.policies) or 'none defined'}). Got {name!r} instead.",
                key=key,
            )

    def _resolve(self, key: str, target: Any) -> tuple[Service, Endpoint]:
        if not isinstance(target, str) or not target:
            raise ScenarioError(
                f"scenario key '{key}' must be 'service' or 'service/endpoint'. Got {target!r} instead.",
                key=key,
            )
        sname, ename = split_target(target)
        svc = self.service(sname)
        if svc is None:
            hint = difflib.get_close_matches(sname, [s.name for s in self.services], n=1)
            extra = f" Did you mean {hint[0]!r}?" if hint else ""
            raise ScenarioError(
                f"scenario key '{key}' must name a service of the scenario. Got {target!r} instead.{extra}",
                key=key,
            )
        ep = svc.endpoint(ename)
        if ep is None:
            raise ScenarioError(
                f"scenario key '{key}' names no endpoint of {sname!r} (it has {[e.name for e in svc.endpoints]}). Got {target!r} instead.",
                key=key,
            )
        return svc, ep

    def _check_acyclic(self) -> None:
        """A call graph with a cycle would recurse forever: refuse it, naming the cycle."""
        state: dict[tuple[str, str], int] = {}

        def visit(node: tuple[str, str], path: list[tuple[str, str]]) -> None:
            state[node] = 1
            svc = self.service(node[0])
            ep = svc.endpoint(node[1])  # type: ignore[union-attr]
            for c in ep.all_calls():  # type: ignore[union-attr]
                s2, e2 = self.resolve(c.to)
                nxt = (s2.name, e2.name)
                if state.get(nxt) == 1:
                    full = [*path, node]
                    cycle = " -> ".join(f"{a}/{b}" for a, b in [*full[full.index(nxt) :], nxt])
                    raise ScenarioError(
                        f"scenario key 'services' has a call cycle: {cycle}.", key=f"services.{node[0]}"
                    )
                if nxt not in state:
                    visit(nxt, [*path, node])
            state[node] = 2

        for svc in self.services:
            for ep in svc.endpoints:
                if (svc.name, ep.name) not in state:
                    visit((svc.name, ep.name), [])

    # ---------------------------------------------------------------- lookups
    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    def resolve(self, target: str) -> tuple[Service, Endpoint]:
        """The service and endpoint a target string (``"cart/get"`` or ``"cart"``) names."""
        return self._resolve("target", target)

    def start_ns(self) -> int:
        """Unix nanoseconds of simulated time 0."""
        t = self.start_time
        try:
            dt = t if isinstance(t, datetime) else datetime.fromisoformat(str(t).replace("Z", "+00:00"))
        except ValueError:
            raise ScenarioError(
                f"scenario key 'start_time' must be an ISO 8601 time such as {DEFAULT_START!r}. Got {t!r} instead.",
                key="start_time",
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000

    def replace(self, **changes: Any) -> Scenario:
        """A checked copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def with_policies(self, overrides: Mapping[str, Mapping[str, Any] | Policy | None] | None) -> Scenario:
        """A copy with policy fields replaced.

        ``overrides`` maps a policy name (or ``"*"`` for every policy) to the fields to set, e.g.
        ``{"*": {"retry": None}}`` turns retries off everywhere and
        ``{"api": {"budget": {"budget_percent": 20}}}`` adds a retry budget to the ``api`` policy.
        A name that is not yet a policy is added; a whole :class:`Policy` replaces one.
        """
        if not overrides:
            return self
        policies = dict(self.policies)
        for name, change in overrides.items():
            targets = list(policies) if name == "*" else [name]
            for t in targets:
                if isinstance(change, Policy) or change is None:
                    policies[t] = change if change is not None else Policy()
                    continue
                if not isinstance(change, Mapping):
                    raise ScenarioError(
                        f"policy_overrides[{name!r}] must be a mapping of Policy fields, a Policy or None. Got {change!r} instead.",
                        key=f"policies.{t}",
                    )
                unknown = set(change) - {f.name for f in dataclasses.fields(Policy)}
                if unknown:
                    raise ScenarioError(
                        f"policy_overrides[{name!r}] has unknown Policy fields {sorted(unknown)}. "
                        f"Expected some of {[f.name for f in dataclasses.fields(Policy) if f.name != '_']}.",
                        key=f"policies.{t}",
                    )
                policies[t] = dataclasses.replace(policies.get(t, Policy()), **change)
        return self.replace(policies=policies)

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Scenario:
        """Read a scenario YAML file (see the shipped ones: :func:`scenario_path`).

        Raises
        ------
        ScenarioError
            The file is not valid YAML or not a valid scenario; the message names the key path.
        """
        p, data = read_scenario_yaml(path)
        if isinstance(data, dict):
            _relative_manifests(data, p.parent)
        return scenario_from_file(p, data, cls.from_dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Scenario:
        """A scenario from its YAML form (a mapping), checked like the Python builder."""
        d = _keys(data, "", _SCENARIO_KEYS, required=("name", "services", "workloads"))
        kw: dict[str, Any] = {}
        for k in ("duration_s", "warmup_s", "network_latency_s", "metrics_interval_s"):
            if k in d:
                kw[k] = seconds(d[k], k)
        for k in ("default_policy", "start_time", "description"):
            if k in d:
                kw[k] = d[k]
        if "budget" in d:
            bd = _keys(d["budget"], "budget", ("max_spans", "max_instances", "max_duration_s"))
            if "max_duration_s" in bd:
                bd["max_duration_s"] = seconds(bd["max_duration_s"], "budget.max_duration_s")
            kw["budget"] = SimBudget(**bd)
        policies = _mapping(d.get("policies") or {}, "policies")
        kw["policies"] = {name: _policy(spec, f"policies.{name}") for name, spec in policies.items()}
        services = _mapping(d["services"], "services")
        kw["services"] = tuple(
            _service(str(name), spec, f"services.{name}") for name, spec in services.items()
        )
        kw["workloads"] = tuple(
            _workload(w, f"workloads[{n}]") for n, w in enumerate(_list(d["workloads"], "workloads"))
        )
        kw["faults"] = tuple(
            _fault(f, f"faults[{n}]") for n, f in enumerate(_list(d.get("faults") or [], "faults"))
        )
        return cls(d["name"], **kw)


# ---------------------------------------------------------------- YAML -> objects (structure; values are checked by Scenario)

_SCENARIO_KEYS = (
    "name",
    "description",
    "duration_s",
    "warmup_s",
    "network_latency_s",
    "metrics_interval_s",
    "start_time",
    "default_policy",
    "policies",
    "services",
    "workloads",
    "faults",
    "budget",
)
_SERVICE_KEYS = (
    "instances",
    "concurrency",
    "queue_limit",
    "service_time",
    "endpoints",
    "zones",
    "sidecar_latency_s",
    "drop_expired",
    "autoscaler",
)
_ENDPOINT_KEYS = ("service_time", "calls", "error_rate", "operation")
_CALL_KEYS = ("to", "policy", "critical", "probability", "count")
_POLICY_KEYS = tuple(f.name for f in dataclasses.fields(Policy) if f.name != "_")
_WORKLOAD_COMMON = ("kind", "target", "deadline_s", "client", "keys", "policy")


def read_scenario_yaml(path: str | os.PathLike[str]) -> tuple[Path, Any]:
    """The parsed YAML of a scenario file of any kind (fleet, edge, ledger), named after the file by default.

    Raises
    ------
    ScenarioError
        The file cannot be read, is not YAML, or nests too deeply.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read the scenario file {p}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{p} is not valid YAML: {exc}") from exc
    except RecursionError:
        raise ScenarioError(
            f"{p} is nested too deeply to be a scenario (YAML nests a few levels; this goes on for hundreds)"
        ) from None
    if isinstance(data, dict):
        data.setdefault("name", p.name.removesuffix(".yaml").removesuffix(".yml"))
    return p, data


def scenario_from_file(p: Path, data: Any, from_dict: Any) -> Any:
    """``from_dict(data)``, with the file named in any error."""
    try:
        return from_dict(data)
    except ScenarioError as exc:
        raise ScenarioError(f"{p}: {exc}", key=exc.key) from None


def _keys(d: Any, key: str, allowed: tuple[str, ...], *, required: tuple[str, ...] = ()) -> dict[str, Any]:
    where = f"scenario key '{key}'" if key else "a scenario"
    if not isinstance(d, Mapping):
        raise ScenarioError(f"{where} must be a mapping. Got {d!r} instead.", key=key or None)
    for k in d:
        if k not in allowed:
            hint = difflib.get_close_matches(str(k), allowed, n=1)
            extra = f" Did you mean {hint[0]!r}?" if hint else f" Expected some of {list(allowed)}."
            path = f"{key}.{k}" if key else str(k)
            raise ScenarioError(f"scenario key '{path}' is not a known setting.{extra}", key=path)
    for k in required:
        if k not in d:
            path = f"{key}.{k}" if key else k
            raise ScenarioError(f"scenario key '{path}' is required.", key=path)
    return dict(d)


def _relative_manifests(data: dict[str, Any], base: Path) -> None:
    """``autoscaler: {manifest: hpa.yaml}`` paths are relative to the scenario file."""
    services = data.get("services")
    if not isinstance(services, Mapping):
        return
    for spec in services.values():
        auto = spec.get("autoscaler") if isinstance(spec, Mapping) else None
        if isinstance(auto, dict) and isinstance(auto.get("manifest"), str):
            m = Path(auto["manifest"])
            if not m.is_absolute():
                auto["manifest"] = str(base / m)


def _mapping(d: Any, key: str) -> dict[str, Any]:
    if not isinstance(d, Mapping):
        raise ScenarioError(
            f"scenario key '{key}' must be a mapping of names to settings. Got {d!r} instead.", key=key
        )
    return dict(d)


def _list(v: Any, key: str) -> list[Any]:
    if not isinstance(v, list):
        raise ScenarioError(f"scenario key '{key}' must be a list. Got {v!r} instead.", key=key)
    return v


def _seconds_fields(d: dict[str, Any], key: str) -> dict[str, Any]:
    """Durations written with units (``"250ms"``) as seconds, for keys ending in ``_s``."""
    return {
        k: (seconds(v, f"{key}.{k}") if k.endswith("_s") and isinstance(v, str) else v) for k, v in d.items()
    }


def _dist(v: Any, key: str) -> Distribution:
    return distribution_from_dict(v, key, seconds)


def _policy(spec: Any, key: str) -> Policy:
    d = _keys(spec or {}, key, _POLICY_KEYS)
    if "timeout_s" in d and d["timeout_s"] is not None:
        d["timeout_s"] = seconds(d["timeout_s"], f"{key}.timeout_s")
    for k, v in d.items():
        if isinstance(v, Mapping):
            d[k] = _seconds_fields(dict(v), f"{key}.{k}")
    timeout = d.pop("timeout_s", None)
    return Policy(timeout, **d)


def _service(name: str, spec: Any, key: str) -> Service:
    d = _keys(spec or {}, key, _SERVICE_KEYS)
    if "service_time" in d:
        d["service_time"] = _dist(d["service_time"], f"{key}.service_time")
    if "sidecar_latency_s" in d:
        d["sidecar_latency_s"] = seconds(d["sidecar_latency_s"], f"{key}.sidecar_latency_s")
    if "zones" in d:
        d["zones"] = tuple(_list(d["zones"], f"{key}.zones"))
    if "endpoints" in d:
        eps = _mapping(d["endpoints"], f"{key}.endpoints")
        d["endpoints"] = tuple(_endpoint(str(n), e, f"{key}.endpoints.{n}") for n, e in eps.items())
    return Service(name, **d)


def _endpoint(name: str, spec: Any, key: str) -> Endpoint:
    d = _keys(spec or {}, key, _ENDPOINT_KEYS)
    if "service_time" in d:
        d["service_time"] = _dist(d["service_time"], f"{key}.service_time")
    if "calls" in d:
        d["calls"] = tuple(
            _step(c, f"{key}.calls[{n}]") for n, c in enumerate(_list(d["calls"], f"{key}.calls"))
        )
    return Endpoint(name, **d)


def _call(c: Any, key: str) -> Call:
    if isinstance(c, str):
        return Call(c)
    d = _keys(c, key, _CALL_KEYS, required=("to",))
    to = d.pop("to")
    return Call(to, **d)


def _step(c: Any, key: str) -> Call | Parallel | OneOf:
    if isinstance(c, Mapping) and "one_of" in c:
        extra = set(c) - {"one_of", "weights"}
        if extra:
            raise ScenarioError(
                f"scenario key '{key}' may hold only 'one_of' (a list of calls) and 'weights'. Got {sorted(extra)!r} too.",
                key=key,
            )
        calls = _list(c["one_of"], f"{key}.one_of")
        weights = c.get("weights") or ()
        if not isinstance(weights, (list, tuple)):
            raise ScenarioError(
                f"scenario key '{key}.weights' must be a list of numbers. Got {weights!r} instead.",
                key=f"{key}.weights",
            )
        return OneOf(tuple(_call(x, f"{key}.one_of[{m}]") for m, x in enumerate(calls)), tuple(weights))
    if isinstance(c, Mapping) and "parallel" in c:
        if len(c) != 1:
            raise ScenarioError(
                f"scenario key '{key}' must hold only 'parallel' (a list of calls). Got {dict(c)!r} instead.",
                key=key,
            )
        calls = _list(c["parallel"], f"{key}.parallel")
        return Parallel(tuple(_call(x, f"{key}.parallel[{m}]") for m, x in enumerate(calls)))
    return _call(c, key)


def _rate(v: Any, key: str) -> float | Rate:
    if isinstance(v, Mapping):
        kind = v.get("kind")
        cls = RATE_KINDS.get(kind)  # type: ignore[arg-type]
        if cls is None:
            raise ScenarioError(
                f"scenario key '{key}.kind' must be one of {sorted(RATE_KINDS)}. Got {kind!r} instead.",
                key=f"{key}.kind",
            )
        d = _keys(v, key, ("kind", *cls.__dataclass_fields__))
        d.pop("kind")
        d = _seconds_fields(d, key)
        if "steps" in d:
            d["steps"] = tuple(
                tuple(s) if isinstance(s, (list, tuple)) else s for s in _list(d["steps"], f"{key}.steps")
            )
        try:
            return cls(**d)
        except TypeError as exc:
            raise ScenarioError(f"scenario key '{key}' is not a valid {kind} rate: {exc}", key=key) from None
    return v


def _workload(w: Any, key: str) -> Workload:
    kind = w.get("kind", "open") if isinstance(w, Mapping) else None
    if kind == "open":
        d = _keys(w, key, (*_WORKLOAD_COMMON, "rate"), required=("target",))
        if "rate" in d:
            d["rate"] = _rate(d["rate"], f"{key}.rate")
        cls: type = OpenLoop
    elif kind == "closed":
        d = _keys(w, key, (*_WORKLOAD_COMMON, "users", "think_time"), required=("target",))
        if "think_time" in d:
            d["think_time"] = _dist(d["think_time"], f"{key}.think_time")
        cls = ClosedLoop
    elif isinstance(w, Mapping):
        raise ScenarioError(
            f"scenario key '{key}.kind' must be 'open' or 'closed'. Got {kind!r} instead.", key=f"{key}.kind"
        )
    else:
        raise ScenarioError(f"scenario key '{key}' must be a mapping. Got {w!r} instead.", key=key)
    d.pop("kind", None)
    if "deadline_s" in d and d["deadline_s"] is not None:
        d["deadline_s"] = seconds(d["deadline_s"], f"{key}.deadline_s")
    target = d.pop("target")
    return cls(target, **d)


def _fault(f: Any, key: str) -> Fault:
    kind = f.get("kind") if isinstance(f, Mapping) else None
    cls = FAULT_KINDS.get(kind)  # type: ignore[arg-type]
    if cls is None:
        if not isinstance(f, Mapping):
            raise ScenarioError(f"scenario key '{key}' must be a mapping. Got {f!r} instead.", key=key)
        raise ScenarioError(
            f"scenario key '{key}.kind' must be one of {sorted(FAULT_KINDS)}. Got {kind!r} instead.",
            key=f"{key}.kind",
        )
    fields = tuple(f_.name for f_ in dataclasses.fields(cls))
    d = _keys(f, key, ("kind", *fields))
    d.pop("kind")
    d = _seconds_fields(d, key)
    try:
        return cls(**d)
    except TypeError as exc:
        missing = [
            n
            for n in fields
            if n not in d and dataclasses.fields(cls)[fields.index(n)].default is dataclasses.MISSING
        ]
        raise ScenarioError(
            f"scenario key '{key}' needs {missing or exc} for a {kind} fault.", key=key
        ) from None


# ---------------------------------------------------------------- shipped scenarios


def shipped_scenarios() -> list[str]:
    """Names of the scenarios shipped with otlp_lab (``scenario_path(name)`` finds them)."""
    root = resources.files("otlp_lab.sim") / "scenarios"
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def scenario_path(name: str) -> Path:
    """The YAML file of a shipped scenario (``"shop"``, ``"retry_storm"``, ``"slow_instance"``).

    Raises
    ------
    ScenarioError
        No shipped scenario has that name (the message lists them).
    """
    root = resources.files("otlp_lab.sim") / "scenarios"
    p = root / f"{name.removesuffix('.yaml')}.yaml"
    if not p.is_file():
        raise ScenarioError(f"no shipped scenario is named {name!r}. Shipped: {shipped_scenarios()}.")
    return Path(str(p))


def load_scenario(scenario: Scenario | str | os.PathLike[str]) -> Scenario:
    """A :class:`Scenario`, a YAML path, or the name of a shipped scenario -> :class:`Scenario`."""
    if isinstance(scenario, Scenario):
        return scenario
    p = Path(scenario)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return Scenario.from_yaml(p)
    return Scenario.from_yaml(scenario_path(str(scenario)))
