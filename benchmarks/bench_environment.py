"""
The process environment the speed benchmarks run in (``bench_training.py``, ``bench_serving.py``).

OpenMP reads its wait policy, and glibc its allocator thresholds, when the process starts, so a benchmark calls
:func:`enter` before it imports torch: the script re-runs itself once with the settings below, unless
``--keep-environment`` is given (then the caller's environment is used as it is).

- ``--wait-policy`` (default: ``OMP_WAIT_POLICY`` if the environment sets it, else ``PASSIVE``) is what OpenMP's idle threads do between two parallel operators:
  ``PASSIVE`` sleeps (robust on a shared, loaded machine: a spinning thread there takes a core that another
  process needs, and small operators ran 10-35x slower), ``ACTIVE`` spins (fastest on cores nobody else uses: the
  team starts each operator without waking threads), ``default`` leaves it to OpenMP (spin a while, then sleep).
  On this 2-core machine, idle, the policy alone moved a 1,000,000-row training step and the compiled 2-thread
  ranking by 1.3-2x (docs/performance.md, "OpenMP's wait policy").
- Fresh multi-MB buffers are mmapped and page-faulted on every call (3-4x slower on this VM) unless glibc keeps them:
  ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` keep them (values already in the environment win).
"""

from __future__ import annotations

import os
import sys

WAIT_POLICIES = ("PASSIVE", "ACTIVE", "default")
ALLOCATOR_ENVIRONMENT = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
# The settings a benchmark records with its figures (None: unset, e.g. OMP_WAIT_POLICY under ``default``).
RECORDED = ("OMP_WAIT_POLICY", *ALLOCATOR_ENVIRONMENT)
# Set in the re-run process, so that it does not re-run again (``default`` leaves OMP_WAIT_POLICY unset).
RERUN_MARKER = "A2GEN_BENCH_ENVIRONMENT"
WAIT_POLICY_HELP = (
    "OpenMP's wait policy for the run: PASSIVE (the default unless OMP_WAIT_POLICY is set; idle threads sleep, "
    "robust on a shared machine), ACTIVE "
    "(they spin: fastest on idle cores), or default (OpenMP's own); ignored with --keep-environment"
)


def wait_policy(argv: list[str]) -> str | None:
    """The ``--wait-policy`` of ``argv`` (``--wait-policy X`` or ``--wait-policy=X``); None when absent."""
    for position, argument in enumerate(argv):
        if argument == "--wait-policy" and position + 1 < len(argv):
            value = argv[position + 1]
        elif argument.startswith("--wait-policy="):
            value = argument.split("=", 1)[1]
        else:
            continue
        if value not in WAIT_POLICIES:
            raise SystemExit(f"--wait-policy {value!r} is not one of {', '.join(WAIT_POLICIES)}.")
        return value
    return None


def environment(argv: list[str], base: dict[str, str]) -> dict[str, str]:
    """
    ``base`` with the allocator settings (``base``'s own values win), the marker and the wait policy: ``argv``'s
    ``--wait-policy`` if given, else ``base``'s ``OMP_WAIT_POLICY`` if set, else PASSIVE.
    """
    result = {**ALLOCATOR_ENVIRONMENT, **base, RERUN_MARKER: "1"}
    policy = wait_policy(argv) or base.get("OMP_WAIT_POLICY", "PASSIVE")
    if policy == "default":
        result.pop("OMP_WAIT_POLICY", None)
    else:
        result["OMP_WAIT_POLICY"] = policy
    return result


def enter(argv: list[str] | None = None) -> None:
    """Re-run this script once with :func:`environment` (nothing with ``--keep-environment`` or once re-run)."""
    argv = sys.argv if argv is None else argv
    if "--keep-environment" in argv or os.environ.get(RERUN_MARKER):
        return
    os.execve(sys.executable, [sys.executable, *argv], environment(argv[1:], dict(os.environ)))
