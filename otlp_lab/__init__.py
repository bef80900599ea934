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
    OtlpLabError,
    SchemaError,
    StoreError,
    UnsupportedFormatError,
)
from otlp_lab.store import Lab, LoadResult

__version__ = "0.1.0"

__all__ = [
    "BodyTooLargeError",
    "ConfigError",
    "DecodeError",
    "EncodeError",
    "Lab",
    "LoadResult",
    "OtlpLabError",
    "SchemaError",
    "StoreError",
    "UnsupportedFormatError",
    "__version__",
]
