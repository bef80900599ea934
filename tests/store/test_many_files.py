"""Loading many files: every good file loads, each bad one is reported, a summary ends it."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest

from otlp_lab import DecodeError, Lab

from ..conftest import make_trace_request

# The shape of the OTLP spec's file-exporter example (specification/protocol/file-exporter.md):
# ids left empty, which OTLP otherwise requires.
SPEC_EXAMPLE = {
    "resourceSpans": [
        {
            "resource": {
                "attributes": [{"key": "resource-attr", "value": {"stringValue": "resource-attr-val-1"}}]
            },
            "scopeSpans": [
                {
                    "scope": {},
                    "spans": [
                        {
                            "traceId": "",
                            "spanId": "",
                            "parentSpanId": "",
                            "name": "operationA",
                            "startTimeUnixNano": "1581452772000000321",
                            "endTimeUnixNano": "1581452773000000789",
                            "droppedAttributesCount": 1,
                            "events": [{"timeUnixNano": "1581452773000000123", "name": "event-with-attr"}],
                            "status": {"message": "status-cancelled", "code": 2},
                        },
                        {"name": "operationB", "startTimeUnixNano": "1581452772000000321"},  # ids absent
                    ],
                }
            ],
        }
    ]
}


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "capture"
    d.mkdir()
    (d / "a.pb").write_bytes(make_trace_request(3, seed=1).SerializeToString())
    (d / "b.json").write_text('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "nothex"}]}]}]}')
    (d / "c.pb").write_bytes(make_trace_request(4, seed=2).SerializeToString())
    (d / "d.jsonl").write_bytes(b"{not json\n")
    return d


def test_directory_loads_every_good_file_and_reports_the_bad(folder):
    lab = Lab()
    result = lab.load(folder)
    assert result["spans"] == 7 and lab.counts()["spans"] == 7
    assert not result.ok
    failed = {f.source.rsplit("/", 1)[-1]: f.error for f in result.failed}
    assert set(failed) == {"b.json", "d.jsonl"}
    assert "traceId must be hex" in failed["b.json"]
    assert "invalid JSON" in failed["d.jsonl"]
    assert "2 files loaded, 2 failed" in repr(result)


def test_glob_too(folder):
    result = Lab().load(str(folder / "*.*"))
    assert len(result.failed) == 2 and result["spans"] == 7


def test_fail_fast_stops_at_the_first_bad_file(folder):
    lab = Lab()
    with pytest.raises(DecodeError, match="b.json"):
        lab.load(folder, fail_fast=True)
    assert lab.counts()["spans"] == 3  # a.pb, loaded before it, stays


def test_one_named_file_still_raises(folder):
    with pytest.raises(DecodeError, match="traceId must be hex"):
        Lab().load(folder / "b.json")


def test_cli_reports_each_failure_and_exits_non_zero(folder, tmp_path):
    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "otlp_lab.cli", "load", *args], capture_output=True, text=True, timeout=120
        )

    out = run(str(folder), "--db", str(tmp_path / "x.duckdb"))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "failed:" in out.stdout and "b.json" in out.stdout and "d.jsonl" in out.stdout
    assert "2 files loaded, 2 failed" in out.stdout
    assert "Traceback" not in out.stderr
    out = run(str(folder), "--db", str(tmp_path / "y.duckdb"), "--fail-fast")
    assert out.returncode == 2 and "b.json" in out.stdout


def test_spec_example_needs_lenient_ids(tmp_path):
    f = tmp_path / "spec.jsonl"
    f.write_bytes(orjson.dumps(SPEC_EXAMPLE) + b"\n")
    lab = Lab()
    with pytest.raises(DecodeError, match="lenient_ids=True"):
        lab.load(f)
    assert lab.counts()["spans"] == 0
    result = lab.load(f, lenient_ids=True)
    assert result["spans"] == 2 and result.missing_ids == 2
    assert "2 spans without ids" in repr(result)
    assert lab.sql("SELECT count(*) AS n FROM span_events")["n"][0] == 1


def test_lenient_ids_in_the_cli(tmp_path):
    f = tmp_path / "spec.json"
    f.write_bytes(orjson.dumps(SPEC_EXAMPLE))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "otlp_lab.cli",
            "load",
            str(f),
            "--db",
            str(tmp_path / "x.duckdb"),
            "--lenient-ids",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 spans without ids" in out.stdout
