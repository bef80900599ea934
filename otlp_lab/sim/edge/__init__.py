"""Edge sites with intermittent uplinks: store-and-forward telemetry buffers, edge sampling, staleness and loss.

An :class:`EdgeScenario` (YAML or Python) lists edge sites: small nodes serving requests
(workers, CPU share), a telemetry buffer with an overflow policy (drop oldest, drop newest,
degrade to sampling), edge processing (tail sampling, metric pre-aggregation) and an uplink
to a cloud collector that fails and recovers (an on/off Markov process, a schedule, or
failures only while sending). :func:`run_edge` simulates it with SimPy and, given a Lab,
writes the telemetry that reaches the collector (its staleness is the ``edge.upload`` span's
duration), per-site metrics, the outages as ground truth and a summary (``edge_runs``).

>>> from otlp_lab.sim.edge import compare_edge
>>> compare_edge("retail_sites", {p: {"policy": p} for p in ("drop_oldest", "drop_newest", "sample")})  # doctest: +SKIP
"""

from otlp_lab.sim.edge._config import (
    BUFFER_POLICIES,
    BufferPolicy,
    EdgeScenario,
    EdgeSite,
    TailSampling,
    Uplink,
    edge_scenario_path,
    shipped_edge_scenarios,
)
from otlp_lab.sim.edge._run import EdgeResult, compare_edge, run_edge, sweep_outages, unreliable_mm1_wq

__all__ = [
    "EdgeScenario",
    "EdgeSite",
    "Uplink",
    "TailSampling",
    "BufferPolicy",
    "BUFFER_POLICIES",
    "run_edge",
    "compare_edge",
    "sweep_outages",
    "EdgeResult",
    "unreliable_mm1_wq",
    "edge_scenario_path",
    "shipped_edge_scenarios",
]
