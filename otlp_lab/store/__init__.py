"""The Lab: owns the DuckDB connection, the schema and the analysis views; returns Polars."""

from otlp_lab.store._critical import critical_path
from otlp_lab.store._lab import FileResult, Lab, LoadResult

__all__ = ["FileResult", "Lab", "LoadResult", "critical_path"]
