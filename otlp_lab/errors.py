"""The one error tree of otlp_lab.

Every error the library raises on purpose is an :class:`OtlpLabError`. Where a branch
means "the value you gave is wrong" it also subclasses :class:`ValueError`, so code
that already catches ``ValueError`` keeps working::

    OtlpLabError
    ├── DecodeError (ValueError)        input is not valid OTLP: names the file and where
    │   ├── UnsupportedFormatError      neither OTLP/JSON nor OTLP protobuf, or the wrong signal
    │   └── BodyTooLargeError           decompressed size over the limit (a compression bomb)
    ├── EncodeError (ValueError)        a frame cannot be written as OTLP
    ├── StoreError                      the DuckDB database refused an operation
    │   └── SchemaError (ValueError)    a frame or table does not have the columns asked for
    ├── ConfigError (ValueError)        a setting or argument has a bad value
    │   ├── ImportConfigError           an Istio/Envoy/resilience4j/gRPC config key we cannot import
    │   │   ├── ConfigFileNotFoundError  the config file does not exist (also a FileNotFoundError)
    │   │   ├── ConfigSyntaxError        neither JSON nor YAML
    │   │   └── ConfigKindError          no kind of config otlp_lab imports
    │   └── TraceQLError                a TraceQL query we cannot parse or do not support: names the part
    ├── ScenarioError (ValueError)      a simulation scenario is invalid: names the key path and the bad value
    ├── TransportError                  OTLP over the network failed (otlp_lab.transport); carries a ``hint``
    │   └── ExportError                 a peer refused or failed an export; ``retryable``, ``status``, ``hint``
    └── ResilienceError                 a resilience policy stopped a call (otlp_lab.resilience)
        ├── RejectedError               refused locally, never sent: bulkhead full, rate limited, shed
        │   └── CircuitOpenError        refused because the circuit breaker is open (or half-open and full)
        ├── RetryExhaustedError         retries stopped; carries the last outcome, attempts and reason
        ├── DeadlineExceededError (TimeoutError)  the call's deadline passed
        └── NoHealthyUpstreamError      a load balancer has no endpoint to pick (Envoy's "no healthy upstream")
"""

from __future__ import annotations

