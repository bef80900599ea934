"""The datasets bundled with the otlp_lab source checkout.

The TrainTicket capture (``datasets/trainticket``: spans recorded from the TrainTicket
microservice benchmark while faults were injected, from the Nezha study) sits beside the
package in a source checkout, not inside the installed wheel.

>>> from otlp_lab import Lab
>>> from otlp_lab.datasets import trainticket_path, trainticket_faults
>>> lab = Lab()
>>> lab.load(trainticket_path())  # doctest: +SKIP
>>> trainticket_faults().head(2)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl

from otlp_lab.errors import ConfigError, DecodeError

__all__ = ["TRAINTICKET_ENV", "trainticket_path", "trainticket_faults"]

#: Environment variable that points at a TrainTicket folder elsewhere (a copy outside the checkout).
TRAINTICKET_ENV = "OTLP_LAB_TRAINTICKET"


def trainticket_path() -> Path:
    """The folder of the bundled TrainTicket capture.

    ``datasets/trainticket`` of the source checkout, unless the environment variable
    ``OTLP_LAB_TRAINTICKET`` names another folder. It holds ``faulty/*.otlp.jsonl.gz``
    (one file per minute around each fault), ``normal/`` (a fault-free minute),
    ``faults.json`` (the injected faults), README and LICENSE.

    Returns
    -------
    Path
        The folder; pass it to :meth:`otlp_lab.Lab.load`.

    Raises
    ------
    ConfigError
        The folder does not exist (an installed wheel has no ``datasets/``).

    Examples
    --------
    >>> from otlp_lab import Lab
    >>> lab = Lab()
    >>> lab.load(trainticket_path())  # doctest: +SKIP
    LoadResult(52 files loaded, ...: spans=183,765)
    """
    override = os.environ.get(TRAINTICKET_ENV)
    if override:
        path = Path(override).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(
                f"{TRAINTICKET_ENV} must name the folder of the TrainTicket capture. Got {override!r}, which is not a folder."
            )
        return path
    path = Path(__file__).resolve().parents[1] / "datasets" / "trainticket"
    if not path.is_dir():
        raise ConfigError(
            f"the TrainTicket dataset is not at {path}. It ships with the otlp_lab source checkout "
            f"(datasets/trainticket), not with an installed package: clone the repository and install it "
            f"with `pip install -e .`, or set {TRAINTICKET_ENV} to the folder of a copy."
        )
    return path


def trainticket_faults(path: str | os.PathLike[str] | None = None) -> pl.DataFrame:
    """The faults injected while the TrainTicket capture was recorded, oldest first.

    Parameters
    ----------
    path : str or Path, optional
        ``faults.json``, or a folder holding it. The bundled capture by default.

    Returns
    -------
    polars.DataFrame
        One row per fault: ``time`` (injection time, Datetime UTC), ``service`` (the
        service of the faulty pod), ``pod`` and ``kind`` (``network_delay`` or
        ``cpu_contention``).

    Raises
    ------
    ConfigError
        No ``faults.json`` where expected.
    DecodeError
        ``faults.json`` is not the list of faults the Nezha dataset ships.

    Examples
    --------
    >>> trainticket_faults().head(2)  # doctest: +SKIP
    shape: (2, 4)
    ┌─────────────────────────┬─────────────────────┬─────────────────────────────────────┬────────────────┐
    │ time                    ┆ service             ┆ pod                                 ┆ kind           │
    ╞═════════════════════════╪═════════════════════╪═════════════════════════════════════╪════════════════╡
    │ 2023-01-30 11:51:46 UTC ┆ ts-contacts-service ┆ ts-contacts-service-866bd68c97-dzqgd ┆ network_delay  │
    │ 2023-01-30 11:59:21 UTC ┆ ts-basic-service    ┆ ts-basic-service-5dc8d4f9fd-llznp    ┆ cpu_contention │
    └─────────────────────────┴─────────────────────┴─────────────────────────────────────┴────────────────┘
    """
    p = Path(path) if path is not None else trainticket_path()
    if p.is_dir():
        p = p / "faults.json"
    if not p.is_file():
        raise ConfigError(
            f"faults file {str(p)!r} does not exist. Pass the faults.json of the TrainTicket capture."
        )
    try:
        records = json.loads(p.read_text(encoding="utf-8"))
        rows = [
            {
                "time": int(r["inject_timestamp"]),
                "service": str(r["inject_service"]),
                "pod": str(r["inject_pod"]),
                "kind": str(r["inject_type"]),
            }
            for r in records
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise DecodeError(
            "expected a JSON list of objects with inject_timestamp, inject_service, inject_pod and inject_type; "
            f"{type(exc).__name__}: {exc}",
            source=str(p),
        ) from exc
    schema = {"time": pl.Int64, "service": pl.String, "pod": pl.String, "kind": pl.String}
    return (
        pl.DataFrame(rows, schema=schema)
        .with_columns(pl.from_epoch("time", time_unit="s").dt.replace_time_zone("UTC"))
        .sort("time")
    )
