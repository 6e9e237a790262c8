"""The `a2gen` command's plumbing: `bench` (runs the repository's benchmark scripts) and `simulate`'s bucket flags.

The real benchmarks take minutes; stand-in scripts in a temporary folder record the arguments they get instead.
"""

import json
import sys
from pathlib import Path

import datasets
import pytest

from a2gen_hf import A2GenActionTokenizer, cli

RECORDER = """
import json, sys
from pathlib import Path
with open(Path(__file__).with_suffix(".calls"), "a") as calls:
    calls.write(json.dumps({"python": sys.executable, "args": sys.argv[1:]}) + "\\n")
sys.exit(EXIT_CODE)
"""


def recorder_folder(folder: Path, exit_codes: dict[str, int] | None = None) -> Path:
    for name in ("bench_serving.py", "bench_convert.py"):
        code = (exit_codes or {}).get(name, 0)
        (folder / name).write_text(RECORDER.replace("EXIT_CODE", str(code)))
    return folder


def calls(folder: Path, name: str) -> list[dict]:
    path = folder / Path(name).with_suffix(".calls")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_bench_finds_the_repository_scripts():
    assert (cli.BENCHMARKS_FOLDER / "bench_serving.py").is_file()
    assert (cli.BENCHMARKS_FOLDER / "bench_convert.py").is_file()


def test_bench_passes_flags_through(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "BENCHMARKS_FOLDER", recorder_folder(tmp_path))
    assert cli.main(["bench", "--quick", "--compile", "--output", "out"]) == 0
    assert calls(tmp_path, "bench_serving.py") == [
        {"python": sys.executable, "args": ["--output", "out", "--quick", "--compile"]}
    ]
    assert calls(tmp_path, "bench_convert.py") == []  # only with --convert
    assert "a2gen bench: benchmarks/bench_serving.py --output out --quick --compile" in capsys.readouterr().out

    assert cli.main(["bench", "--convert", "--convert-rows", "5000"]) == 0
    assert calls(tmp_path, "bench_serving.py")[-1]["args"] == []
    assert calls(tmp_path, "bench_convert.py") == [{"python": sys.executable, "args": ["--rows", "5000"]}]


def test_bench_stops_at_a_failing_script(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "BENCHMARKS_FOLDER", recorder_folder(tmp_path, {"bench_serving.py": 3}))
    assert cli.main(["bench", "--convert"]) == 3
    assert "benchmarks/bench_serving.py exited with status 3" in capsys.readouterr().err
    assert calls(tmp_path, "bench_convert.py") == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench"], "bench_serving.py not found in"),
        (["bench", "--convert"], "bench_serving.py, bench_convert.py not found in"),
        (["bench", "--convert-rows", "10"], "--convert-rows needs --convert"),
    ],
)
def test_bench_reports_missing_scripts_and_bad_flags(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.setattr(cli, "BENCHMARKS_FOLDER", tmp_path / "benchmarks")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    if "not found" in message:
        assert "pip install -e ." in err


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    # datasets reads the variable at import time; simulate() without cache_dir uses this attribute.
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf_datasets"))


def test_simulate_bucket_flags_reach_the_tokenizer_and_the_ids(tmp_path, datasets_cache, capsys):
    output = tmp_path / "sim"
    argv = ["simulate", "--output", str(output), "--num-examples", "40", "--history-length", "3", "--num-items", "50",
            "--item-buckets", "500", "--user-buckets", "30", "--side-feature-buckets", "40"]
    assert cli.main(argv) == 0, capsys.readouterr().err
    tokenizer = A2GenActionTokenizer.from_pretrained(output / "tokenizer")
    assert (tokenizer.item_buckets, tokenizer.user_buckets, tokenizer.side_feature_buckets) == (500, 30, 40)
    rows = datasets.load_from_disk(str(output))["train"]
    assert max(max(ids) for ids in rows["history_item_ids"]) < 500 and max(rows["item_id"]) < 500
    assert max(rows["user_id"]) < 30
    assert max(max(ids) for ids in rows["item_side_ids"]) < 40


def test_simulate_rejects_a_bucket_count_below_one(tmp_path, capsys):
    assert cli.main(["simulate", "--output", str(tmp_path / "sim"), "--item-buckets", "0"]) == 2
    assert "item_buckets=0 must be a positive integer" in capsys.readouterr().err
