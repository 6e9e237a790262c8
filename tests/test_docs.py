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
