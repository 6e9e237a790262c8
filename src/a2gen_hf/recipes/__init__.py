"""Named training recipes: readable YAML files shipped inside the package.

A recipe is a flat YAML mapping from the option names of ``a2gen train`` / ``a2gen compare`` (their argparse
``dest``, i.e. the flag without ``--`` and with ``_`` for ``-``: ``dense_lr``, ``count_features``) to values.
``a2gen train --recipe NAME`` and ``--config FILE`` read one; flags given on the command line override it. Which
keys a command accepts is checked where the command is built (``cli.py``), so that its error names the file, the key
and the allowed keys. Top-level keys that start with ``x-`` are ignored (:func:`load_yaml`): they hold YAML anchors
for merge keys.

- ``paper`` (:file:`paper.yaml`): the paper's model and learning rates; early stopping on validation.
- ``paper_inputs`` (:file:`paper_inputs.yaml`): the paper's inputs (the timed history and the items' side
  features), with the options beyond the paper that let them be learned (ids not embedded, unit-scale tables, one
  wide head, square-root pooling, log-seconds buckets, one learning rate of 1e-3; chosen on the shared Taobao
  sample's validation split).
- ``sparse_logs`` (:file:`sparse_logs.yaml`): options beyond the paper for small, sparse real logs (chosen on the
  shared Taobao sample's validation split; see ``docs/results.md``).
- ``timed_video`` (:file:`timed_video.yaml`): logs that time actions inside recurring items (short video): the
  ``paper_inputs`` reading with ids embedded, a table of what each second of each item shows, started from who
  engaged where in train and kept fixed (chosen on the simulator's validation split).

Usage::

    from a2gen_hf.recipes import load_recipe
    load_recipe("sparse_logs")["dense_lr"]    # 0.006
    load_recipe("my_settings.yaml")           # any file of the same form
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

RECIPE_NAMES = ("paper", "paper_inputs", "sparse_logs", "timed_video")
_SCALARS = (str, int, float, bool, type(None))


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last without a word)."""


def _mapping_with_unique_keys(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    first_lines: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults`: merged keys may be given again, to override
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            if key in first_lines:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {first_lines[key] + 1}); keep one",
                    key_node.start_mark,
                )
            first_lines[key] = key_node.start_mark.line
        except TypeError:  # an unhashable key: construct_mapping names it
            pass
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_unique_keys)


EXTENSION_PREFIX = "x-"


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` of ``text``, refusing a key given twice in one mapping (a ``yaml.YAMLError`` with its line
    and column); merge keys (``<<: *defaults``) work as in ``safe_load``, a merged key given again overrides it.

    Top-level keys that start with ``x-`` (docker-compose's extension fields) are left out of the result: they hold
    the anchors that merge keys refer to (``x-defaults: &defaults {max_steps: 1}`` then ``<<: *defaults``), and are
    no option of any command."""
    content = yaml.load(text, Loader=_UniqueKeyLoader)
    if isinstance(content, dict):
        content = {key: value for key, value in content.items()
                   if not (isinstance(key, str) and key.startswith(EXTENSION_PREFIX))}  # fmt: skip
    return content


def recipe_path(name: str) -> Path:
    """The YAML file of a shipped recipe; raises ``ValueError`` naming the shipped recipes."""
    if name not in RECIPE_NAMES:
        raise ValueError(f"Unknown recipe {name!r}: the shipped recipes are {list(RECIPE_NAMES)} (or pass a YAML file).")
    return Path(str(resources.files(__package__).joinpath(f"{name}.yaml")))


def load_recipe(name_or_path: str) -> dict[str, Any]:
    """
    A recipe as a dict: a shipped one by name (:data:`RECIPE_NAMES`) or a YAML file by path.

    Raises:
        FileNotFoundError: neither a shipped recipe nor an existing file (the message lists the shipped ones).
        ValueError: the file is not valid YAML (file, line and column), is not a flat mapping with string keys, or a
            value is a list or mapping (file and key named).
    """
    if name_or_path in RECIPE_NAMES:
        path = recipe_path(name_or_path)
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise FileNotFoundError(
                f"Recipe {name_or_path!r} is neither a shipped recipe {list(RECIPE_NAMES)} nor an existing YAML file."
            )
    try:
        content = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValueError(f"{path}{where}: not valid YAML ({getattr(error, 'problem', None) or error}).") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ValueError(
            f"{path}: a recipe is a mapping of option names to values (e.g. `dense_lr: 0.001`), not a "
            f"{type(content).__name__}."
        )
    recipe: dict[str, Any] = {}
    for key, value in content.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: key {key!r} is not a name; keys are option names such as `dense_lr`.")
        if not isinstance(value, _SCALARS):
            raise ValueError(
                f"{path}: {key} is a {type(value).__name__}; recipe values are single numbers, strings or booleans "
                "(lists as comma-separated strings, e.g. `models: a2gen-iag,mmoe`)."
            )
        recipe[key] = value
    return recipe