__all__ = [
    "OtlpLabError",
    "DecodeError",
    "UnsupportedFormatError",
    "BodyTooLargeError",
    "EncodeError",
    "StoreError",
    "SchemaError",
    "ConfigError",
    "ResilienceError",
    "RejectedError",
    "CircuitOpenError",
    "RetryExhaustedError",
    "DeadlineExceededError",
    "ImportConfigError",
    "ConfigFileNotFoundError",
    "ConfigSyntaxError",
    "ConfigKindError",
    "TraceQLError",
    "NoHealthyUpstreamError",
    "TransportError",
    "ExportError",
    "ScenarioError",
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


class BodyTooLargeError(DecodeError):
    """A body whose decompressed size is over the limit it was read with."""


class EncodeError(OtlpLabError, ValueError):
    """A frame that cannot be written as OTLP."""


class StoreError(OtlpLabError):
    """The DuckDB database refused an operation (translated from ``duckdb.Error``)."""


class SchemaError(StoreError, ValueError):
    """A table or frame does not have the columns an operation needs."""


class ConfigError(OtlpLabError, ValueError):
    """A setting or argument with a bad value."""


class ResilienceError(OtlpLabError):
    """A resilience policy (retry, breaker, limit, deadline) stopped a call."""


class RejectedError(ResilienceError):
    """A call refused locally and never sent: bulkhead full, rate limited, load shed.

    Attributes
    ----------
    policy : str
        Which policy refused: ``"bulkhead"``, ``"rate_limiter"``, ``"load_shedder"``,
        ``"circuit_breaker"``.
    """

    def __init__(self, message: str, *, policy: str) -> None:
        self.policy = policy
        super().__init__(message)


class CircuitOpenError(RejectedError):
    """A call refused because the circuit breaker is OPEN (or HALF_OPEN with no permits left).

    Attributes
    ----------
    state : str
        The breaker state name when the call was refused.
    retry_in_s : float or None
        Seconds until the breaker may let a call through again, when known.
    """

    def __init__(self, message: str, *, state: str, retry_in_s: float | None = None) -> None:
        self.state = state
        self.retry_in_s = retry_in_s
        super().__init__(message, policy="circuit_breaker")


class RetryExhaustedError(ResilienceError):
    """Retrying stopped before a success.

    Attributes
    ----------
    reason : str
        ``"exhausted"``, ``"budget"``, ``"throttled"`` or ``"pushback"`` (see ``otlp_lab.resilience``).
    attempts : int
        Attempts sent.
    last_outcome : object
        The last ``otlp_lab.resilience.Outcome`` (or None).
    """

    def __init__(self, message: str, *, reason: str, attempts: int, last_outcome: object = None) -> None:
        self.reason = reason
        self.attempts = attempts
        self.last_outcome = last_outcome
        super().__init__(message)


class DeadlineExceededError(ResilienceError, TimeoutError):
    """The call's deadline passed before it finished.

    Attributes
    ----------
    attempts : int
        Attempts sent.
    last_outcome : object
        The last ``otlp_lab.resilience.Outcome`` (or None).
    """

    def __init__(self, message: str, *, attempts: int = 0, last_outcome: object = None) -> None:
        self.attempts = attempts
        self.last_outcome = last_outcome
        super().__init__(message)


class ImportConfigError(ConfigError):
    """A key or value in an imported Istio, Envoy, resilience4j or gRPC config we cannot use.

    Attributes
    ----------
    source : str
        What was being imported: ``"DestinationRule"``, ``"Envoy cluster"``, ...
    path : str
        The full key path, e.g. ``"spec.trafficPolicy.tls.mode"``.
    value : object
        The offending value.
    """

    def __init__(self, message: str, *, source: str, path: str, value: object = None) -> None:
        self.source = source
        self.path = path
        self.value = value
        super().__init__(message)


class ConfigFileNotFoundError(ImportConfigError, FileNotFoundError):
    """The config file to import does not exist (or is not a file)."""


class ConfigSyntaxError(ImportConfigError):
    """The config text is neither valid JSON nor valid YAML (the message gives line and column)."""


class ConfigKindError(ImportConfigError):
    """The file parses but holds no kind of config otlp_lab imports (e.g. a Kubernetes Deployment)."""


class NoHealthyUpstreamError(ResilienceError):
    """A load balancer was given no endpoint it may pick (Envoy answers 503 "no healthy upstream").

    Attributes
    ----------
    total : int
        Endpoints offered.
    healthy : int
        Of those, how many were healthy.
    """

    def __init__(self, message: str, *, total: int = 0, healthy: int = 0) -> None:
        self.total = total
        self.healthy = healthy
        super().__init__(message)


class TransportError(OtlpLabError):
    """OTLP over the network failed: a server could not listen, a peer could not be reached.

    Attributes
    ----------
    hint : str or None
        What to do about it, in a sentence (also appended to the message).
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.reason = message
        self.hint = hint
        super().__init__(f"{message}. {hint}" if hint else message)


class ExportError(TransportError):
    """A peer refused an export request, or it could not be delivered.

    Attributes
    ----------
    status : str or int or None
        The gRPC status name (``"UNAVAILABLE"``), the HTTP status (``503``), or a local
        cause (``"CONNECT"``, ``"CIRCUIT_OPEN"``).
    retryable : bool
        Whether the OTLP specification allows sending the same request again.
    hint : str or None
        What to do about it.
    """

    def __init__(
        self,
        message: str,
        *,
        status: str | int | None = None,
        retryable: bool = False,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.retryable = retryable
        super().__init__(message, hint=hint)


class ScenarioError(OtlpLabError, ValueError):
    """A simulation scenario (YAML or built in Python) that is not valid.

    Attributes
    ----------
    key : str or None
        The key path of the bad value, such as ``"services.cart.instances"``.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


class TraceQLError(ConfigError):
    """A TraceQL query that cannot be parsed, or uses a part of TraceQL that otlp_lab does not support.

    Attributes
    ----------
    query : str
        The query.
    position : int
        Where in it (0-based character offset).
    part : str
        The offending part, e.g. ``"<<"`` or ``"quantile_over_time"``.
    """

    def __init__(self, message: str, *, query: str, position: int, part: str) -> None:
        self.query = query
        self.position = position
        self.part = part
        pointer = " " * position + "^"
        super().__init__(f"{message}\n  {query}\n  {pointer}")
