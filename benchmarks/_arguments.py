"""Checkers of the benchmarks' command-line values, for argparse's ``type=``: a value out of range is refused while the
arguments are parsed, before any work, with argparse's usage error (exit code 2) naming the flag, e.g.

    bench_training.py: error: argument --threads: must be a positive integer, got 0

Each checker takes the text of one value and returns it converted, or raises :class:`argparse.ArgumentTypeError`
(argparse prefixes its message with ``argument --flag:``). The ``*_list`` checkers read comma-separated values
(``--seeds 0,1,2``; empty parts are skipped, at least one value is needed) and check each one.

The scripts import this module by name with their own folder on ``sys.path``: ``python benchmarks/x.py`` puts it
there, and a script loaded from elsewhere (``importlib`` in the tests) inserts it first. Standard library only, so
that importing it costs nothing before the arguments are checked.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _integer(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def _number(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """A checker of integers >= ``minimum``."""

    def check(text: str) -> int:
        value = _integer(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value

    check.__name__ = f"int_at_least_{minimum}"
    return check


def positive_int(text: str) -> int:
    """An integer >= 1 (threads, repeats, sizes, batch sizes, ...)."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds, counts where 0 means off)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (learning rates: 0 keeps the weights)."""
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def fraction(text: str) -> float:
    """A share in (0, 1]."""
    value = _number(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a share in (0, 1], got {text}")
    return value


def decay(text: str) -> float:
    """A moving average's decay, in (0, 1)."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be a decay in (0, 1), e.g. 0.999, got {text}")
    return value


def comma_list(check: Callable[[str], T], example: str) -> Callable[[str], list[T]]:
    """A checker of comma-separated values, each checked by ``check``; ``example`` shows a valid value."""

    def check_list(text: str) -> list[T]:
        values = []
        for part in text.split(","):
            if part.strip():
                try:
                    values.append(check(part.strip()))
                except argparse.ArgumentTypeError as error:
                    raise argparse.ArgumentTypeError(f"{text!r}: each value {error}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"{text!r}: give at least one value, comma-separated, e.g. {example}")
        return values

    check_list.__name__ = f"{check.__name__}_list"
    return check_list


positive_int_list = comma_list(positive_int, "10000,30000")
non_negative_int_list = comma_list(non_negative_int, "0,1,2")
non_negative_float_list = comma_list(non_negative_float, "0,0.5")
fraction_list = comma_list(fraction, "1,0.5")


def choice_list(choices: Iterable[str]) -> Callable[[str], list[str]]:
    """A checker of comma-separated names, each one of ``choices``."""
    allowed = tuple(choices)

    def check(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"{text!r}: give comma-separated names out of {', '.join(allowed)}"
                + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            )
        return names

    check.__name__ = "choice_list"
    return check


def json_object(text: str) -> dict[str, Any]:
    """A JSON object (config overrides), or an error that quotes the text."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON ({error.msg}); e.g. '{{\"hidden_size\": 8}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r} must be a JSON object of config fields, e.g. '{{\"hidden_size\": 8}}'")
    return value


def data_folder(text: str) -> str:
    """A data folder of ``a2gen prepare`` / ``a2gen simulate`` (an existing folder; what it holds is checked when it
    is loaded)."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such folder (a data folder of `a2gen prepare`)")
    return text


def output_file(text: str) -> str:
    """A file the script writes when its work is done: not a folder, and its folder is made now if missing (before: a
    missing folder failed after all the work, naming a hidden temporary file, and the results were lost)."""
    path = Path(text)
    if not text.strip() or path.is_dir() or text.endswith(("/", "\\")):
        raise argparse.ArgumentTypeError(f"{text!r} is a folder or no name; give a file name, e.g. runs/results.json")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: cannot make its folder {path.parent} ({error.strerror})") from None
    return text


def output_folder(text: str) -> str:
    """A folder the script writes into: made now if missing; a file there is refused."""
    path = Path(text)
    if not text.strip() or (path.exists() and not path.is_dir()):
        raise argparse.ArgumentTypeError(f"{text!r} is a file or no name; give a folder, e.g. runs/ablations")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise argparse.ArgumentTypeError(f"{text!r}: cannot make the folder ({error.strerror})") from None
    return text


def checked(text: str, check: Callable[[str], T], option: str) -> T:
    """``check(text)`` outside argparse (a script's ``main(argv)`` called from Python): its error as a
    :class:`ValueError` that names ``option`` and quotes the value, e.g. ``--sizes='0': ...``."""
    try:
        return check(text)
    except argparse.ArgumentTypeError as error:
        message = str(error)
        quoted = repr(text)
        if message.startswith(quoted):
            message = message[len(quoted):].lstrip(": ")
        raise ValueError(f"{option}={quoted}: {message}") from None
