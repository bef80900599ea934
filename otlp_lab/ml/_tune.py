"""Policy tuning by simulation: search retry / timeout / breaker / budget settings under a fault.

Every candidate runs on the same seeds (common random numbers: the same arrivals, service times
and faults), so the differences between candidates are the policies' own. Candidates are drawn by
scikit-learn's :class:`~sklearn.model_selection.ParameterSampler` (random search; the defaults and
each grid point the user lists are included), run in parallel processes through
:func:`otlp_lab.sim.run_many`, and scored by a stated objective::

    objective = p99 latency (s) + error_weight x error rate + amplification_weight x (attempts per request - 1)

The best candidate's gain over the default comes with a 95 % confidence interval over the seeds
(a paired t interval), and its settings as Istio, Envoy and resilience4j snippets to paste back.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import polars as pl

from otlp_lab.errors import ConfigError

__all__ = ["TuneResult", "policy_snippets", "tune"]


def _candidates(space: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    from scipy import stats
    from sklearn.model_selection import ParameterSampler

    dists: dict[str, Any] = {}
    for k, v in space.items():
        if isinstance(v, tuple) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
            lo, hi = float(v[0]), float(v[1])
            if not lo < hi:
                raise ConfigError(
                    f"tuning space key {k!r}: a range must be (low, high) with low < high. Got {v!r}."
                )
            if isinstance(v[0], int) and isinstance(v[1], int):
                dists[k] = list(range(int(lo), int(hi) + 1))
            else:
                dists[k] = stats.uniform(lo, hi - lo)
        elif isinstance(v, list) and v:
            dists[k] = v
        else:
            raise ConfigError(
                f"tuning space key {k!r} must be a non-empty list of values or a (low, high) range. Got {v!r} instead."
            )
    out = []
    for p in ParameterSampler(dists, n_iter=n, random_state=seed):
        out.append({k: (round(float(v), 4) if isinstance(v, float) else v) for k, v in p.items()})
    return out


def _apply(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """``{"retry.max_attempts": 3}`` set into a copy of the policy fields ``base``."""
    fields = copy.deepcopy(base)
    for path, v in params.items():
        head, _, rest = path.partition(".")
        if not rest:
            fields[head] = v
            continue
        sub = fields.get(head)
        sub = dict(sub) if isinstance(sub, dict) else {}
        sub[rest] = v
        fields[head] = sub
    return fields


def objective(
    summary: dict[str, Any], *, error_weight: float = 10.0, amplification_weight: float = 1.0
) -> float:
    p99 = summary.get("p99_ms")
    p99_s = (p99 or 0.0) / 1e3 if p99 is not None else 60.0
    return (
        p99_s
        + error_weight * summary["error_rate"]
        + amplification_weight * max(0.0, summary["amplification"] - 1)
    )


@dataclass
class TuneResult:
    """Every candidate's scores, the best one, its gain over the default and paste-back snippets."""

    candidates: pl.DataFrame
    runs: pl.DataFrame
    best: dict[str, Any]
    best_fields: dict[str, Any]
    gain: float
    gain_ci: tuple[float, float]
    snippets: dict[str, str]

    def __repr__(self) -> str:
        lo, hi = self.gain_ci
        return (
            f"TuneResult(best {self.best}, objective {self.gain:+.3f} better than the default "
            f"(95 % CI {lo:+.3f} to {hi:+.3f}) over {self.runs['seed'].n_unique()} seeds, "
            f"{self.candidates.height} candidates)"
        )


