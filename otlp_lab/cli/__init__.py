"""The ``otlp-lab`` command.

One module per group of commands, each registering itself on :data:`main` (``_group``);
shared console helpers live in ``_common``. Nothing outside this package imports it.
"""

from __future__ import annotations

from . import _alerts, _analysis, _data, _export, _ml, _sim, _sweep, _transport, _twin, _verify  # noqa: F401  (register the commands)
from ._group import main

__all__ = ["main"]
