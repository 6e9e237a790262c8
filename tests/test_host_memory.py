"""a2gen_hf.host_memory: glibc keeps large freed blocks for training, once per process, unless turned off."""

import platform
import resource

import pytest
import torch

from a2gen_hf import host_memory

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.fixture
def fresh_state(monkeypatch):
    """Each test starts as a process that has not called keep_freed_host_memory yet."""
    monkeypatch.setattr(host_memory, "_applied", None)


@pytest.mark.parametrize("value, expected", [("0", False), ("false", False), (" Off ", False), ("no", False),
                                             ("1", True), ("yes", True), ("", True)])
def test_wanted_reads_the_environment_variable(value, expected):
    assert host_memory.wanted({host_memory.ENVIRONMENT_VARIABLE: value}) is expected
    assert host_memory.wanted({}) is True


def test_turned_off_by_the_environment_variable(fresh_state, monkeypatch):
    monkeypatch.setenv(host_memory.ENVIRONMENT_VARIABLE, "0")
    calls = []
    monkeypatch.setattr(host_memory, "_glibc_mallopt", lambda: calls.append(1))
    assert host_memory.keep_freed_host_memory() is False
    assert calls == []  # the allocator was not touched


def test_sets_both_parameters_once(fresh_state, monkeypatch):
    monkeypatch.delenv(host_memory.ENVIRONMENT_VARIABLE, raising=False)
    calls = []
    monkeypatch.setattr(host_memory, "_glibc_mallopt", lambda: lambda parameter, value: calls.append((parameter, value)) or 1)
    assert host_memory.keep_freed_host_memory() is True
    assert host_memory.keep_freed_host_memory() is True
    assert calls == [(host_memory.M_TRIM_THRESHOLD, host_memory.TRIM_THRESHOLD_BYTES), (host_memory.M_MMAP_MAX, 0)]


def test_a_refused_parameter_reports_false(fresh_state, monkeypatch):
    monkeypatch.delenv(host_memory.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(host_memory, "_glibc_mallopt", lambda: lambda parameter, value: 0)
    assert host_memory.keep_freed_host_memory() is False


def test_without_glibc_nothing_changes(fresh_state, monkeypatch):
    monkeypatch.delenv(host_memory.ENVIRONMENT_VARIABLE, raising=False)
    monkeypatch.setattr(host_memory.platform, "libc_ver", lambda: ("", ""))
    assert host_memory._glibc_mallopt() is None
    assert host_memory.keep_freed_host_memory() is False


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_large_buffers_are_reused_without_page_faults(fresh_state, monkeypatch):
    """The point of it: a 64 MB temporary allocated again and again is not page-faulted anew (glibc would mmap it)."""
    monkeypatch.delenv(host_memory.ENVIRONMENT_VARIABLE, raising=False)
    assert host_memory.keep_freed_host_memory() is True
    for _ in range(12):  # glibc's heap settles after a few (it grows by a block 6-8 times first)
        torch.ones(16 * 2**20)  # 64 MB, above glibc's largest mmap threshold
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        torch.ones(16 * 2**20)
    # 5 fresh mmaps would fault 5 x 16,384 pages; the kept block faults none (allow a little for other allocations).
    assert resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before < 2000


class _Called(Exception):
    """Raised by the stand-in, so that the entry point stops right after calling it."""


def _stand_in():
    raise _Called


def test_the_training_loop_keeps_host_memory(monkeypatch, tmp_path):
    from accelerate.state import AcceleratorState

    from a2gen_hf.training import loop

    monkeypatch.setattr(loop, "keep_freed_host_memory", _stand_in)
    try:
        with pytest.raises(_Called):
            loop.train(None, None, None, loop.TrainingSettings(output_dir=str(tmp_path / "run"), cpu=True))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def test_the_trainer_keeps_host_memory(monkeypatch):
    from a2gen_hf.training import trainer

    monkeypatch.setattr(trainer, "keep_freed_host_memory", _stand_in)
    with pytest.raises(_Called):
        trainer.A2GenTrainer.train(object())  # called before the trainer reads anything of itself


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_threads_still_get_blocks_larger_than_their_arena(fresh_state, monkeypatch):
    """glibc's per-thread arenas hold at most 64 MB; above that they fall back to mmap even with M_MMAP_MAX = 0."""
    import threading

    monkeypatch.delenv(host_memory.ENVIRONMENT_VARIABLE, raising=False)
    assert host_memory.keep_freed_host_memory() is True
    sizes = []
    thread = threading.Thread(target=lambda: sizes.append(torch.ones(32 * 2**20).numel()))  # 128 MB
    thread.start()
    thread.join()
    assert sizes == [32 * 2**20]
