"""``ActionGenerationPipeline.save_pretrained`` / ``push_to_hub``: the model and the tokenizer are saved (or pushed) so
that ``pipeline("action-generation", model=folder)`` loads the same pipeline back, and the model's config is left as
it was (transformers' own save wrote ``custom_pipelines`` into it, then crashed copying the package's code)."""

from __future__ import annotations

import json

import pytest
from conftest import build_tiny_model
from hub_server import HubServer, point_clients_at
from transformers import pipeline

from a2gen_hf import A2GenActionTokenizer

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning")

REQUEST = {
    "user": "u1",
    "history": [{"item": "v7", "events": [("start", 0.0), ("like", 2.0), ("leave", 18.0)]}],
    "candidates": ["v42", "v43"],
}


def tiny_pipe():
    model = build_tiny_model("iag", num_user_side_lists=0, num_item_side_features=0, time_log_mean=1.5,
                             time_log_std=1.1)  # fmt: skip
    # A tokenizer with its own setting beyond the config's (side-feature field names), which only a saved one keeps.
    tokenizer = A2GenActionTokenizer.from_config(model.config, side_feature_fields=[])
    return pipeline("action-generation", model=model, tokenizer=tokenizer)


def test_save_pretrained_saves_model_and_tokenizer_and_leaves_the_config_alone(tmp_path):
    pipe = tiny_pipe()
    expected = pipe(REQUEST, rank_by="like")
    pipe.model.save_pretrained(tmp_path / "first")  # transformers' own config updates (architectures, auto_map, dtype)
    config_before = pipe.model.config.to_dict()
    pipe.save_pretrained(tmp_path / "saved", max_shard_size="10MB")
    for name in ("config.json", "model.safetensors", "tokenizer_config.json", "vocab.json"):
        assert (tmp_path / "saved" / name).is_file(), name
    saved_config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert "custom_pipelines" not in saved_config
    assert getattr(pipe.model.config, "custom_pipelines", None) is None
    assert pipe.model.config.to_dict() == config_before

    loaded = pipeline("action-generation", model=str(tmp_path / "saved"))
    assert loaded(REQUEST, rank_by="like") == expected
    assert loaded.tokenizer.side_feature_fields == [] and loaded.tokenizer.time_log_mean == 1.5
    # The model saved on its own afterwards still loads as a pipeline (before: the config named a pipeline class
    # that transformers cannot resolve, and every later save of the model failed to load).
    pipe.model.save_pretrained(tmp_path / "model_only")
    assert pipeline("action-generation", model=str(tmp_path / "model_only"))(REQUEST, rank_by="like") == expected


def test_save_pretrained_refuses_a_file_and_hub_options_without_push(tmp_path):
    pipe = tiny_pipe()
    (tmp_path / "a_file").write_text("")
    with pytest.raises(NotADirectoryError, match="is a file; pass a folder"):
        pipe.save_pretrained(tmp_path / "a_file")
    with pytest.raises(TypeError, match=r"Hub option\(s\) \['commit_message'\] without push_to_hub=True"):
        pipe.save_pretrained(tmp_path / "saved", commit_message="hi")
    assert not (tmp_path / "saved").exists()
    with pytest.raises(ValueError, match="the pipeline pushes its own tokenizer"):
        pipe.push_to_hub("repo", tokenizer=A2GenActionTokenizer())


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    with HubServer(tmp_path / "hub-storage") as server:
        point_clients_at(server, monkeypatch)
        yield server


def test_save_pretrained_with_push_to_hub_pushes_model_tokenizer_and_card(hub_env, tmp_path):
    pipe = tiny_pipe()
    expected = pipe(REQUEST, rank_by="like")
    pipe.save_pretrained(tmp_path / "pipe-push", push_to_hub=True, commit_message="pipeline push")
    files = hub_env.files(f"{hub_env.user}/pipe-push")
    assert {"config.json", "model.safetensors", "tokenizer_config.json", "vocab.json", "README.md"} <= set(files)
    assert "custom_pipelines" not in json.loads(files["config.json"])
    assert "An **A2Gen**" in files["README.md"].decode()  # the A2Gen card, as model.push_to_hub writes it
    pulled = tmp_path / "pulled"
    pulled.mkdir()
    for name, content in files.items():
        (pulled / name).write_bytes(content)
    assert pipeline("action-generation", model=str(pulled))(REQUEST, rank_by="like") == expected
