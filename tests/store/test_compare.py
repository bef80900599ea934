"""compare(): attribute frequencies of a selection against a baseline; trace_diff(): two traces' structure."""

from __future__ import annotations

import pytest

from otlp_lab import ConfigError, Lab

from .spans import request, span, tid_hex


@pytest.fixture(scope="module")
def shop():
    # 4 checkout requests: the two slow ones ran on pod-b and failed with http 503
    spans = []
    for t in range(1, 5):
        slow = t <= 2
        pod = "pod-b" if slow else "pod-a"
        spans += [
            span(
                t * 10, None, "front", 0, 1000 if slow else 100, kind="SERVER", name="GET /checkout", trace=t
            ),
            span(
                t * 10 + 1,
                t * 10,
                "cart",
                10,
                900 if slow else 60,
                kind="SERVER",
                name="GetCart",
                trace=t,
                status="ERROR" if slow else "UNSET",
                attrs={"http.response.status_code": 503 if slow else 200},
                resource={"k8s.pod.name": pod},
            ),
        ]
    spans.append(span(51, 41, "cart", 20, 30, kind="CLIENT", name="SELECT", trace=4))  # only in trace 4
    with Lab() as lab:
        lab.load_bytes(request(spans))
        yield lab


def test_selection_values_rank_first(shop: Lab):
    out = shop.compare("{ status = error }")
    top = out.row(0, named=True)
    assert abs(top["difference"]) == out["difference"].abs().max()
    rows = {(r["attribute"], r["value"]): r for r in out.to_dicts()}
    pod = rows[("resource.k8s.pod.name", "pod-b")]
    assert (pod["selection"], pod["baseline"], pod["selection_share"]) == (2, 0, 1.0)
    assert rows[("span.http.response.status_code", "503")]["difference"] == 1.0
    # baseline = the 7 other spans: 2 pod-a cart spans out of 7
    assert rows[("resource.k8s.pod.name", "pod-a")]["baseline_share"] == round(2 / 7, 4)


def test_explicit_baseline_and_sql_selection(shop: Lab):
    out = shop.compare("duration_ns > 500e6", "duration_ns <= 500e6 AND service_name = 'cart'", top=1)
    assert out.group_by("attribute").len()["len"].max() == 1  # top=1 value per attribute
    rows = {(r["attribute"], r["value"]): r for r in out.to_dicts()}
    # selection: 4 slow spans (2 unset, 2 error); baseline: the 3 fast cart spans (all unset)
    assert (rows[("status", "unset")]["selection"], rows[("status", "unset")]["baseline"]) == (2, 3)
    assert rows[("status", "unset")]["difference"] == round(0.5 - 1.0, 4)
    with pytest.raises(ConfigError, match="top"):
        shop.compare("{ }", top=0)
    with pytest.raises(ConfigError, match="one SQL expression"):
        shop.compare("true; DROP TABLE spans")


def test_trace_diff_folds_both_traces_into_call_paths(shop: Lab):
    d = {r["path"]: r for r in shop.trace_diff(tid_hex(1), tid_hex(4)).to_dicts()}
    assert d["front:GET /checkout"]["status"] == "same"
    assert d["front:GET /checkout > cart:GetCart"]["ms_delta"] == pytest.approx(50 - 890)
    only_b = d["front:GET /checkout > cart:GetCart > cart:SELECT"]
    assert (only_b["status"], only_b["count_a"], only_b["count_b"], only_b["depth"]) == ("only in b", 0, 1, 2)
    with pytest.raises(ConfigError, match="lab.traces"):
        shop.trace_diff(tid_hex(1), tid_hex(9))
