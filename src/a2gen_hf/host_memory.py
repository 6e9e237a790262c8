"""
Keep freed host memory in the process, so that a training step's large temporaries are not page-faulted anew.

A training step on a CPU allocates the same large temporaries at every step: at batch 256 and a history of 100 items
x 6 events, CAM_act's projected events and their gradient are 59 MB each. glibc's ``malloc`` serves every block above
its mmap threshold (at most 32 MB, whatever ``MALLOC_MMAP_THRESHOLD_`` says) with a fresh ``mmap`` and unmaps it on
``free``, so each such tensor is page-faulted and zeroed by the kernel again at every step (26,000-54,000 page faults
per step): on this project's 2-core VM writing a fresh 59 MB buffer took 6.5 ms against 1.0 ms for one the process
already held, and a whole A2Gen-IAG step (1,000,000-row item table, 2 threads, idle cores) ran 1.02-1.29x faster with
the fix below (docs/performance.md, "Host memory kept for reuse").

:func:`keep_freed_host_memory` tells glibc to serve large blocks from its heap (``M_MMAP_MAX = 0``) and not to return
freed heap memory to the kernel (``M_TRIM_THRESHOLD`` 2 GiB): freed blocks are then reused by the next step, as
PyTorch's caching allocator does on a GPU. The cost: the process keeps the peak of its host memory until it ends.
Training entry points (``a2gen_hf.training.train``, ``A2GenTrainer.train``) call it; set the environment variable
``A2GEN_KEEP_FREED_HOST_MEMORY=0`` to leave the allocator as it is. Elsewhere (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

logger = logging.getLogger(__name__)

ENVIRONMENT_VARIABLE = "A2GEN_KEEP_FREED_HOST_MEMORY"
# mallopt's parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# Freed heap memory above this much at the top of the heap is given back to the kernel (mallopt takes an int).
TRIM_THRESHOLD_BYTES = 2**31 - 1

_applied: bool | None = None  # None: not tried yet in this process


def wanted(environ: dict[str, str] | None = None) -> bool:
    """False when ``A2GEN_KEEP_FREED_HOST_MEMORY`` is ``0`` / ``false`` / ``no`` / ``off``; True otherwise."""
    value = (os.environ if environ is None else environ).get(ENVIRONMENT_VARIABLE, "1")
    return value.strip().lower() not in {"0", "false", "no", "off"}


def _glibc_mallopt():
    """glibc's ``mallopt``, or None where the C library is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        library = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = library.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt


def keep_freed_host_memory() -> bool:
    """
    Have glibc keep large freed blocks for reuse (see the module's docstring). Once per process; later calls return
    the first call's answer. Returns whether the allocator was changed: False when the environment variable turns it
    off or the C library is not glibc.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not wanted():
        logger.info("%s=%s: the host allocator is left as it is.", ENVIRONMENT_VARIABLE, os.environ[ENVIRONMENT_VARIABLE])
        return False
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    # mallopt returns 1 on success, 0 on an error; set the trim threshold first, so that a refusal leaves mmap on.
    _applied = bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)) and bool(mallopt(M_MMAP_MAX, 0))
    return _applied
