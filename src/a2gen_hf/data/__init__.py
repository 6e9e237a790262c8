"""Data for A2Gen: real-log conversion into the on-disk example schema, and the batch collator."""

from .collator import A2GenDataCollator
from .examples import SplitRule
from .logs import ConversionResult, convert_log, format_summary
from .presets import PRESETS, LogPreset
from .simulator import SimulationResult, SimulatorConfig, load_parquet, simulate, simulate_to_parquet
from .validation import BAD_ROW_REASONS, LogFormatError

__all__ = [
    "A2GenDataCollator",
    "BAD_ROW_REASONS",
    "ConversionResult",
    "LogFormatError",
    "LogPreset",
    "PRESETS",
    "SimulationResult",
    "SimulatorConfig",
    "SplitRule",
    "convert_log",
    "format_summary",
    "load_parquet",
    "simulate",
    "simulate_to_parquet",
]
