"""Body decoding: limits on the decompressed size, partial success, group-commit merging, fuzzing."""

from __future__ import annotations

import gzip

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otlp_lab import Lab
from otlp_lab.otlp import decode_bytes, to_otlp_json
from otlp_lab.transport._payload import Refused, decode_request, inflate, item_counts
from otlp_lab.transport._receiver import merge_batches
from otlp_lab.transport._replies import ReplyKind

from ..conftest import make_trace_request


def test_inflate_refuses_over_the_limit_on_the_decompressed_size():
    bomb = gzip.compress(b"\0" * (8 << 20))  # 8 MiB of zeros in ~8 KiB
    assert len(bomb) < 64 << 10
    with pytest.raises(Refused) as err:
        inflate(bomb, "gzip", 1 << 20)
    assert err.value.reply.kind is ReplyKind.TOO_LARGE
    assert inflate(gzip.compress(b"abc"), "gzip", 10) == b"abc"
    with pytest.raises(Refused) as err:
        inflate(b"x" * 11, "", 10)
    assert err.value.reply.kind is ReplyKind.TOO_LARGE


@pytest.mark.parametrize(
    "body, encoding, kind",
    [
        (gzip.compress(b"hello world" * 100)[:-12], "gzip", ReplyKind.INVALID),  # truncated
        (b"\x1f\x8b\x08\x00garbage-garbage-garbage", "gzip", ReplyKind.INVALID),  # corrupt
        (b"plain", "gzip", ReplyKind.INVALID),  # not gzip at all
        (b"abc", "br", ReplyKind.UNSUPPORTED),
    ],
)
def test_inflate_refuses_bad_streams(body, encoding, kind):
    with pytest.raises(Refused) as err:
        inflate(body, encoding, 1 << 20)
    assert err.value.reply.kind is kind


def _bad_span_request(n: int = 8, bad: tuple[int, ...] = (3,)):
    req = make_trace_request(n)
    spans = req.resource_spans[0].scope_spans[0].spans
    for i in bad:
        spans[i].trace_id = b"\x01\x02\x03"  # 3 bytes: not a trace id
    return req


@pytest.mark.parametrize("fmt", ["protobuf", "json"])
def test_bad_items_are_rejected_and_the_rest_kept(fmt):
    req = _bad_span_request(8, bad=(3, 6))
    body = req.SerializeToString() if fmt == "protobuf" else orjson.dumps(to_otlp_json(req))
    if fmt == "json":  # OTLP/JSON ids are hex: make one span's trace id 3 bytes long there too
        doc = orjson.loads(body)
        doc["resourceSpans"][0]["scopeSpans"][0]["spans"][3]["traceId"] = "010203"
        doc["resourceSpans"][0]["scopeSpans"][0]["spans"][6]["traceId"] = "010203"
        body = orjson.dumps(doc)
    out = decode_request("traces", body, fmt=fmt)
    assert out.rejected == 2
    assert out.counts["spans"] == 6
    assert "2 spans rejected" in out.message and "trace_id" in out.message
    with Lab() as lab:
        lab.load_batches(merge_batches(out.batches))
        names = set(lab.sql("select name from spans")["name"])
    assert names == {f"op{i}" for i in range(8)} - {"op3", "op6"}


def test_a_request_with_nothing_valid_is_refused_whole():
    req = _bad_span_request(4, bad=(0, 1, 2, 3))
    with pytest.raises(Refused) as err:
        decode_request("traces", req.SerializeToString(), fmt="protobuf")
    assert err.value.reply.kind is ReplyKind.INVALID
    assert "trace_id" in str(err.value)


@pytest.mark.parametrize(
    "body, fmt",
    [
        (b"\x1f\x8b\x08\x00\x00\x00", "protobuf"),  # compressed twice
        (b'{"resourceSpans": []}', "protobuf"),  # JSON labelled protobuf
        (make_trace_request(1).SerializeToString(), "json"),  # protobuf labelled JSON
        (b"", "json"),
        (b'{"resourceLogs": []}', "json"),  # another signal
    ],
)
def test_mislabelled_or_foreign_bodies_are_invalid(body, fmt):
    with pytest.raises(Refused) as err:
        decode_request("traces", body, fmt=fmt)
    assert err.value.reply.kind is ReplyKind.INVALID


def test_empty_protobuf_request_is_valid():
    out = decode_request("traces", b"", fmt="protobuf")
    assert out.items == 0 and not out.rejected


def test_merge_batches_shifts_context_indices():
    bodies = [make_trace_request(5, service=f"svc{i}", seed=i).SerializeToString() for i in range(4)]
    batches = [b for body in bodies for b in decode_bytes(body, signal="traces")]
    [merged] = merge_batches(batches)
    assert merged["spans"].num_rows == 20 and merged["_ctx"].num_rows == 4
    assert item_counts([merged]) == {"spans": 20, "points": 0, "logs": 0}
    with Lab() as lab:
        lab.load_batches([merged])
        per = lab.sql("select service_name, count(*) n from spans group by all order by 1")
    assert per.rows() == [(f"svc{i}", 5) for i in range(4)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(
        st.binary(max_size=300),
        st.builds(
            lambda raw, cut: raw[:cut],
            st.just(make_trace_request(6).SerializeToString()),
            st.integers(0, 600),
        ),
        st.builds(
            lambda raw, i, b: raw[:i] + bytes([b]) + raw[i + 1 :],
            st.just(make_trace_request(6).SerializeToString()),
            st.integers(0, 599),
            st.integers(0, 255),
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=8),
            lambda c: (
                st.lists(c, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["resourceSpans", "scopeSpans", "spans", "traceId", "x"]), c, max_size=3
                )
            ),
            max_leaves=12,
        ).map(orjson.dumps),
    ),
    fmt=st.sampled_from(["protobuf", "json"]),
    signal=st.sampled_from(["traces", "metrics", "logs"]),
)
def test_fuzzed_bodies_decode_or_are_refused(body, fmt, signal):
    """Whatever the bytes, decoding either succeeds or refuses with a reply: it never raises anything else."""
    try:
        out = decode_request(signal, body, fmt=fmt)
    except Refused as exc:
        assert exc.reply.kind in (ReplyKind.INVALID, ReplyKind.TOO_LARGE)
    else:
        assert out.items >= 0
