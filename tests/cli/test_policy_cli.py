"""``otlp-lab simulate --policy`` and ``otlp-lab compare``: from a real config file to a simulation in one line."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from otlp_lab.cli import main

TASK = Path(__file__).parents[1] / "data" / "configs" / "istio" / "circuit-breaking-httpbin.yaml"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False, env={"COLUMNS": "200"})


def test_simulate_with_the_istio_task_rule_enforces_its_circuit_breakers():
    out = invoke(
        "simulate", "slow_instance", "--policy", f"backend={TASK}", "--duration", "6s", "--no-progress"
    )
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "backend <-" in text and "circuit breakers: connections 1, pending requests 1" in text
    assert "503 UO" in text and "errors 0.0%" not in text  # 1 connection cannot carry 700 rps


def test_simulate_policy_errors_are_one_line(tmp_path):
    out = invoke("simulate", "slow_instance", "--policy", f"backend={tmp_path / 'missing.yaml'}")
    assert out.exit_code == 2 and "does not exist" in out.output
    out = invoke("simulate", "slow_instance", "--policy", f"nosuch={TASK}")
    assert out.exit_code == 2 and "neither a service nor a policy" in out.output
    out = invoke("simulate", "slow_instance", "--policy", "backend")
    assert out.exit_code == 2 and "SERVICE=FILE" in out.output


def test_compare_prints_the_table_and_writes_the_report(tmp_path):
    wide = tmp_path / "wide.yaml"
    wide.write_text(TASK.read_text().replace("maxConnections: 1\n", "maxConnections: 100\n"))
    report = tmp_path / "cmp.html"
    out = invoke(
        "compare",
        "slow_instance",
        "--policy",
        f"task:backend={TASK}",
        "--policy",
        f"backend={wide}",
        "--duration",
        "6s",
        "--report",
        str(report),
    )
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    for label in ("as is", "task", "wide"):
        assert f"{label}:" in text
    page = report.read_text()
    assert "The policies, in words" in page and "connections 1, pending requests 1" in page
