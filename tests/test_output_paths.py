"""The output-path rules of :mod:`a2gen_hf.output_folders`, shared by the CLI and the library: an output path is
usable (no file where a folder belongs, no folder where a file belongs, its folder exists), and it is not an input,
inside one or around one, with links followed where they point (as the write follows them)."""

import errno
import os
import stat
from pathlib import Path

import pytest

from a2gen_hf.cli import main
from a2gen_hf.output_folders import (
    AROUND,
    INSIDE,
    IS,
    LOCK_SUFFIX,
    OutputNotWritableError,
    file_output_problem,
    folder_output_problem,
    open_file_mode,
    output_lock,
    overlap,
    overlap_problem,
    real_path,
    replacing_file,
)


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """data/train (an input folder), afile (a file), adir (an empty folder); the current folder is tmp_path."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "afile").write_text("keep")
    (tmp_path / "adir").mkdir()
    return tmp_path


# -- overlap: is, inside, around, apart


@pytest.mark.parametrize(
    ("output", "relation"),
    [("data", IS), ("data/", IS), ("./data/train/..", IS), ("data/train", INSIDE), ("data/new/deeper", INSIDE),
     (".", AROUND), ("", AROUND), ("adir/../data/train/x", INSIDE), ("adir", None), ("datax", None)],
)
def test_overlap_names_how_the_output_lies_to_the_input(tree, output, relation):
    assert overlap(output, "data") == relation
    assert overlap(Path(output), tree / "data") == relation  # str or Path, relative or absolute: one answer


def test_a_symlinked_output_pointing_into_the_input_is_inside_it(tree):
    """The link is judged where it points, as the write goes there (output_lock, staging and switch follow it)."""
    (tree / "runs").symlink_to(tree / "data" / "train")
    assert overlap("runs", "data") == INSIDE
    assert overlap("runs/new", "data") == INSIDE
    (tree / "same").symlink_to("data")
    assert overlap("same", "data") == IS
    (tree / "data_link").symlink_to("data")  # an input given through a link: the same folder
    assert overlap("data/train/x", "data_link") == INSIDE
    assert overlap("adir", "data_link/train") is None


def test_a_link_around_the_input_and_a_link_loop(tree):
    (tree / "adir" / "up").symlink_to(tree)
    assert overlap("adir/up", "data/train") == AROUND
    (tree / "loop_a").symlink_to("loop_b")
    (tree / "loop_b").symlink_to("loop_a")
    assert overlap("loop_a/out", "data") is None  # no RuntimeError, as Path.resolve raises on a loop
    assert real_path("loop_a/out").is_absolute()


def test_overlap_problem_names_the_first_input_it_overlaps(tree):
    inputs = {"--model": "adir", "--data": "data", "--tokenizer": None, "--empty": ""}
    assert overlap_problem("data/train/metrics.json", inputs) == ("--data", INSIDE)
    assert overlap_problem("adir/x.json", inputs) == ("--model", INSIDE)
    assert overlap_problem(".", inputs) == ("--model", AROUND)
    assert overlap_problem(".", inputs, relations=(INSIDE,)) is None
    assert overlap_problem("elsewhere/x.json", inputs) is None  # None and '' inputs are skipped, not the cwd


# -- usable paths: the fragment starts with the path as given; the caller prefixes its flag or subject


def test_folder_output_problem(tree):
    assert folder_output_problem("out") is None and folder_output_problem("new/deeper/out") is None
    assert folder_output_problem("adir") is None and folder_output_problem("") is None
    assert folder_output_problem("afile") == (
        "afile exists and is a file; choose a folder name (the command writes a folder there).")
    assert folder_output_problem(Path("afile/sub/out")) == (
        "afile/sub/out: afile is a file, not a folder; choose another path.")


def test_file_output_problem(tree):
    assert file_output_problem("x.json", "metrics.json") is None
    assert file_output_problem("adir/x.json", "metrics.json") is None
    assert file_output_problem("adir", "metrics.json") == "adir is a folder; give a file name, e.g. adir/metrics.json."
    assert file_output_problem("adir/new.png/", "plot.png").startswith("adir/new.png/ ends with a slash, which names")
    assert file_output_problem("afile/x.json", "m.json") == (
        "afile/x.json: afile is a file, not a folder; choose another path.")
    missing = "nodir/sub/x.png: the folder nodir/sub does not exist; create it first or choose another path."
    assert file_output_problem("nodir/sub/x.png", "plot.png") == missing
    assert file_output_problem("nodir/sub/x.png", "plot.png", create_folders=True) is None
    assert file_output_problem("afile/sub/x.png", "plot.png", create_folders=True).startswith(
        "afile/sub/x.png: afile is a file")


# -- one wording from the CLI and the library


def test_the_cli_and_the_library_word_a_file_output_alike(tree, capsys):
    from a2gen_hf.data.folder import check_replaceable
    from a2gen_hf.plotting import output_path

    with pytest.raises(ValueError) as library:
        check_replaceable("afile", "a2gen prepare")
    assert str(library.value) == f"The output {folder_output_problem('afile')}"
    assert main(["simulate", "--output", "afile", "--quiet"]) == 2
    assert capsys.readouterr().err == f"a2gen simulate: error: --output {folder_output_problem('afile')}\n"
    (tree / "adir.png").mkdir()
    folder = r"^--output adir\.png is a folder; give a file name, e\.g\. adir\.png/plot\.png\.$"
    with pytest.raises(ValueError, match=folder):
        output_path("adir", "--output")  # a name without an extension gets .png first
    with pytest.raises(ValueError, match=r"^--output afile/x\.png: afile is a file, not a folder"):
        output_path("afile/x.png", "--output")


def test_train_and_prepare_refuse_a_symlinked_output_inside_their_input(tree, capsys):
    """Both follow the link where it points (before: train used Path.resolve, prepare os.path.realpath)."""
    (tree / "runs").symlink_to(tree / "data" / "train")
    assert main(["train", "--data", "data", "--output", "runs", "--quiet"]) == 2
    assert "--output runs lies inside the data folder (--data data)" in capsys.readouterr().err
    log = tree / "log.csv"
    log.write_text("1,100,1,pv,1511700000\n")
    (tree / "log_link").symlink_to(log)
    assert main(["prepare", "--preset", "taobao", "--input", "log.csv", "--output", "log_link", "--quiet"]) == 2
    assert "The output folder log_link is the input log log.csv or lies inside it" in capsys.readouterr().err
    assert sorted(os.listdir(tree / "data" / "train")) == [] and log.read_text().startswith("1,100")


def test_a_path_through_a_link_loop_is_refused_in_one_line(tree, capsys):
    """Before: train and evaluate failed on it later (Path.resolve's RuntimeError, or 'File exists'), report with a
    traceback."""
    (tree / "la").symlink_to("lb")
    (tree / "lb").symlink_to("la")
    loop = "is a symbolic link that loops (it leads back to itself); choose another path."
    assert folder_output_problem("la/run") == f"la/run: la {loop}"
    assert folder_output_problem("la") == f"la: la {loop}"
    assert file_output_problem("la/x.json", "metrics.json") == f"la/x.json: la {loop}"
    for argv in (["train", "--data", "data", "--output", "la/run"], ["report", "no.json", "--output", "la/x.md"],
                 ["evaluate", "--model", "adir", "--data", "data", "--json", "la/x.json"]):
        assert main([*argv, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"la {loop}" in err and "Traceback" not in err, err


# -- a folder that takes no new files: refused before any work, in the same words as the other output problems

TAKES_NO_FILES = "cannot create files in {folder} ({where}); choose a writable folder."
PROC = Path("/proc")
needs_proc = pytest.mark.skipif(not (PROC / "self").is_dir(), reason="needs Linux's /proc (a folder that takes no files)")


@pytest.fixture
def locked(tree, monkeypatch):
    """``locked``, a folder in which no file can be created: ``os.open`` refuses ``O_CREAT`` there with EACCES, as a
    read-only folder does (a chmod would not bind when the tests run as root, as CI may)."""
    folder = tree / "locked"
    folder.mkdir()
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and os.path.realpath(os.path.dirname(os.path.abspath(path))) == str(real_path(folder)):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    return folder


def test_a_folder_that_takes_no_files_is_an_output_problem(locked):
    denied = "(its parent folder: Permission denied); choose a writable folder."
    assert folder_output_problem("locked/run") == f"locked/run: cannot create files in locked {denied}"
    assert file_output_problem("locked/x.json", "metrics.json") == f"locked/x.json: cannot create files in locked {denied}"
    assert folder_output_problem("locked") == (
        "locked: cannot create files in locked (the folder itself: Permission denied); choose a writable folder.")
    assert folder_output_problem("locked/new/run").startswith(
        "locked/new/run: cannot create files in locked (the nearest folder on its path that exists")
    assert file_output_problem("locked/new/x.png", "plot.png", create_folders=True).startswith(
        "locked/new/x.png: cannot create files in locked (the nearest folder on its path")
    # a writable folder passes, and the check leaves nothing behind
    assert folder_output_problem("adir/run") is None and file_output_problem("adir/x.json", "m.json") is None
    assert os.listdir("adir") == [] and os.listdir("locked") == []


def test_an_existing_output_folder_whose_parent_takes_no_files_is_an_output_problem(locked):
    """(review) An existing output folder was checked in itself only, but its lock file and the staging folder of a
    new version are made beside it, in the parent: a run passed the check and then failed on a hidden lock file."""
    (locked / "run").mkdir()
    assert folder_output_problem("locked/run", beside=True) == (
        "locked/run: cannot create files in locked (its parent folder, where the lock file and the new version are "
        "made: Permission denied); choose a writable folder.")
    assert os.listdir("locked/run") == []  # the check in the folder itself passed and left nothing behind
    # (review) a command that writes only inside the folder (demo, bench, a cache folder) is not refused: the
    # folder takes files, whatever its parent (/tmp, $HOME under a parent the user cannot write)
    assert folder_output_problem("locked/run") is None


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into a 0o500 folder")
def test_a_read_only_folder_is_an_output_problem(tree):
    """The real thing, where permissions bind (the ``locked`` tests above cover it as root)."""
    (tree / "ro").mkdir()
    (tree / "ro").chmod(0o500)
    try:
        assert folder_output_problem("ro/run") == (
            "ro/run: cannot create files in ro (its parent folder: Permission denied); choose a writable folder.")
        assert file_output_problem("ro/x.json", "metrics.json").startswith("ro/x.json: cannot create files in ro (")
    finally:
        (tree / "ro").chmod(0o700)


def test_commands_refuse_an_output_in_a_folder_that_takes_no_files_before_any_work(locked, capsys):
    """Before: evaluate ran the whole evaluation and then failed writing --json; train, prepare and simulate failed
    on a lock or cache file the user never named. ``--model adir`` holds no model: refused before it is loaded."""
    (locked.parent / "log.csv").write_text("1,100,1,pv,1511700000\n")
    denied = "cannot create files in locked (its parent folder: Permission denied); choose a writable folder."
    for argv, error in [
        (["evaluate", "--model", "adir", "--data", "data", "--json", "locked/x.json"], f"--json locked/x.json: {denied}"),
        (["train", "--data", "data", "--output", "locked/run"], f"--output locked/run: {denied}"),
        (["simulate", "--output", "locked/sim", "--num-examples", "200"], f"--output locked/sim: {denied}"),
        (["prepare", "--preset", "taobao", "--input", "log.csv", "--output", "locked/tb"], f"locked/tb: {denied}"),
        (["report", "no.json", "--output", "locked/x.md"], f"--output locked/x.md: {denied}"),
    ]:
        assert main([*argv, "--quiet"]) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"a2gen {argv[0]}: error: ") and err.count("\n") == 1, err
        assert err.rstrip("\n").endswith(error), err
    assert os.listdir(locked) == []


@needs_proc
def test_an_output_in_proc_names_the_flag_and_the_folder(tree, capsys):
    """The probe's case, as root too: /proc takes no files, and creating one says "No such file or directory" (before:
    ``[Errno 2] No such file or directory: '/proc/.a2gen_out.a2gen-lock'`` from train, ``'/proc/.a2gen-simulate-
    cache-...'`` from simulate, and evaluate's --json only after the evaluation)."""
    where = TAKES_NO_FILES.format(folder="/proc", where="its parent folder")
    for argv, flag in [(["train", "--data", "data", "--output", "/proc/a2gen_out", "--max-steps", "2"], "--output"),
                       (["simulate", "--output", "/proc/a2gen_out", "--num-examples", "200"], "--output"),
                       (["evaluate", "--model", "adir", "--data", "data", "--json", "/proc/x.json"], "--json")]:
        assert main([*argv, "--quiet"]) == 2
        target = "/proc/x.json" if flag == "--json" else "/proc/a2gen_out"
        assert capsys.readouterr().err == f"a2gen {argv[0]}: error: {flag} {target}: {where}\n"


@needs_proc
def test_the_lock_of_an_output_in_a_folder_that_takes_no_files_is_not_a_raw_errno(tmp_path, monkeypatch):
    """The library's own check, where the CLI's did not run (the library, or a folder that changed since): the lock
    file that cannot be created is OutputNotWritableError (a ValueError: one CLI line), never FileNotFoundError."""
    with pytest.raises(OutputNotWritableError, match=r"^/proc is not writable \(it takes no new files\): the run"):
        with output_lock("/proc/a2gen_out"):
            pass
    real_open = os.open

    def no_lock_file(path, *args, **kwargs):
        if str(path).endswith(LOCK_SUFFIX):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_lock_file)
    with pytest.raises(OutputNotWritableError) as error:
        with output_lock(tmp_path / "out"):
            pass
    assert f"{tmp_path} is not writable (it takes no new files)" in str(error.value)
    assert "No such file" not in str(error.value)


def test_the_simulator_names_a_cache_folder_that_takes_no_files(locked):
    from a2gen_hf.data.simulator import SimulatorConfig, simulate

    with pytest.raises(ValueError, match=r"^cache_dir=locked/cache: cannot create files in locked \(its parent"):
        simulate(SimulatorConfig(num_examples=200), progress=False, cache_dir="locked/cache")


# -- file modes: the weights as readable as every other file (safetensors' save_file writes 0600)


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_replacing_file_gives_the_mode_of_an_ordinary_open(tmp_path, umask_022):
    import torch
    from safetensors.torch import save_file

    with replacing_file(tmp_path / "w.safetensors") as temporary:
        save_file({"w": torch.zeros(2)}, str(temporary))
    assert _mode(tmp_path / "w.safetensors") == 0o644  # before: 0o600, safetensors' own
    assert open_file_mode() == 0o644
    os.umask(0o077)  # a private umask stays private: nothing is widened beyond what open() gives
    assert open_file_mode() == 0o600
    with replacing_file(tmp_path / "p.safetensors") as temporary:
        save_file({"w": torch.zeros(2)}, str(temporary))
    assert _mode(tmp_path / "p.safetensors") == 0o600


def test_a_trained_runs_weights_are_readable_like_its_other_files(tmp_path, simulated_data_dir, umask_022,
                                                                  fresh_accelerate_state):
    """model/model.safetensors (save_pretrained into a staging folder, switched in), best_model.safetensors and every
    checkpoint file (model, optimizer, RNG state, weight average): 0644 under umask 022, as the JSON beside them."""
    output = tmp_path / "run"
    assert main(["train", "--data", str(simulated_data_dir), "--output", str(output), "--epochs", "1",
                 "--checkpoint-every", "4", "--ema-decay", "0.9", "--hidden-size", "16", "--id-embedding-size", "16",
                 "--batch-size", "32", "--no-progress", "--quiet", "--cpu"]) == 0
    weights = sorted(output.rglob("*.safetensors"))
    names = {path.relative_to(output).as_posix() for path in weights}
    assert {"model/model.safetensors", "best_model.safetensors"} <= names
    assert any(name.startswith("checkpoint-") and name.endswith("/optimizer.safetensors") for name in names)
    assert any(name.endswith("/weight_average.safetensors") for name in names)
    modes = {path.relative_to(output).as_posix(): oct(_mode(path)) for path in output.rglob("*") if path.is_file()}
    assert set(modes.values()) == {"0o644"}, modes


def test_a_file_system_that_keeps_no_modes_does_not_fail_an_atomic_write(tmp_path, monkeypatch):
    """(review) The mode given to the weights is best effort: where chmod is refused (some network and FUSE mounts),
    the write still lands, with the mode it was written with."""
    import os

    from a2gen_hf import output_folders

    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refuse)
    target = tmp_path / "weights.bin"
    with output_folders.replacing_file(target) as temporary:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(descriptor, b"weights")
        os.close(descriptor)
    assert target.read_bytes() == b"weights"
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "model.safetensors").write_bytes(b"x")
    output_folders.give_open_modes(staging)  # no error
