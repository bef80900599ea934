"""Plotly figures of OpenTelemetry traces: Polars frames from the Lab in, figures out.

>>> from otlp_lab import Lab
>>> from otlp_lab.viz import service_graph_figure, trace_waterfall_figure
>>> lab = Lab(); lab.load("datasets/trainticket")        # doctest: +SKIP
>>> service_graph_figure(lab.service_graph())            # doctest: +SKIP
>>> tid = lab.traces(limit=1)["trace_id"][0]             # doctest: +SKIP
>>> trace_waterfall_figure(lab.span_tree(tid), lab.critical_path(tid))  # doctest: +SKIP

The figure builders never touch the database. :func:`write_report` and :func:`calls_into`
take the Lab itself.
"""

from otlp_lab.viz._traces import (
    TEMPLATE,
    fault_latency_figure,
    latency_by_operation_figure,
    red_figure,
    service_colors,
    service_graph_figure,
    slow_traces_table_figure,
    trace_waterfall_figure,
)
from otlp_lab.viz._twin import twin_rehearsal_figure, twin_validation_figure
from otlp_lab.viz.report import calls_into, summary_frame, write_report

__all__ = [
    "twin_validation_figure",
    "twin_rehearsal_figure",
    "TEMPLATE",
    "calls_into",
    "fault_latency_figure",
    "latency_by_operation_figure",
    "red_figure",
    "service_colors",
    "service_graph_figure",
    "slow_traces_table_figure",
    "summary_frame",
    "trace_waterfall_figure",
    "write_report",
]

# fleet simulations (otlp_lab.sim): timelines and comparisons of policies
from otlp_lab.viz._sim import (  # noqa: E402
    breaker_timelines,
    instance_load,
    instance_load_figure,
    latency_quantiles_figure,
    metastability_figure,
    policy_bars_figure,
    policy_colors,
    policy_timeline_figure,
    recovery_table,
    runs_table,
    scenario_windows,
    strategy_bars_figure,
)

__all__ += [
    "breaker_timelines",
    "instance_load",
    "instance_load_figure",
    "latency_quantiles_figure",
    "metastability_figure",
    "policy_bars_figure",
    "policy_colors",
    "policy_timeline_figure",
    "recovery_table",
    "runs_table",
    "scenario_windows",
    "strategy_bars_figure",
]

# edge and ledger simulations (otlp_lab.sim.edge, otlp_lab.sim.ledger)
from otlp_lab.viz._edge import (  # noqa: E402
    buffer_timeline_figure,
    edge_bytes_figure,
    edge_policy_figure,
    ledger_commits_figure,
    ledger_sweep_figure,
)

__all__ += [
    "buffer_timeline_figure",
    "edge_bytes_figure",
    "edge_policy_figure",
    "ledger_commits_figure",
    "ledger_sweep_figure",
]

# anomaly detection and root-cause ranking (otlp_lab.ml)
from otlp_lab.viz._ml import anomaly_scores_figure, evidence_figure, ranking_figure  # noqa: E402

__all__ += ["anomaly_scores_figure", "evidence_figure", "ranking_figure"]
