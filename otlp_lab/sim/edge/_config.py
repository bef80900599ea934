"""Edge scenarios: sites with small nodes, telemetry buffers and flaky uplinks to a cloud collector.

Frozen, keyword-only config objects, checked on construction (errors name the key path and
the bad value, as :class:`otlp_lab.sim.Scenario` does), and read from YAML by
:meth:`EdgeScenario.from_yaml`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from otlp_lab.errors import ScenarioError
from otlp_lab.sim._dist import Distribution, Exponential, distribution_from_dict
from otlp_lab.sim._model import check_positive_int, check_seconds
from otlp_lab.sim._scenario import DEFAULT_START, Scenario, _keys, seconds

__all__ = [
    "BufferPolicy",
    "BUFFER_POLICIES",
    "Uplink",
    "TailSampling",
    "EdgeSite",
    "EdgeScenario",
    "edge_scenario_path",
    "shipped_edge_scenarios",
]

BufferPolicy = Literal["drop_oldest", "drop_newest", "sample"]
BUFFER_POLICIES: tuple[str, ...] = ("drop_oldest", "drop_newest", "sample")


def _bad(key: str, what: str, v: Any) -> ScenarioError:
    return ScenarioError(f"scenario key '{key}' must be {what}. Got {v!r} instead.", key=key)


def _fraction(key: str, v: Any, *, open_low: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 and (v > 0 or not open_low)
    if not ok:
        raise _bad(key, "a number in (0, 1]" if open_low else "a number between 0 and 1", v)


def _positive(key: str, v: Any, *, zero_ok: bool = False) -> None:
    ok = (
        isinstance(v, (int, float))
        and not isinstance(v, bool)
        and math.isfinite(v)
        and (v > 0 or (zero_ok and v == 0))
    )
    if not ok:
        raise _bad(key, "a non-negative number" if zero_ok else "a positive number", v)


@dataclass(frozen=True, slots=True, kw_only=True)
class Uplink:
    """A site's link to the cloud collector: up or down, and while up a bandwidth and a latency.

    Parameters
    ----------
    bandwidth_bytes_per_s : float
        Transfer rate while up; the buffer drains at this rate when the link comes back.
    latency_s : float
        One-way latency added to every delivery (after the transfer).
    mean_up_s, mean_down_s : float, optional
        An on/off Markov process: up periods ~ Exp(mean ``mean_up_s``), outages ~ Exp(mean
        ``mean_down_s``). ``mean_up_s=None`` (default) means no random outages.
    outages : sequence of (at_s, duration_s)
        Scheduled outages (on top of the Markov ones).
    fail_only_while_busy : bool
        Random failures happen only while a transfer is in progress (the "unreliable server"
        of queueing theory: an idle link does not age). Otherwise the on/off process runs all the time.
    resume : bool
        After an outage, an interrupted transfer continues where it stopped (chunked upload);
        ``False`` sends the whole item again (the bytes already sent are wasted, and counted).
    """

    bandwidth_bytes_per_s: float = 125_000.0
    latency_s: float = 0.05
    mean_up_s: float | None = None
    mean_down_s: float = 30.0
    outages: tuple[tuple[float, float], ...] = ()
    fail_only_while_busy: bool = False
    resume: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.outages, list):
            object.__setattr__(self, "outages", tuple(tuple(o) for o in self.outages))

    def check(self, key: str) -> None:
        _positive(f"{key}.bandwidth_bytes_per_s", self.bandwidth_bytes_per_s)
        check_seconds(f"{key}.latency_s", self.latency_s)
        check_seconds(f"{key}.mean_up_s", self.mean_up_s, positive=True, optional=True)
        check_seconds(f"{key}.mean_down_s", self.mean_down_s, positive=True)
        for n, o in enumerate(self.outages):
            if not (isinstance(o, tuple) and len(o) == 2):
                raise _bad(f"{key}.outages[{n}]", "a pair [at_s, duration_s]", o)
            check_seconds(f"{key}.outages[{n}][0]", o[0])
            check_seconds(f"{key}.outages[{n}][1]", o[1], positive=True)
        for name in ("fail_only_while_busy", "resume"):
            if not isinstance(getattr(self, name), bool):
                raise _bad(f"{key}.{name}", "true or false", getattr(self, name))


@dataclass(frozen=True, slots=True, kw_only=True)
class TailSampling:
    """Edge tail sampling (the Collector's ``tail_sampling`` processor, reduced to its usual policies).

    A finished trace is kept if it has an error (``keep_errors``), or took at least
    ``slow_threshold_s``, or else with probability ``sample_rate``; the rest never leave the site.
    Deciding costs ``cpu_s_per_span`` of edge CPU per span.
    """

    keep_errors: bool = True
    slow_threshold_s: float | None = 0.5
    sample_rate: float = 0.1
    cpu_s_per_span: float = 20e-6

    def check(self, key: str) -> None:
        if not isinstance(self.keep_errors, bool):
            raise _bad(f"{key}.keep_errors", "true or false", self.keep_errors)
        check_seconds(f"{key}.slow_threshold_s", self.slow_threshold_s, optional=True)
        _fraction(f"{key}.sample_rate", self.sample_rate)
        check_seconds(f"{key}.cpu_s_per_span", self.cpu_s_per_span)

    def keeps(self, error: bool, duration_s: float, u: float) -> bool:
        """The decision for one trace (``u`` a uniform draw in [0, 1))."""
        if self.keep_errors and error:
            return True
        if self.slow_threshold_s is not None and duration_s >= self.slow_threshold_s:
            return True
        return u < self.sample_rate


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeSite:
    """One edge site: ``nodes`` nodes serving requests, a telemetry buffer and an uplink.

    Parameters
    ----------
    name : str
    nodes, workers : int
        Nodes at the site and concurrent requests per node.
    cpu_share : float
        Share of a core each worker gets: work takes ``work / cpu_share`` seconds.
    rate : float
        Requests per second arriving at the site (Poisson), spread over the nodes at random.
    work : Distribution
        CPU seconds per request at a full core.
    error_rate : float
        Share of requests that fail (their traces carry an error status).
    spans_per_trace, span_bytes : int
        Size of a trace's telemetry: ``spans_per_trace * span_bytes`` bytes on the wire (mean).
    trace_size : "constant" or "exponential"
        Trace sizes are all the mean, or exponentially distributed around it.
    buffer_bytes : int
        The store-and-forward buffer in front of the uplink (the item in transfer included).
    policy : "drop_oldest", "drop_newest" or "sample"
        What a full buffer does. ``drop_newest`` refuses the new item, ``drop_oldest`` evicts
        from the head until it fits, ``sample`` (degrade to sampling) admits traces without an
        error with probability ``(1 - fill) / (1 - degrade_at)`` once the buffer is more than
        ``degrade_at`` full; when nothing fits, an error trace evicts the oldest traces without
        an error, anything else is dropped (errors survive an outage that fills the buffer).
    degrade_at : float
        Fill fraction where ``sample`` starts shedding.
    tail_sampling : TailSampling, optional
        Edge tail sampling (no sampling when omitted: every trace is sent).
    metrics_interval_s : float
        Each node exports its request metrics once per interval.
    metric_aggregation : bool
        Pre-aggregate at the edge: one histogram point per node and interval
        (``histogram_bytes``) instead of one point per request (``metric_point_bytes`` each).
    """

    name: str
    nodes: int = 1
    workers: int = 4
    cpu_share: float = 1.0
    rate: float = 10.0
    work: Distribution = field(default_factory=lambda: Exponential(0.05))
    error_rate: float = 0.01
    spans_per_trace: int = 5
    span_bytes: int = 400
    trace_size: Literal["constant", "exponential"] = "constant"
    buffer_bytes: int = 1_000_000
    policy: BufferPolicy = "drop_oldest"
    degrade_at: float = 0.5
    uplink: Uplink = field(default_factory=Uplink)
    tail_sampling: TailSampling | None = None
    metrics_interval_s: float = 10.0
    metric_aggregation: bool = False
    metric_point_bytes: int = 60
    histogram_bytes: int = 400

    def check(self, key: str) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise _bad(f"{key}.name", "a non-empty name without '/'", self.name)
        check_positive_int(f"{key}.nodes", self.nodes)
        check_positive_int(f"{key}.workers", self.workers)
        _fraction(f"{key}.cpu_share", self.cpu_share, open_low=True)
        _positive(f"{key}.rate", self.rate, zero_ok=True)
        if not isinstance(self.work, Distribution):
            raise _bad(f"{key}.work", "a distribution", self.work)
        self.work.check(f"{key}.work")
        _fraction(f"{key}.error_rate", self.error_rate)
        check_positive_int(f"{key}.spans_per_trace", self.spans_per_trace)
        check_positive_int(f"{key}.span_bytes", self.span_bytes)
        if self.trace_size not in ("constant", "exponential"):
            raise _bad(f"{key}.trace_size", "'constant' or 'exponential'", self.trace_size)
        check_positive_int(f"{key}.buffer_bytes", self.buffer_bytes)
        if self.policy not in BUFFER_POLICIES:
            raise _bad(f"{key}.policy", f"one of {list(BUFFER_POLICIES)}", self.policy)
        _fraction(f"{key}.degrade_at", self.degrade_at)
        if self.degrade_at >= 1:
            raise _bad(f"{key}.degrade_at", "below 1", self.degrade_at)
        if not isinstance(self.uplink, Uplink):
            raise _bad(f"{key}.uplink", "an Uplink", self.uplink)
        self.uplink.check(f"{key}.uplink")
        if self.tail_sampling is not None:
            if not isinstance(self.tail_sampling, TailSampling):
                raise _bad(f"{key}.tail_sampling", "a TailSampling or null", self.tail_sampling)
            self.tail_sampling.check(f"{key}.tail_sampling")
        check_seconds(f"{key}.metrics_interval_s", self.metrics_interval_s, positive=True)
        if not isinstance(self.metric_aggregation, bool):
            raise _bad(f"{key}.metric_aggregation", "true or false", self.metric_aggregation)
        check_positive_int(f"{key}.metric_point_bytes", self.metric_point_bytes, zero_ok=True)
        check_positive_int(f"{key}.histogram_bytes", self.histogram_bytes, zero_ok=True)

    @property
    def trace_bytes(self) -> int:
        """Mean bytes of one trace's telemetry."""
        return self.spans_per_trace * self.span_bytes


_SITE_KEYS = tuple(f.name for f in dataclasses.fields(EdgeSite) if f.name != "name")
_UPLINK_KEYS = tuple(f.name for f in dataclasses.fields(Uplink))
_SAMPLING_KEYS = tuple(f.name for f in dataclasses.fields(TailSampling))
_EDGE_KEYS = (
    "name",
    "description",
    "kind",
    "duration_s",
    "drain_s",
    "timeline_interval_s",
    "start_time",
    "sites",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class EdgeScenario:
    """Edge sites sending telemetry through their uplinks to one cloud collector.

    Parameters
    ----------
    name : str
    sites : sequence of EdgeSite
    duration_s : float
        Simulated time during which requests arrive.
    drain_s : float
        Extra time after the end for buffered items to go out (items still buffered then are
        reported as ``pending``, not lost).
    timeline_interval_s : float
        Period of the buffer-occupancy timeline (:meth:`EdgeResult.buffer_timeline`).
    start_time : str or datetime
        Wall-clock time of simulated time 0.

    Examples
    --------
    >>> from otlp_lab.sim.edge import EdgeScenario, EdgeSite, Uplink
    >>> sc = EdgeScenario(name="two", sites=[EdgeSite(name="a", uplink=Uplink(mean_up_s=300, mean_down_s=60))])
    >>> sc.sites[0].policy
    'drop_oldest'
    """

    name: str
    sites: tuple[EdgeSite, ...] = ()
    duration_s: float = 600.0
    drain_s: float = 0.0
    timeline_interval_s: float = 1.0
    start_time: str | datetime = DEFAULT_START
    description: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.sites, list):
            object.__setattr__(self, "sites", tuple(self.sites))
        if not isinstance(self.name, str) or not self.name:
            raise _bad("name", "a non-empty string", self.name)
        if not isinstance(self.sites, tuple) or not self.sites:
            raise _bad("sites", "a list of at least one EdgeSite", self.sites)
        names = set()
        for n, s in enumerate(self.sites):
            if not isinstance(s, EdgeSite):
                raise _bad(f"sites[{n}]", "an EdgeSite", s)
            s.check(f"sites.{s.name}")
            if s.name in names:
                raise ScenarioError(f"scenario key 'sites' names {s.name!r} twice.", key=f"sites.{s.name}")
            names.add(s.name)
        check_seconds("duration_s", self.duration_s, positive=True)
        check_seconds("drain_s", self.drain_s)
        check_seconds("timeline_interval_s", self.timeline_interval_s, positive=True)
        self.start_ns()

    def start_ns(self) -> int:
        """Unix nanoseconds of simulated time 0."""
        return Scenario.start_ns(self)  # type: ignore[arg-type]

    def replace(self, **changes: Any) -> EdgeScenario:
        """A checked copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def with_sites(self, **changes: Any) -> EdgeScenario:
        """A copy with the same site fields changed on every site (``policy="sample"``, ``tail_sampling=...``)."""
        unknown = set(changes) - set(_SITE_KEYS)
        if unknown:
            raise ScenarioError(
                f"with_sites() got unknown EdgeSite fields {sorted(unknown)}. Expected some of {list(_SITE_KEYS)}."
            )
        return self.replace(sites=tuple(dataclasses.replace(s, **changes) for s in self.sites))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EdgeScenario:
        """An edge scenario from its YAML form (``sites`` maps site names to their settings)."""
        d = _keys(data, "", _EDGE_KEYS, required=("name", "sites"))
        if d.pop("kind", "edge") != "edge":
            raise _bad("kind", "'edge'", data.get("kind"))
        for k in ("duration_s", "drain_s", "timeline_interval_s"):
            if k in d:
                d[k] = seconds(d[k], k)
        sites = d.pop("sites")
        if not isinstance(sites, Mapping):
            raise _bad("sites", "a mapping of site names to settings", sites)
        d["sites"] = tuple(_site(str(n), spec, f"sites.{n}") for n, spec in sites.items())
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> EdgeScenario:
        """Read an edge scenario YAML file (see :func:`edge_scenario_path` for the shipped ones)."""
        from otlp_lab.sim._scenario import read_scenario_yaml, scenario_from_file

        p, data = read_scenario_yaml(path)
        return scenario_from_file(p, data, cls.from_dict)


def _site(name: str, spec: Any, key: str) -> EdgeSite:
    d = _keys(spec or {}, key, _SITE_KEYS)
    if "work" in d:
        d["work"] = distribution_from_dict(d["work"], f"{key}.work", seconds)
    if "metrics_interval_s" in d:
        d["metrics_interval_s"] = seconds(d["metrics_interval_s"], f"{key}.metrics_interval_s")
    if "uplink" in d:
        u = _keys(d["uplink"] or {}, f"{key}.uplink", _UPLINK_KEYS)
        for k in ("latency_s", "mean_up_s", "mean_down_s"):
            if isinstance(u.get(k), str):
                u[k] = seconds(u[k], f"{key}.uplink.{k}")
        if "outages" in u:
            outs = u["outages"]
            if not isinstance(outs, list):
                raise _bad(f"{key}.uplink.outages", "a list of [at_s, duration_s] pairs", outs)
            u["outages"] = tuple(
                tuple(seconds(x, f"{key}.uplink.outages[{n}]") for x in o) if isinstance(o, list) else o
                for n, o in enumerate(outs)
            )
        d["uplink"] = Uplink(**u)
    if d.get("tail_sampling") is not None:
        t = _keys(d["tail_sampling"], f"{key}.tail_sampling", _SAMPLING_KEYS)
        if isinstance(t.get("slow_threshold_s"), str):
            t["slow_threshold_s"] = seconds(t["slow_threshold_s"], f"{key}.tail_sampling.slow_threshold_s")
        d["tail_sampling"] = TailSampling(**t)
    return EdgeSite(name=name, **d)


def shipped_edge_scenarios() -> list[str]:
    """Names of the edge scenarios shipped with otlp_lab."""
    root = resources.files("otlp_lab.sim.edge") / "scenarios"
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def edge_scenario_path(name: str) -> Path:
    """The YAML file of a shipped edge scenario (``"retail_sites"``)."""
    p = resources.files("otlp_lab.sim.edge") / "scenarios" / f"{name.removesuffix('.yaml')}.yaml"
    if not p.is_file():
        raise ScenarioError(
            f"no shipped edge scenario is named {name!r}. Shipped: {shipped_edge_scenarios()}."
        )
    return Path(str(p))


def load_edge_scenario(scenario: EdgeScenario | str | os.PathLike[str]) -> EdgeScenario:
    """An :class:`EdgeScenario`, a YAML path or a shipped name -> :class:`EdgeScenario`."""
    if isinstance(scenario, EdgeScenario):
        return scenario
    p = Path(scenario)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return EdgeScenario.from_yaml(p)
    return EdgeScenario.from_yaml(edge_scenario_path(str(scenario)))
