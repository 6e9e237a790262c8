"""Every ```python block of docs/*.md and README.md runs: each page's blocks in order, in one fresh namespace.

A page runs in an empty temporary working directory with HF_HOME / HF_DATASETS_CACHE there, so a block
must create what it reads. Blocks fenced as ```python no-run are skipped (for what cannot run here, e.g.
pushing to the real Hub).
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "docs").glob("*.md")) + ["README.md"]
FENCE = re.compile(r"^```python(?P<info>[^\n]*)\n(?P<code>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

# Pages whose blocks read the Taobao sample kept beside the repository; skipped where it is absent.
SHARED_DATA = ROOT.parent / "shared" / "data" / "taobao_userbehavior_tiny.csv"
NEEDS_SHARED_DATA = {"docs/data.md"}
# Pages whose blocks run the optional TorchRec engine; skipped where it is not installed.
NEEDS_TORCHREC = {"docs/torchrec.md"}


def python_blocks(text: str) -> list[tuple[int, str, str]]:
    """``(line, info, code)`` of each ```python block of ``text``; ``line`` is the 1-based line of the fence."""
    return [
        (text.count("\n", 0, match.start()) + 1, match.group("info").strip(), match.group("code"))
        for match in FENCE.finditer(text)
    ]


def test_python_blocks_are_found_and_no_run_is_read():
    text = "intro\n```python\nx = 1\n```\n\n```python no-run\nraise SystemExit\n```\n```bash\nls\n```\n"
    assert python_blocks(text) == [(2, "", "x = 1\n"), (6, "no-run", "raise SystemExit\n")]


def page_params():
    for page in PAGES:
        marks = []
        if page in NEEDS_SHARED_DATA:
            marks.append(pytest.mark.skipif(not SHARED_DATA.is_file(), reason=f"{SHARED_DATA} is not there"))
        if page in NEEDS_TORCHREC:
            from a2gen_hf.torchrec_tables import is_torchrec_available

            marks.append(pytest.mark.skipif(not is_torchrec_available(), reason="TorchRec is not installed"))
        yield pytest.param(page, marks=marks, id=page)


@pytest.mark.parametrize("page", list(page_params()))
def test_code_blocks_run(page, tmp_path, monkeypatch):
    blocks = python_blocks((ROOT / page).read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_home" / "datasets"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": "__main__"}
    for line, info, code in blocks:
        if info.split()[:1] == ["no-run"]:
            continue
        try:
            exec(compile(code, f"{page}:{line}", "exec"), namespace)
        except Exception as error:
            pytest.fail(f"{page}: the code block at line {line} fails: {type(error).__name__}: {error}")


# Claims of the docs that once were wrong (issue 16, point 8), checked against the code.


def read(page: str) -> str:
    return (ROOT / page).read_text(encoding="utf-8")


def all_pages() -> dict[str, str]:
    return {page: read(page) for page in PAGES}


def test_pushed_folders_are_ones_that_something_writes():
    from a2gen_hf.training.loop import MODEL_FOLDER

    pushed = []
    for page, text in all_pages().items():
        pushed += [(page, path) for path in re.findall(r"a2gen push (\S+)", text)]
        pushed += [(page, path) for path in re.findall(r'push_checkpoint\(\s*"([^"]+)"', text)]
    assert pushed, "the docs show pushes"
    for page, path in pushed:
        # a2gen train writes OUTPUT/model; a2gen demo writes OUTPUT/checkpoint
        assert Path(path).name in (MODEL_FOLDER, "checkpoint"), f"{page} pushes {path}, which nothing writes"


def test_simulate_commands_in_the_docs_do_not_oversize_the_tables():
    from a2gen_hf.data.simulator import SimulatorConfig

    assert SimulatorConfig().item_buckets is None  # sized from the catalogue unless set
    for page, text in all_pages().items():
        if page == "docs/results.md":  # its commands record what produced its tables, to reproduce them exactly
            continue
        for command in re.findall(r"a2gen simulate[^\n]*", text):
            buckets = re.search(r"--item-buckets (\d+)", command)
            items = re.search(r"--num-items (\d+)", command)
            if buckets:
                catalogue = int(items.group(1)) if items else SimulatorConfig().num_items
                assert int(buckets.group(1)) <= 16 * catalogue, f"{page}: {command} oversizes the item table"


def test_model_choices_in_the_docs_match_the_cli():
    from a2gen_hf.cli_arguments import MODEL_NAMES

    for page in ("docs/training.md", "docs/cli.md"):
        rows = [line for line in read(page).splitlines() if re.match(r"\| `--model( NAME)?` \|", line)]
        assert rows, f"{page} documents --model"
        for row in rows:
            choices = re.findall(r"`([a-z0-9-]+)`", row.split("|")[3])
            assert set(choices) == set(MODEL_NAMES), f"{page}: --model lists {choices}, the CLI {list(MODEL_NAMES)}"


def test_mae_units_are_named_where_evaluate_and_compare_are_documented():
    from a2gen_hf.training.compare import format_markdown  # noqa: F401  (the note is in its output)

    cli_page = read("docs/cli.md")
    evaluate = cli_page.split("## evaluate")[1].split("\n## ")[0]
    compare = cli_page.split("## compare")[1].split("\n## ")[0]
    assert "in seconds" in evaluate and "normalised" in compare
    assert "MAE in normalised time units" in (ROOT / "src/a2gen_hf/training/compare.py").read_text()


def test_the_timeline_format_claim_allows_sequences_cut_at_max_actions():
    row = next(line for line in read("docs/quickstart.md").splitlines() if line.startswith("| `timeline`"))
    assert "max_actions" in row


def test_the_side_feature_fields_note_says_when_they_are_needed():
    text = read("docs/quickstart.md")
    # the names come from the checkpoint's tokenizer; the argument is needed only for one saved without them
    assert "come from the checkpoint's tokenizer" in text
    assert "only when a request gives side features, pass\n  `side_feature_fields=[...]`" in text


def test_the_finetune_example_prints_what_its_docstring_says():
    source = (ROOT / "examples" / "finetune_with_trainer.py").read_text()
    assert "before and after fine-tuning" in source
    assert 'print("validation before:"' in source and 'print("validation after:"' in source


def test_time_claims_of_the_demo_warn_that_a_busy_machine_is_slower():
    for page, text in all_pages().items():
        for match in re.finditer(r"\d+ s measured", text):
            around = text[max(0, match.start() - 300) : match.end() + 300]
            assert "busy" in around, f"{page}: {match.group(0)!r} without a word on a busy machine"


def test_bootstrap_verdicts_are_named_after_the_models_and_rendered_from_the_saved_reports():
    from a2gen_hf.training.compare import render_report

    for page, text in all_pages().items():
        # quoted ("A better") only where the docs name the old wording
        assert not re.search(r'(?<!")\b[AB] better\b', text), f"{page} words a verdict as 'A better' / 'B better'"
    results = read("docs/results.md")
    rendered = re.findall(r"`a2gen report (docs/img/\S+\.json) --tables bootstrap`", results)
    assert len(rendered) == 2, "results.md renders its bootstrap tables with a2gen report"
    for path in rendered:
        assert render_report(ROOT / path, ["bootstrap"]) in results, f"results.md: the table of {path} is stale"


def test_every_flag_of_every_command_is_documented_in_its_cli_section():
    from a2gen_hf import cli

    text = read("docs/cli.md")
    parser = cli.build_parser()
    common = {"-h", "--config", "--recipe", "--quiet", "--verbose"}
    for name in [*cli.COMMANDS, "plot"]:
        assert f"\n## {name}\n" in text, f"docs/cli.md has no section for `a2gen {name}`"
        section = text.split(f"\n## {name}\n")[1].split("\n## ")[0]
        command = cli._subparser(parser, name)
        parsers = [command] + [kind for action in command._actions if isinstance(action.choices, dict)
                               for kind in action.choices.values()]
        flags = {action.option_strings[0] for sub in parsers for action in sub._actions if action.option_strings}
        missing = sorted(flag for flag in flags - common if not re.search(re.escape(flag) + r"(?![\w-])", section))
        assert not missing, f"docs/cli.md, section {name}: {missing} not documented"


def shell_commands(text: str, program: str = "a2gen") -> list[tuple[int, list[str]]]:
    """``(line, argv)`` of each ``program`` command in the page's shell blocks (```bash, ```sh or a bare fence),
    continuation lines joined, comments dropped; ``argv`` without the program name."""
    import shlex

    commands, fence, pending, start = [], None, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fence = None if fence is not None else line[3:].strip()
            continue
        if fence not in ("bash", "sh", "shell", ""):
            continue
        pending, start = (pending + " " + line, start) if pending else (line, number)
        if pending.endswith("\\"):
            pending = pending[:-1]
            continue
        command, pending = pending, ""
        if not re.search(rf"(^|\s){program}(\s|$)", command):  # heredocs, python -c "..." and the like
            continue
        words = shlex.split(command, comments=True)
        for index, word in enumerate(words):
            if word == program:  # also after env assignments, `time`, `&&`
                argv = words[index + 1:]
                for separator in ("&&", "||", "|", ";"):
                    argv = argv[: argv.index(separator)] if separator in argv else argv
                commands.append((start, argv))
    return commands


def test_shell_commands_of_the_docs_are_valid_a2gen_command_lines(capsys):
    from a2gen_hf import cli

    checked = 0
    for page, text in all_pages().items():
        for line, argv in shell_commands(text):
            if "--config" in argv:  # reads a file the page writes first
                continue
            try:
                cli.parse_arguments(argv)
            except SystemExit:
                pytest.fail(f"{page}:{line}: `a2gen {' '.join(argv)}` is not a valid command line: "
                            f"{capsys.readouterr().err.strip()}")
            checked += 1
    assert checked > 30


def test_when_a2gen_hf_registers_its_task_and_classes_is_as_the_quickstart_says():
    """A fresh interpreter: `import a2gen_hf` before transformers registers the pipeline task and the auto classes as
    soon as transformers is imported (an import hook), and loads neither torch nor transformers by itself; importing
    it after transformers registers at once (every other test), and importing one of its modules first registers
    once that module has finished."""
    import os
    import subprocess
    import sys

    probe = ("from transformers import AutoConfig\nfrom transformers.pipelines import PIPELINE_REGISTRY\n"
             "def probe():\n"
             "    task = 'action-generation' in PIPELINE_REGISTRY.get_supported_tasks()\n"
             "    try:\n        AutoConfig.for_model('a2gen')\n        config = True\n"
             "    except ValueError:\n        config = False\n"
             "    print(task, config)\n")
    cases = {
        "import sys\nimport a2gen_hf\nprint('torch' in sys.modules, 'transformers' in sys.modules)\n" + probe
        + "probe()\n": "False False\nTrue True",
        # a submodule first (hub.md's style): its own import of transformers registers once it has finished (before,
        # nothing registered, and the auto classes asked for trust_remote_code)
        "from a2gen_hf.modeling_a2gen import A2GenForActionGeneration\n" + probe + "probe()\n": "True True",
        "from a2gen_hf.tokenization_a2gen import A2GenActionTokenizer\n" + probe + "probe()\n": "True True",
    }
    for code, expected in cases.items():
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                                env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        assert result.stdout.strip() == expected, (code, result.stdout, result.stderr[-2000:])
