"""Alert rules evaluated over a Lab: thresholds, rates of change, anomaly scores and forecast breaches.

Rules come from YAML (or dicts)::

    rules:
      - name: HighErrorRate            # the alert's name (Alertmanager's alertname)
        kind: threshold                # threshold | rate_of_change | anomaly | forecast
        metric: error_ratio            # a column of otlp_lab.ml.window_features
        op: ">"                        # > >= < <=
        value: 0.05
        for: 20s                       # fires once the condition held this long (Prometheus' "for")
        severity: critical
        services: ["*"]                # fnmatch patterns
      - {name: LatencyJump, kind: rate_of_change, metric: p95_ms, value: 2.0, over: 30s}    # x2 against 30 s before
      - {name: Anomalous, kind: anomaly, metric: p95_ms, value: 4.0, baseline: 60s}         # robust z (median/IQR) vs the first 60 s
      - {name: RateSoon, kind: forecast, metric: rate_per_s, value: 200, horizon: 30s}      # forecast 30 s ahead crosses 200

:func:`evaluate_alerts` returns one row per alert (rule, service, start, end, severity, value,
evidence) and :func:`store_alerts` keeps them in the Lab's ``alerts`` table. Sinks send them on:
a log, a JSON-lines file, or a webhook POST in the Prometheus Alertmanager webhook format (version
4), which existing Alertmanager receivers accept.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import logging
import math
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from otlp_lab._config import parse_duration_s
from otlp_lab.errors import ConfigError, OtlpLabError

__all__ = [
    "AlertRule",
    "JsonLinesSink",
    "LogSink",
    "WebhookSink",
    "alertmanager_payload",
    "evaluate_alerts",
    "load_rules",
    "store_alerts",
]

log = logging.getLogger("otlp_lab.alerts")

KINDS = ("threshold", "rate_of_change", "anomaly", "forecast")
OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
SEVERITIES = ("info", "warning", "critical")
ALERT_SCHEMA = {
    "rule": pl.String,
    "service": pl.String,
    "start": pl.Datetime("us"),
    "end": pl.Datetime("us"),
    "severity": pl.String,
    "value": pl.Float64,
    "evidence": pl.String,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRule:
    """One alert rule; see the module docstring for the YAML form."""

    name: str
    kind: str = "threshold"
    metric: str = "error_ratio"
    op: str = ">"
    value: float = 0.0
    for_s: float = 0.0
    severity: str = "warning"
    services: tuple[str, ...] = ("*",)
    over_s: float = 30.0
    baseline_s: float = 60.0
    horizon_s: float = 30.0
    summary: str = ""

    @classmethod
    def from_dict(cls, d: Any, key: str = "rules[0]") -> AlertRule:
        if not isinstance(d, dict):
            raise ConfigError(f"alert rule '{key}' must be a mapping. Got {d!r} instead.")
        known = {
            "name",
            "kind",
            "metric",
            "op",
            "value",
            "for",
            "severity",
            "services",
            "over",
            "baseline",
            "horizon",
            "summary",
        }
        unknown = set(d) - known
        if unknown:
            raise ConfigError(
                f"alert rule '{key}' has unknown keys {sorted(unknown)}; expected some of {sorted(known)}."
            )
        if not isinstance(d.get("name"), str) or not d.get("name"):
            raise ConfigError(
                f"alert rule '{key}.name' must be a non-empty string. Got {d.get('name')!r} instead."
            )
        kind = d.get("kind", "threshold")
        if kind not in KINDS:
            raise ConfigError(f"alert rule '{key}.kind' must be one of {list(KINDS)}. Got {kind!r} instead.")
        op = d.get("op", ">")
        if op not in OPS:
            raise ConfigError(f"alert rule '{key}.op' must be one of {list(OPS)}. Got {op!r} instead.")
        sev = d.get("severity", "warning")
        if sev not in SEVERITIES:
            raise ConfigError(
                f"alert rule '{key}.severity' must be one of {list(SEVERITIES)}. Got {sev!r} instead."
            )
        value = d.get("value", 0.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"alert rule '{key}.value' must be a finite number. Got {value!r} instead.")
        services = d.get("services", ["*"])
        if isinstance(services, str):
            services = [services]
        if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
            raise ConfigError(
                f"alert rule '{key}.services' must be a list of name patterns. Got {services!r} instead."
            )

        def secs(name: str, default: float) -> float:
            v = d.get(name, default)
            try:
                s = parse_duration_s(v, key=f"{key}.{name}")
            except (OtlpLabError, ValueError, TypeError) as exc:
                raise ConfigError(
                    f"alert rule '{key}.{name}' must be a duration such as 30s. Got {v!r} instead."
                ) from exc
            if not math.isfinite(s) or s < 0:
                raise ConfigError(
                    f"alert rule '{key}.{name}' must be a non-negative duration. Got {v!r} instead."
                )
            return s

        return cls(
            name=d["name"],
            kind=kind,
            metric=str(d.get("metric", "error_ratio")),
            op=op,
            value=float(value),
            for_s=secs("for", 0.0),
            severity=sev,
            services=tuple(services),
            over_s=secs("over", 30.0),
            baseline_s=secs("baseline", 60.0),
            horizon_s=secs("horizon", 30.0),
            summary=str(d.get("summary", "")),
        )


def load_rules(source: Any) -> list[AlertRule]:
    """Rules from a YAML file path, YAML text, a ``{"rules": [...]}`` mapping or a list of mappings."""
    import yaml

    data = source
    if isinstance(source, Path) or (
        isinstance(source, str) and "\n" not in source and source.endswith((".yaml", ".yml"))
    ):
        p = Path(source)
        if not p.is_file():
            raise ConfigError(f"alert rules file {str(p)!r} does not exist.")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"alert rules file {str(p)!r} is not valid YAML: {exc}") from exc
    elif isinstance(source, str):
        try:
            data = yaml.safe_load(source)
        except yaml.YAMLError as exc:
            raise ConfigError(f"alert rules are not valid YAML: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("rules")
    if not isinstance(data, list) or not data:
        raise ConfigError("alert rules must be a non-empty list under 'rules:'.")
    rules = [AlertRule.from_dict(d, f"rules[{i}]") for i, d in enumerate(data)]
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise ConfigError(f"alert rule names must be unique. Got {names!r}.")
    return rules


def _series_condition(rule: AlertRule, g: pl.DataFrame, step_s: float) -> tuple[pl.Series, pl.Series, str]:
    """Per window of one service: whether the rule's condition holds, the value compared, and how."""
    y = g[rule.metric].cast(pl.Float64).fill_nan(None)
    cmp = OPS[rule.op]
    if rule.kind == "threshold":
        return cmp(y, rule.value).fill_null(False), y, f"{rule.metric} {rule.op} {rule.value:g}"
    if rule.kind == "rate_of_change":
        k = max(1, round(rule.over_s / step_s))
        prev = y.shift(k)
        # from 0 to something is an unbounded jump; from 0 to 0 none at all
        ratio = pl.Series(
            [_ratio(a, b) for a, b in zip(y.to_list(), prev.to_list(), strict=True)], dtype=pl.Float64
        )
        return (
            cmp(ratio, rule.value).fill_null(False),
            ratio,
            f"{rule.metric} now / {rule.over_s:g} s before {rule.op} {rule.value:g}",
        )
    if rule.kind == "anomaly":
        t0 = g["window_start"].min()
        base = g.filter(pl.col("window_start") < t0 + dt.timedelta(seconds=rule.baseline_s))[
            rule.metric
        ].cast(pl.Float64)
        med = base.median()
        iqr = (base.quantile(0.75) or 0) - (base.quantile(0.25) or 0)
        # a flat baseline (an error ratio that was 0) has no spread: any clear move is anomalous
        scale = max(iqr / 1.349 if iqr else 0.0, 1e-3 * max(1.0, abs(med or 0.0)))
        z = (y - (med or 0.0)) / (scale or 1.0)
        return (
            cmp(z, rule.value).fill_null(False),
            z,
            f"robust z of {rule.metric} (median {med or 0:.3g}, IQR {iqr:.3g} over the first {rule.baseline_s:g} s) {rule.op} {rule.value:g}",
        )
    # forecast: the value forecast horizon ahead, made at each window
    from otlp_lab.ml._forecast import forecast_series

    h = max(1, round(rule.horizon_s / step_s))
    arr = y.fill_null(0.0).to_numpy()
    try:
        r = forecast_series(arr, horizon=h, lags=6, train=max(12, int(len(arr) * 0.4)))
    except ConfigError:
        return (
            pl.Series([False] * g.height),
            pl.Series([None] * g.height, dtype=pl.Float64),
            "too short to forecast",
        )
    fc = [None] * g.height
    for t, v in zip(r["t"], r["model"], strict=True):
        fc[int(t) - h] = float(v)  # the forecast about t was made at t - h
    fs = pl.Series(fc, dtype=pl.Float64)
    return (
        cmp(fs, rule.value).fill_null(False),
        fs,
        f"{rule.metric} forecast {rule.horizon_s:g} s ahead {rule.op} {rule.value:g}",
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    if b == 0:
        return None if a == 0 else math.inf
    return a / b


def evaluate_alerts(
    source: Any, rules: Any, *, window_s: float = 10.0, frame: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Evaluate rules over a Lab (or a :func:`~otlp_lab.ml.window_features` frame); one row per alert.

    An alert starts at the first window of a run of windows where its condition holds, once the run
    has lasted ``for`` (Prometheus' pending state), and ends at the end of the run (``end`` is null
    while it still fires at the last window). ``evidence`` says what was compared and the worst value.
    """
    from otlp_lab.ml._features import window_features

    rules = (
        rules
        if isinstance(rules, list) and all(isinstance(r, AlertRule) for r in rules)
        else load_rules(rules)
    )
    w = frame if frame is not None else window_features(source, window_s=window_s)
    if w.is_empty():
        return pl.DataFrame(schema=ALERT_SCHEMA)
    ts = w["window_start"].unique().sort()
    step_s = (ts[1] - ts[0]).total_seconds() if len(ts) > 1 else window_s
    last_window = ts.max()
    rows: list[dict[str, Any]] = []
    for rule in rules:
        if rule.metric not in w.columns:
            raise ConfigError(
                f"alert rule {rule.name!r} uses metric {rule.metric!r}, which is not a window feature; "
                f"choose one of {[c for c in w.columns if c not in ('window_start', 'service')]}."
            )
        for (svc,), g in w.sort("window_start").group_by(["service"], maintain_order=True):
            if not any(fnmatch.fnmatchcase(svc, p) for p in rule.services):
                continue
            g = g.upsample("window_start", every=f"{int(round(step_s * 1000))}ms").with_columns(
                pl.col("service").fill_null(svc)
            )
            cond, val, how = _series_condition(rule, g, step_s)
            need = max(1, math.ceil(rule.for_s / step_s) + (1 if rule.for_s else 0))
            starts = g["window_start"]
            run_start = None
            run = 0
            worst = None
            for i, (c, v) in enumerate(zip(cond.to_list(), val.to_list(), strict=True)):
                if c:
                    if run == 0:
                        run_start, worst = i, v
                    run += 1
                    if v is not None and (
                        worst is None or (v > worst if rule.op.startswith(">") else v < worst)
                    ):
                        worst = v
                    continue
                if run >= need:
                    rows.append(_row(rule, svc, starts[run_start], starts[i], worst, how))
                run = 0
            if run >= need:
                end = (
                    None
                    if starts[len(cond) - 1] >= last_window
                    else starts[len(cond) - 1] + dt.timedelta(seconds=step_s)
                )
                rows.append(_row(rule, svc, starts[run_start], end, worst, how))
    if not rows:
        return pl.DataFrame(schema=ALERT_SCHEMA)
    return pl.DataFrame(rows, schema=ALERT_SCHEMA).sort("start", "rule", "service")


def _row(rule: AlertRule, svc: str, start: Any, end: Any, worst: Any, how: str) -> dict[str, Any]:
    return {
        "rule": rule.name,
        "service": svc,
        "start": start,
        "end": end,
        "severity": rule.severity,
        "value": None
        if worst is None or (isinstance(worst, float) and not math.isfinite(worst))
        else float(worst),
        "evidence": f"{how}; worst {worst:.4g}"
        if isinstance(worst, (int, float)) and math.isfinite(worst)
        else how,
    }


ALERTS_DDL = """CREATE TABLE IF NOT EXISTS alerts (
    rule VARCHAR, service VARCHAR, "start" TIMESTAMP, "end" TIMESTAMP, severity VARCHAR, value DOUBLE, evidence VARCHAR
)"""


def store_alerts(lab: Any, alerts: pl.DataFrame) -> int:
    """Append alerts to the Lab's ``alerts`` table (created on first use); returns the rows added."""
    frame = alerts.select(list(ALERT_SCHEMA)).cast(ALERT_SCHEMA)  # type: ignore[arg-type]
    with lab.transaction() as con:  # under the Lab's lock, one transaction
        con.execute(ALERTS_DDL)
        con.register("_otlp_lab_alerts", frame.to_arrow())
        try:
            con.execute("INSERT INTO alerts SELECT * FROM _otlp_lab_alerts")
        finally:
            con.unregister("_otlp_lab_alerts")
    return frame.height


# ---------------------------------------------------------------- sinks


def _rfc3339(t: Any) -> str:
    if t is None:
        return "0001-01-01T00:00:00Z"  # Alertmanager's zero time: no end yet
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def alertmanager_payload(
    alerts: pl.DataFrame, *, receiver: str = "otlp-lab", external_url: str = ""
) -> dict[str, Any]:
    """The alerts as the body Alertmanager POSTs to a webhook receiver (``version: "4"``)."""
    items = []
    for a in alerts.iter_rows(named=True):
        labels = {"alertname": a["rule"], "service": a["service"], "severity": a["severity"]}
        fp = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
        items.append(
            {
                "status": "firing" if a["end"] is None else "resolved",
                "labels": labels,
                "annotations": {
                    "summary": f"{a['rule']} on {a['service']}",
                    "description": a["evidence"] or "",
                },
                "startsAt": _rfc3339(a["start"]),
                "endsAt": _rfc3339(a["end"]),
                "generatorURL": external_url,
                "fingerprint": fp,
            }
        )
    firing = any(i["status"] == "firing" for i in items)
    common = {}
    if items:
        common = {k: v for k, v in items[0]["labels"].items() if all(i["labels"].get(k) == v for i in items)}
    return {
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": "firing" if firing else "resolved",
        "receiver": receiver,
        "groupLabels": {},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": external_url,
        "alerts": items,
    }


@dataclass
class LogSink:
    """Each alert as one log line on the ``otlp_lab.alerts`` logger."""

    logger: logging.Logger = field(default=log)

    def send(self, alerts: pl.DataFrame) -> int:
        for a in alerts.iter_rows(named=True):
            level = logging.ERROR if a["severity"] == "critical" else logging.WARNING
            self.logger.log(
                level,
                "alert %s on %s from %s to %s: %s",
                a["rule"],
                a["service"],
                a["start"],
                a["end"] or "now",
                a["evidence"],
            )
        return alerts.height


@dataclass
class JsonLinesSink:
    """Each alert as one JSON object per line, appended to ``path``."""

    path: Path

    def send(self, alerts: pl.DataFrame) -> int:
        p = Path(self.path)
        p.parent.mkdir(parents=True, exist_ok=True)
        with p.open("a") as f:
            for a in alerts.iter_rows(named=True):
                f.write(
                    json.dumps({k: (_rfc3339(v) if isinstance(v, dt.datetime) else v) for k, v in a.items()})
                    + "\n"
                )
        return alerts.height


@dataclass
class WebhookSink:
    """POST the alerts to ``url`` in the Alertmanager webhook format (one request per call)."""

    url: str
    timeout_s: float = 5.0
    headers: dict[str, str] = field(default_factory=dict)

    def send(self, alerts: pl.DataFrame) -> int:
        import httpx

        if alerts.is_empty():
            return 0
        try:
            r = httpx.post(
                self.url, json=alertmanager_payload(alerts), timeout=self.timeout_s, headers=self.headers
            )
        except httpx.HTTPError as exc:
            raise OtlpLabError(
                f"the alert webhook {self.url} could not be reached: {exc}. Is the receiver running?"
            ) from exc
        if r.status_code >= 300:
            raise OtlpLabError(f"the alert webhook {self.url} answered {r.status_code}: {r.text[:200]}")
        return alerts.height
