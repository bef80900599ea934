"""The OTLP wire codec: protobuf / OTLP-JSON <-> columnar (Arrow) batches. No I/O beyond reading
the files it is given, and no DuckDB."""

from otlp_lab.otlp import staging
from otlp_lab.otlp._decode import (
    DEFAULT_BATCH_ROWS,
    Batch,
    DecodeReport,
    Skipped,
    check_load_options,
    decode_bytes,
    file_sha256,
    iter_file_batches,
    iter_stream_batches,
)
from otlp_lab.otlp._encode import (
    DEFAULT_MAX_BYTES,
    FORMATS,
    Format,
    encode_requests,
    json_line,
    protobuf_frame,
    to_otlp_json,
    write_requests,
)
from otlp_lab.otlp._inflate import decompress_bytes
from otlp_lab.otlp._messages import parse_rpc_status, request_class, response_class, rpc_status
from otlp_lab.otlp._source import DEFAULT_MAX_REQUEST_BYTES, SIGNALS, Signal, expand_paths

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_REQUEST_BYTES",
    "FORMATS",
    "Format",
    "SIGNALS",
    "Batch",
    "DecodeReport",
    "Signal",
    "Skipped",
    "check_load_options",
    "decode_bytes",
    "decompress_bytes",
    "encode_requests",
    "expand_paths",
    "file_sha256",
    "iter_file_batches",
    "iter_stream_batches",
    "json_line",
    "parse_rpc_status",
    "protobuf_frame",
    "request_class",
    "response_class",
    "rpc_status",
    "to_otlp_json",
    "write_requests",
    "staging",
]
