"""otlp_lab: OpenTelemetry data in an embedded DuckDB, as Polars frames, for notebooks.

>>> from otlp_lab import Lab
>>> lab = Lab()                       # in memory; Lab("capture.duckdb") for a file
>>> lab.load("datasets/trainticket")  # doctest: +SKIP
"""

from otlp_lab.errors import (
    BodyTooLargeError,
    ConfigError,
    DecodeError,
    EncodeError,
    ExportError,
    OtlpLabError,
    ResilienceError,
    ScenarioError,
    SchemaError,
    StoreError,
    TransportError,
    UnsupportedFormatError,
)
from otlp_lab.store import FileResult, Lab, LoadResult

__version__ = "0.1.0"

__all__ = [
    # the workbench
    "Lab",
    "LoadResult",
    "FileResult",
    # the error tree (otlp_lab.errors)
    "OtlpLabError",
    "DecodeError",
    "UnsupportedFormatError",
    "BodyTooLargeError",
    "EncodeError",
    "StoreError",
    "SchemaError",
    "ConfigError",
    "ScenarioError",
    "TransportError",
    "ExportError",
    "ResilienceError",
    "__version__",
]
