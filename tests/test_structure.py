"""The package's import graph, read with ``ast`` (nothing is imported): the layering rules of docs/design.md.

Rules enforced:
- no import circle between the package's modules through the imports that run: at module level and inside
  functions (lazy imports);
- no import circle either when the imports under ``if TYPE_CHECKING:`` count too (type hints do not tie modules
  together: ``data/presets.py`` holds the preset that the log readers and the converter all name);
- ``a2gen_hf.metrics`` (every module under it, the shipped ``evaluate`` modules too) and ``a2gen_hf.data`` reach
  no ``modeling_*`` module, directly or through other modules of the package;
- the data folder's file names are spelled only in ``data/folder.py``.

An edge ``a -> b`` is "module a imports module b"; ``from . import x`` counts as importing the submodule ``x`` when
there is one. A package's own ``__init__`` is not counted as a dependency of its submodules (Python runs it first
whatever the submodule imports), but what ``__init__`` imports is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "a2gen_hf"
ROOT = Path(__file__).resolve().parents[1] / "src" / PACKAGE


def module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in ROOT.rglob("*.py")}


def resolve(name: str) -> str | None:
    """The package module that ``name`` refers to (itself, or the module that defines the attribute), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the nodes inside ``if TYPE_CHECKING:`` blocks."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        ):
            inside.update(id(child) for statement in node.body for child in ast.walk(statement))
    return inside


def imports_of(module: str, type_checking: bool = False) -> set[str]:
    """The package modules that ``module`` imports (with ``type_checking``: also under ``if TYPE_CHECKING:``)."""
    path = MODULES[module]
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skipped = set() if type_checking else _type_checking_nodes(tree)
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                targets.add(submodule if submodule in MODULES else source)
    edges = {resolve(target) for target in targets} - {None, module}
    # A submodule's parent packages run before it anyway: not a dependency.
    return {target for target in edges if not module.startswith(target + ".")}


GRAPH = {module: imports_of(module) for module in MODULES}
TYPED_GRAPH = {module: imports_of(module, type_checking=True) for module in MODULES}


def reachable(start: str, graph: dict[str, set[str]] = GRAPH) -> dict[str, list[str]]:
    """Every module that ``start`` reaches, with one import path to it."""
    paths = {start: [start]}
    stack = [start]
    while stack:
        current = stack.pop()
        for target in sorted(graph[current]):
            if target not in paths:
                paths[target] = [*paths[current], target]
                stack.append(target)
    return paths


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of the graph (as a list of modules, first = last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_the_graph_is_read():
    # The reader sees relative, absolute and submodule imports (guards against a parser that finds nothing).
    assert "a2gen_hf.targets" in GRAPH["a2gen_hf.metrics.action_metrics"]
    assert "a2gen_hf.metrics.action_metrics" in GRAPH["a2gen_hf.metrics.evaluation"]
    assert "a2gen_hf.metrics.evaluate_module" in GRAPH["a2gen_hf.metrics.gauc.gauc"]
    assert "a2gen_hf.auto" in GRAPH["a2gen_hf"]  # the lazy package imports its modules inside register()


def test_no_import_circle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_through_type_hints():
    cycle = find_cycle(TYPED_GRAPH)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    "module", sorted(name for name in MODULES if name.startswith((f"{PACKAGE}.metrics", f"{PACKAGE}.data")))
)
def test_metrics_and_data_import_no_model_module(module):
    for target, path in reachable(module, TYPED_GRAPH).items():
        assert not target.rpartition(".")[2].startswith("modeling_"), (
            f"{module} reaches the model module {target}: " + " -> ".join(path)
        )


FOLDER_NAMES = ("a2gen_data.json", "dataset_dict.json", "part-*.parquet")


def test_the_data_folder_names_live_in_data_folder():
    # The data-folder contract (data/folder.py) is the only module that spells its file names as values; the
    # others use its constants (help texts and docstrings may mention them).
    from a2gen_hf.data import folder

    assert (folder.DATA_SUMMARY_FILE, folder.DATASET_DICT_FILE, folder.PARQUET_SHARDS) == FOLDER_NAMES
    spelled = []
    for module, path in MODULES.items():
        if module == f"{PACKAGE}.data.folder":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in FOLDER_NAMES:
                spelled.append(f"{module}:{node.lineno} {node.value!r}")
    assert not spelled, "data-folder names spelled outside data/folder.py: " + ", ".join(spelled)


def test_loading_a_model_does_not_bring_the_log_reader_the_simulator_or_training():
    """The static graph above does not see what runs at import: the package registers its pipeline when a model is
    built, and the pipeline imports the collator. ``a2gen_hf.data`` loaded every module of the data package with it
    (the log reader, the simulator, scikit-learn) for a model that only serves."""
    import subprocess
    import sys

    code = (
        "import sys, a2gen_hf.modeling_a2gen\n"
        "from a2gen_hf import A2GenConfig, A2GenForActionGeneration\n"
        "A2GenForActionGeneration(A2GenConfig(hidden_size=8, num_attention_heads=2, id_embedding_size=8, "
        "action_embedding_size=8, time_embedding_size=8, user_buckets=10, item_buckets=10, side_feature_buckets=10))\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    loaded = set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split())
    assert "a2gen_hf.data.collator" in loaded  # the pipeline's, so the check below has run what it should
    unwanted = {"a2gen_hf.data.logs", "a2gen_hf.data.simulator", "a2gen_hf.data.validation", "a2gen_hf.cli",
                "a2gen_hf.training", "sklearn"}  # fmt: skip
    assert not unwanted & loaded, sorted(unwanted & loaded)
