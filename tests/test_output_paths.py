"""The output-path rules of :mod:`a2gen_hf.output_folders`, shared by the CLI and the library: an output path is
usable (no file where a folder belongs, no folder where a file belongs, its folder exists), and it is not an input,
inside one or around one, with links followed where they point (as the write follows them)."""

import os
from pathlib import Path

import pytest

from a2gen_hf.cli import main
from a2gen_hf.output_folders import (
    AROUND,
    INSIDE,
    IS,
    file_output_problem,
    folder_output_problem,
    overlap,
    overlap_problem,
    real_path,
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
