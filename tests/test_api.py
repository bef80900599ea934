"""The public API: curated ``__all__`` lists that resolve, one vocabulary, declared crossings."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import otlp_lab

PUBLIC = [
    "otlp_lab",
    "otlp_lab.otlp",
    "otlp_lab.otlp.staging",
    "otlp_lab.store",
    "otlp_lab.sim",
    "otlp_lab.viz",
]
ROOT = Path(otlp_lab.__file__).parent


@pytest.mark.parametrize("name", PUBLIC)
def test_all_lists_resolve_and_are_unique(name):
    mod = importlib.import_module(name)
    names = mod.__all__
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    for n in names:
        assert hasattr(mod, n), f"{name}.{n} is in __all__ but missing"


def test_init_files_import_at_the_top():
    for init in ROOT.rglob("__init__.py"):
        assert "noqa: E402" not in init.read_text(), init


def test_one_duration_parser():
    """Durations are parsed by otlp_lab._config only (no other unit tables)."""
    units = re.compile(r"""["']ms["']\s*:\s*1e-3""")
    for path in ROOT.rglob("*.py"):
        if path.name == "_config.py":
            continue
        assert not units.search(path.read_text()), f"{path} has its own duration units"


def test_simulator_and_store_use_the_public_staging_schema():
    """The codec's private modules are not imported by the simulator or the store."""
    private = re.compile(r"from otlp_lab\.otlp\._")
    for pkg in ("sim", "store"):
        for path in (ROOT / pkg).rglob("*.py"):
            assert not private.search(path.read_text()), path


def test_every_module_imports():
    for info in pkgutil.walk_packages(otlp_lab.__path__, "otlp_lab."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
