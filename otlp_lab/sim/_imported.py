"""Put imported configs (Istio, Envoy, resilience4j, gRPC) on a scenario: ``--policy SERVICE=FILE[#NAME]``."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from otlp_lab.errors import ScenarioError
from otlp_lab.sim._faults import Errors
from otlp_lab.sim._model import Call, Endpoint, OneOf, Parallel, Policy, Service, split_target
from otlp_lab.sim._scenario import Scenario, load_scenario

__all__ = ["with_imported"]


def with_imported(
    scenario: Scenario | str | os.PathLike[str],
    policies: Mapping[str, Any],
    *,
    strict: bool = True,
) -> tuple[Scenario, dict[str, Any], list[str]]:
    """A copy of ``scenario`` where calls to each target go through an imported policy.

    Parameters
    ----------
    scenario : Scenario or str or path
    policies : mapping
        Target -> ``ImportedPolicies``, :class:`Policy` or ``"FILE[#NAME]"``. A target is a
        service of the scenario (every call to it, and every workload sending to it, uses the
        policy: the callers' sidecars) or the name of one of the scenario's policies (replaced).
    strict : bool, default True
        Import files strictly (unmodelled keys raise).

    Returns
    -------
    (Scenario, dict, list of str)
        The new scenario, the imported policies by target (for descriptions), and notes on what
        was added: an Istio fault ``abort`` becomes an :class:`Errors` fault on the service
        (before the work, as Istio aborts before forwarding); a ``delay`` is reported, not
        simulated.
    """
    from otlp_lab.resilience import ImportedPolicies, import_yaml

    sc = load_scenario(scenario)
    imported: dict[str, Any] = {}
    notes: list[str] = []
    policy_map = dict(sc.policies)
    services = {s.name: s for s in sc.services}
    faults = list(sc.faults)
    rename: dict[str, str] = {}
    for target, given in policies.items():
        if isinstance(given, (str, os.PathLike)):
            path, _, name = str(given).partition("#")
            given = import_yaml(path, name=name or None, strict=strict)
        imported[target] = given
        pol = Policy.from_imported(given) if isinstance(given, ImportedPolicies) else given
        if not isinstance(pol, Policy):
            raise ScenarioError(
                f"--policy {target}= must give a config file, an ImportedPolicies or a Policy. Got {given!r} instead.",
                key=f"policies.{target}",
            )
        if target in policy_map and target not in services:
            policy_map[target] = pol
        elif target in services:
            name = f"imported:{target}"
            policy_map[name] = pol
            rename[target] = name
        else:
            raise ScenarioError(
                f"--policy target {target!r} is neither a service nor a policy of scenario {sc.name!r};"
                f" services: {sorted(services)}, policies: {sorted(sc.policies)}",
                key=f"policies.{target}",
            )
        fault = getattr(given, "fault", None)
        if fault is not None and target in services:
            if fault.abort_percent:
                status = fault.abort_status
                faults.append(
                    Errors(
                        service=target,
                        error_rate=fault.abort_percent / 100.0,
                        status=status,
                        before_work=True,
                    )
                )
                notes.append(
                    f"{target}: Istio fault abort {fault.abort_percent:g}% with {status} (an Errors fault)"
                )
            if fault.delay_percent:
                notes.append(
                    f"{target}: Istio fault delay {fault.delay_s:g}s on {fault.delay_percent:g}% is not simulated"
                    " (the sidecar delays the request without holding the server)"
                )
    if rename:

        def call(c: Call) -> Call:
            svc, _ = split_target(c.to)
            return dataclasses.replace(c, policy=rename[svc]) if svc in rename else c

        def endpoint(e: Endpoint) -> Endpoint:
            steps = tuple(
                dataclasses.replace(s, calls=tuple(call(c) for c in s.calls))
                if isinstance(s, (Parallel, OneOf))
                else call(s)
                for s in e.calls
            )
            return dataclasses.replace(e, calls=steps)

        new_services: tuple[Service, ...] = tuple(
            dataclasses.replace(s, endpoints=tuple(endpoint(e) for e in s.endpoints)) for s in sc.services
        )
        workloads = tuple(
            dataclasses.replace(w, policy=rename[split_target(w.target)[0]])
            if split_target(w.target)[0] in rename
            else w
            for w in sc.workloads
        )
        sc = sc.replace(services=new_services, workloads=workloads, policies=policy_map, faults=tuple(faults))
    else:
        sc = sc.replace(policies=policy_map, faults=tuple(faults))
    return sc, imported, notes