def tune(
    scenario: Any,
    space: dict[str, Any],
    *,
    base: dict[str, Any] | None = None,
    policy: str = "*",
    seeds: tuple[int, ...] = (1, 2, 3),
    n_candidates: int = 12,
    duration_s: float | None = None,
    workers: int = 2,
    progress: bool = False,
    error_weight: float = 10.0,
    amplification_weight: float = 1.0,
    search_seed: int = 0,
) -> TuneResult:
    """Search policy settings by simulation and return the best with its gain over ``base``.

    Parameters
    ----------
    scenario : Scenario, str or path
        The fleet, with the fault to tune against in its ``faults``.
    space : dict
        Policy fields to search, as dotted paths: ``{"retry.max_attempts": [1, 2, 3, 4],
        "retry.per_try_timeout_s": (0.05, 0.5), "timeout_s": [0.5, 1.0, 2.0],
        "budget.budget_percent": [10, 20, 50]}``. A list is a set of choices, a ``(low, high)``
        pair a range (integers: every integer in it).
    base : dict, optional
        The policy fields every candidate starts from (and the default candidate), e.g. the
        scenario's retry policy written out; ``{}`` keeps the scenario's policies.
    policy : str
        The scenario policy the candidates replace (``"*"``: all of them).
    seeds : tuple of int
        Every candidate runs on each (common random numbers).
    """
    from otlp_lab.sim._model import Policy
    from otlp_lab.sim._run import run_many
    from otlp_lab.sim._scenario import load_scenario

    if not space:
        raise ConfigError("the tuning space is empty: name at least one policy field to search.")
    if len(seeds) < 2:
        raise ConfigError("tune needs at least two seeds for a confidence interval. Got {seeds!r}.")
    base = dict(base or {})
    scenario = load_scenario(scenario)
    if policy == "*" and not scenario.policies:
        # a fleet with no policy stack at all: give every call one, which the candidates then change
        scenario = scenario.replace(policies={"tuned": Policy()}, default_policy="tuned")
    cands = _candidates(space, n_candidates, search_seed)
    labels = {"default": base}
    for i, c in enumerate(cands):
        labels[f"c{i + 1}"] = _apply(base, c)
    params = {"default": {}, **{f"c{i + 1}": c for i, c in enumerate(cands)}}
    rows = []
    for seed in seeds:
        res = run_many(
            scenario,
            {k: ({policy: v} if v else {}) for k, v in labels.items()},
            seed=seed,
            duration_s=duration_s,
            workers=workers,
            progress=progress,
        )
        for label, r in res.items():
            s = r.summary()
            rows.append(
                {
                    "candidate": label,
                    "seed": seed,
                    "objective": objective(
                        s, error_weight=error_weight, amplification_weight=amplification_weight
                    ),
                    "p99_ms": s["p99_ms"],
                    "error_rate": s["error_rate"],
                    "amplification": s["amplification"],
                    "goodput_rps": s["goodput_rps"],
                }
            )
    runs = pl.DataFrame(rows)
    table = (
        runs.group_by("candidate", maintain_order=True)
        .agg(
            objective=pl.col("objective").mean(),
            objective_sd=pl.col("objective").std(),
            p99_ms=pl.col("p99_ms").mean(),
            error_rate=pl.col("error_rate").mean(),
            amplification=pl.col("amplification").mean(),
        )
        .with_columns(
            params=pl.col("candidate").map_elements(lambda c: str(params[c]), return_dtype=pl.String)
        )
        .sort("objective")
    )
    best_label = table["candidate"][0]
    d = runs.filter(pl.col("candidate") == "default").sort("seed")["objective"].to_numpy()
    b = runs.filter(pl.col("candidate") == best_label).sort("seed")["objective"].to_numpy()
    diff = d - b
    gain = float(diff.mean())
    ci = _t_interval(diff)
    best_fields = labels[best_label]
    return TuneResult(
        candidates=table,
        runs=runs,
        best=params[best_label],
        best_fields=best_fields,
        gain=gain,
        gain_ci=ci,
        snippets=policy_snippets(best_fields),
    )


def _t_interval(diff: Any) -> tuple[float, float]:
    from scipy import stats

    n = len(diff)
    if n < 2:
        return (float("nan"), float("nan"))
    m = float(diff.mean())
    se = float(diff.std(ddof=1)) / math.sqrt(n)
    if se == 0:
        return (m, m)
    h = float(stats.t.ppf(0.975, n - 1)) * se
    return (m - h, m + h)


