"""benchmarks/quality_ablations.py: the cut-down training split (``--train-user-share``) that stands in for a smaller
log, and the variants' specs."""

import importlib.util
import sys
import zlib
from pathlib import Path

import pytest
from datasets import Dataset, DatasetDict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("quality_ablations", ROOT / "benchmarks" / "quality_ablations.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("quality_ablations", module)
    spec.loader.exec_module(module)
    return module


def test_train_user_share_keeps_whole_users_of_train_only(script, capsys):
    users = [f"u{index % 37}" for index in range(400)]
    data = DatasetDict({
        "train": Dataset.from_dict({"user": users, "row": list(range(400))}),
        "validation": Dataset.from_dict({"user": users[:50], "row": list(range(50))}),
    })
    assert script.keep_train_users(data, 1) is data
    cut = script.keep_train_users(data, 4)
    kept = set(cut["train"]["user"])
    expected = {user for user in set(users) if zlib.crc32(user.encode()) % 4 == 0}
    assert kept == expected and 0 < len(kept) < 37
    # Every row of a kept user stays (in order); validation is untouched.
    assert cut["train"]["row"] == [row for row, user in enumerate(users) if user in expected]
    assert cut["validation"]["row"] == list(range(50)) and isinstance(cut, DatasetDict)
    assert f"{len(cut['train'])} of 400 examples" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--train-user-share must be a positive integer, got 0"):
        script.keep_train_users(data, 0)
    with pytest.raises(ValueError, match="keeps no training example"):
        script.keep_train_users(DatasetDict({"train": Dataset.from_dict({"user": ["a"]})}), 10**9 + 7)


def test_variants_name_known_options(script):
    """Every variant's config overrides are fields A2Gen's config takes, and its training keys TrainingSettings'."""
    from dataclasses import fields

    from a2gen_hf import A2GenConfig
    from a2gen_hf.training.settings import TrainingSettings

    config_fields = set(A2GenConfig.field_names()) | set(A2GenConfig.aliases)
    training_fields = {field.name for field in fields(TrainingSettings)}
    for name, spec in script.VARIANTS.items():
        assert set(spec["overrides"]) <= config_fields, (name, set(spec["overrides"]) - config_fields)
        assert set(spec["training"]) <= training_fields, (name, set(spec["training"]) - training_fields)
