"""A2GenConfig and the baselines' configs: typed fields, validation, refused keywords, old config.json files."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from a2gen_hf import A2GenConfig

LEGACY = Path(__file__).parent / "fixtures" / "legacy_checkpoints"


@pytest.mark.parametrize("generator", ["iag", "eag"])
def test_an_old_config_json_with_user_side_list_length_still_loads(generator, tmp_path):
    saved = json.loads((LEGACY / generator / "config.json").read_text())
    assert "user_side_list_length" in saved  # the fixture is an old file
    shutil.copy(LEGACY / generator / "config.json", tmp_path / "config.json")
    config = A2GenConfig.from_pretrained(tmp_path)
    assert config.generator_type == generator
    assert config.hidden_size == saved["hidden_size"]
    assert "user_side_list_length" not in config.to_dict()
    config.save_pretrained(tmp_path / "again")
    assert "user_side_list_length" not in json.loads((tmp_path / "again" / "config.json").read_text())


def test_user_side_list_length_is_deprecated_and_dropped():
    with pytest.warns(FutureWarning, match=r"user_side_list_length=\.\.\.\) is deprecated and ignored"):
        config = A2GenConfig(num_user_side_lists=2, user_side_list_length=5)
    assert config.num_user_side_lists == 2
    assert config.user_side_list_length is None
    assert "user_side_list_length" not in config.to_dict()