def _dur(s: float | None) -> str | None:
    if s is None:
        return None
    ms = round(s * 1000)
    return f"{ms / 1000:g}s" if ms % 1000 == 0 else f"{ms}ms"


def policy_snippets(fields: dict[str, Any], *, host: str = "backend") -> dict[str, str]:
    """A policy's settings as Istio, Envoy and resilience4j configuration to paste back.

    ``fields`` are Policy fields as the simulator takes them: ``timeout_s``, ``retry``
    (``max_attempts``, ``per_try_timeout_s``, ``initial_backoff_s``), ``budget``
    (``budget_percent``, ``min_retry_concurrency``), ``breaker`` (resilience4j names).
    """
    import yaml

    retry = fields.get("retry") or {}
    attempts = int(retry.get("max_attempts", 1)) if retry else 1
    per_try = retry.get("per_try_timeout_s")
    timeout = fields.get("timeout_s")
    budget = fields.get("budget") or {}
    breaker = fields.get("breaker") or {}

    route: dict[str, Any] = {"route": [{"destination": {"host": host}}]}
    if timeout:
        route["timeout"] = _dur(timeout)
    if attempts > 1:
        route["retries"] = {
            "attempts": attempts - 1,
            "retryOn": "5xx,reset,connect-failure,retriable-status-codes",
        }
        if per_try:
            route["retries"]["perTryTimeout"] = _dur(per_try)
    else:
        route["retries"] = {"attempts": 0}
    istio = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": host},
        "spec": {"hosts": [host], "http": [route]},
    }

    retry_policy: dict[str, Any] = {
        "retry_on": "5xx,reset,connect-failure",
        "num_retries": max(0, attempts - 1),
    }
    if per_try:
        retry_policy["per_try_timeout"] = _dur(per_try)
    envoy_route: dict[str, Any] = {"cluster": host, "retry_policy": retry_policy}
    if timeout:
        envoy_route["timeout"] = _dur(timeout)
    envoy: dict[str, Any] = {
        "static_resources": {
            "listeners": [
                {
                    "name": "egress",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 10000}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "egress",
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": host,
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {"match": {"prefix": "/"}, "route": envoy_route}
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                                },
                                            }
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [{"name": host, "connect_timeout": "1s", "type": "STRICT_DNS"}],
        }
    }
    if budget:
        envoy["static_resources"]["clusters"][0]["circuit_breakers"] = {
            "thresholds": [
                {
                    "retry_budget": {
                        "budget_percent": {"value": float(budget.get("budget_percent", 20))},
                        "min_retry_concurrency": int(budget.get("min_retry_concurrency", 3)),
                    }
                }
            ]
        }

    r4j: dict[str, Any] = {"resilience4j": {}}
    if attempts > 1:
        r4j["resilience4j"]["retry"] = {
            "instances": {
                host: {"maxAttempts": attempts, "waitDuration": _dur(retry.get("initial_backoff_s", 0.1))}
            }
        }
    if timeout:
        r4j["resilience4j"]["timelimiter"] = {"instances": {host: {"timeoutDuration": _dur(timeout)}}}
    if breaker:
        names = {
            "failure_rate_threshold": "failureRateThreshold",
            "sliding_window_size": "slidingWindowSize",
            "minimum_number_of_calls": "minimumNumberOfCalls",
            "permitted_number_of_calls_in_half_open_state": "permittedNumberOfCallsInHalfOpenState",
        }
        cb = {names[k]: v for k, v in breaker.items() if k in names}
        if "wait_duration_in_open_state_s" in breaker:
            cb["waitDurationInOpenState"] = _dur(breaker["wait_duration_in_open_state_s"])
        r4j["resilience4j"]["circuitbreaker"] = {"instances": {host: cb}}

    def dump(d: Any) -> str:
        return yaml.safe_dump(d, sort_keys=False)

    return {"istio": dump(istio), "envoy": dump(envoy), "resilience4j": dump(r4j)}
