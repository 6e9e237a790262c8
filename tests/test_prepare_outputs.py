"""`a2gen prepare`'s output folder on hostile setups (probe 22): a killed prepare's workers, a symlinked output, an
output that is the current folder, a parent that is not writable."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from a2gen_hf.cli import main


def taobao_log(path: Path, users: int = 60, events: int = 10) -> Path:
    """A Taobao-format log (no header): ``users`` users, ``events`` clicks each, an hour apart, inside the preset's
    window."""
    lines = [f"{user},{100 + (user + k) % 7},{1 + k % 2},pv,{1511700000 + user * 7 + k * 3600}"
             for user in range(1, users + 1) for k in range(events)]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    return path


def prepare(log: Path, output, *flags: str) -> int:
    return main(["prepare", "--preset", "taobao", "--input", str(log), "--output", str(output), "--quiet", *flags])


def error_of(capsys) -> str:
    err = capsys.readouterr().err
    assert err.rstrip("\n").splitlines()[-1].startswith("a2gen prepare: error: "), err
    assert "Traceback" not in err
    return err


# -- 1: a killed prepare's workers end with it and do not hold the output's lock

SLOW_WORKERS = """
import sys, time
import a2gen_hf.data.logs as logs

original = logs._cut_sessions

def slow_cut(conversion, index):  # keeps the workers busy until the test kills their parent
    time.sleep(60)
    return original(conversion, index)

logs._cut_sessions = slow_cut
from a2gen_hf.cli import main
sys.exit(main(sys.argv[1:]))
"""


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """Running (a zombie left for an init that does not reap is not)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.skipif(not Path("/proc/self/stat").exists() or "fork" not in __import__("multiprocessing")
                    .get_all_start_methods(), reason="needs /proc and fork")  # fmt: skip
def test_a_killed_prepare_leaves_no_workers_and_no_lock(tmp_path):
    log, output = taobao_log(tmp_path / "log.csv"), tmp_path / "out"
    (tmp_path / "slow.py").write_text(SLOW_WORKERS)
    command = [sys.executable, str(tmp_path / "slow.py"), "prepare", "--preset", "taobao", "--input", str(log),
               "--output", str(output), "--quiet", "--partition-rows", "100", "--num-proc", "2"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        assert wait_for(lambda: len(children_of(process.pid)) >= 2, 60), "the workers never started"
        workers = children_of(process.pid)
        process.send_signal(signal.SIGKILL)  # the OOM killer; SIGTERM ends the workers alike
        process.wait(timeout=10)
        assert wait_for(lambda: not any(map(alive, workers)), 5), "workers outlived their killed parent"
        started = time.monotonic()
        assert prepare(log, output) == 0  # the lock is free: the next run is not refused
        assert time.monotonic() - started < 30
        assert not [path.name for path in tmp_path.iterdir() if ".a2gen-staging-" in path.name]
    finally:
        process.kill()
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


# -- 2: a symlinked --output is written through, where it points; the link stays


def test_a_symlinked_output_is_written_through_and_stays_a_link(tmp_path, capsys):
    log = taobao_log(tmp_path / "log.csv", users=20, events=4)
    (tmp_path / "big" / "taobao").mkdir(parents=True)
    link = tmp_path / "data_link"
    link.symlink_to(Path("big") / "taobao")
    for _ in range(2):  # a new folder, then a replaced one
        assert prepare(log, link) == 0, capsys.readouterr().err
        assert link.is_symlink() and os.readlink(link) == str(Path("big") / "taobao")
        assert (tmp_path / "big" / "taobao" / "dataset_dict.json").is_file()
        leftovers = [path.name for folder in (tmp_path, tmp_path / "big") for path in folder.iterdir()
                     if ".a2gen-staging-" in path.name or ".a2gen-previous-" in path.name]  # fmt: skip
        assert not leftovers


def test_recover_removes_a_staging_entry_that_is_a_link_but_not_where_it_points(tmp_path):
    from a2gen_hf.output_folders import output_lock

    kept = tmp_path / "elsewhere"
    kept.mkdir()
    (kept / "file.txt").write_text("mine")
    staging = tmp_path / ".out.a2gen-staging-1-abcd"
    staging.symlink_to(kept)
    with output_lock(tmp_path / "out"):
        pass
    assert not staging.is_symlink() and not staging.exists()
    assert (kept / "file.txt").read_text() == "mine"
