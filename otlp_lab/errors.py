"""The one error tree of otlp_lab.

Every error the library raises on purpose is an :class:`OtlpLabError`. Where a branch
means "the value you gave is wrong" it also subclasses :class:`ValueError`, so code
that already catches ``ValueError`` keeps working::

    OtlpLabError
    ├── DecodeError (ValueError)        input is not valid OTLP: names the file and where
    │   └── UnsupportedFormatError      neither OTLP/JSON nor OTLP protobuf, or the wrong signal
    ├── EncodeError (ValueError)        a frame cannot be written as OTLP
    ├── StoreError                      the DuckDB database refused an operation
    │   └── SchemaError (ValueError)    a frame or table does not have the columns asked for
    └── ConfigError (ValueError)        a setting or argument has a bad value
"""

from __future__ import annotations

__all__ = [
    "OtlpLabError",
    "DecodeError",
    "UnsupportedFormatError",
    "EncodeError",
    "StoreError",
    "SchemaError",
    "ConfigError",
]


class OtlpLabError(Exception):
    """Root of every error otlp_lab raises on purpose."""


class DecodeError(OtlpLabError, ValueError):
    """Input that is not valid OTLP.

    Attributes
    ----------
    source : str or None
        The file (or ``"<bytes>"``) that failed.
    where : str or None
        Where in it: ``"line 12"``, ``"byte 4096"``, or a field path such as
        ``"resourceSpans[0].scopeSpans[0].spans[3].traceId"``.
    """

    def __init__(self, message: str, *, source: str | None = None, where: str | None = None) -> None:
        self.reason = message
        self.source = source
        self.where = where
        parts = [p for p in (source, where) if p]
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)

    def located(self, *, source: str | None = None, where: str | None = None) -> DecodeError:
        """Return a copy of this error with the file and position filled in where unknown."""
        w = self.where
        if where and w:
            w = f"{where}, {w}"
        elif where:
            w = where
        return type(self)(self.reason, source=self.source or source, where=w)


class UnsupportedFormatError(DecodeError):
    """Content that is neither OTLP/JSON nor OTLP protobuf, or not the signal asked for."""


class EncodeError(OtlpLabError, ValueError):
    """A frame that cannot be written as OTLP."""


class StoreError(OtlpLabError):
    """The DuckDB database refused an operation (translated from ``duckdb.Error``)."""


class SchemaError(StoreError, ValueError):
    """A table or frame does not have the columns an operation needs."""


class ConfigError(OtlpLabError, ValueError):
    """A setting or argument with a bad value."""
