"""The evaluation harness: a labelled folder (TrainTicket layout) and the simulated suite, from Python and the CLI."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
from click.testing import CliRunner

from otlp_lab.cli import main
from otlp_lab.errors import ConfigError, DecodeError
from otlp_lab.ml import BlameRanker, LatencyModel, RandomRanker, evaluate, read_faults, suite_cases

from ..conftest import TRAINTICKET
from .conftest import small_case


def test_suite_cases_cover_the_fault_kinds():
    cases = suite_cases(seeds=(1, 2))
    assert len(cases) == 14
    assert {c.kind for c in cases} >= {
        "crash",
        "latency",
        "errors",
        "partition",
        "cpu",
        "brownout",
        "retry_storm",
    }
    # the seed rotates the target, so one kind hits several services
    assert len({c.service for c in cases if c.kind == "crash"}) == 2
    with pytest.raises(ConfigError, match="kinds"):
        suite_cases(kinds=("meteor",))


def test_evaluate_a_simulated_case():
    ev = evaluate(
        [small_case("latency", "payment")],
        detectors={"latency_model": LatencyModel()},
        rankers={"random": RandomRanker(), "blame": BlameRanker()},
    )
    rank = ev.ranking.filter(pl.col("method") == "blame").row(0, named=True)
    assert rank["ac1"] == 1.0 and rank["pod_ac1"] == 1.0 and rank["cases"] == 1
    det = ev.detection.row(0, named=True)
    assert det["method"] == "latency_model" and det["detected"] == 1.0
    assert det["median_delay_s"] <= 10 and det["roc_auc"] > 0.8
    assert "| blame |" in ev.markdown()


def test_evaluate_the_bundled_trainticket_sample(trainticket_lab):
    ev = evaluate(TRAINTICKET, lab=trainticket_lab)
    # two of the 17 faults fall inside the sample
    assert ev.settings["cases"] == 2
    blame = ev.cases.filter(pl.col("method") == "blame")
    assert blame["rank"].to_list() == [1, 1]
    assert set(blame["service"]) == {"ts-contacts-service", "ts-basic-service"}
    assert set(ev.detection["method"]) >= {"nsigma", "median_iqr", "isolation_forest", "lof", "latency_model"}


def _small_folder(tmp_path):
    d = tmp_path / "tt"
    (d / "faulty").mkdir(parents=True)
    shutil.copytree(TRAINTICKET / "normal", d / "normal")
    for m in ("11_51", "11_52", "11_53"):
        shutil.copy(TRAINTICKET / "faulty" / f"{m}.otlp.jsonl.gz", d / "faulty")
    faults = json.loads((TRAINTICKET / "faults.json").read_text())[:1]
    (d / "faults.json").write_text(json.dumps(faults))
    return d


def test_cli_ml_evaluate_prints_and_writes_json(tmp_path):
    d = _small_folder(tmp_path)
    out = tmp_path / "ev.json"
    res = CliRunner().invoke(main, ["ml", "evaluate", str(d), "--json", str(out), "--cases"])
    assert res.exit_code == 0, res.output
    assert "Root-cause ranking" in res.output and "blame" in res.output and "ts-conta" in res.output
    data = json.loads(out.read_text())
    blame = next(r for r in data["ranking"] if r["method"] == "blame")
    assert blame["ac1"] == 1.0 and data["settings"]["cases"] == 1


def test_cli_ml_evaluate_refuses_a_folder_without_faults(tmp_path):
    (tmp_path / "faulty").mkdir()
    res = CliRunner().invoke(main, ["ml", "evaluate", str(tmp_path)])
    assert res.exit_code == 2 and "faults.json" in res.output


def test_read_faults_names_a_bad_file(tmp_path):
    (tmp_path / "faults.json").write_text('[{"inject_service": "a"}]')
    with pytest.raises(DecodeError, match="inject_timestamp"):
        read_faults(tmp_path)
