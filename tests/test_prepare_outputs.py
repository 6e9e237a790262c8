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


# -- 3: an output that is the current folder, or holds it, is refused before any work


@pytest.mark.parametrize("output, message", [
    (".", "The output folder '.' names the current folder"),
    ("", "The output folder '' names the current folder"),
    ("..", "holds the current folder"),
    ("{here}", "is the current folder"),
])  # fmt: skip
def test_an_output_that_is_the_current_folder_or_holds_it_is_refused(tmp_path, capsys, monkeypatch, output, message):
    log = taobao_log(tmp_path / "log.csv", users=10, events=3)
    here = tmp_path / "work" / "here"
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    assert prepare(log, output.format(here=here)) == 2
    err = error_of(capsys)
    assert message in err and "delete the folder you run in" in err and "--output" in err
    assert Path.cwd() == here and here.is_dir() and not list(here.iterdir())


# -- 5: a parent folder that refuses the lock file or the staging folder (root ignores chmod: a patched os.open)


@pytest.mark.parametrize("refused", ["lock", "staging"])
def test_an_output_whose_parent_is_not_writable_exits_2_saying_why(tmp_path, capsys, monkeypatch, refused):
    from a2gen_hf import output_folders

    log = taobao_log(tmp_path / "log.csv", users=10, events=3)
    (tmp_path / "ro_parent" / "mine").mkdir(parents=True)
    real_open, real_mkdir = os.open, Path.mkdir

    def refusing_open(path, *args, **kwargs):
        if refused == "lock" and str(path).endswith(output_folders.LOCK_SUFFIX):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    def refusing_mkdir(self, *args, **kwargs):
        if refused == "staging" and output_folders.STAGING_MARK in self.name:
            raise PermissionError(13, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    monkeypatch.setattr(Path, "mkdir", refusing_mkdir)
    assert prepare(log, tmp_path / "ro_parent" / "mine") == 2
    err = error_of(capsys)
    assert f"{tmp_path / 'ro_parent'} is not writable (Permission denied)" in err
    assert "a lock file (.mine.a2gen-lock) and a staging folder beside the output folder mine" in err
    assert f"e.g. {tmp_path / 'ro_parent' / 'mine' / 'data'}" in err
