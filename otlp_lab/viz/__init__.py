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

from otlp_lab.viz._edge import (
    buffer_timeline_figure,
    edge_bytes_figure,
    edge_policy_figure,
    ledger_commits_figure,
    ledger_sweep_figure,
)
from otlp_lab.viz._forecast import capacity_figure, forecast_figure
from otlp_lab.viz._ml import anomaly_scores_figure, evidence_figure, ranking_figure
from otlp_lab.viz._report import calls_into, summary_frame, write_report, write_sim_report
from otlp_lab.viz._sim import (
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

__all__ = [
    "forecast_figure",
    "capacity_figure",
    # traces (otlp_lab.store frames)
    "TEMPLATE",
    "fault_latency_figure",
    "latency_by_operation_figure",
    "red_figure",
    "service_colors",
    "service_graph_figure",
    "slow_traces_table_figure",
    "trace_waterfall_figure",
    # reports
    "calls_into",
    "summary_frame",
    "write_report",
    "write_sim_report",
    # fleet simulations (otlp_lab.sim): timelines and comparisons of policies
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
    # digital twins (otlp_lab.sim.fit)
    "twin_rehearsal_figure",
    "twin_validation_figure",
    # edge and ledger simulations (otlp_lab.sim.edge, otlp_lab.sim.ledger)
    "buffer_timeline_figure",
    "edge_bytes_figure",
    "edge_policy_figure",
    "ledger_commits_figure",
    "ledger_sweep_figure",
    # anomaly detection and root-cause ranking (otlp_lab.ml)
    "anomaly_scores_figure",
    "evidence_figure",
    "ranking_figure",
]
