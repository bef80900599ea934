"""Fleet simulation: services, workloads, faults and resilience policies, emitting OTLP into a Lab.

A scenario (YAML, or built in Python) describes the fleet: services with instances, worker
concurrency, queues and service-time distributions; endpoints with call graphs (sequential
and parallel fan-out) and a client-side policy stack per call (timeouts and deadlines,
retries, budgets, circuit breakers, bulkheads, load balancing, outlier ejection: the
:mod:`otlp_lab.resilience` state machines); open- and closed-loop workloads; and faults on a
timeline. :func:`run` simulates it with SimPy and, given a Lab, streams spans (one per
attempt), metrics and logs into it, with the ground truth in the ``faults`` and ``sim_runs``
tables.

>>> from otlp_lab import Lab
>>> from otlp_lab.sim import run, compare
>>> lab = Lab()
>>> result = run("shop", lab=lab, seed=1, duration_s=30)                     # doctest: +SKIP
>>> result.per_service.select("service", "arrivals", "p99_ms")                 # doctest: +SKIP
>>> compare("retry_storm", {"as is": {}, "no retries": {"*": {"retry": None}}})  # doctest: +SKIP

:func:`stream` runs a scenario live instead: paced on the wall clock (``speed`` times faster),
with timestamps from now, exporting over OTLP to a collector or :class:`otlp_lab.transport.Receiver`.

>>> from otlp_lab.sim import stream
>>> stream("shop", "http://127.0.0.1:4318", protocol="http/protobuf", duration_s=30, speed=5)  # doctest: +SKIP

:func:`sweep` runs a scenario over a grid of settings × policy variants × seeds in a process
pool or on a Dask cluster (the same numbers either way) and summarises each point with a 95 %
confidence interval over the seeds; :func:`metastability` maps whether the fleet recovers
after a load spike over spike size × spike duration × base load. A service with an
``autoscaler`` (a Kubernetes HPA, from its settings or a real manifest) gains and loses pods
as the HPA decides.

>>> from otlp_lab.sim import sweep, metastability
>>> sweep("retry_storm", {"workloads[0].rate.base_rps": [100, 140]}, seeds=5).summary     # doctest: +SKIP
>>> metastability("retry_storm", loads_rps=[60, 100, 140], sizes=[1.5, 2.5], durations_s=[2]).points  # doctest: +SKIP
"""

from otlp_lab.sim._dist import Constant, Distribution, Empirical, Exponential, Gamma, LogNormal
from otlp_lab.sim._faults import Brownout, CpuContention, Crash, Errors, Fault, Latency, Partition, ZoneOutage
from otlp_lab.sim._fit import (
    FitReport,
    Rehearsal,
    Validation,
    fit,
    invocations,
    rehearse,
    validate,
    windows_before,
)
from otlp_lab.sim._imported import with_imported
from otlp_lab.sim._live import StreamResult, stream
from otlp_lab.sim._metastable import MetastabilityMap, metastability
from otlp_lab.sim._model import Call, Endpoint, OneOf, Parallel, Policy, Service
from otlp_lab.sim._run import RunResult, compare, lab_timeline, run, run_many, timelines
from otlp_lab.sim._scenario import Scenario, SimBudget, scenario_path, shipped_scenarios
from otlp_lab.sim._sweep import SweepResult, parse_grid, set_path, sweep
from otlp_lab.sim._workload import Burst, ClosedLoop, Diurnal, OpenLoop, Rate, Steady, Steps

__all__ = [
    # scenario
    "Scenario",
    "SimBudget",
    "scenario_path",
    "shipped_scenarios",
    # fleet
    "Service",
    "Endpoint",
    "Call",
    "Parallel",
    "OneOf",
    "Policy",
    # distributions
    "Distribution",
    "Constant",
    "Exponential",
    "LogNormal",
    "Gamma",
    "Empirical",
    # workloads
    "OpenLoop",
    "ClosedLoop",
    "Rate",
    "Steady",
    "Steps",
    "Burst",
    "Diurnal",
    # faults
    "Fault",
    "Crash",
    "Latency",
    "Errors",
    "ZoneOutage",
    "Partition",
    "Brownout",
    "CpuContention",
    # running
    "run",
    "with_imported",
    "run_many",
    "compare",
    "timelines",
    "lab_timeline",
    "RunResult",
    # fleet twin
    "fit",
    "validate",
    "rehearse",
    "invocations",
    "windows_before",
    "FitReport",
    "Validation",
    "Rehearsal",
    # sweeps
    "sweep",
    "SweepResult",
    "set_path",
    "parse_grid",
    "metastability",
    "MetastabilityMap",
    # live
    "stream",
    "StreamResult",
]
