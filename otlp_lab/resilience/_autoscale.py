"""The Kubernetes HorizontalPodAutoscaler (``autoscaling/v2``) as a pure state machine.

Semantics follow the HPA controller (``pkg/controller/podautoscaler``: ``replica_calculator.go``
and ``horizontal.go``) and the documentation
(https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/):

* every ``sync_period_s`` (15 s, ``--horizontal-pod-autoscaler-sync-period``) the driver calls
  :meth:`HorizontalPodAutoscaler.recommend` with the current replica count and, per metric, one
  value per *ready* pod;
* per metric: ``ratio = mean(values) / target``; within the tolerance (``|1 - ratio| <= 0.1``)
  nothing changes; otherwise ``desired = ceil(ratio * ready_pods)``. When scaling up, pods not
  yet ready count as using 0 (``replica_calculator.go``); a ratio that flips direction once they
  are counted, or lands within the tolerance, keeps the current count. Several metrics: the
  largest proposal wins;
* stabilisation (``behavior.scale{Up,Down}.stabilizationWindowSeconds``; defaults 0 and 300 s):
  the recommendation is held between the lowest recommendation of the scale-up window and the
  highest of the scale-down window;
* rate limits (``behavior.*.policies``: ``Pods`` or ``Percent`` per ``periodSeconds``, combined
  by ``selectPolicy`` ``Max``/``Min``/``Disabled``; default up: max(4 pods, 100 %) per 15 s,
  down: 100 % per 15 s), counted from the replica count at the start of each period, then
  ``minReplicas``/``maxReplicas``.

The machine reads no clock: ``now`` comes from the caller (SimPy's ``env.now`` in the
simulator), which also owns the pods (their start-up delay, readiness and removal).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from otlp_lab.errors import ConfigError, ImportConfigError
from otlp_lab.resilience._core import ConfigBase, check, check_int

__all__ = [
    "HpaMetric",
    "HpaScalingPolicy",
    "HpaScalingRules",
    "AutoscalerConfig",
    "HorizontalPodAutoscaler",
    "ScaleDecision",
    "DEFAULT_SCALE_UP",
    "DEFAULT_SCALE_DOWN",
]

MetricKind = Literal["cpu", "requests"]


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


SelectPolicy = Literal["Max", "Min", "Disabled"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HpaMetric(ConfigBase):
    """One metric the HPA scales on.

    Parameters
    ----------
    kind : "cpu" or "requests"
        ``"cpu"``: a ``Resource`` metric ``cpu`` with ``target.type: Utilization``; ``target`` is
        the average utilisation of the pods' CPU request as a fraction (0.6 for
        ``averageUtilization: 60``); a simulated pod's CPU is the share of its workers busy.
        ``"requests"``: a ``Pods`` metric with ``target.type: AverageValue`` read as requests per
        second per pod; ``target`` is that rate.
    target : float
        See ``kind``.
    name : str
        The metric's name in the manifest (``cpu``, ``http_requests_per_second``...).
    """

    kind: MetricKind = "cpu"
    target: float = 0.8
    name: str = "cpu"

    def __post_init__(self) -> None:
        check(self.kind in ("cpu", "requests"), "HpaMetric", "kind", "'cpu' or 'requests'", self.kind)
        check(
            isinstance(self.target, (int, float))
            and not isinstance(self.target, bool)
            and math.isfinite(self.target)
            and self.target > 0,
            "HpaMetric",
            "target",
            "a positive number (a utilisation such as 0.6, or requests per second per pod)",
            self.target,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HpaScalingPolicy(ConfigBase):
    """``behavior.scale{Up,Down}.policies[]``: at most ``value`` pods (or percent) per ``period_s``."""

    type: Literal["Pods", "Percent"] = "Pods"
    value: int = 4
    period_s: float = 15.0

    def __post_init__(self) -> None:
        check(self.type in ("Pods", "Percent"), "HpaScalingPolicy", "type", "'Pods' or 'Percent'", self.type)
        check_int("HpaScalingPolicy", "value", self.value)
        check(
            isinstance(self.period_s, (int, float)) and 0 < self.period_s <= 1800,
            "HpaScalingPolicy",
            "period_s",
            "in (0, 1800] seconds (periodSeconds)",
            self.period_s,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HpaScalingRules(ConfigBase):
    """``behavior.scaleUp`` or ``behavior.scaleDown``."""

    stabilization_window_s: float = 0.0
    select_policy: SelectPolicy = "Max"
    policies: tuple[HpaScalingPolicy, ...] = ()

    def __post_init__(self) -> None:
        pols = tuple(HpaScalingPolicy.from_dict(p) if isinstance(p, Mapping) else p for p in self.policies)
        object.__setattr__(self, "policies", pols)
        for p in pols:
            check(isinstance(p, HpaScalingPolicy), "HpaScalingRules", "policies", "HpaScalingPolicy items", p)
        check(
            self.select_policy in ("Max", "Min", "Disabled"),
            "HpaScalingRules",
            "select_policy",
            "'Max', 'Min' or 'Disabled'",
            self.select_policy,
        )
        check(
            isinstance(self.stabilization_window_s, (int, float))
            and 0 <= self.stabilization_window_s <= 3600,
            "HpaScalingRules",
            "stabilization_window_s",
            "in [0, 3600] seconds",
            self.stabilization_window_s,
        )

    @property
    def longest_period_s(self) -> float:
        return max((p.period_s for p in self.policies), default=0.0)


# Kubernetes defaults (pkg/apis/autoscaling/v2/defaults.go; the scale-down window is the controller's
# --horizontal-pod-autoscaler-downscale-stabilization, 5 minutes)
DEFAULT_SCALE_UP = HpaScalingRules(
    stabilization_window_s=0.0,
    select_policy="Max",
    policies=(
        HpaScalingPolicy(type="Pods", value=4, period_s=15),
        HpaScalingPolicy(type="Percent", value=100, period_s=15),
    ),
)
DEFAULT_SCALE_DOWN = HpaScalingRules(
    stabilization_window_s=300.0,
    select_policy="Max",
    policies=(HpaScalingPolicy(type="Percent", value=100, period_s=15),),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class AutoscalerConfig(ConfigBase):
    """An ``autoscaling/v2`` HorizontalPodAutoscaler, plus how long a new pod takes to become ready.

    Parameters
    ----------
    min_replicas, max_replicas : int
        ``spec.minReplicas`` (default 1) and ``spec.maxReplicas``.
    metrics : sequence of HpaMetric
        ``spec.metrics`` (default: CPU at 80 %, the HPA's default).
    scale_up, scale_down : HpaScalingRules
        ``spec.behavior`` (Kubernetes' defaults when omitted).
    tolerance : float, default 0.1
        ``--horizontal-pod-autoscaler-tolerance``.
    sync_period_s : float, default 15
        ``--horizontal-pod-autoscaler-sync-period``.
    pod_startup_s : float, default 30
        From the HPA's decision to the new pod passing its readiness probe (scheduling, image
        pull, start, warm-up): not part of the HPA object; the pod joins the load balancers then.
    notes : tuple of str
        What :meth:`from_manifest` with ``strict=False`` left out, and why.

    Examples
    --------
    >>> AutoscalerConfig(min_replicas=2, max_replicas=10, metrics=[{"kind": "cpu", "target": 0.6}]).scale_down.stabilization_window_s
    300.0
    """

    min_replicas: int = 1
    max_replicas: int = 10
    metrics: tuple[HpaMetric, ...] = (HpaMetric(),)
    scale_up: HpaScalingRules = DEFAULT_SCALE_UP
    scale_down: HpaScalingRules = DEFAULT_SCALE_DOWN
    tolerance: float = 0.1
    sync_period_s: float = 15.0
    pod_startup_s: float = 30.0
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        ms = tuple(HpaMetric.from_dict(m) if isinstance(m, Mapping) else m for m in self.metrics)
        object.__setattr__(self, "metrics", ms)
        for name in ("scale_up", "scale_down"):
            v = getattr(self, name)
            if isinstance(v, Mapping):
                object.__setattr__(self, name, HpaScalingRules.from_dict(v))
        check_int("AutoscalerConfig", "min_replicas", self.min_replicas)
        check_int("AutoscalerConfig", "max_replicas", self.max_replicas)
        check(
            self.max_replicas >= self.min_replicas,
            "AutoscalerConfig",
            "max_replicas",
            f"at least min_replicas ({self.min_replicas})",
            self.max_replicas,
        )
        check(
            bool(ms) and all(isinstance(m, HpaMetric) for m in ms),
            "AutoscalerConfig",
            "metrics",
            "a non-empty list of HpaMetric",
            ms,
        )
        for name in ("scale_up", "scale_down"):
            check(
                isinstance(getattr(self, name), HpaScalingRules),
                "AutoscalerConfig",
                name,
                "HpaScalingRules",
                getattr(self, name),
            )
        check(
            isinstance(self.tolerance, (int, float)) and 0 <= self.tolerance < 1,
            "AutoscalerConfig",
            "tolerance",
            "in [0, 1)",
            self.tolerance,
        )
        v = self.sync_period_s
        check(_finite(v) and v > 0, "AutoscalerConfig", "sync_period_s", "a positive number of seconds", v)
        v = self.pod_startup_s
        check(
            _finite(v) and v >= 0, "AutoscalerConfig", "pod_startup_s", "a non-negative number of seconds", v
        )

    # ---------------------------------------------------------------- the manifest
    @classmethod
    def from_manifest(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any],
        *,
        pod_startup_s: float = 30.0,
        name: str | None = None,
        strict: bool = True,
    ) -> AutoscalerConfig:
        """Read a real HorizontalPodAutoscaler (a YAML file, YAML text or a parsed mapping).

        ``autoscaling/v2`` (and ``v2beta2``, the same schema, removed in Kubernetes 1.26);
        ``autoscaling/v1`` (``targetCPUUtilizationPercentage``). ``Resource`` metrics on ``cpu``
        with ``Utilization`` targets and ``Pods`` metrics with ``AverageValue`` targets (read as
        requests per second per pod) are modelled. Anything else (memory, ``Object``,
        ``External``, ``ContainerResource``) raises with ``strict=True``, naming the metric; with
        ``strict=False`` it is left out and said so in :attr:`notes`. In a multi-document file,
        ``name`` picks the HPA (``metadata.name``).

        Raises
        ------
        ImportConfigError
            Not an HPA, or a field that cannot be modelled (named with its path).
        """
        doc = _load_hpa(source, name)
        where = f"HorizontalPodAutoscaler {(doc.get('metadata') or {}).get('name', '?')!r}"
        spec = doc.get("spec")
        if not isinstance(spec, Mapping):
            raise _err(f"{where}: spec must be a mapping. Got {spec!r} instead.")
        if "maxReplicas" not in spec:
            raise _err(f"{where}: spec.maxReplicas is required.")
        notes: list[str] = []
        metrics = []
        if doc.get("apiVersion") == "autoscaling/v1":
            pct = spec.get("targetCPUUtilizationPercentage", 80)
            where_pct = f"{where}: spec.targetCPUUtilizationPercentage"
            metrics.append(HpaMetric(kind="cpu", target=_quantity(pct, where_pct) / 100))
        for n, m in enumerate(spec.get("metrics") or []):
            try:
                metrics.append(_metric(m, f"{where}: spec.metrics[{n}]"))
            except ImportConfigError as exc:
                if strict:
                    raise
                notes.append(f"left out: {exc}")
        if spec.get("metrics") and not metrics:
            raise _err(f"{where}: none of spec.metrics can be modelled ({'; '.join(notes)}).")
        behavior = spec.get("behavior") or {}
        kw: dict[str, Any] = {}
        for key, ours, default in (
            ("scaleUp", "scale_up", DEFAULT_SCALE_UP),
            ("scaleDown", "scale_down", DEFAULT_SCALE_DOWN),
        ):
            if key in behavior and behavior[key] is not None:
                kw[ours] = _rules(behavior[key], default, f"{where}: spec.behavior.{key}")
        try:
            return cls(
                min_replicas=spec.get("minReplicas", 1),
                max_replicas=spec["maxReplicas"],
                metrics=tuple(metrics) or (HpaMetric(),),
                pod_startup_s=pod_startup_s,
                notes=tuple(notes),
                **kw,
            )
        except ConfigError as exc:
            raise _err(f"{where}: {exc}") from None


def _err(message: str, path: str = "") -> ImportConfigError:
    """An import error naming the HPA field (``spec.metrics[1].resource.name``) when the message has one."""
    m = re.search(r"(spec\.[\w.\[\]]+)", message)
    return ImportConfigError(
        message, source="HorizontalPodAutoscaler", path=path or (m.group(1) if m else "")
    )


def _load_hpa(source: str | os.PathLike[str] | Mapping[str, Any], name: str | None) -> Mapping[str, Any]:
    import yaml

    if isinstance(source, Mapping):
        docs: list[Any] = [source]
        label = "the mapping"
    else:
        text = str(source)
        p = Path(text) if isinstance(source, os.PathLike) or "\n" not in text else None
        if p is not None and not p.exists():
            raise _err(f"no such HorizontalPodAutoscaler file: {p}")
        label = str(p) if p is not None else "the YAML text"
        try:
            docs = [
                d
                for d in yaml.safe_load_all(p.read_text(encoding="utf-8") if p is not None else text)
                if d is not None
            ]
        except yaml.YAMLError as exc:
            raise _err(f"{label} is not valid YAML: {exc}") from None
    hpas = [d for d in docs if isinstance(d, Mapping) and d.get("kind") == "HorizontalPodAutoscaler"]
    if not hpas:
        kinds = [d.get("kind") if isinstance(d, Mapping) else type(d).__name__ for d in docs]
        raise _err(f"{label} holds no HorizontalPodAutoscaler (kinds: {kinds}).")
    if name is not None:
        hpas = [d for d in hpas if (d.get("metadata") or {}).get("name") == name]
        if not hpas:
            raise _err(f"{label} holds no HorizontalPodAutoscaler named {name!r}.")
    elif len(hpas) > 1:
        names = [(d.get("metadata") or {}).get("name") for d in hpas]
        raise _err(f"{label} holds {len(hpas)} HorizontalPodAutoscalers {names}: pick one with name=.")
    hpa = hpas[0]
    api = hpa.get("apiVersion")
    if api not in ("autoscaling/v2", "autoscaling/v2beta2", "autoscaling/v1"):
        raise _err(f"{label}: apiVersion must be autoscaling/v2 (or v2beta2, v1). Got {api!r} instead.")
    return hpa


_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(m|k|M|G|Ki|Mi|Gi)?\s*$")
_SUFFIX = {None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3}


def _quantity(v: Any, where: str) -> float:
    """A Kubernetes quantity (``100``, ``500m``, ``1k``) as a float."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    m = _QUANTITY.match(v) if isinstance(v, str) else None
    if m is None:
        raise _err(f"{where} must be a Kubernetes quantity such as '100', '500m' or '1k'. Got {v!r} instead.")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def _metric(m: Any, where: str) -> HpaMetric:
    if not isinstance(m, Mapping):
        raise _err(f"{where} must be a mapping. Got {m!r} instead.")
    kind = m.get("type")
    if kind == "Resource":
        res = m.get("resource") or {}
        target = res.get("target") or {}
        if res.get("name") != "cpu":
            raise _err(
                f"{where}.resource.name {res.get('name')!r} cannot be modelled: the simulator scales on cpu "
                "(Utilization) or on a Pods request-rate metric."
            )
        if target.get("type") != "Utilization" or "averageUtilization" not in target:
            raise _err(
                f"{where}.resource.target must be type Utilization with averageUtilization. Got {dict(target)!r} instead."
            )
        return HpaMetric(
            kind="cpu",
            target=_quantity(target["averageUtilization"], f"{where}.resource.target.averageUtilization")
            / 100.0,
            name="cpu",
        )
    if kind == "Pods":
        pods = m.get("pods") or {}
        target = pods.get("target") or {}
        if target.get("type") != "AverageValue" or "averageValue" not in target:
            raise _err(
                f"{where}.pods.target must be type AverageValue with averageValue. Got {dict(target)!r} instead."
            )
        mname = (pods.get("metric") or {}).get("name", "requests_per_second")
        return HpaMetric(
            kind="requests",
            target=_quantity(target["averageValue"], f"{where}.pods.target.averageValue"),
            name=str(mname),
        )
    raise _err(
        f"{where}.type {kind!r} cannot be modelled: the simulator knows Resource (cpu Utilization) and Pods (AverageValue, "
        "read as requests per second per pod)."
    )


def _rules(d: Any, default: HpaScalingRules, where: str) -> HpaScalingRules:
    if not isinstance(d, Mapping):
        raise _err(f"{where} must be a mapping. Got {d!r} instead.")
    unknown = sorted(set(d) - {"stabilizationWindowSeconds", "selectPolicy", "policies", "tolerance"})
    if unknown:
        raise _err(f"{where}.{unknown[0]} is not an HPAScalingRules field.")
    pols = default.policies
    if d.get("policies") is not None:
        pols = tuple(
            HpaScalingPolicy(type=p.get("type"), value=p.get("value"), period_s=p.get("periodSeconds"))
            for p in d["policies"]
        )
    try:
        return HpaScalingRules(
            stabilization_window_s=float(d.get("stabilizationWindowSeconds", default.stabilization_window_s)),
            select_policy=d.get("selectPolicy", default.select_policy),
            policies=pols,
        )
    except (ConfigError, AttributeError, TypeError) as exc:
        raise _err(f"{where}: {exc}") from None


# ---------------------------------------------------------------- the state machine


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    """What one sync decided: ``desired`` replicas (equal to ``current`` when nothing changes) and why."""

    at_s: float
    current: int
    proposed: int
    desired: int
    reason: str
    values: Mapping[str, float | None] = field(default_factory=dict)


class HorizontalPodAutoscaler:
    """The HPA controller's decision for one target, one sync at a time.

    Examples
    --------
    >>> hpa = HorizontalPodAutoscaler(AutoscalerConfig(min_replicas=1, max_replicas=10, metrics=[{"kind": "cpu", "target": 0.5}]))
    >>> hpa.recommend(15.0, current=2, ready={"cpu": [0.9, 1.0]}).desired   # ceil(2 * 0.95 / 0.5)
    4
    >>> hpa.recommend(30.0, current=4, ready={"cpu": [0.2] * 4}).desired    # the 300 s window holds it
    4
    """

    def __init__(self, config: AutoscalerConfig) -> None:
        if not isinstance(config, AutoscalerConfig):
            raise ConfigError(f"HorizontalPodAutoscaler needs an AutoscalerConfig. Got {config!r} instead.")
        self.config = config
        self._recommendations: list[tuple[float, int]] = []
        self._up_events: list[tuple[float, int]] = []
        self._down_events: list[tuple[float, int]] = []
        self.decisions: list[ScaleDecision] = []

    # -- replica calculator ---------------------------------------------------------------
    def _proposal(self, metric: HpaMetric, values: Sequence[float], current: int, unready: int) -> int:
        tol = self.config.tolerance
        n = len(values)
        if n == 0:
            return current
        ratio = (sum(values) / n) / metric.target
        if unready and ratio > 1.0:
            # scaling up: pods not ready yet are assumed to use nothing of the metric
            new_ratio = (sum(values) / (n + unready)) / metric.target
            if abs(1.0 - new_ratio) <= tol or new_ratio < 1.0:
                return current
            desired = math.ceil(new_ratio * (n + unready))
            return current if desired < current else desired
        if abs(1.0 - ratio) <= tol:
            return current
        return math.ceil(ratio * n)

    # -- one sync ------------------------------------------------------------------------------
    def recommend(
        self, now: float, *, current: int, ready: Mapping[str, Sequence[float]], unready: int = 0
    ) -> ScaleDecision:
        """Decide the replica count at ``now``.

        Parameters
        ----------
        now : float
            Seconds on the caller's clock.
        current : int
            Replicas the target has now (``spec.replicas``: ready and starting pods).
        ready : mapping of metric name to values
            One value per ready pod, per metric of the config (by ``name``): CPU utilisation as a
            fraction, or requests per second.
        unready : int
            Pods that exist but are not ready yet.
        """
        cfg = self.config
        values: dict[str, float | None] = {}
        proposed = 0
        for m in cfg.metrics:
            vs = list(ready.get(m.name, ()))
            values[m.name] = sum(vs) / len(vs) if vs else None
            proposed = max(proposed, self._proposal(m, vs, current, unready))
        if proposed == 0:
            proposed = current
        if current == 0:  # scaled to zero by hand: the HPA stands aside (as Kubernetes does)
            d = ScaleDecision(now, current, proposed, current, "ScalingDisabled", values)
            self.decisions.append(d)
            return d
        stabilized = self._stabilize(now, current, proposed)
        desired, reason = self._limit(now, current, stabilized)
        if desired != current:
            (self._up_events if desired > current else self._down_events).append(
                (now, abs(desired - current))
            )
        d = ScaleDecision(now, current, proposed, desired, reason, values)
        self.decisions.append(d)
        return d

    def _stabilize(self, now: float, current: int, proposed: int) -> int:
        up_w = self.config.scale_up.stabilization_window_s
        down_w = self.config.scale_down.stabilization_window_s
        up, down = proposed, proposed
        keep = []
        for t, rec in self._recommendations:
            if t > now - up_w:
                up = min(up, rec)
            if t > now - down_w:
                down = max(down, rec)
            if t > now - max(up_w, down_w):
                keep.append((t, rec))
        keep.append((now, proposed))
        self._recommendations = keep
        rec = current
        if rec < up:
            rec = up
        if rec > down:
            rec = down
        return rec

    @staticmethod
    def _changed(events: list[tuple[float, int]], now: float, period_s: float) -> int:
        return sum(n for t, n in events if t > now - period_s)

    def _limit(self, now: float, current: int, desired: int) -> tuple[int, str]:
        cfg = self.config
        if desired > current:
            rules = cfg.scale_up
            if rules.select_policy == "Disabled":
                limit = current
            else:
                props = []
                for p in rules.policies:
                    start = current - self._changed(self._up_events, now, p.period_s)
                    props.append(
                        start + p.value if p.type == "Pods" else math.ceil(start * (1 + p.value / 100))
                    )
                limit = (max if rules.select_policy == "Max" else min)(props) if props else cfg.max_replicas
            limit = max(limit, current)
            top = min(cfg.max_replicas, limit)
            if desired > top:
                return top, "ScaleUpLimit" if top == limit and limit < cfg.max_replicas else "TooManyReplicas"
            return desired, "ScaleUp"
        if desired < current:
            rules = cfg.scale_down
            if rules.select_policy == "Disabled":
                limit = current
            else:
                props = []
                for p in rules.policies:
                    start = current + self._changed(self._down_events, now, p.period_s)
                    props.append(start - p.value if p.type == "Pods" else int(start * (1 - p.value / 100)))
                limit = (min if rules.select_policy == "Max" else max)(props) if props else cfg.min_replicas
            limit = min(limit, current)
            bottom = max(cfg.min_replicas, limit)
            if desired < bottom:
                return (
                    bottom,
                    "ScaleDownLimit" if bottom == limit and limit > cfg.min_replicas else "TooFewReplicas",
                )
            return desired, "ScaleDown"
        if current > cfg.max_replicas:
            return cfg.max_replicas, "TooManyReplicas"
        if current < cfg.min_replicas:
            return cfg.min_replicas, "TooFewReplicas"
        return current, "ReadyForNewScale"
