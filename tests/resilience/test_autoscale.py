"""The HorizontalPodAutoscaler state machine against the Kubernetes controller's rules, and real manifests."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from otlp_lab.errors import ConfigError, ImportConfigError
from otlp_lab.resilience import (
    DEFAULT_SCALE_DOWN,
    DEFAULT_SCALE_UP,
    AutoscalerConfig,
    HorizontalPodAutoscaler,
    HpaScalingRules,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "hpa"


def hpa(**kw) -> HorizontalPodAutoscaler:
    base = dict(min_replicas=1, max_replicas=100, metrics=[{"kind": "cpu", "target": 0.5}])
    base.update(kw)
    return HorizontalPodAutoscaler(AutoscalerConfig(**base))


def test_desired_is_ceil_of_current_times_ratio_outside_the_tolerance() -> None:
    h = hpa()
    assert h.recommend(15, current=2, ready={"cpu": [0.9, 1.0]}).desired == math.ceil(2 * 0.95 / 0.5)
    # |1 - ratio| <= 10 %: no change, either way
    assert hpa().recommend(15, current=4, ready={"cpu": [0.54] * 4}).desired == 4
    assert hpa().recommend(15, current=4, ready={"cpu": [0.46] * 4}).desired == 4
    assert hpa().recommend(15, current=4, ready={"cpu": [0.56] * 4}).desired == math.ceil(4 * 0.56 / 0.5)
    # requests per pod: 4 pods at 150/s against 100/s each -> 6
    r = hpa(metrics=[{"kind": "requests", "target": 100, "name": "rps"}])
    assert r.recommend(15, current=4, ready={"rps": [150] * 4}).desired == 6
    # several metrics: the largest proposal wins
    both = hpa(metrics=[{"kind": "cpu", "target": 0.5}, {"kind": "requests", "target": 100, "name": "rps"}])
    assert both.recommend(15, current=2, ready={"cpu": [0.5, 0.5], "rps": [300, 300]}).desired == 6


def test_pods_not_ready_count_as_idle_when_scaling_up() -> None:
    # 2 ready pods at 100 % (target 50 %) and 2 starting: (2 * 1.0) / (4 * 0.5) = 1.0 -> keep 4
    assert hpa().recommend(15, current=4, ready={"cpu": [1.0, 1.0]}, unready=2).desired == 4
    # at 150 % they still ask for more: ceil(3.0 / 2.0 * 4) = 6
    assert hpa().recommend(15, current=4, ready={"cpu": [1.5, 1.5]}, unready=2).desired == 6
    # scaling down ignores them
    assert hpa().recommend(15, current=4, ready={"cpu": [0.1, 0.1]}, unready=2).desired < 4


def test_scale_down_waits_for_the_300_s_stabilisation_window() -> None:
    h = hpa(max_replicas=10)
    assert h.recommend(0, current=2, ready={"cpu": [1.0, 1.0]}).desired == 4
    t, current = 0.0, 4
    while True:
        t += 15
        d = h.recommend(t, current=current, ready={"cpu": [0.05] * current})
        if d.desired != current:
            break
        assert d.reason == "ReadyForNewScale"
    # the recommendation of t=0 (4) leaves the window only once it is 300 s old
    assert t == 300 and d.desired == 1 and d.reason == "ScaleDown"
    assert DEFAULT_SCALE_DOWN.stabilization_window_s == 300 and DEFAULT_SCALE_UP.stabilization_window_s == 0


def test_scale_up_rate_limits_per_period() -> None:
    h = hpa()
    # default scale-up: max(+4 pods, +100 %) per 15 s, counted from the replicas at the period's start
    d = h.recommend(15, current=2, ready={"cpu": [10.0, 10.0]})
    assert (d.desired, d.reason) == (6, "ScaleUpLimit")
    d = h.recommend(20, current=6, ready={"cpu": [10.0] * 6})
    assert d.desired == 6  # 5 s later the period still counts the +4: max(2 + 4, 2 * 2)
    d = h.recommend(30, current=6, ready={"cpu": [10.0] * 6})
    assert d.desired == 12  # a new period: max(6 + 4, 6 * 2)
    # selectPolicy Min picks the smaller change; Disabled never scales that way
    slow = hpa(
        scale_up=HpaScalingRules(
            select_policy="Min",
            policies=[
                {"type": "Pods", "value": 1, "period_s": 60},
                {"type": "Percent", "value": 50, "period_s": 60},
            ],
        )
    )
    assert slow.recommend(15, current=4, ready={"cpu": [5.0] * 4}).desired == 5
    off = hpa(
        scale_down={
            "select_policy": "Disabled",
            "policies": [{"type": "Percent", "value": 100, "period_s": 15}],
        }
    )
    assert off.recommend(15, current=4, ready={"cpu": [0.01] * 4}).desired == 4
    # min and max replicas bound everything
    assert (
        hpa(max_replicas=3).recommend(15, current=2, ready={"cpu": [10.0, 10.0]}).reason == "TooManyReplicas"
    )
    low = hpa(min_replicas=3, scale_down={"stabilization_window_s": 0})
    assert low.recommend(15, current=5, ready={"cpu": [0.01] * 5}).desired == 3


def test_real_manifests() -> None:
    php = AutoscalerConfig.from_manifest(DATA / "php-apache.yaml", pod_startup_s=20)
    assert (php.min_replicas, php.max_replicas, php.pod_startup_s) == (1, 10, 20)
    assert [(m.kind, m.target) for m in php.metrics] == [("cpu", 0.5)]
    assert php.scale_up == DEFAULT_SCALE_UP and php.scale_down == DEFAULT_SCALE_DOWN
    multi = DATA / "php-apache-multi-metric.yaml"
    with pytest.raises(
        ImportConfigError, match=r"spec\.metrics\[2\]\.type 'Object' cannot be modelled"
    ) as err:
        AutoscalerConfig.from_manifest(multi)
    assert err.value.path == "spec.metrics[2].type"
    lenient = AutoscalerConfig.from_manifest(multi, strict=False)
    assert [(m.kind, m.name, m.target) for m in lenient.metrics] == [
        ("cpu", "cpu", 0.5),
        ("requests", "packets-per-second", 1000.0),
    ]
    assert len(lenient.notes) == 1 and "Object" in lenient.notes[0]
    behaviour = """
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web}
spec:
  maxReplicas: 8
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 60
      policies: [{type: Pods, value: 1, periodSeconds: 30}]
"""
    web = AutoscalerConfig.from_manifest(behaviour)
    assert web.scale_down.stabilization_window_s == 60 and web.scale_down.policies[0].value == 1
    assert web.scale_up == DEFAULT_SCALE_UP and web.metrics[0].target == 0.8
    v1 = "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nspec: {maxReplicas: 4, targetCPUUtilizationPercentage: 70}\n"
    assert AutoscalerConfig.from_manifest(v1).metrics[0].target == 0.7
    with pytest.raises(ImportConfigError, match="holds no HorizontalPodAutoscaler"):
        AutoscalerConfig.from_manifest("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n")
    with pytest.raises(ImportConfigError, match="no such HorizontalPodAutoscaler file"):
        AutoscalerConfig.from_manifest(DATA / "missing.yaml")
    with pytest.raises(ConfigError, match=r"max_replicas must be at least min_replicas \(5\)"):
        AutoscalerConfig(min_replicas=5, max_replicas=2)
