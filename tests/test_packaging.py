"""pyproject.toml and environment.yml list the same dependencies with the same floors."""

from __future__ import annotations

import re
import tomllib

import yaml

from .conftest import ROOT

# PyPI name -> conda-forge name, where they differ
CONDA_NAMES: dict[str, str] = {}


def _req(spec: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?\s*(.*)$", spec)
    assert m, spec
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        specs += [s for s in extra if not s.startswith("otlp-lab")]
    want = {CONDA_NAMES.get(n, n): floor for n, floor in map(_req, specs)}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    got = dict(
        _req(d) for d in env["dependencies"] if isinstance(d, str) and not d.startswith(("python", "pip"))
    )
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert pip[0] == "-e ."
    pip_only = dict(map(_req, pip[1:]))  # packages conda-forge lacks, installed by pip
    assert not set(pip_only) & set(got)
    assert got | pip_only == want
