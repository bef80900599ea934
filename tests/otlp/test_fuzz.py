"""Fuzzing Lab.load: wrong-typed OTLP/JSON for all three signals and corrupt compressed input.

Whatever the input, only an ``OtlpLabError`` may escape, and a failed load leaves the
database exactly as it was.
"""

from __future__ import annotations

import copy
import gzip
import os
from typing import Any

import orjson
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otlp_lab import Lab, OtlpLabError

from .test_json_validation import logs_doc, metrics_doc, traces_doc

_SETTINGS = settings(
    max_examples=int(os.environ.get("OTLP_LAB_FUZZ_EXAMPLES", "40")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    derandomize=True,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


_WEIRD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),  # what JSON encoders write
    st.floats(allow_nan=False),
    st.sampled_from(
        [
            "",
            "NaN",
            "Infinity",
            "-1",
            "١٢",
            "1_0",
            " 7",
            "abc",
            "zz",
            "0x10",
            "18446744073709551616",
            "AAAA",
            "=",
        ]
    ),
    st.text(max_size=8),
    st.lists(st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3), st.just({})), max_size=3),
    st.dictionaries(
        st.sampled_from(
            ["stringValue", "intValue", "values", "key", "value", "x", "arrayValue", "kvlistValue"]
        ),
        st.one_of(st.none(), st.integers(-3, 3), st.text(max_size=3), st.just([]), st.just({})),
        max_size=2,
    ),
)


def _snapshot(lab: Lab) -> tuple:
    return tuple(sorted(lab.counts().items())), lab.con.execute("SELECT count(*) FROM loads").fetchall()[0][0]


@pytest.fixture(scope="module")
def fuzz_lab():
    with Lab() as lab:
        yield lab


def _check_load(lab: Lab, body: bytes) -> None:
    before = _snapshot(lab)
    try:
        lab.load_bytes(body)
    except OtlpLabError:
        assert _snapshot(lab) == before, "a failed load changed the database"
    # anything else propagates and fails the test


@pytest.mark.parametrize("make", [traces_doc, logs_doc, metrics_doc], ids=["traces", "logs", "metrics"])
@_SETTINGS
@given(data=st.data())
def test_wrong_typed_json_only_raises_library_errors(fuzz_lab, make, data):
    doc = make()
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = _paths(doc)
        path = data.draw(st.sampled_from(paths), label="path")
        value = data.draw(_WEIRD, label="value")
        doc = copy.deepcopy(doc)
        node = doc
        for k in path[:-1]:
            node = node[k]
        node[path[-1]] = value
    _check_load(fuzz_lab, orjson.dumps(doc))


def _compressed(codec: str) -> bytes:
    body = orjson.dumps(traces_doc()) + b"\n" + orjson.dumps(logs_doc()) + b"\n"
    if codec == "gzip":
        return gzip.compress(body) + gzip.compress(orjson.dumps(metrics_doc()))
    c = zstandard.ZstdCompressor(write_checksum=True)
    return c.compress(body) + c.compress(orjson.dumps(metrics_doc()))


@pytest.mark.parametrize("codec", ["gzip", "zstd"])
@_SETTINGS
@given(data=st.data())
def test_corrupt_compressed_input_only_raises_library_errors(fuzz_lab, codec, data):
    raw = bytearray(_compressed(codec))
    action = data.draw(st.sampled_from(["cut", "flip", "append", "splice"]), label="action")
    if action == "cut":
        raw = raw[: data.draw(st.integers(1, len(raw) - 1), label="at")]
    elif action == "flip":
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            i = data.draw(st.integers(0, len(raw) - 1), label="i")
            raw[i] ^= data.draw(st.integers(1, 255), label="bits")
    elif action == "append":
        raw += data.draw(st.binary(min_size=1, max_size=16), label="tail")
    else:
        i = data.draw(st.integers(0, len(raw)), label="i")
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=8), label="junk")
    _check_load(fuzz_lab, bytes(raw))
