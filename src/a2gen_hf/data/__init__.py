"""Data for A2Gen: real-log conversion into the on-disk example schema, and the batch collator.

The names below load their module on first use (as the package's own names do), so that the collator, which a
model's pipeline imports, does not bring the log reader, the simulator and scikit-learn with it."""

from __future__ import annotations

import importlib
from typing import Any

# Each public name -> the module of this package that defines it.
_NAMES = {
    "A2GenDataCollator": "collator",
    "SplitRule": "examples",
    "ConversionResult": "logs",
    "convert_log": "logs",
    "format_summary": "logs",
    "PRESETS": "presets",
    "LogPreset": "presets",
    "SimulationResult": "simulator",
    "SimulatorConfig": "simulator",
    "load_parquet": "simulator",
    "simulate": "simulator",
    "simulate_to_parquet": "simulator",
    "BAD_ROW_REASONS": "validation",
    "LogFormatError": "validation",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_NAMES})
